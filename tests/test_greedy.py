"""The greedy search against an independent transcription of the specification (no TensorFlow).

``reference_search`` below is written from ../shared/docs/algorithm.md ("The greedy expansion")
directly as an imperative loop with a memoised evaluate callback, the way the original ran it, and
is the yardstick for both the pure replay and the Optuna sampler.
"""

from __future__ import annotations

import itertools
import random
import zlib

import optuna
import pytest

from tinytnas_optuna import _greedy
from tinytnas_optuna._sampler import TinyTNASSampler

K_RANGE = (2, 1024)
C_RANGE = (0, 4)


def reference_search(acc_of, feasible_of, k_range=K_RANGE, c_range=C_RANGE):
    """Run the specification; returns (visit order, best, accepted path, evaluations)."""
    memo: dict = {}
    visits: list = []
    evaluations: list = []

    def evaluate(k, c):
        if (k, c) not in memo:
            visits.append((k, c))
            inside = k_range[0] <= k <= k_range[1] and c_range[0] <= c <= c_range[1]
            if not inside:
                memo[(k, c)] = None
            else:
                evaluations.append((k, c))
                memo[(k, c)] = acc_of(k, c) if feasible_of(k, c) else None
        return memo[(k, c)]

    best_acc, best, path = -1.0, None, []
    k, c, pending = 4, 3, []

    def accept(k, c, a):
        nonlocal best_acc, best, pending
        best_acc, best = a, (k, c)
        path.append((k, c))
        incr = k // 4
        pending = [(k + i * incr, c) for i in range(4)] if incr >= 1 else []
        return 2 * k

    while True:
        a = evaluate(k, c)
        if a is not None and a > best_acc:
            k = accept(k, c, a)
            continue
        scores = []
        for c2 in range(c_range[0], c_range[1] + 1):
            if c2 == c:
                continue
            a2 = evaluate(k, c2)
            if a2 is None:
                break
            scores.append((a2, -c2))
        if scores and max(scores)[0] > best_acc:
            c = -max(scores)[1]  # highest accuracy, then the lowest c2
            k = accept(k, c, max(scores)[0])
            continue
        if pending:
            k, c = pending.pop()
            continue
        return visits, best, path, evaluations


def landscape(seed: int, *, quantum: float = 0.05, mac_budget: int = 60_000, length: int = 128):
    """A random but deterministic accuracy landscape with ties and a MAC-like feasibility."""

    def acc_of(k, c):
        h = zlib.crc32(f"{seed}:{k}:{c}".encode()) / 2**32
        base = min(0.95, 0.4 + 0.1 * (k ** 0.5) / 3 + 0.05 * c)
        return round((base + 0.2 * (h - 0.5)) / quantum) * quantum

    def feasible_of(k, c):
        widths = [k]
        for _ in range(c):
            widths.append(int(widths[-1] * 1.5))
        macs = length * widths[0] * 6 + sum(
            (length >> i) * w_in * w_out
            for i, (w_in, w_out) in enumerate(itertools.pairwise(widths))
        )
        return macs <= mac_budget

    return acc_of, feasible_of


def known_results(acc_of, feasible_of, candidates):
    return {
        cand: (acc_of(*cand) if feasible_of(*cand) else _greedy.INFEASIBLE) for cand in candidates
    }


@pytest.mark.parametrize("seed", range(40))
def test_replay_matches_reference(seed):
    acc_of, feasible_of = landscape(seed, quantum=0.05 if seed % 2 else 0.001)
    visits, best, path, evaluations = reference_search(acc_of, feasible_of)
    # Feed the replay everything it asks for, one result at a time, as trials would.
    results: dict = {}
    while True:
        state = _greedy.replay(results)
        if state.finished:
            break
        results[state.needed] = known_results(acc_of, feasible_of, [state.needed])[state.needed]
    assert [v.candidate for v in state.path] == visits
    assert state.best == best
    assert state.accepted == path
    assert list(results) == evaluations  # each in-range candidate asked for once, in order


def test_paper_start_and_doubling():
    # Everything feasible, accuracy grows with k until 16: accept 4, 8, 16, then 32 is worse.
    def acc(k, c):
        return {4: 0.5, 8: 0.6, 16: 0.7}.get(k, 0.1) + 0.001 * (c == 3)

    def feasible(k, c):
        return True

    visits, best, path, evaluations = reference_search(acc, feasible)
    # The transcription does what the paper says...
    assert visits[:4] == [(4, 3), (8, 3), (16, 3), (32, 3)]
    assert best == (16, 3)
    assert path == [(4, 3), (8, 3), (16, 3)]
    # ...and the sampler does what the transcription does, trial for trial, then stops.
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine=False))
    study.optimize(synthetic_objective(acc, feasible), n_trials=500)
    assert trial_sequence(study) == evaluations
    assert (study.best_trial.params["k"], study.best_trial.params["c"]) == best
    replay = TinyTNASSampler(refine=False).replay(study)
    assert replay.finished and replay.accepted == path


def test_nothing_fits_finishes_without_answer():
    state = _greedy.replay({(4, c): _greedy.INFEASIBLE for c in range(5)})
    assert state.finished and state.best is None
    assert [v.candidate for v in state.path] == [(4, 3), (4, 0)]  # stops at the first infeasible


def test_out_of_range_is_infeasible_without_evaluation():
    state = _greedy.replay({}, k_range=(8, 64))
    assert state.path[0].out_of_range and state.path[0].result == _greedy.INFEASIBLE
    assert state.needed is None  # (4, 0) is out of range too: nothing to evaluate


