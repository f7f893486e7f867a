"""Reading UCI HAPT recordings from a pandas 1.x pickle without pandas, and cutting windows."""

from __future__ import annotations

import codecs
import copyreg
import gzip
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from tinytnas_optuna.datasets._errors import DataError

CHANNELS = ("acc-x", "acc-y", "acc-z", "gyro-x", "gyro-y", "gyro-z")
# The UCI-HAR protocol: 2.56 s windows at 50 Hz with 50% overlap, and these test subjects.
WINDOW = 128
STEP = 64
TEST_SUBJECTS = frozenset({2, 4, 9, 10, 12, 13, 18, 20, 24})
ACTIVITIES = range(1, 7)  # 1..6; 7..12 are postural transitions, -1 unlabelled.


class _Frame:
    """Stands in for ``pandas.DataFrame``: keeps the pickled state."""

    state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _BlockManager(_Frame):
    """Stands in for ``pandas.core.internals.managers.BlockManager``."""


class _Index:
    """Stands in for the pandas index classes, which ``_new_index`` never instantiates."""


def _new_index(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    # pandas rebuilds an index from a dict (``data``/``name`` or ``start``/``stop``/``step``);
    # the dict alone is all we need.
    return data


# ``np.ndarray``'s own reduce function, wherever this numpy keeps it (numpy.core was renamed).
_RECONSTRUCT = np.array(0).__reduce__()[0]
_ALLOWED: dict[tuple[str, str], Any] = {
    ("pandas.core.frame", "DataFrame"): _Frame,
    ("pandas.core.internals.managers", "BlockManager"): _BlockManager,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): _Index,
    ("pandas.core.indexes.range", "RangeIndex"): _Index,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): codecs.encode,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only the classes this pickle needs, to stand-ins: no pandas, and no code runs."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"HAPT pickle: unexpected class {module}.{name}") from None


def _frame_columns(frame: Any, path: Path) -> dict[str, np.ndarray]:
    """Returns a stand-in DataFrame's columns by name."""
    try:
        manager = frame.state["_data"]
        # pandas 1.x BlockManager state: (axes, values, items, {"0.14.1": {...}}).
        extra = manager.state[3]["0.14.1"]
        columns = list(extra["axes"][0]["data"])
        result: dict[str, np.ndarray] = {}
        for block in extra["blocks"]:
            # A block stores its columns as rows; mgr_locs says which columns (array or slice).
            rows = np.arange(len(columns))[block["mgr_locs"]]
            values = np.asarray(block["values"])
            for row, column in zip(np.atleast_1d(rows), values, strict=True):
                result[str(columns[row])] = column
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: unexpected DataFrame layout ({exc!r})") from exc
    return result


def read_hapt(path: Path) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Reads the recordings of ``HAPT.pkl.gz``.

    Args:
        path: The gzipped pickle of ``{user_id: [DataFrame per recording]}``.

    Returns:
        ``{user_id: [(signals (T, 6) float32 in CHANNELS order, labels (T,) int64)]}``.

    Raises:
        DataError: The file cannot be read or is not laid out as expected.
    """
    try:
        with gzip.open(path, "rb") as stream:
            users = _Unpickler(stream).load()
    except DataError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the HAPT pickle ({exc})") from exc
    if not isinstance(users, dict):
        raise DataError(f"{path}: expected a dict of users, got {type(users).__name__}")
    recordings: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    for user, frames in users.items():
        for frame in frames:
            columns = _frame_columns(frame, path)
            missing = [name for name in (*CHANNELS, "label") if name not in columns]
            if missing:
                raise DataError(f"{path}: recording of user {user} lacks columns {missing}")
            signals = np.stack([columns[name] for name in CHANNELS], axis=1)
            labels = columns["label"].astype(np.int64)
            recordings.setdefault(int(user), []).append((signals.astype(np.float32), labels))
    return recordings


def window_recording(signals: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cuts windows that lie wholly inside one segment labelled with an activity 1..6.

    Args:
        signals: (T, C) samples of one recording.
        labels: (T,) per-sample label.

    Returns:
        (windows (W, WINDOW, C), window labels (W,) 1..6).
    """
    # Segment boundaries are where the label changes.
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [labels.size]))
    windows, window_labels = [], []
    for start, end in zip(starts, ends, strict=True):
        if labels[start] not in ACTIVITIES:
            continue
        for offset in range(start, end - WINDOW + 1, STEP):
            windows.append(signals[offset : offset + WINDOW])
            window_labels.append(labels[start])
    if not windows:
        return np.empty((0, WINDOW, signals.shape[1]), np.float32), np.empty(0, np.int64)
    return np.stack(windows), np.asarray(window_labels, np.int64)


def build_har(path: Path) -> dict[str, np.ndarray]:
    """Builds the UCI-HAR-like 6-class set from HAPT.

    Args:
        path: ``HAPT.pkl.gz``.

    Returns:
        Arrays ``x_train``, ``y_train`` (1..6), ``groups_train`` (subject ids), ``x_test``,
        ``y_test`` (1..6), ``groups_test``.
    """
    parts: dict[str, list[np.ndarray]] = {
        key: []
        for key in ("x_train", "y_train", "groups_train", "x_test", "y_test", "groups_test")
    }
    for user in sorted(read_hapt(path).items()):
        subject, recordings = user
        side = "test" if subject in TEST_SUBJECTS else "train"
        for signals, labels in recordings:
            windows, window_labels = window_recording(signals, labels)
            parts[f"x_{side}"].append(windows)
            parts[f"y_{side}"].append(window_labels)
            parts[f"groups_{side}"].append(np.full(window_labels.size, subject, np.int64))
    return {key: np.concatenate(arrays) for key, arrays in parts.items()}
