"""The search's lifecycle from Python: the README's example killed and run again, refused
mixes, and the shell's commands on a study made from Python (real SQLite and journal files,
real trainings on GunPoint)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest

from tinytnas_optuna._trial import EPOCHS, FAIL_REASON, trial_level, trial_outcome, trial_record

ROOT = Path(__file__).resolve().parents[1]
BOUND = 45  # seconds: the example's time bound in these tests (the README says 600)


def readme_example() -> str:
    """The README's Python example, verbatim."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)


def example_script(tmp_path: Path, storage: str) -> Path:
    """The README's example on GunPoint with this test's bound, steps, storage and output folder.

    Only these literal values change; the code is the README's. ``storage`` is the Python
    expression of the storage.
    """
    code = readme_example()
    # 200 steps per candidate: a few candidates and the final model fit in the bound.
    replacements = {'"har"': '"gunpoint"', "timeout=600": f"timeout={BOUND}",
                    "budget=budget, seed=0,": "budget=budget, seed=0, steps=200,",
                    '"sqlite:///tinytnas.db"': storage, '"best/"': repr(str(tmp_path / "best"))}
    for old, new in replacements.items():
        assert old in code, f"the README's example no longer has {old}"
        code = code.replace(old, new)
    script = tmp_path / "example.py"
    script.write_text(code)
    return script


def start(script: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, str(script)], cwd=script.parent, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def trials_of(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="my-search", storage=storage).get_trials(deepcopy=False)


def journal(tmp: Path) -> tuple[str, Callable[[], optuna.storages.BaseStorage]]:
    """A journal file: the storage's Python expression for the script, and an opener."""
    path = str(tmp / "tinytnas.log")
    expression = ("optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("
                  f"{path!r}))")
    return expression, lambda: optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(path))


# Full tier: the default tier's real kill -9 and rerun is tests/test_parallel.py's (the command
# line, two processes, SQLite); this one is the README's Python example on a journal file.
@pytest.mark.full
def test_readme_example_on_a_journal_killed_mid_training_and_run_again_unchanged(tmp_path):
    expression, open_storage = journal(tmp_path)
    script = example_script(tmp_path, expression)

    first = start(script, tmp_path / "first.log")
    killed = None
    deadline = time.monotonic() + 240
    errors: Counter[str] = Counter()
    try:
        # Kill it during a training: a RUNNING trial that has started training (epochs
        # recorded) and whose network was measured feasible.
        while killed is None and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.5)
            try:
                trials = trials_of(open_storage())
            except Exception as exc:  # noqa: BLE001 - the study may not exist yet
                errors[f"{type(exc).__name__}: {str(exc)[:200]}"] += 1
                continue
            running = [t for t in trials if t.state.name == "RUNNING" and EPOCHS in t.user_attrs
                       and t.user_attrs.get("feasible")]
            done = [t for t in trials if trial_outcome(t) == "trained"]
            if running and done:  # at least one training finished before: resume must keep it
                time.sleep(1.0)
                killed = running[0].number
                first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert killed is not None, (errors, (tmp_path / "first.log").read_text()[-3000:])
    before = {t.number: t for t in trials_of(open_storage())}
    assert before[killed].state.name == "RUNNING"

    # The same script, unchanged: it continues at once and finishes within its bound.
    t0 = time.monotonic()
    second = start(script, tmp_path / "second.log")
    assert second.wait(BOUND + 120) == 0, (tmp_path / "second.log").read_text()[-3000:]
    elapsed = time.monotonic() - t0
    assert elapsed <= BOUND + 30, elapsed  # the bound, plus a fresh process's imports

    trials = trials_of(open_storage())
    assert not [t.number for t in trials if t.state.name == "RUNNING"]
    recovered = next(t for t in trials if t.number == killed)
    assert recovered.state.name == "FAIL" and "process" in recovered.system_attrs[FAIL_REASON]
    # Nothing completed was trained again: each (candidate, level) trained at most once.
    trained = Counter((trial_record(t).candidate, trial_level(t)) for t in trials
                      if trial_outcome(t) == "trained")
    assert max(trained.values()) == 1, trained
    # Every training completed before the kill is still there, unchanged, and was not redone.
    for number, t in before.items():
        if trial_outcome(t) == "trained":
            assert trial_outcome(trials[number]) == "trained"
    # The killed trial's candidate was trained after all (redone by the second run).
    cand = (trial_record(recovered).candidate, trial_level(recovered))
    assert cand in trained
    report = json.loads((tmp_path / "best" / "report.json").read_text())
    assert report["evaluated_on"] == "test" and report["int8_accuracy"] > 0.6


def _gunpoint():
    from tinytnas_optuna.datasets import load_dataset

    return load_dataset("gunpoint")


def _objective(ds, **kw):
    import tinytnas_optuna as tt

    # 300 steps and 10K MACs ((4, 3) fits): gunpoint's networks learn (0.7-0.9), so a study
    # at chance fails the tests.
    settings = {"budget": tt.HardwareBudget(ram="20KB", flash="64KB", macs="10K"), "seed": 0,
                "steps": 300}
    settings.update(kw)
    return tt.TinyTNASObjective((ds.x_train, ds.y_train), **settings)


