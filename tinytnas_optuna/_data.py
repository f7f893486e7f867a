"""A search's data: a built-in dataset or the user's ``.npz`` files, and finding it again.

``tinytnas search`` records where its data came from (the built-in name, or the files' paths
and SHA-256); ``retrain`` and ``worker`` load it from there, or from files given again, which
:mod:`tinytnas_optuna._study` then checks against the recorded content fingerprints.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinytnas_optuna.datasets import DataError, load_dataset, load_npz


@dataclass
class SearchData:
    """The arrays a search trains on, with how to find them again.

    Attributes:
        train: ``(features, labels)``.
        val: Validation set, or None.
        test: Test set (built-in datasets), or None.
        groups: Group ids of ``train`` (subjects), or None.
        class_names: Readable class names, or None.
        source: Where it came from: ``dataset``, ``train_path``, ``train_sha256``, ``val_path``,
            ``val_sha256`` (recorded in the study by ``tinytnas search``).
    """

    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray] | None = None
    test: tuple[np.ndarray, np.ndarray] | None = None
    groups: np.ndarray | None = None
    class_names: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        if path is None:
            source[f"{role}_path"] = source[f"{role}_sha256"] = None
            continue
        arrays[role] = load_npz(path, what=f"--{role} {path}")
        source[f"{role}_path"] = str(Path(path).resolve())
        source[f"{role}_sha256"] = sha256_file(path)
    return SearchData(arrays["train"], arrays.get("val"), source=source)


def study_data(attrs: dict[str, Any], *, train: str | Path | None = None,
               val: str | Path | None = None) -> SearchData:
    """A study's data: files given again, else what ``tinytnas search`` recorded.

    Args:
        attrs: ``study.user_attrs``.
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
    if attrs.get("dataset") is None and attrs.get("train_path") is None:
        raise DataError("the study was made from Python and records no data files: give "
                        "--train FILE (and --val FILE if the search had one)")
    return load_search_data(attrs.get("dataset"), attrs.get("train_path"), attrs.get("val_path"))
