"""How candidates are validated: the data prepared once, the hold-out or folds, the metric.

Labels are encoded to 0..K-1 and features standardised per channel on the training part. Without
a validation set, a set of fewer than :data:`CV_BELOW` series is validated by
:data:`CV_FOLDS`-fold stratified cross-validation (every series is validated once), data with
groups (subjects) by :data:`CV_FOLDS` folds of whole groups, any other set by a stratified
hold-out of :data:`VAL_FRACTION`. What predicting the majority class scores (:func:`chance_rate`)
and whether a result is clearly above it (:func:`clearly_above`) live here too: every verdict of
"no better than chance" reads them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tinytnas_optuna.datasets import (
    encode_labels,
    group_folds,
    split_train_val,
    stratified_folds,
    validate_arrays,
)

METRICS = ("accuracy", "balanced_accuracy")
#: Held-out share of the training data when no validation set is given (large sets).
VAL_FRACTION = 0.15
#: Below this many training series (and with no validation set or groups), cross-validate.
CV_BELOW = 300
#: Folds of that cross-validation.
CV_FOLDS = 3


@dataclass(frozen=True)
class PreparedData:
    """Training data as the search uses it: standardised, labels encoded 0..K-1.

    Attributes:
        x_train: ``(N, L, C)`` float32, standardised per channel with train statistics.
        y_train: ``(N,)`` int64 in 0..K-1.
        x_val: Validation features, standardised with the same statistics (empty when
            ``folds`` is set).
        y_val: Validation labels.
        classes: ``classes[i]`` is the original label of class ``i`` (the label map).
        mean: Per-channel mean subtracted before training (firmware must do the same).
        std: Per-channel standard deviation divided by.
        folds: Cross-validation fold of each training series, or None for a hold-out.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: tuple[Any, ...]
    mean: np.ndarray
    std: np.ndarray
    folds: np.ndarray | None = None

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(L, C)``."""
        return int(self.x_train.shape[1]), int(self.x_train.shape[2])

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return len(self.classes)

    @property
    def validation(self) -> str:
        """``"holdout"`` or ``"<k>-fold"`` (cross-validation)."""
        return "holdout" if self.folds is None else f"{int(self.folds.max()) + 1}-fold"

    @property
    def validation_labels(self) -> np.ndarray:
        """Labels of every series that is validated (all of train under cross-validation)."""
        return self.y_val if self.folds is None else self.y_train

    def splits(self) -> list[PreparedData]:
        """The hold-outs a candidate is trained on: this data, or one per fold.

        Returns:
            ``[self]`` for a hold-out; under cross-validation one hold-out per fold (same
            standardisation: the per-channel statistics of all training data).
        """
        if self.folds is None:
            return [self]
        out = []
        for f in range(int(self.folds.max()) + 1):
            tr, va = self.folds != f, self.folds == f
            out.append(replace(self, x_train=self.x_train[tr], y_train=self.y_train[tr],
                               x_val=self.x_train[va], y_val=self.y_train[va], folds=None))
        return out

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """Apply the training standardisation to other features (e.g. a test set).

        Args:
            x: ``(N, L, C)`` or ``(N, L)`` features.

        Returns:
            Standardised float32 ``(N, L, C)``.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2:
            x = x[..., None]
        return ((x - self.mean) / self.std).astype(np.float32)