def test_other_data_or_budget_on_the_same_study_fails_with_one_line(tmp_path):
    import tinytnas_optuna as tt

    ds = _gunpoint()
    url = f"sqlite:///{tmp_path / 's.db'}"

    def study():
        return optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=0),
                                   pruner=optuna.pruners.NopPruner(), storage=url,
                                   study_name="s", load_if_exists=True)

    study().optimize(_objective(ds), n_trials=1)
    before = [(t.number, t.state) for t in study().trials]

    other_data = _objective(ds, steps=60)
    other_data_train = (ds.x_train[:, ::-1].copy(), ds.y_train)
    cases = {
        "training data": tt.TinyTNASObjective(
            other_data_train, budget=other_data.budget, seed=0, steps=60),
        "budget": _objective(ds, budget=tt.HardwareBudget(ram="20KB", flash="64KB",
                                                           macs="3K")),
        "steps": _objective(ds, steps=61),
    }
    for what, objective in cases.items():
        with pytest.raises(tt.StudyMismatchError) as err:
            study().optimize(objective, n_trials=3, catch=(Exception,))
        message = str(err.value)
        assert "\n" not in message and what in message and "refusing to mix" in message
        # Nothing trained, no FAIL left behind: the refused trial waits for the next run.
        after = study().trials
        assert [(t.number, t.state) for t in after][:len(before)] == before
        assert all(t.state.name == "WAITING" for t in after[len(before):])
        assert not any(t.state.name == "FAIL" for t in after)
    # The next run with the search's own inputs continues, taking the waiting trial.
    study().optimize(_objective(ds), n_trials=1)
    assert not any(t.state.name in ("WAITING", "FAIL") for t in study().trials)

    # A Python script with other data fails with one line on stderr.
    script = tmp_path / "other.py"
    script.write_text(
        "import optuna, tinytnas_optuna as tt\n"
        "from tinytnas_optuna.datasets import load_dataset\n"
        "ds = load_dataset('gunpoint')\n"
        "objective = tt.TinyTNASObjective((ds.x_train[:40], ds.y_train[:40]), seed=0, steps=300,"
        " budget=tt.HardwareBudget(ram='20KB', flash='64KB', macs='10K'))\n"
        f"study = optuna.create_study(direction='maximize', storage={url!r}, study_name='s',"
        " load_if_exists=True, sampler=tt.TinyTNASSampler(seed=0))\n"
        "study.optimize(objective, n_trials=1)\n")
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         check=False,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=300)
    assert run.returncode != 0
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("tinytnas_optuna._study.StudyMismatchError: study 's' was created "
                           "with training data"), run.stderr[-2000:]


@pytest.mark.full  # the default tier has tests/test_python_study.py
def test_show_retrain_and_worker_on_a_study_made_from_python(tmp_path, capsys):
    import tinytnas_optuna as tt
    from tinytnas_optuna.cli import main

    ds = _gunpoint()
    url = f"sqlite:///{tmp_path / 'py.db'}"
    study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=0),
                                pruner=optuna.pruners.NopPruner(), storage=url,
                                study_name="py")
    study.optimize(_objective(ds), n_trials=4)
    capsys.readouterr()

    assert main(["show", "--storage", url, "--study", "py", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["inputs"]["budget"]["macs"] == 10000 and shown["inputs"]["sampler"] == "tinytnas"
    assert shown["best"] is not None and len(shown["trials"]) == 4

    # retrain needs the data: a study made from Python records fingerprints, not files.
    code = main(["retrain", "--storage", url, "--study", "py", "--out", str(tmp_path / "m"),
                 "--steps", "100"])
    assert code == 2 and "--train" in capsys.readouterr().err
    train = tmp_path / "train.npz"
    np.savez(train, features=ds.x_train, labels=ds.y_train)
    other = tmp_path / "other.npz"
    np.savez(other, features=ds.x_train[:40], labels=ds.y_train[:40])
    code = main(["retrain", "--storage", url, "--study", "py", "--out", str(tmp_path / "m"),
                 "--steps", "100", "--train", str(other)])
    err = capsys.readouterr().err
    assert code == 2 and "training data" in err and "differs" in err
    assert not (tmp_path / "m").exists()
    test = tmp_path / "test.npz"
    np.savez(test, features=ds.x_test, labels=ds.y_test)
    code = main(["retrain", "--storage", url, "--study", "py", "--out", str(tmp_path / "m"),
                 "--steps", "1500", "--train", str(train), "--test", str(test)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["evaluated_on"] == "test" and (report["k"], report["c"]) == (
        shown["best"]["k"], shown["best"]["c"])
    assert report["int8_accuracy"] >= 0.75, report

    # A worker joins it with the same files; with other files it is refused before any trial.
    n = len(optuna.load_study(study_name="py", storage=url).trials)
    code = main(["worker", "--storage", url, "--study", "py", "--train", str(other),
                 "--timeout", "20s", "--progress", "none"])
    assert code == 2 and "refusing to mix" in capsys.readouterr().err
    assert len(optuna.load_study(study_name="py", storage=url).trials) == n
    code = main(["worker", "--storage", url, "--study", "py", "--train", str(train),
                 "--timeout", "20s", "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    assert len(optuna.load_study(study_name="py", storage=url).trials) > n
