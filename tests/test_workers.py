"""Several worker processes on one study: real processes, real storages, no mocks.

Workers run tests/_workers_helper.py (the real TinyTNASObjective and TinyTNASSampler; profiling
and training replaced by a synthetic landscape from tests/test_greedy.py, training = a sleep).
The yardstick is the one-worker reference search of tests/test_greedy.py on the same landscape.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Self

import optuna
import pytest
from optuna.trial import TrialState

from tinytnas_optuna._recovery import recover_stale_trials
from tinytnas_optuna._sampler import TinyTNASSampler
from tinytnas_optuna._trial import trial_level

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workers_helper import INPUT_SPACE, LENGTH, SyntheticObjective, make_storage
from test_greedy import landscape, reference_search

HELPER = Path(__file__).resolve().parent / "_workers_helper.py"
FINISHED = {TrialState.COMPLETE, TrialState.PRUNED}
# Backstop only: every subprocess wait below has its own, shorter timeout.
pytestmark = pytest.mark.timeout(120)


class Workers:
    """Worker subprocesses with logs in a directory; all are killed on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), *args, "--worker", name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text()

    def wait_all(self, timeout: float) -> None:
        """Wait for every worker; fail with their logs if one fails or overruns."""
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            if proc.returncode is not None and proc.returncode < 0:
                continue  # killed on purpose
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill_all()
                pytest.fail(f"worker {name} still running after {timeout} s:\n{self.logs()}")
            if proc.returncode != 0:
                pytest.fail(f"worker {name} exited {proc.returncode}:\n{self.logs()}")

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)[-3000:]}" for name in self.procs)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill_all()


def wait_for(condition, timeout: float, what: str, workers: Workers) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    workers.kill_all()
    pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{workers.logs()}")


def candidate(t) -> tuple[int, int]:
    return t.params["k"], t.params["c"]


def trainings(trials, state=TrialState.COMPLETE) -> Counter:
    """How many times each candidate's synthetic search training (level 0) ran to ``state``."""
    return Counter(candidate(t) for t in trials if "trained_by" in t.user_attrs
                   and t.state == state and trial_level(t) == 0)


def create_study(storage_spec: str, name: str) -> optuna.Study:
    return optuna.create_study(storage=make_storage(storage_spec), study_name=name,
                               direction="maximize")


def assert_search_matches_reference(storage_spec: str, name: str, seed: int) -> list:
    """The checks every multi-worker search must pass; returns the trials."""
    acc_of, feasible_of = landscape(seed, length=LENGTH)
    _, best, path, evaluations = reference_search(acc_of, feasible_of)
    study = optuna.load_study(study_name=name, storage=make_storage(storage_spec))
    trials = study.get_trials(deepcopy=False)
    unfinished = [(t.number, t.state.name) for t in trials if t.state not in FINISHED | {
        TrialState.FAIL}]
    assert not unfinished, f"trials left unfinished: {unfinished}"
    completed = trainings(trials)
    twice = {cand: n for cand, n in completed.items() if n > 1}
    assert not twice, f"candidates trained to completion more than once: {twice}"
    evaluated = {candidate(t) for t in trials if t.state in FINISHED}
    assert set(evaluations) <= evaluated  # speculation may add candidates, never skip one
    replay = TinyTNASSampler().replay(study)
    assert replay.finished
    assert replay.best == best
    assert replay.accepted == path
    return trials


def greedy_args(storage: str, name: str, seed: int, *extra: str) -> list[str]:
    return ["greedy", "--storage", storage, "--study", name, "--seed", str(seed), *extra]


# -- several workers share one search ------------------------------------------------------------


