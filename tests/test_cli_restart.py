"""`tinytnas search` killed with SIGKILL mid-training and run again: it continues, redoing
nothing."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import tinytnas_optuna as tt


@pytest.mark.full
def test_search_killed_mid_training_resumes_without_retraining(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kill.db'}"
    command = [sys.executable, "-m", "tinytnas_optuna.cli", "search", "--dataset",
               "basicmotions", "--ram", "20KB", "--flash", "64KB", "--macs", "60K",
               "--epochs", "20", "--storage", url, "--study", "k", "--progress", "plain",
               # The paper's greedy, which ends by itself, and no final model: this test is about
               # resuming (the refinement's kill -9 test is in test_workers.py).
               "--sampler", "tinytnas-paper", "--no-model"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        trained, deadline = 0, time.monotonic() + 180
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            assert line, "the search ended before it could be killed"
            trained += "trained: accuracy" in line
            if trained >= 2 and " epoch " in line:  # a third training is in flight
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()

    study = optuna.load_study(study_name="k", storage=url)
    before = {t.number: t for t in study.trials if t.state == TrialState.COMPLETE}
    assert len(before) >= 2
    assert any(t.state == TrialState.RUNNING for t in study.trials)  # the killed training

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    study = optuna.load_study(study_name="k", storage=url)
    states = collections.Counter(t.state for t in study.trials)
    assert states[TrialState.RUNNING] == 0 and states[TrialState.FAIL] == 1
    for number, t in before.items():  # completed trainings kept as they were
        assert study.trials[number].value == t.value
    trainings = collections.Counter(
        (t.params["k"], t.params["c"]) for t in study.trials
        if t.state == TrialState.COMPLETE and "reused_from" not in t.user_attrs
    )
    assert max(trainings.values()) == 1  # no candidate's training completed twice
    summary = tt.summarize(study)
    assert summary.finished and summary.best is not None
    assert "Resuming search 'k'" in rerun.stderr