def prepare_data(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    groups: np.ndarray | None = None,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
) -> PreparedData:
    """Validate, encode labels jointly, choose the validation plan, and standardise.

    With ``val``, it is used as given. Without it: fewer than :data:`CV_BELOW` series and no
    ``groups`` means :data:`CV_FOLDS`-fold stratified cross-validation (a 15 % hold-out of a
    small set is a handful of series: too few to rank networks); ``groups`` (at least
    :data:`CV_FOLDS` of them) means :data:`CV_FOLDS` folds of whole groups (a hold-out of 15 % of
    the subjects is two or three people); otherwise a seeded stratified hold-out of
    ``val_fraction``.

    Args:
        train: ``(features, labels)``; labels integers of any values, or one-hot.
        val: Optional ``(features, labels)``.
        groups: Optional group id per training sample (e.g. subject): a split keeps each group
            on one side, since overlapping windows of one subject on both sides inflate accuracy.
        val_fraction: Share of train held out when ``val`` is None and the set is large.
        seed: Seed of the split or folds.

    Returns:
        The :class:`PreparedData`.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(60, 20)); y = np.arange(60) % 2
        >>> prepare_data((x, y)).validation
        '3-fold'
    """
    x, y = validate_arrays(*train, what="train")
    folds = None
    if val is not None:
        xv, yv = validate_arrays(*val, what="val")
        if xv.shape[1:] != x.shape[1:]:
            raise ValueError(f"val features have shape {xv.shape[1:]}, train {x.shape[1:]}")
        (y, yv), classes = encode_labels(y, yv)
    else:
        (y,), classes = encode_labels(y)
        if groups is not None and len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries for {len(y)} training samples")
        if groups is None and len(y) < CV_BELOW:
            folds = stratified_folds(y, folds=CV_FOLDS, seed=seed)
            xv, yv = x[:0], y[:0]
        elif groups is not None and len(np.unique(groups)) >= CV_FOLDS:
            # A 15 % hold-out of subjects is two or three people: too few to rank networks.
            folds = group_folds(groups, folds=CV_FOLDS, seed=seed)
            xv, yv = x[:0], y[:0]
        else:
            tr, va = split_train_val(y, fraction=val_fraction, seed=seed, groups=groups)
            x, xv, y, yv = x[tr], x[va], y[tr], y[va]
    mean = x.mean(axis=(0, 1))
    # A constant channel would divide by zero: leave it unscaled.
    std = np.where(x.std(axis=(0, 1)) > 1e-8, x.std(axis=(0, 1)), 1.0)
    x = ((x - mean) / std).astype(np.float32)
    xv = ((xv - mean) / std).astype(np.float32)
    return PreparedData(x, y.astype(np.int64), xv, yv.astype(np.int64), tuple(classes),
                        mean.astype(np.float32), std.astype(np.float32), folds)


def score(y_true: np.ndarray, y_pred: np.ndarray, metric: str, num_classes: int) -> float:
    """Accuracy, or balanced accuracy (mean recall over the classes present).

    Args:
        y_true: True labels 0..K-1.
        y_pred: Predicted labels.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        num_classes: K.

    Returns:
        The metric in [0, 1].

    Example:
        >>> score(np.array([0, 0, 1]), np.array([0, 1, 1]), "balanced_accuracy", 2)
        0.75
    """
    if metric == "accuracy":
        return float(np.mean(y_true == y_pred))
    recalls = [np.mean(y_pred[y_true == k] == k) for k in range(num_classes)
               if np.any(y_true == k)]
    return float(np.mean(recalls))


def chance_rate(y: np.ndarray, metric: str, num_classes: int) -> float:
    """What predicting the majority class scores: its share (accuracy) or 1/K (balanced).

    Example:
        >>> chance_rate(np.array([0, 0, 0, 1]), "accuracy", 2)
        0.75
    """
    if metric == "balanced_accuracy":
        return 1.0 / num_classes
    return float(np.bincount(y, minlength=num_classes).max() / max(1, len(y)))


def clearly_above(value: float, chance: float, n: int, *, level: float = 0.01) -> bool:
    """Whether ``value`` on ``n`` series is clearly above ``chance``.

    A one-sided binomial test: the probability that a classifier right with probability
    ``chance`` on each series scores at least ``value`` is below ``level``. On 9 validation
    series a 4-class set needs 7 right; on 1,000, a point or two above chance suffices.

    Args:
        value: Accuracy (or balanced accuracy) in [0, 1].
        chance: :func:`chance_rate`.
        n: Number of series it was measured on.
        level: Significance level.

    Returns:
        True when clearly above chance.

    Example:
        >>> clearly_above(0.6, 0.5, 10), clearly_above(0.6, 0.5, 1000)
        (False, True)
    """
    if n <= 0 or value <= chance:
        return False
    if chance <= 0.0:
        return True
    hits = math.ceil(value * n - 1e-9)
    # P(X >= hits) for X ~ Binomial(n, chance), summed in log space for large n.
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
            + i * math.log(chance) + (n - i) * math.log1p(-chance) if chance < 1 else 0.0
            for i in range(hits, n + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return tail < level