@pytest.mark.full
def test_three_workers_on_postgresql(postgres_url, unique_study_name, tmp_path):
    seed = 0
    create_study(postgres_url, unique_study_name)
    with Workers(tmp_path) as workers:
        for i in range(3):
            workers.start(f"w{i}", *greedy_args(postgres_url, unique_study_name, seed))
        workers.wait_all(timeout=50)
    trials = assert_search_matches_reference(postgres_url, unique_study_name, seed)
    assert all(t.state in FINISHED for t in trials), "no training failed here"
    # The work was shared: more than one worker trained something.
    assert len({t.user_attrs["trained_by"] for t in trials if "trained_by" in t.user_attrs}) > 1


@pytest.mark.full
def test_two_workers_on_journal_file(unique_study_name, tmp_path):
    seed = 3
    spec = f"journal:{tmp_path / 'journal.log'}"
    create_study(spec, unique_study_name)
    with Workers(tmp_path) as workers:
        for i in range(2):
            workers.start(f"w{i}", *greedy_args(spec, unique_study_name, seed))
        workers.wait_all(timeout=50)
    trials = assert_search_matches_reference(spec, unique_study_name, seed)
    assert all(t.state in FINISHED for t in trials)


def _first_feasible_after(seed: int, index: int) -> tuple[int, int]:
    acc_of, feasible_of = landscape(seed, length=LENGTH)
    _, _, _, evaluations = reference_search(acc_of, feasible_of)
    return next(cand for cand in evaluations[index:] if feasible_of(*cand))


def _training_by(storage_spec: str, name: str, cand, worker: str):
    study = optuna.load_study(study_name=name, storage=make_storage(storage_spec))

    def check():
        return any(
            candidate(t) == cand and t.state == TrialState.RUNNING
            and t.user_attrs.get("trained_by") == worker
            for t in study.get_trials(deepcopy=False) if "k" in t.params and "c" in t.params
        )
    return check


@pytest.mark.full
def test_dead_worker_is_taken_over_on_postgresql(postgres_url, unique_study_name, tmp_path):
    """SIGKILL mid-training with heartbeat: its trial becomes FAIL and another worker redoes it."""
    seed = 5
    victim = _first_feasible_after(seed, 4)
    create_study(postgres_url, unique_study_name)
    with Workers(tmp_path) as workers:
        workers.start("victim", *greedy_args(postgres_url, unique_study_name, seed, "--heartbeat",
                                             "--slow", f"{victim[0]},{victim[1]}:600"))
        wait_for(_training_by(postgres_url, unique_study_name, victim, "victim"), 30,
                 f"the victim to train {victim}", workers)
        workers.start("survivor", *greedy_args(postgres_url, unique_study_name, seed,
                                               "--heartbeat"))
        time.sleep(2)  # the survivor speculates past the victim's candidate, or waits for it
        workers.kill("victim")
        workers.wait_all(timeout=45)
    trials = assert_search_matches_reference(postgres_url, unique_study_name, seed)
    killed = [t for t in trials if t.user_attrs.get("trained_by") == "victim"
              and candidate(t) == victim]
    assert [t.state for t in killed] == [TrialState.FAIL]
    redone = [t for t in trials if candidate(t) == victim and t.state == TrialState.COMPLETE
              and "trained_by" in t.user_attrs]
    assert [t.user_attrs["trained_by"] for t in redone] == ["survivor"]
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed[0].number]


def test_restart_after_kill_on_sqlite(tmp_path, unique_study_name):
    """kill -9 a lone worker mid-training; a new process recovers, resumes and redoes nothing."""
    seed = 9
    victim = _first_feasible_after(seed, 6)
    spec = f"sqlite:///{tmp_path / 'search.db'}"
    create_study(spec, unique_study_name)
    with Workers(tmp_path) as workers:
        workers.start("first", *greedy_args(spec, unique_study_name, seed, "--sleep", "0.05",
                                             "--slow", f"{victim[0]},{victim[1]}:600"))
        wait_for(_training_by(spec, unique_study_name, victim, "first"), 30,
                 f"the first run to train {victim}", workers)
        workers.kill("first")
        before = optuna.load_study(study_name=unique_study_name, storage=spec).trials
        assert [t.number for t in before if t.state == TrialState.RUNNING] == [before[-1].number]
        done_before = set(trainings(before))
        assert done_before, "the first run completed some trainings before the kill"
        workers.start("restart", *greedy_args(spec, unique_study_name, seed, "--sleep", "0.05",
                                               "--recover"))
        workers.wait_all(timeout=40)
        assert f"recovered trials: [{before[-1].number}]" in workers.log("restart")
    trials = assert_search_matches_reference(spec, unique_study_name, seed)
    redone = {candidate(t) for t in trials
              if t.user_attrs.get("trained_by") == "restart" and t.state == TrialState.COMPLETE}
    assert not redone & done_before, "the restart retrained completed candidates"
    assert victim in redone
    assert trials[before[-1].number].state == TrialState.FAIL


