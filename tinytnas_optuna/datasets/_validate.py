"""Checks that turn user arrays into the (N, L, C) float32 layout the search trains on."""

from __future__ import annotations

from typing import Literal

import numpy as np

from tinytnas_optuna.datasets._errors import DataError

LabelKind = Literal["int", "onehot"]


def label_kind(labels: np.ndarray, what: str) -> LabelKind:
    """Tells whether labels are integer class ids or one-hot rows.

    Args:
        labels: The label array.
        what: Where the labels come from, for the error message.

    Returns:
        ``"int"`` for rank 1 integers (integer-valued floats too), ``"onehot"`` for rank 2 rows
        holding exactly one 1 and zeros elsewhere.

    Raises:
        DataError: If the labels are neither.
    """
    expected = "expected rank 1 integer class ids or rank 2 one-hot rows"
    if labels.dtype.kind not in "iuf":
        raise DataError(f"{what} labels: dtype {labels.dtype} is not numeric; {expected}")
    if labels.ndim == 1:
        if labels.dtype.kind == "f":
            finite = np.isfinite(labels)
            if not finite.all():
                raise DataError(f"{what} labels: {int((~finite).sum())} NaN or Inf values")
            if not np.array_equal(labels, np.round(labels)):
                bad = int((labels != np.round(labels)).sum())
                raise DataError(f"{what} labels: {bad} values are not whole numbers; {expected}")
        return "int"
    if labels.ndim == 2:
        binary = (labels == 0) | (labels == 1)
        if not binary.all():
            raise DataError(
                f"{what} labels: rank 2 but {int((~binary).sum())} entries are neither 0 nor 1; "
                f"{expected}"
            )
        ones = labels.sum(axis=1)
        if not (ones == 1).all():
            raise DataError(
                f"{what} labels: rank 2 but {int((ones != 1).sum())} rows do not hold exactly "
                f"one 1; {expected}"
            )
        return "onehot"
    raise DataError(f"{what} labels: rank {labels.ndim} with shape {labels.shape}; {expected}")


def class_ids(labels: np.ndarray, kind: LabelKind) -> np.ndarray:
    """Returns the original integer class of every sample (the column index for one-hot).

    Args:
        labels: Labels already checked by ``label_kind``.
        kind: What ``label_kind`` returned.

    Returns:
        A rank 1 int64 array.
    """
    if kind == "onehot":
        return np.argmax(labels, axis=1).astype(np.int64)
    return labels.astype(np.int64)


def validate_arrays(
    features: np.ndarray, labels: np.ndarray, *, what: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Checks a feature/label pair and brings features to (N, L, C) float32.

    Args:
        features: (N, L) for one channel or (N, L, C).
        labels: (N,) integer class ids (integer-valued floats allowed) or (N, K) one-hot.
        what: Names the arrays in error messages, e.g. ``"train"`` or a file path.

    Returns:
        (features as float32 (N, L, C), labels as given).

    Raises:
        DataError: Wrong rank, a zero-length axis, NaN or Inf features, a count mismatch,
            labels neither integers nor one-hot, or fewer than two classes.
    """
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.dtype.kind not in "iufb":
        raise DataError(f"{what} features: dtype {features.dtype} is not numeric")
    if features.ndim not in (2, 3):
        raise DataError(
            f"{what} features: rank {features.ndim} with shape {features.shape}; expected "
            "(N, L) or (N, L, C)"
        )
    if 0 in features.shape:
        raise DataError(f"{what} features: shape {features.shape} has a zero-length axis")
    if features.ndim == 2:
        features = features[:, :, np.newaxis]
    features = features.astype(np.float32, copy=False)
    nan = int(np.isnan(features).sum())
    inf = int(np.isinf(features).sum())
    if nan or inf:
        # Inf may also come from float64 values beyond float32's range.
        raise DataError(f"{what} features: {nan} NaN and {inf} Inf values")
    if labels.ndim == 0 or labels.shape[0] != features.shape[0]:
        count = "a scalar" if labels.ndim == 0 else f"{labels.shape[0]} labels"
        raise DataError(f"{what}: {features.shape[0]} feature rows but {count}")
    kind = label_kind(labels, what)
    present = np.unique(class_ids(labels, kind))
    if present.size < 2:
        raise DataError(
            f"{what} labels: a single class ({present[0]}); classification needs at least two"
        )
    return features, labels
