"""The refinement after the greedy: pure logic, then the sampler on a synthetic objective.

No TensorFlow here: the objective below returns a landscape's value, one per (candidate, level),
so that what the sampler asks for (and never asks twice) is checked exactly.
"""

from __future__ import annotations

import itertools
import math
import zlib

import optuna
import pytest
from test_greedy import C_RANGE, K_RANGE, landscape, reference_search

from tinytnas_optuna import _refine
from tinytnas_optuna._sampler import TinyTNASSampler
from tinytnas_optuna._trial import FINISHED, trial_level
from tinytnas_optuna._trial import LEVEL as LEVEL_ATTR
from tinytnas_optuna._trial import SAMPLER_PHASE as PHASE_ATTR


def level_objective(acc_of, feasible_of, calls):
    """Accuracy of ``(k, c)``; a re-ranking (level >= 1) adds a wobble (another seed, another
    value)."""

    def objective(trial):
        k = trial.suggest_int("k", *K_RANGE, log=True)
        c = trial.suggest_int("c", *C_RANGE)
        system = trial.storage.get_trial_system_attrs(trial._trial_id)
        level = int(system.get(LEVEL_ATTR, 0))
        if system.get(FINISHED):
            # A worker that found the search finished revisits the best; the real objective
            # reuses its recorded result (tested in test_objective): no training.
            return acc_of(k, c)
        calls.append(((k, c), level))
        feasible = feasible_of(k, c)
        trial.set_user_attr("feasible", feasible)
        if not feasible:
            raise optuna.TrialPruned()
        wobble = (zlib.crc32(f"{k}:{c}:{level}".encode()) / 2**32 - 0.5) * 0.02
        return acc_of(k, c) + (wobble if level else 0.0)

    return objective


def test_reranks_the_best_first_then_explores_around_it():
    runs = {(4, 3): {0: 0.80}, (8, 3): {0: 0.90}, (16, 3): {0: 0.85}, (8, 0): {0: 0.70}}
    picks = []
    runs = {k: dict(v) for k, v in runs.items()}
    for _ in range(3):
        pick = _refine.next_refinement(runs, set(), k_range=(2, 64), c_range=(0, 4))
        picks.append(pick)
        runs[pick.candidate][pick.level] = runs[pick.candidate][0] + 0.01
    assert [p.phase for p in picks] == ["rerank", "rerank", "rerank"]
    assert [p.candidate for p in picks] == [(8, 3), (16, 3), (4, 3)]
    pick = _refine.next_refinement(runs, set(), k_range=(2, 64), c_range=(0, 4))
    # The explored candidate is one the greedy did not visit, next to the best one (8, 3):
    # a width between visited widths, or a neighbouring depth.
    assert pick.phase == "refine" and pick.level == 0
    assert pick.candidate not in runs
    assert _refine._distance(pick.candidate, (8, 3)) <= 1


def test_never_proposes_busy_tried_or_implied_infeasible():
    runs = {(8, 3): {0: 0.9}}
    infeasible = {(11, 3), (8, 4)}
    seen = set()
    busy = {((8, 3), 1)}
    while True:
        pick = _refine.next_refinement(runs, infeasible, busy=busy, tried={((8, 3), 2)},
                                       k_range=(2, 64), c_range=(2, 4))
        if pick is None:
            break
        key = (pick.candidate, pick.level)
        assert key not in seen and key not in busy and key != ((8, 3), 2)
        k, c = pick.candidate
        # (11, 3) infeasible: every wider network of c=3 is never proposed; same for c=4.
        assert not (c == 3 and k >= 11) and not (c == 4 and k >= 8)
        assert 2 <= k <= 64 and 2 <= c <= 4
        seen.add(key)
        runs.setdefault(pick.candidate, {})[pick.level] = 0.5
    # Exhausted: every grid width below the infeasible ones trained at levels 0..2.
    assert ((2, 2), 0) in seen and ((7, 4), 2) in seen


@pytest.mark.parametrize("seed", range(4))
def test_default_sampler_runs_the_paper_greedy_first_then_refines(seed):
    acc_of, feasible_of = landscape(seed)
    _, _, _, evaluations = reference_search(acc_of, feasible_of)
    calls: list = []
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler())
    study.optimize(level_objective(acc_of, feasible_of, calls), n_trials=3000)
    trials = sorted(study.trials, key=lambda t: t.number)
    greedy = [t for t in trials if t.system_attrs[PHASE_ATTR] == "greedy"]
    # The greedy's trajectory is the specification's, unchanged, and comes first.
    assert [(t.params["k"], t.params["c"]) for t in greedy] == evaluations
    assert trials[: len(greedy)] == greedy
    phases = [t.system_attrs[PHASE_ATTR] for t in trials[len(greedy):]]
    assert phases[0] == "rerank" and "refine" in phases
    # Never the same training twice; nothing infeasible ever evaluated above level 0.
    assert len(calls) == len(set(calls))
    assert all(feasible_of(*cand) for cand, level in calls if level > 0)
    # It stopped by itself (far below 3000 trials) with every grid candidate at every level.
    assert len(trials) < 3000
    assert TinyTNASSampler().refinement(study.trials) is None