def test_frontier_speculates_past_running_candidate():
    running = {(4, 3)}
    order = _greedy.frontier({}, running)
    assert order[0] == (4, 3)
    # If (4, 3) is better the search needs (8, 3); otherwise it explores depth at k=4.
    assert (8, 3) in order and (4, 0) in order


# -- the sampler on a study, with a synthetic objective (no training) --------------------------


def synthetic_objective(acc_of, feasible_of, calls=None):
    def objective(trial):
        k = trial.suggest_int("k", *K_RANGE, log=True)
        c = trial.suggest_int("c", *C_RANGE)
        if calls is not None:
            calls.append((k, c))
        feasible = feasible_of(k, c)
        trial.set_user_attr("feasible", feasible)
        if not feasible:
            raise optuna.TrialPruned()
        return acc_of(k, c)

    return objective


def trial_sequence(study):
    return [(t.params["k"], t.params["c"]) for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.mark.parametrize("seed", range(8))
def test_sampler_visits_reference_order_and_stops(seed):
    acc_of, feasible_of = landscape(seed)
    _, best, _, evaluations = reference_search(acc_of, feasible_of)
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine=False))
    study.optimize(synthetic_objective(acc_of, feasible_of), n_trials=500)
    assert trial_sequence(study) == evaluations  # stopped itself, long before 500
    assert (study.best_trial.params["k"], study.best_trial.params["c"]) == best
    states = {t.state for t in study.trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}


def test_resume_redoes_nothing(tmp_path):
    acc_of, feasible_of = landscape(3)
    _, _, _, evaluations = reference_search(acc_of, feasible_of)
    storage = f"sqlite:///{tmp_path / 's.db'}"
    calls: list = []
    objective = synthetic_objective(acc_of, feasible_of, calls)
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine=False),
                                storage=storage, study_name="s")
    study.optimize(objective, n_trials=5)
    # A new process: new sampler object, same storage.
    study = optuna.load_study(study_name="s", storage=storage,
                              sampler=TinyTNASSampler(refine=False))
    study.optimize(objective, n_trials=500)
    assert calls == evaluations


def test_failed_training_is_retried_then_counts_minus_one():
    acc_of, feasible_of = landscape(5)
    fails: dict = {}

    def objective(trial):
        k = trial.suggest_int("k", *K_RANGE, log=True)
        c = trial.suggest_int("c", *C_RANGE)
        if (k, c) == (8, 3):
            fails[(k, c)] = fails.get((k, c), 0) + 1
            raise RuntimeError("worker crashed")
        trial.set_user_attr("feasible", feasible_of(k, c))
        if not feasible_of(k, c):
            raise optuna.TrialPruned()
        return acc_of(k, c)

    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine=False))
    study.optimize(objective, n_trials=500, catch=(RuntimeError,))
    assert fails[(8, 3)] == 3  # first try + 2 retries, then -1 (never infeasible)
    # The specification's search with (8, 3) at -1, each failure retried at once.
    _, best, path, evaluations = reference_search(
        lambda k, c: -1.0 if (k, c) == (8, 3) else acc_of(k, c), feasible_of)
    assert path != reference_search(acc_of, feasible_of)[2]  # the -1 changes the path
    assert trial_sequence(study) == [
        cand for e in evaluations for cand in [e] * (3 if e == (8, 3) else 1)]
    replay = TinyTNASSampler(refine=False).replay(study)
    assert replay.finished and replay.best == best and replay.accepted == path


def test_ask_and_tell_does_not_break():
    acc_of, feasible_of = landscape(1)
    _, best, _, evaluations = reference_search(acc_of, feasible_of)
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler())
    for _ in range(len(evaluations)):
        trial = study.ask()
        k, c = trial.suggest_int("k", *K_RANGE, log=True), trial.suggest_int("c", *C_RANGE)
        trial.set_user_attr("feasible", feasible_of(k, c))
        if feasible_of(k, c):
            study.tell(trial, acc_of(k, c))
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    assert trial_sequence(study) == evaluations
    assert TinyTNASSampler().replay(study).best == best


def test_threads_never_evaluate_twice_and_agree_with_one_worker():
    acc_of, feasible_of = landscape(7)
    _, best, _, evaluations = reference_search(acc_of, feasible_of)
    study = optuna.create_study(direction="maximize", sampler=TinyTNASSampler(refine=False))
    study.optimize(synthetic_objective(acc_of, feasible_of), n_trials=500, n_jobs=3)
    # A thread that starts a trial after the search ended (before it sees the stop) is handed
    # the best again, marked: TinyTNASObjective reuses its result, this plain objective cannot.
    # At most one such trial per other thread. (tests/test_contract.py runs threads with the
    # real objective.)
    revisits = [t for t in study.trials if t.system_attrs.get("tinytnas:search_finished")]
    assert len(revisits) <= 2
    assert all((t.params["k"], t.params["c"]) == best for t in revisits)
    calls = [(t.params["k"], t.params["c"]) for t in study.trials if t not in revisits]
    assert len(calls) == len(set(calls))
    assert set(evaluations) <= set(calls)  # speculation may add candidates, never skip one
    replayed = TinyTNASSampler().replay(study)
    assert replayed.finished and replayed.best == best


def test_random_landscapes_random_order_of_results():
    # The replay depends only on the results, not on the order they arrived in.
    for seed in range(20):
        acc_of, feasible_of = landscape(seed)
        _, best, _, evaluations = reference_search(acc_of, feasible_of)
        shuffled = evaluations[:]
        random.Random(seed).shuffle(shuffled)
        assert _greedy.replay(known_results(acc_of, feasible_of, shuffled)).best == best
