"""Mapping labels of any integer values or one-hot rows to class ids 0..K-1."""

from __future__ import annotations

import numpy as np

from tinytnas_optuna.datasets._errors import DataError
from tinytnas_optuna.datasets._validate import class_ids, label_kind


def encode_labels(*label_arrays: np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Encodes label arrays jointly to 0..K-1, so train and validation share one map.

    UCR files use -1/1 or 1..K; one-hot rows are mapped by their column index. Only the
    classes present in some array get an id, in increasing order of the original value.

    Args:
        *label_arrays: Rank 1 integer labels (integer-valued floats allowed), or rank 2
            one-hot rows; all arrays in the same format.

    Returns:
        (the encoded int64 arrays in the order given, ``classes``), where ``classes[i]`` is the
        original label value (the column index for one-hot) of encoded class ``i``.

    Raises:
        DataError: No arrays, labels neither integers nor one-hot, mixed formats or one-hot
            widths, or a single class overall.
    """
    if not label_arrays:
        raise DataError("encode_labels: no label arrays given")
    arrays = [np.asarray(labels) for labels in label_arrays]
    names = [f"label array {i}" for i in range(len(arrays))]
    kinds = [label_kind(labels, name) for labels, name in zip(arrays, names, strict=True)]
    if len(set(kinds)) > 1:
        described = ", ".join(f"{name} is {kind}" for name, kind in zip(names, kinds, strict=True))
        raise DataError(f"encode_labels: mixed label formats ({described})")
    if kinds[0] == "onehot":
        widths = {labels.shape[1] for labels in arrays}
        if len(widths) > 1:
            raise DataError(f"encode_labels: one-hot arrays of different widths {sorted(widths)}")
    ids = [class_ids(labels, kind) for labels, kind in zip(arrays, kinds, strict=True)]
    classes = np.unique(np.concatenate(ids))
    if classes.size < 2:
        found = classes[0] if classes.size else "none"
        raise DataError(f"encode_labels: a single class overall ({found}); need at least two")
    encoded = [np.searchsorted(classes, values).astype(np.int64) for values in ids]
    return encoded, tuple(int(value) for value in classes)