def test_refine_trials_bounds_the_refinement():
    acc_of, feasible_of = landscape(2)
    _, _, _, evaluations = reference_search(acc_of, feasible_of)
    calls: list = []
    study = optuna.create_study(direction="maximize",
                                sampler=TinyTNASSampler(refine_trials=7))
    study.optimize(level_objective(acc_of, feasible_of, calls), n_trials=3000)
    assert len(study.trials) == len(evaluations) + 7


def test_threads_never_train_the_same_candidate_twice_at_one_level():
    acc_of, feasible_of = landscape(7)
    calls: list = []
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine_trials=60))
    study.optimize(level_objective(acc_of, feasible_of, calls), n_trials=400, n_jobs=3)
    assert len(calls) == len(set(calls))
    assert max(trial_level(t) for t in study.trials) >= 1


def test_grid_widths_are_quarter_octaves_plus_visited():
    widths = _refine.grid_widths((2, 64), {12, 14})
    assert widths[:8] == [2, 3, 4, 5, 6, 7, 8, 10] and 12 in widths and 14 in widths
    ratios = [b / a for a, b in itertools.pairwise(widths) if a >= 8]
    assert max(ratios) <= 2 ** 0.25 * 1.1 and not math.isnan(sum(ratios))


def test_the_summary_picks_the_best_mean_over_a_candidates_trainings():
    from tinytnas_optuna._trial import CandidateRecord, best_candidate

    def rec(trial, k, c, value, fidelity, state="trained", cut=False):
        level = 0 if fidelity.endswith("seed 0") else 1
        return CandidateRecord(trial, k, c, state, value, 1, 1, 1, "measured", 1, 1.0,
                               "greedy", fidelity, level=level, cut=cut)

    records = [
        rec(0, 8, 3, 0.92, "800 steps, seed 0"),     # lucky short run...
        rec(1, 16, 1, 0.91, "800 steps, seed 0"),
        rec(2, 8, 3, 0.86, "1600 steps, seed 1"),    # ...not confirmed: mean 0.89
        rec(3, 16, 1, 0.93, "1600 steps, seed 1"),   # confirmed: mean 0.92
        rec(4, 16, 1, 0.99, "1600 steps, seed 1", state="reused"),  # a reuse is no new training
        rec(5, 4, 3, None, "800 steps, seed 0", state="infeasible"),
        # A re-ranking the time bound cut does not count: its half-trained value is no estimate.
        rec(6, 8, 3, 1.0, "3200 steps, seed 2", cut=True),
    ]
    best = best_candidate(records)
    assert (best.k, best.c, best.trial, best.runs) == (16, 1, 1, 2)
    assert best.value == pytest.approx(0.92)
    assert best_candidate(records[:1]).runs == 1 and best_candidate(records[5:6]) is None


def test_a_worker_reranks_rather_than_waits_when_the_greedy_needs_only_busy_candidates():
    # k in 4..5, c = 3: the greedy trains (4, 3), then needs only (5, 3). With (5, 3) in
    # training elsewhere, a second worker has nothing of the greedy's to train: it re-ranks
    # the best so far (a training the refinement runs anyway) instead of waiting.
    def meta(trial):
        return (tuple(trial.system_attrs["tinytnas:candidate"]),
                trial.system_attrs[LEVEL_ATTR], trial.system_attrs[PHASE_ATTR])

    study = optuna.create_study(direction="maximize",
                                sampler=TinyTNASSampler(k_range=(4, 5), c_range=(3, 3)))
    first = study.ask()
    assert meta(study._storage.get_trial(first._trial_id)) == ((4, 3), 0, "greedy")
    first.suggest_int("k", 4, 5, log=True)
    first.suggest_int("c", 3, 3)
    first.set_user_attr("feasible", True)
    study.tell(first, 0.8)
    busy = study.ask()
    assert meta(study._storage.get_trial(busy._trial_id)) == ((5, 3), 0, "greedy")
    meanwhile = study.ask()
    assert meta(study._storage.get_trial(meanwhile._trial_id)) == ((4, 3), 1, "rerank")
    # The greedy's path is its own: with (5, 3) told, its replay reads level 0 only.
    for trial in (busy, meanwhile):
        trial.suggest_int("k", 4, 5, log=True)
        trial.suggest_int("c", 3, 3)
        trial.set_user_attr("feasible", True)
    study.tell(meanwhile, 0.99)
    study.tell(busy, 0.7)
    replay = study.sampler.replay(study)
    assert replay.finished and replay.best == (4, 3) and replay.best_accuracy == 0.8
