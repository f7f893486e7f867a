"""A study made from Python is a study like one made by ``tinytnas search``.

The same search on GunPoint twice in one storage: once through the command line, once through
the README's Python path (``TinyTNASObjective`` with ``class_names`` and a ``.tflite`` uploader,
``tinytnas_optuna.optimize``). Each records the same things, so ``tinytnas show --json`` has the
same fields, ``tinytnas retrain`` writes the same class names into the C files, the dashboard
finds every trained model, and a worker knows the search's time bound. One training per
search (300 steps) and short final models keep this to about a minute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore

import tinytnas_optuna as tt
from tinytnas_optuna._dashboard import search_artifact_folders
from tinytnas_optuna._run import join_search
from tinytnas_optuna._study import RunRecord
from tinytnas_optuna.cli import main
from tinytnas_optuna.datasets import load_dataset

BUDGET = {"ram": "20KB", "flash": "64KB", "macs": "60K"}
BOUND = 300.0  # seconds: the searches' time bound (they end after one trial, well before it)


@pytest.fixture(scope="module")
def searches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Study ``cli`` made by ``tinytnas search``, study ``py`` made from Python, one storage."""
    folder = tmp_path_factory.mktemp("twins")
    url = f"sqlite:///{folder / 'twins.db'}"
    code = main(["search", "--dataset", "gunpoint", *(f"--{k}={v}" for k, v in BUDGET.items()),
                 "--steps", "300", "--timeout", f"{BOUND:g}s", "--trials", "1", "--storage",
                 url, "--study", "cli", "--progress", "none", "--no-model", "--jobs", "1"])
    assert code == 0

    ds = load_dataset("gunpoint")
    objective = tt.TinyTNASObjective(
        (ds.x_train, ds.y_train), budget=tt.HardwareBudget(**BUDGET), steps=300, seed=0,
        timeout=BOUND, class_names=list(ds.class_names),
        on_trained=tt.TFLiteArtifactUploader(FileSystemArtifactStore(str(folder / "py-art"))))
    study = optuna.create_study(storage=url, study_name="py", direction="maximize",
                                sampler=tt.TinyTNASSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    run = tt.optimize(study, objective, jobs=1, n_trials=1)
    assert run.summary.best is not None and not run.interrupted

    files = {}
    for name, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        files[name] = folder / f"{name}.npz"
        np.savez(files[name], features=x, labels=y)
    return {"url": url, "folder": folder, "files": files, "class_names": list(ds.class_names)}


def show_json(url: str, study: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["show", "--storage", url, "--study", study, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_show_json_has_the_same_fields(searches, capsys):
    url = str(searches["url"])
    cli, py = show_json(url, "cli", capsys), show_json(url, "py", capsys)
    assert set(cli) == set(py)
    assert set(cli["inputs"]) == set(py["inputs"])
    assert set(cli["trials"][0]) == set(py["trials"][0])
    same = ("budget", "steps", "epochs", "seed", "metric", "sampler", "input_shape",
            "label_map", "class_names", "timeout_seconds", "train_fingerprint")
    assert {k: cli["inputs"][k] for k in same} == {k: py["inputs"][k] for k in same}
    assert py["inputs"]["class_names"] == searches["class_names"]
    assert py["inputs"]["timeout_seconds"] == BOUND and py["inputs"]["search_ends_at"]
    # Where the data came from is known to the command line only.
    assert (cli["inputs"]["dataset"], py["inputs"]["dataset"]) == ("gunpoint", None)
    assert py["metric"] == cli["metric"] == "accuracy"
    assert optuna.load_study(study_name="py", storage=url).metric_names == ["accuracy"]


def test_the_dashboard_finds_every_trained_model(searches):
    url = str(searches["url"])
    folders = search_artifact_folders(url)
    assert Path(searches["folder"]) / "py-art" in folders
    for name in ("cli", "py"):
        trained = [t for t in optuna.load_study(study_name=name, storage=url).trials
                   if t.state == optuna.trial.TrialState.COMPLETE]
        assert trained, name
        for t in trained:
            artifact = t.user_attrs["tflite_artifact"]
            found = [f / artifact for f in folders if (f / artifact).exists()]
            assert found and found[0].read_bytes()[4:8] == b"TFL3", (name, t.number)


def test_a_worker_knows_the_search_bound(searches):
    url = str(searches["url"])
    for name in ("cli", "py"):
        study = optuna.load_study(study_name=name, storage=url)
        record = RunRecord.of(study)
        left = record.remaining()
        assert left is not None and 0 < left < BOUND, (name, left)
        train = None if name == "cli" else str(searches["files"]["train"])
        joined = join_search(url, name, train=train)
        assert joined is not None and not joined.objective.records_bound
        assert joined.timeout == pytest.approx(left, abs=30), name
        assert joined.objective.reserve_final is (name == "py")  # the cli search had --no-model
        assert joined.objective.class_names == searches["class_names"]
        # A worker's trials never move the search's bound.
        joined.objective._record_bound(joined.study)
        assert RunRecord.of(study).search_ends_at == record.search_ends_at


def test_retrain_writes_the_same_class_names(searches, capsys):
    url, folder, files = str(searches["url"]), Path(searches["folder"]), searches["files"]
    names = {}
    for name, data in (("cli", []), ("py", ["--train", str(files["train"])])):
        out = folder / f"model-{name}"
        # The class names are the subject: a short final model (or the search's own network
        # when it does not fit the bound) is enough; exit 3 would only say it is weak.
        code = main(["retrain", "--storage", url, "--study", name, "--out", str(out),
                     "--steps", "100", "--timeout", "30s", "--test", str(files["test"]), *data])
        assert code in (0, 3), capsys.readouterr().err
        source = (out / "tinytnas_model.cc").read_text()
        names[name] = re.search(r"_class_names\[.*\] = \{(.*)\};", source).group(1)
    assert names["cli"] == names["py"] == '"gun", "point"'
