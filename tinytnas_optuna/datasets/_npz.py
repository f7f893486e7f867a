"""Reading a user's own data from an ``.npz`` file with ``features`` and ``labels`` arrays."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from tinytnas_optuna.datasets._errors import DataError
from tinytnas_optuna.datasets._validate import validate_arrays

REQUIRED_KEYS = ("features", "labels")


def load_npz(
    path: str | os.PathLike[str], *, what: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads and checks ``features`` and ``labels`` from an ``.npz`` file.

    This is the layout of the original TinyTNAS example:
    ``np.savez(path, features=x, labels=y)``.

    Args:
        path: The ``.npz`` file.
        what: Names the data in error messages; defaults to the path.

    Returns:
        (features float32 (N, L, C), labels), as ``validate_arrays`` returns them.

    Raises:
        DataError: The file is missing or unreadable, lacks a key, or holds bad arrays.
    """
    path = Path(path)
    what = what or str(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        # allow_pickle=False: an .npz from elsewhere must not run code when read.
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single .npy array, expected an .npz archive")
        with archive:
            found = sorted(archive.files)
            missing = [key for key in REQUIRED_KEYS if key not in found]
            if missing:
                raise DataError(
                    f"{path}: missing key(s) {', '.join(missing)}; found "
                    f"{', '.join(found) or 'no arrays'}; expected 'features' and 'labels'"
                )
            features = archive["features"]
            labels = archive["labels"]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        # Object arrays land here too: they need pickle, which is refused above.
        raise DataError(f"{path}: cannot read as .npz ({type(exc).__name__}: {exc})") from exc
    return validate_arrays(features, labels, what=what)
