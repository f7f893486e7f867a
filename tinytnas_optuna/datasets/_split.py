"""Seeded train/validation splits: stratified by class, or by whole groups (subjects)."""

from __future__ import annotations

import numpy as np

from tinytnas_optuna.datasets._errors import DataError
from tinytnas_optuna.datasets._validate import class_ids, label_kind


def split_train_val(
    labels: np.ndarray,
    *,
    fraction: float = 0.15,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Splits sample indices into train and validation.

    Without ``groups`` the split is stratified: each class sends about ``fraction`` of its
    samples to validation, and at least one when it has two or more. With ``groups`` (e.g.
    subject ids) every group lies wholly on one side, so validation measures generalisation to
    unseen subjects; whole groups are drawn in a seeded order until about ``fraction`` of the
    samples, then more are added where a class would otherwise be missing from validation.

    Args:
        labels: (N,) integer labels or (N, K) one-hot rows.
        fraction: Target share of samples in validation, in (0, 1).
        seed: Seed of the random order.
        groups: Optional (N,) group id of each sample.

    Returns:
        (train indices, validation indices), sorted int64 arrays.

    Raises:
        DataError: Bad arguments, or no split with a non-empty train and validation side.
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split_train_val: fraction {fraction} is not between 0 and 1")
    y = class_ids(labels, label_kind(labels, "split"))
    rng = np.random.default_rng(seed)
    if groups is None:
        val_parts = []
        for cls in np.unique(y):
            members = rng.permutation(np.flatnonzero(y == cls))
            if members.size < 2:
                continue  # A lone sample stays in train, where it is at least learned from.
            n_val = min(max(round(fraction * members.size), 1), members.size - 1)
            val_parts.append(members[:n_val])
        val_idx = np.concatenate(val_parts) if val_parts else np.empty(0, np.int64)
    else:
        val_idx = _group_val(y, np.asarray(groups), fraction, rng)
    val_mask = np.zeros(y.size, bool)
    val_mask[val_idx] = True
    train_idx, val_idx = np.flatnonzero(~val_mask), np.flatnonzero(val_mask)
    if train_idx.size == 0 or val_idx.size == 0:
        raise DataError(
            f"split_train_val: cannot split {y.size} samples into non-empty train and validation"
        )
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def _group_val(
    y: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Chooses whole groups for validation; returns the validation sample indices."""
    if groups.ndim != 1 or groups.shape[0] != y.size:
        raise DataError(f"split_train_val: groups shape {groups.shape}, expected ({y.size},)")
    names, group_of = np.unique(groups, return_inverse=True)
    if names.size < 2:
        raise DataError("split_train_val: a single group; cannot keep groups on one side")
    order = list(rng.permutation(names.size))
    sizes = np.bincount(group_of, minlength=names.size)
    # classes_in[g, c]: does group g hold class c?
    classes, cls_of = np.unique(y, return_inverse=True)
    classes_in = np.zeros((names.size, classes.size), bool)
    classes_in[group_of, cls_of] = True

    chosen: list[int] = []
    target = fraction * y.size
    for g in order:
        if sizes[chosen].sum() >= target or len(chosen) == names.size - 1:
            break
        chosen.append(g)
    # Add a group for each class validation lacks, if train keeps every class it has.
    for c in range(classes.size):
        if classes_in[chosen, c].any():
            continue
        rest = [g for g in order if g not in chosen]
        in_train = classes_in[rest].any(axis=0)
        for g in rest:
            others = [h for h in rest if h != g]
            if classes_in[g, c] and others and (classes_in[others].any(axis=0) == in_train).all():
                chosen.append(g)
                break
    return np.flatnonzero(np.isin(group_of, chosen))


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int = 0) -> np.ndarray:
    """Assigns each sample to one of ``folds`` folds, each class spread evenly over them.

    Args:
        labels: (N,) integer labels.
        folds: Number of folds, >= 2.
        seed: Seed of the random order within each class.

    Returns:
        (N,) int64 fold id of each sample; every fold is non-empty.

    Raises:
        DataError: Fewer samples than folds.

    Example:
        >>> stratified_folds(np.array([0, 0, 0, 1, 1, 1]), folds=3).tolist().count(0)
        2
    """
    y = np.asarray(labels)
    if folds < 2 or y.size < folds:
        raise DataError(f"stratified_folds: cannot make {folds} folds of {y.size} samples")
    rng = np.random.default_rng(seed)
    fold = np.empty(y.size, np.int64)
    offset = 0
    for cls in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == cls))
        # Continue the round-robin across classes, so small classes do not all start at fold 0.
        fold[members] = (np.arange(members.size) + offset) % folds
        offset += members.size
    return fold


def group_folds(groups: np.ndarray, *, folds: int, seed: int = 0) -> np.ndarray:
    """Assigns whole groups (e.g. subjects) to ``folds`` folds of about equal sample counts.

    Groups are taken in a seeded random order and each goes to the fold with the fewest samples
    so far, so every sample of a group is validated together, by a model that never saw it.

    Args:
        groups: (N,) group id of each sample.
        folds: Number of folds, >= 2.
        seed: Seed of the order.

    Returns:
        (N,) int64 fold id of each sample; every fold is non-empty.

    Raises:
        DataError: Fewer groups than folds.

    Example:
        >>> group_folds(np.array([1, 1, 2, 2, 3, 3]), folds=3).tolist().count(0)
        2
    """
    g = np.asarray(groups)
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if folds < 2 or names.size < folds:
        raise DataError(f"group_folds: cannot make {folds} folds of {names.size} groups")
    order = np.random.default_rng(seed).permutation(names.size)
    sizes = np.zeros(folds, np.int64)
    of_group = np.empty(names.size, np.int64)
    for i in order:
        target = int(np.argmin(sizes))
        of_group[i] = target
        sizes[target] += counts[i]
    return of_group[inverse].astype(np.int64)