def _input_trainings(trials) -> Counter:
    """Completed synthetic trainings per (decimate, window, k, c, level)."""
    return Counter((t.params["decimate"], t.params["window"], *candidate(t), trial_level(t))
                   for t in trials if "trained_by" in t.user_attrs
                   and t.state == TrialState.COMPLETE)


@pytest.mark.full
def test_input_space_search_resumes_after_kill_9_and_trains_nothing_twice(tmp_path,
                                                                           unique_study_name):
    """kill -9 while a decimated candidate trains; the rerun ends where an uninterrupted run
    ends, and no (input setting, k, c, fidelity) was trained twice."""
    seed, spec, resumed = 9, f"sqlite:///{tmp_path / 'search.db'}", unique_study_name
    # The whole run, uninterrupted, in this process.
    reference = optuna.create_study(direction="maximize",
                                    sampler=TinyTNASSampler(refine=False))
    reference.optimize(SyntheticObjective(seed, "ref", 0.0, {}, INPUT_SPACE), n_trials=500)
    whole = reference.trials
    create_study(spec, resumed)
    settings = {(t.params["decimate"], t.params["window"]) for t in whole}
    assert settings == {(1, 128), (2, 128)}, settings
    # The victim: a training of the decimated input (setting 1) halfway through its greedy.
    decimated = [t for t in whole if t.params["decimate"] == 2 and "trained_by" in t.user_attrs]
    assert len(decimated) >= 2, "the greedy trains on the decimated input too"
    victim = candidate(decimated[len(decimated) // 2])
    with Workers(tmp_path) as workers:
        workers.start("first", *greedy_args(spec, resumed, seed, "--sleep", "0.02", "--input",
                                             "--slow", f"{victim[0]},{victim[1]},0,1:600"))
        study = optuna.load_study(study_name=resumed, storage=make_storage(spec))
        wait_for(lambda: any(t.state == TrialState.RUNNING and "trained_by" in t.user_attrs
                             and t.params.get("decimate") == 2 and candidate(t) == victim
                             for t in study.get_trials(deepcopy=False)),
                 30, f"the first run to train {victim} at half the rate", workers)
        workers.kill("first")
        before = study.get_trials(deepcopy=False)
        workers.start("rerun", *greedy_args(spec, resumed, seed, "--sleep", "0.02", "--input",
                                             "--recover"))
        workers.wait_all(timeout=60)
    trials = optuna.load_study(study_name=resumed, storage=spec).trials
    done = _input_trainings(trials)
    assert max(done.values()) == 1, {key: n for key, n in done.items() if n > 1}
    assert set(done) == set(_input_trainings(whole))  # the same trainings as the whole run
    (killed,) = [t.number for t in before if t.state == TrialState.RUNNING]
    assert trials[killed].state == TrialState.FAIL
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    best_whole = max((t for t in whole if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert (best.params, best.value) == (best_whole.params, best_whole.value)


# -- recover_stale_trials on each kind of storage ----------------------------------------------


def _running_trial(study: optuna.Study) -> int:
    trial = study.ask()
    trial.suggest_int("k", 2, 1024, log=True)
    return trial.number


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("journal", marks=pytest.mark.full)])
def test_recover_without_heartbeat_fails_running_trials(kind, tmp_path):
    spec = (f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite"
            else f"journal:{tmp_path / 'j.log'}")
    study = create_study(spec, "s")
    done = study.ask()
    study.tell(done, 0.5)
    running = _running_trial(study)
    study.enqueue_trial({"k": 8, "c": 1})  # WAITING: queued work, not a dead worker
    # A trial younger than `older_than` may belong to a live worker: kept.
    assert recover_stale_trials(study, older_than=3600) == []
    assert recover_stale_trials(study) == [running]
    states = {t.number: t.state for t in study.trials}
    assert states[running] == TrialState.FAIL and states[done.number] == TrialState.COMPLETE
    assert TrialState.WAITING in states.values()
    assert recover_stale_trials(study) == []  # idempotent


@pytest.mark.full
def test_recover_with_heartbeat_fails_only_stale_trials(postgres_url, unique_study_name):
    study = optuna.create_study(storage=make_storage(postgres_url, heartbeat=True),
                                study_name=unique_study_name, direction="maximize")
    stale, alive = _running_trial(study), _running_trial(study)
    storage = study._storage
    trial_ids = {t.number: t._trial_id for t in study.trials}
    storage.record_heartbeat(trial_ids[stale])
    time.sleep(4.2)  # > grace_period 3
    storage.record_heartbeat(trial_ids[alive])
    assert recover_stale_trials(study) == [stale]
    states = {t.number: t.state for t in study.trials}
    assert states == {stale: TrialState.FAIL, alive: TrialState.RUNNING}


# -- soak: many trials over several processes ----------------------------------------------------


@pytest.mark.full
def test_soak_three_workers_greedy_then_refinement_postgresql(postgres_url, unique_study_name,
                                                              tmp_path):
    """Our sampler, not Optuna's: 3 processes run the greedy and 40 refinement trials on one
    PostgreSQL study (about 70 trials). Nothing trained twice at one level, nothing infeasible
    trained, the refinement bound held across processes, the one-worker greedy's answer."""
    seed, refine, n_workers = 6, 40, 3
    create_study(postgres_url, unique_study_name)
    with Workers(tmp_path) as workers:
        for i in range(n_workers):
            workers.start(f"w{i}", *greedy_args(postgres_url, unique_study_name, seed, "--sleep",
                                                "0.02", "--refine", str(refine)))
        workers.wait_all(timeout=55)
    # The greedy's answer is the one-worker reference's; no (candidate, level) trained twice;
    # nothing infeasible trained.
    trials = assert_refinement_sound(postgres_url, unique_study_name, seed, refine)
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # none lost
    assert all(t.state in FINISHED for t in trials), "none stuck, none failed"
    phases = Counter(t.system_attrs["tinytnas:phase"] for t in trials)
    assert phases["refine"] + phases["rerank"] == refine  # refine_trials, across processes
    _, feasible_of = landscape(seed, length=LENGTH)
    level0: dict = {}
    for t in trials:
        assert {"feasible", "phase", "fidelity"} <= set(t.user_attrs), t.number
        assert t.user_attrs["phase"] == t.system_attrs["tinytnas:phase"]
        if t.state == TrialState.PRUNED:  # rejected for the budget, never trained
            assert not feasible_of(*candidate(t)) and "trained_by" not in t.user_attrs
        elif trial_level(t) == 0:
            level0.setdefault(candidate(t), t.number)
        else:  # a re-ranking comes after the candidate's own search training
            assert level0.get(candidate(t), t.number) < t.number, t.number
        if t.system_attrs["tinytnas:phase"] != "greedy":  # busy trainings are skipped
            assert "reused_from" not in t.user_attrs, f"trial {t.number} handed out twice"
    # Once the bound was reached each other worker took at most one trial more: a revisit of
    # the best, reused untrained.
    revisits = [t for t in trials if t.system_attrs.get("tinytnas:search_finished")]
    assert len(revisits) <= n_workers - 1
    assert all("reused_from" in t.user_attrs for t in revisits)
    # The work was shared.
    trained_by = Counter(t.user_attrs["trained_by"] for t in trials
                         if "trained_by" in t.user_attrs)
    assert len(trained_by) == n_workers, trained_by


# -- the refinement after the greedy ----------------------------------------------------------


def level_trainings(trials) -> Counter:
    """How many times each (candidate, level) training ran to completion."""
    return Counter((candidate(t), trial_level(t)) for t in trials
                   if "trained_by" in t.user_attrs and t.state == TrialState.COMPLETE)


def assert_refinement_sound(storage_spec: str, name: str, seed: int, refine: int) -> list:
    """Greedy as the reference, then the refinement: nothing trained twice at one level,
    nothing infeasible trained, every refinement trial recorded with its phase."""
    trials = assert_search_matches_reference(storage_spec, name, seed)
    twice = {key: n for key, n in level_trainings(trials).items() if n > 1}
    assert not twice, f"trained more than once at one level: {twice}"
    _, feasible_of = landscape(seed, length=LENGTH)
    assert all(feasible_of(*candidate(t)) for t in trials if "trained_by" in t.user_attrs)
    refined = [t for t in trials if t.system_attrs.get("tinytnas:phase") in ("refine", "rerank")]
    assert len(refined) >= refine
    assert {t.user_attrs.get("phase") for t in refined} <= {"refine", "rerank"}
    assert any(trial_level(t) >= 1 for t in refined) and any(
        trial_level(t) == 0 for t in refined)
    return trials


def test_two_workers_refine_without_training_anything_twice(unique_study_name, tmp_path):
    seed, refine = 4, 24
    spec = f"journal:{tmp_path / 'journal.log'}"
    create_study(spec, unique_study_name)
    with Workers(tmp_path) as workers:
        for i in range(2):
            workers.start(f"w{i}", *greedy_args(spec, unique_study_name, seed, "--sleep", "0.1",
                                                "--refine", str(refine)))
        workers.wait_all(timeout=80)
    assert_refinement_sound(spec, unique_study_name, seed, refine)


@pytest.mark.full
def test_restart_after_kill_mid_refinement_on_sqlite(tmp_path, unique_study_name):
    """kill -9 during a refinement training; a new process recovers it and finishes the
    refinement without retraining anything completed."""
    seed, refine = 9, 12
    spec = f"sqlite:///{tmp_path / 'search.db'}"
    create_study(spec, unique_study_name)
    study = optuna.load_study(study_name=unique_study_name, storage=spec)

    def refining() -> bool:
        return any(t.state == TrialState.RUNNING and "trained_by" in t.user_attrs
                   and t.system_attrs.get("tinytnas:phase") in ("refine", "rerank")
                   for t in study.get_trials(deepcopy=False))

    with Workers(tmp_path) as workers:
        # Every training takes 0.4 s: the kill lands in one of the refinement's.
        workers.start("first", *greedy_args(spec, unique_study_name, seed, "--sleep", "0.4",
                                             "--refine", str(refine)))
        wait_for(refining, 60, "a refinement training", workers)
        workers.kill("first")
        before = study.get_trials(deepcopy=False)
        running = [t.number for t in before if t.state == TrialState.RUNNING]
        assert len(running) == 1
        done_before = set(level_trainings(before))
        workers.start("restart", *greedy_args(spec, unique_study_name, seed, "--sleep", "0.05",
                                               "--refine", str(refine), "--recover"))
        workers.wait_all(timeout=60)
        assert f"recovered trials: {running}" in workers.log("restart")
    trials = assert_refinement_sound(spec, unique_study_name, seed, refine)
    redone = {(candidate(t), trial_level(t)) for t in trials
              if t.user_attrs.get("trained_by") == "restart" and t.state == TrialState.COMPLETE}
    assert not redone & done_before, "the restart retrained completed trainings"
    killed = trials[running[0]]
    assert killed.state == TrialState.FAIL
    assert (candidate(killed), trial_level(killed)) in redone
