"""A search's data: a built-in dataset or the user's ``.npz`` files, and finding it again.

``tinytnas search`` records where its data came from (the built-in name, or the files' paths:
:class:`~tinytnas_optuna._study.RunRecord`); ``retrain`` and ``worker`` load it from there, or
from files given again. Either way the content is checked against the fingerprints the search
recorded (:mod:`tinytnas_optuna._study`), so a file moved or saved again with the same content
is accepted and one whose content changed is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna.datasets import DataError, load_dataset, load_npz

if TYPE_CHECKING:
    from tinytnas_optuna._study import RunRecord


@dataclass
class SearchData:
    """The arrays a search trains on, with how to find them again.

    Attributes:
        train: ``(features, labels)``.
        val: Validation set, or None.
        test: Test set (built-in datasets), or None.
        groups: Group ids of ``train`` (subjects), or None.
        class_names: Readable class names, or None.
        source: Where it came from: ``dataset``, ``train_path``, ``val_path`` (recorded in the
            study by ``tinytnas search``).
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    groups: np.ndarray | None = None
    class_names: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)


def load_search_data(
    dataset: str | None = None, train: str | Path | None = None, val: str | Path | None = None,
) -> SearchData:
    """Load a built-in dataset or the user's files.

    Args:
        dataset: Built-in dataset name.
        train: Training ``.npz`` path.
        val: Validation ``.npz`` path (only with ``train``).

    Returns:
        The :class:`SearchData`.

    Raises:
        DataError: Missing, bad or contradictory data, in one line.
    """
    if dataset is not None:
        if val is not None:
            raise DataError("--val goes with --train: a built-in dataset brings its own "
                            "validation split")
        ds = load_dataset(dataset)
        return SearchData((ds.x_train, ds.y_train), None, (ds.x_test, ds.y_test),
                          ds.groups_train, list(ds.class_names), {"dataset": ds.name})
    if train is None:
        raise DataError("no data: give --dataset NAME or --train FILE (see `tinytnas datasets`)")
    source: dict[str, Any] = {"dataset": None}
    arrays = {}
    for role, path in (("train", train), ("val", val)):
        source[f"{role}_path"] = None if path is None else str(Path(path).resolve())
        if path is not None:
            arrays[role] = load_npz(path, what=f"--{role} {path}")
    return SearchData(arrays["train"], arrays.get("val"), source=source)


def study_data(record: RunRecord, *, train: str | Path | None = None,
               val: str | Path | None = None) -> SearchData:
    """A study's data: files given again, else what ``tinytnas search`` recorded.

    Args:
        record: What the study recorded (:class:`~tinytnas_optuna._study.RunRecord`).
        train: Training ``.npz`` to use instead (needed for a study made from Python).
        val: Validation ``.npz`` to use with it.

    Returns:
        The :class:`SearchData` (to be checked against the recorded fingerprints).

    Raises:
        DataError: A study made from Python without ``train``, or unreadable files.
    """
    if train is not None:
        return load_search_data(None, train, val)
    if val is not None:
        raise DataError("--val needs --train")
    if record.dataset is None and record.train_path is None:
        raise DataError("the study was made from Python and records no data files: give "
                        "--train FILE (and --val FILE if the search had one)")
    data = load_search_data(record.dataset, record.train_path, record.val_path)
    data.class_names = data.class_names or record.class_names
    return data


def load_test(path: str | Path, input_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """A test ``.npz`` for the final model's report, refused when its series are not of the
    search's shape.

    Args:
        path: The file.
        input_shape: The search's ``(length, channels)``.

    Returns:
        ``(features, labels)``.

    Raises:
        DataError: An unreadable file, or series of another shape.
    """
    test = load_npz(path, what=f"--test {path}")
    shape = tuple(test[0].shape[1:]) + ((1,) if test[0].ndim == 2 else ())
    if list(shape) != list(input_shape):
        raise DataError(f"--test {path}: samples of shape {shape}, the search's are "
                        f"{tuple(input_shape)}")
    return test
