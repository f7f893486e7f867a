"""The deliverable is never worse than what the search found, and the one command keeps its
time bound: the search's own trained network is exported when the final training cannot run
its schedule in the time left, or ends below it; ``tinytnas search`` ends within the bound +
15 s of wall-clock time from its start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest

import tinytnas_optuna as tt
from tinytnas_optuna._retrain import _choose, _restart_estimate
from tinytnas_optuna._training import after_training_seconds, final_schedule
from tinytnas_optuna.datasets import load_dataset

BUDGET = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")


def _quantised(int8: float, restart: int = 0) -> tuple:
    return ("model", b"bytes", "profile", {"int8": int8, "restart": restart})


def _net(trial: int = 3) -> tt.TrainedNetwork:
    return tt.TrainedNetwork(trial, 4, 3, [], 0.9, 800)


@pytest.mark.parametrize(
    ("final", "search", "complete", "holdout", "chosen", "why"),
    [
        (None, 0.90, True, False, "search", "could not fit one run"),
        (0.50, 0.90, True, True, "search", "on the validation"),
        (0.90, 0.90, True, True, "final", "on the validation"),  # a tie: the final model
        (0.95, 0.90, False, True, "final", "on the validation"),  # cut, better where compared
        (0.99, 0.90, False, False, "search", "ran 216 of its 3000 steps"),
        (0.52, 0.90, True, False, "search", "above the final training"),
        (0.97, 0.90, True, False, "final", "on the training series"),
    ],
)
def test_the_better_of_final_training_and_search_network_is_exported(
    final: float | None, search: float, complete: bool, holdout: bool, chosen: str, why: str,
) -> None:
    schedule = final_schedule(50)
    runs = [{"steps": 3000 if complete else 216, "complete": complete}]
    ours = None if final is None else _quantised(final)
    theirs = _quantised(search)
    picked, source, reason, _ = _choose(ours, theirs, runs if ours else [], schedule, _net(),
                                        holdout)
    assert picked is (theirs if chosen == "search" else ours)
    assert source == ("search network (trial 3)" if chosen == "search" else "final training")
    assert why in reason


def test_the_search_network_is_exported_when_the_final_training_cannot_run(
    gunpoint_search: tuple, tmp_path: Path
) -> None:
    ds, objective, study = gunpoint_search
    best = tt.summarize(study).best
    kept = objective.networks.best_of(best.k, best.c)
    assert kept is not None and kept.trial == best.trial and kept.steps >= 300
    # 200,000 steps cannot run in 20 s: nothing is trained, the search's network is exported.
    start = time.monotonic()
    report = objective.retrain_best(study, out_dir=tmp_path, test=(ds.x_test, ds.y_test),
                                    steps=200_000, timeout=20)
    assert time.monotonic() - start < 20
    assert report.model_source == f"search network (trial {kept.trial})"
    assert "could not fit one run" in report.model_reason and report.restarts_run == 0
    assert report.above_chance and report.int8_accuracy >= 0.75
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["model_source"] == report.model_source and saved["steps"] == kept.steps
    assert (tmp_path / "model.tflite").stat().st_size == report.flash


def test_a_final_schedule_that_does_not_fit_is_shortened_to_run_to_its_end(
    gunpoint_search: tuple, tmp_path: Path
) -> None:
    ds, objective, study = gunpoint_search
    default = final_schedule(len(ds.y_train)).steps
    best = tt.summarize(study).best
    estimate = _restart_estimate(study, best.k, best.c, final_schedule(len(ds.y_train)), False)
    assert estimate is not None
    # A bound that leaves about half of one default restart (by the search's measured speed)
    # after the export's share: too short for the default 3,000 steps, long enough for a
    # schedule of well over twice the search's 300.
    keep = after_training_seconds(n_val=0, n_eval=len(ds.y_test), n_train=len(ds.y_train),
                                  restarts=1)
    bound = keep + 2 + 0.5 * estimate
    start = time.monotonic()
    report = objective.retrain_best(study, out_dir=tmp_path, test=(ds.x_test, ds.y_test),
                                    timeout=bound, restarts=1)
    assert time.monotonic() - start < bound + 5
    planned = report.schedule["steps"]
    assert 600 <= planned < default, report.to_dict()
    assert report.restarts_run == 1
    if report.model_source == "final training":
        assert report.steps >= planned  # ran to its end (in whole calls of 8 steps), not cut
        # 50 series under cross-validation: the candidates' recipe, not the final one.
        assert report.recipe == objective.recipe.to_dict() != objective.final_recipe.to_dict()
    else:  # the better on the training series (cross-validated search): the search's network
        assert report.model_source.startswith("search network"), report.model_source
    assert report.above_chance and report.int8_accuracy >= 0.75


def test_with_a_hold_out_the_model_better_on_it_is_exported(tmp_path: Path) -> None:
    ds = load_dataset("basicmotions")
    order = np.random.default_rng(0).permutation(len(ds.y_train))  # the file is class-ordered
    x, y = ds.x_train[order], ds.y_train[order]
    objective = tt.TinyTNASObjective((x[:28], y[:28]), val=(x[28:], y[28:]), budget=BUDGET,
                                     seed=0, steps=300)
    study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=0),
                                pruner=optuna.pruners.NopPruner())
    study.optimize(objective, n_trials=2)
    report = objective.retrain_best(study, out_dir=tmp_path, test=(ds.x_test, ds.y_test),
                                    steps=300, restarts=2)
    assert "on the validation, int8 in TFLM" in report.model_reason
    # The restarts alternate the final recipe and the candidates'; report.json says which
    # trained the exported model (the search's network: the candidates').
    assert report.restarts_run == 2
    final_recipe, candidates = objective.final_recipe.to_dict(), objective.recipe.to_dict()
    assert final_recipe != candidates
    assert report.recipe in (final_recipe, candidates)
    if report.model_source != "final training":
        assert report.recipe == candidates
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["recipe"] == report.recipe
    compared = report.comparison
    assert compared is not None and compared["on"] == "validation"
    final, search = compared["final_training"], compared["search_network"]
    if report.model_source == "final training":
        assert final >= search and report.val_int8_accuracy == final
    else:
        assert search > final and report.val_int8_accuracy == search
    assert report.above_chance and report.int8_accuracy >= 0.75


# Full tier: in the default tier, test_parallel's worker case runs the same command (default
# jobs, 45 s) with a worker killed, and checks the same bound and model.
@pytest.mark.full
def test_the_one_command_ends_within_its_bound_with_a_model_above_chance(
    tmp_path: Path,
) -> None:
    # The user's wall clock, from starting the process to its exit: imports, data loading,
    # the search, the final model, writing and exit all count.
    bound = 40
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "tinytnas_optuna.cli", "search", "--dataset", "gunpoint",
         "--ram", "20KB", "--flash", "64KB", "--macs", "60K", "--timeout", f"{bound}s",
         "--storage", f"sqlite:///{tmp_path / 's.db'}", "--study", "s", "--out",
         str(tmp_path / "m"), "--progress", "none"],
        check=False, capture_output=True, text=True, timeout=bound + 120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-2000:]
    assert seconds <= bound + 15, f"a {bound} s search took {seconds:.1f} s"
    report = json.loads((tmp_path / "m" / "report.json").read_text())
    assert report["above_chance"] and report["int8_accuracy"] >= 0.75, report
