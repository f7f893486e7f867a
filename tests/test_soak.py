"""Soak: 60 real trials (GunPoint, 1 epoch on a hold-out, RandomSampler) over 3 processes on
PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import optuna
import pytest
from optuna.trial import TrialState

WORKER = """
import sys, optuna, tinytnas_optuna as tt
from tinytnas_optuna.datasets import load_dataset
url, name, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
data = load_dataset("gunpoint")
# A hold-out (one training per trial, not one per fold): the soak is about many trials.
objective = tt.TinyTNASObjective((data.x_train, data.y_train), val=(data.x_test, data.y_test),
                                 budget=tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K"),
                                 epochs=1, seed=0)
storage = optuna.storages.RDBStorage(url, heartbeat_interval=5, grace_period=30)
study = optuna.load_study(study_name=name, storage=storage,
                          sampler=optuna.samplers.RandomSampler(seed=seed),
                          pruner=optuna.pruners.NopPruner())
study.optimize(objective, n_trials=n)
"""


@pytest.mark.full
def test_soak_60_real_trials_three_workers(postgres_url, unique_study_name):
    n_total, n_workers = 60, 3
    optuna.create_study(study_name=unique_study_name, storage=postgres_url,
                        direction="maximize")
    shares = [n_total // n_workers + (i < n_total % n_workers) for i in range(n_workers)]
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, unique_study_name, str(i),
                          str(n)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for i, n in enumerate(shares)
    ]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    trials = optuna.load_study(study_name=unique_study_name, storage=postgres_url).trials
    assert sorted(t.number for t in trials) == list(range(n_total))  # none lost, none extra
    states = Counter(t.state for t in trials)
    assert set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, states  # none stuck
    assert states[TrialState.COMPLETE] > 0 and states[TrialState.PRUNED] > 0
    for t in trials:
        assert {"ram", "flash", "macs", "feasible", "epochs_trained"} <= set(t.user_attrs)
        assert t.datetime_complete is not None
        if t.state == TrialState.PRUNED:  # rejected for the budget, never trained
            assert t.user_attrs["feasible"] is False and t.user_attrs["epochs_trained"] == 0
        else:
            assert t.user_attrs["feasible"] is True and 0 <= t.value <= 1
            assert t.user_attrs["epochs_trained"] == 1 or "reused_from" in t.user_attrs
