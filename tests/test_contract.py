"""TinyTNASSampler's contract in its real use, in the style of ``optuna.testing.pytest_samplers``.

Optuna's own sampler suites (tests/test_sampler_contract.py) build minimize studies with their own
parameters, so they only reach our sampler's independent delegate. The tests here drive what users
run: a ``direction="maximize"`` study whose objective is :class:`TinyTNASObjective` itself (it
suggests ``k`` and ``c`` over its ``k_range``/``c_range``, records figures, phase and fidelity,
prunes infeasible candidates untrained, reuses or waits for an identical training), with only its
profiling and training replaced by the synthetic landscape of tests/test_greedy.py
(``_workers_helper.SyntheticObjective``; no TensorFlow, so everything runs in seconds).

Each test checks the sampler against a yardstick it does not compute itself: the independent
transcription of the greedy (``test_greedy.reference_search``), the documented end state of the
refinement (every feasible candidate of the grid trained at every level), or an uninterrupted run.

Subclasses of :class:`TinyTNASSamplerTestCase` give the ``sampler`` fixture, as Optuna's suites do:
a factory taking extra ``TinyTNASSampler`` keyword arguments.
"""

from __future__ import annotations

import itertools
import math
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tinytnas_optuna import TinyTNASSampler, summarize
from tinytnas_optuna._space import C_RANGE, K_RANGE  # TinyTNASObjective's default ranges

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workers_helper import LENGTH, SyntheticObjective, make_storage, synthetic_value
from test_greedy import landscape, reference_search

# The names a trial's system attrs are stored under (stable: studies on disk must still read).
CANDIDATE, LEVEL, PHASE, FINISHED = ("tinytnas:candidate", "tinytnas:level", "tinytnas:phase",
                                     "tinytnas:search_finished")
#: Far above what any search here needs: the sampler must end the study long before.
MAX_TRIALS = 1000
#: Fidelity levels of the refinement (docs/search.md: re-rankings at levels 1 and 2).
LEVELS = (0, 1, 2)
#: Refinement trials of the resume tests (an SQLite trial costs dozens of commits: keep it short).
RESUME_REFINE = 10
DONE = (TrialState.COMPLETE, TrialState.PRUNED)

SamplerFactory = Callable[..., TinyTNASSampler]


# -- reading a study ---------------------------------------------------------------------------


def candidate(t: FrozenTrial) -> tuple[int, int]:
    return t.params["k"], t.params["c"]


def level(t: FrozenTrial) -> int:
    return int(t.system_attrs.get(LEVEL, 0))


def is_revisit(t: FrozenTrial) -> bool:
    """A trial the sampler handed out after the search had nothing left (the best, reused)."""
    return bool(t.system_attrs.get(FINISHED))


def trials_of(study: optuna.Study) -> list[FrozenTrial]:
    return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)


def trainings(trials: list[FrozenTrial]) -> list[tuple[tuple[int, int], int]]:
    """``(candidate, level)`` of every synthetic training that ran to completion, in trial
    order."""
    return [(candidate(t), level(t)) for t in trials
            if t.state == TrialState.COMPLETE and "trained_by" in t.user_attrs]


def greedy_sequence(trials: list[FrozenTrial]) -> list[tuple[int, int]]:
    """The candidates the greedy phase evaluated (trained or found infeasible), in trial order."""
    return [candidate(t) for t in trials if t.system_attrs.get(PHASE) == "greedy"
            and not is_revisit(t) and t.state in DONE]


def grid_widths(trials: list[FrozenTrial]) -> set[int]:
    """docs/search.md: quarter octaves 2, 3, 4, 5, 6, 7, 8, 10, ... plus every visited width."""
    quarter = {round(2 ** (j / 4)) for j in range(4 * 10 + 1)}
    visited = {candidate(t)[0] for t in trials if level(t) == 0 and t.state in DONE}
    return {k for k in quarter | visited if K_RANGE[0] <= k <= K_RANGE[1]}


def exhausted(trials: list[FrozenTrial], feasible_of) -> set:
    """What a refinement with nothing left has trained: every feasible grid candidate, every
    level."""
    return {((k, c), lv) for k in grid_widths(trials) for c in range(C_RANGE[0], C_RANGE[1] + 1)
            if feasible_of(k, c) for lv in LEVELS}


def best_means(pairs, acc_of) -> tuple[set[tuple[int, int]], float]:
    """The candidates with the best mean over their trainings, and that mean."""
    values: dict[tuple[int, int], list[float]] = {}
    for cand, lv in pairs:
        values.setdefault(cand, []).append(synthetic_value(acc_of, *cand, lv))
    mean = {cand: statistics.fmean(v) for cand, v in values.items()}
    top = max(mean.values())
    return {cand for cand, m in mean.items() if m == top}, top


def answer(study: optuna.Study) -> tuple[int, int, float, int]:
    best = summarize(study).best
    assert best is not None
    return best.k, best.c, best.value, best.runs


# -- the checks every search must pass ----------------------------------------------------------


def assert_well_formed(trials: list[FrozenTrial], acc_of, feasible_of, *, n_jobs: int = 1,
                       fails: int = 0, pruned_by_test: frozenset[int] = frozenset()) -> None:
    """Params, values, phases and levels as documented; nothing infeasible trained; no
    (candidate, level) trained twice; a re-ranking only after the candidate's own result.

    ``pruned_by_test``: trials the test itself told PRUNED (else PRUNED means over budget)."""
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    states = Counter(t.state for t in trials)
    assert set(states) <= {*DONE, TrialState.FAIL} and states[TrialState.FAIL] == fails, states
    first_result: dict[tuple[int, int], int] = {}
    for t in trials:
        k, c = candidate(t)
        assert t.distributions == {"k": IntDistribution(*K_RANGE, log=True),
                                   "c": IntDistribution(*C_RANGE)}
        assert type(k) is int and type(c) is int
        assert t.system_attrs[CANDIDATE] == [k, c]  # the trial evaluates what it was assigned
        phase = t.system_attrs[PHASE]
        assert phase in ("greedy", "refine", "rerank")
        assert t.user_attrs.get("phase", phase) == phase  # recorded by the objective
        assert level(t) in LEVELS and (level(t) > 0) == (phase == "rerank"), (t.number, phase)
        if t.state == TrialState.PRUNED and t.number not in pruned_by_test:
            # over budget, never trained
            assert not feasible_of(k, c) and t.user_attrs["feasible"] is False
            assert "trained_by" not in t.user_attrs and level(t) == 0
        elif t.state == TrialState.COMPLETE:
            assert feasible_of(k, c), f"trial {t.number} trained infeasible {(k, c)}"
            assert t.value == pytest.approx(synthetic_value(acc_of, k, c, level(t)), abs=1e-12)
        if t.state == TrialState.COMPLETE or t.intermediate_values:
            if level(t) == 0:
                first_result.setdefault((k, c), t.number)
            else:  # re-ranking: a candidate with a level-0 result, from an earlier trial
                assert first_result.get((k, c), t.number) < t.number, t.number
        if is_revisit(t):  # the search was over: the best handed out again, reused untrained
            assert "reused_from" in t.user_attrs and "trained_by" not in t.user_attrs
        elif phase != "greedy":  # the refinement skips what other trials are training
            assert "reused_from" not in t.user_attrs, f"trial {t.number} handed out twice"
    twice = {key: n for key, n in Counter(trainings(trials)).items() if n > 1}
    assert not twice, f"trained more than once at one level: {twice}"
    # Threads: each other thread may start one trial before the stop is seen, never more.
    assert sum(map(is_revisit, trials)) <= n_jobs - 1


def reference(seed: int):
    acc_of, feasible_of = landscape(seed, length=LENGTH)
    _, best, path, evaluations = reference_search(acc_of, feasible_of, K_RANGE, C_RANGE)
    return acc_of, feasible_of, best, path, evaluations


def make_objective(seed: int, *, sleep: float = 0.0, worker: str = "w") -> SyntheticObjective:
    return SyntheticObjective(seed, worker, sleep, {})


def new_study(sampler: TinyTNASSampler, storage=None, name: str | None = None) -> optuna.Study:
    # NopPruner, as the README says: every candidate gets its full training.
    return optuna.create_study(direction="maximize", sampler=sampler, storage=storage,
                               study_name=name, pruner=optuna.pruners.NopPruner())


class InterruptedObjective(SyntheticObjective):
    """Ctrl-C in the middle of the ``at``-th training (Optuna marks that trial FAIL)."""

    def __init__(self, seed: int, at: int) -> None:
        super().__init__(seed, "first", 0.0, {})
        self.at, self.started = at, 0

    def _train(self, trial, arch, k, c, level, setting=0):
        self.started += 1
        if self.started == self.at:
            trial.set_user_attr("trained_by", self.worker)
            raise KeyboardInterrupt
        return super()._train(trial, arch, k, c, level)


def asked(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    """The trial as the sampler assigned it at ``ask`` (system attrs)."""
    return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def tell_objective(study: optuna.Study, trial: optuna.Trial, objective) -> None:
    """What ``optimize`` does with one trial, by ask-and-tell."""
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, value)


def only_needs(running: tuple[int, int], known: set, acc_of, feasible_of) -> bool:
    """Whether, whatever ``running`` turns out to be (better than anything, worse than
    anything, over budget), the specification's search needs no candidate outside ``known``."""
    for outcome in (math.inf, -math.inf, None):
        def acc(k, c, outcome=outcome):
            return outcome if (k, c) == running else acc_of(k, c)

        def feasible(k, c, outcome=outcome):
            return outcome is not None if (k, c) == running else feasible_of(k, c)

        _, _, _, evaluations = reference_search(acc, feasible, K_RANGE, C_RANGE)
        if set(evaluations) - known - {running}:
            return False
    return True


def drive_two_open(study: optuna.Study, objective, acc_of, feasible_of) -> list[FrozenTrial]:
    """Ask-and-tell with two trials open at a time, the newest told first (so the first trial
    stays open, a slow training), until the sampler hands out its end-of-search revisit.

    Fails when a trial is assigned a (candidate, level) whose result is known (for an infeasible
    candidate: at any level), or the one of the other open trial while the search still needs
    another candidate under one of that trial's outcomes (speculation, docs/search.md), or in the
    refinement at all (busy trainings are skipped). A duplicate is told after its original: the
    objective waits for it and reuses its result.
    """
    open_: list[tuple[optuna.Trial, FrozenTrial]] = []
    known: set = set()
    done = False

    def key(frozen: FrozenTrial):
        return candidate_of(frozen), level(frozen)

    def tell(trial: optuna.Trial, frozen: FrozenTrial) -> None:
        for other in [o for o in open_ if o[1].number < frozen.number
                      and key(o[1]) == key(frozen)]:
            open_.remove(other)
            tell(*other)
        tell_objective(study, trial, objective)
        known.add(key(frozen))
        if not feasible_of(*candidate_of(frozen)):
            known.update((candidate_of(frozen), lv) for lv in LEVELS)

    for _ in range(MAX_TRIALS):
        while len(open_) < 2 and not done:
            trial = study.ask()
            frozen = asked(study, trial)
            done = is_revisit(frozen)
            if not done:
                assert key(frozen) not in known, f"trial {frozen.number} repeats {key(frozen)}"
                if key(frozen) in {key(f) for _, f in open_}:
                    assert frozen.system_attrs[PHASE] == "greedy", frozen.number
                    assert only_needs(candidate_of(frozen), {c for c, lv in known if lv == 0},
                                      acc_of, feasible_of), (
                        f"trial {frozen.number} duplicates the open {key(frozen)} while the "
                        "search needs another candidate")
            open_.append((trial, frozen))
        if not open_:
            return trials_of(study)
        tell(*open_.pop())
    pytest.fail(f"ask-and-tell never reached the end of the search in {MAX_TRIALS} trials")


def drive(study: optuna.Study, objective, special=None) -> list[FrozenTrial]:
    """Ask and tell one trial at a time until the sampler hands out its end-of-search revisit.

    ``special(trial, frozen)`` may tell a trial itself (returning True) instead of the objective.
    """
    for _ in range(MAX_TRIALS):
        trial = study.ask()
        frozen = asked(study, trial)
        if not (special and special(trial, frozen)):
            tell_objective(study, trial, objective)
        if is_revisit(frozen):
            return trials_of(study)
    pytest.fail(f"ask-and-tell never reached the end of the search in {MAX_TRIALS} trials")


@pytest.fixture
def storage_dir(tmp_path: Path):
    """A directory for storage files, in memory (/dev/shm) when there is one: SQLite syncs the
    file on each of its dozens of commits per trial, which on a loaded disk takes seconds."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and shm.stat().st_mode & 0o002):
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="tinytnas-contract-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def candidate_of(frozen: FrozenTrial) -> tuple[int, int]:
    """The candidate the sampler assigned a trial (before the objective suggested it)."""
    k, c = frozen.system_attrs[CANDIDATE]
    return int(k), int(c)


def trials_by(trials: list[FrozenTrial], cand: tuple[int, int]) -> list[FrozenTrial]:
    return [t for t in trials if candidate(t) == cand and level(t) == 0]


# -- the contract ---------------------------------------------------------------------------------


class TinyTNASSamplerTestCase:
    """The contract of TinyTNASSampler on a maximize study of TinyTNASObjective."""

    @pytest.fixture
    def sampler(self) -> SamplerFactory:
        raise NotImplementedError

    @staticmethod
    def assert_search_complete(trials, sampler: TinyTNASSampler, feasible_of, evaluations,
                               *, exact: bool) -> None:
        """What a search that ended by itself has trained (``exact``: one worker, no
        speculation)."""
        trained = set(trainings(trials))
        if sampler.refine:  # nothing left: every feasible grid candidate at every level
            assert trained == exhausted(trials, feasible_of)
        elif exact:  # the greedy alone: exactly the feasible candidates of the specification
            assert trainings(trials) == [(e, 0) for e in evaluations if feasible_of(*e)]
        else:  # speculation may add level-0 trainings, never skip one
            assert trained >= {(e, 0) for e in evaluations if feasible_of(*e)}
            assert {lv for _, lv in trained} == {0}

    @pytest.mark.parametrize("n_jobs", [1, 2])
    @pytest.mark.parametrize("seed", [0, 3, 6])
    def test_optimize(self, sampler: SamplerFactory, seed: int, n_jobs: int) -> None:
        acc_of, feasible_of, best, path, evaluations = reference(seed)
        study = new_study(sampler())
        # Threads overlap only while trainings take time.
        study.optimize(make_objective(seed, sleep=0.01 * (n_jobs > 1)), n_trials=MAX_TRIALS,
                       n_jobs=n_jobs)
        trials = trials_of(study)
        assert len(trials) < MAX_TRIALS  # the sampler ended the study by itself
        assert_well_formed(trials, acc_of, feasible_of, n_jobs=n_jobs)
        # The greedy phase is the specification's search (one worker: the very same trials).
        if n_jobs == 1:
            assert greedy_sequence(trials) == evaluations
        else:
            assert set(greedy_sequence(trials)) >= set(evaluations)
        replay = sampler().replay(study)
        assert replay.finished and replay.best == best and replay.accepted == path
        self.assert_search_complete(trials, study.sampler, feasible_of, evaluations,
                                    exact=n_jobs == 1)
        if n_jobs > 1:  # the threads did run trials at the same time
            assert any(b.datetime_start < a.datetime_complete
                       for a, b in itertools.pairwise(trials))
        # The answer: the best mean over what was trained; the paper's greedy alone on one
        # worker: the specification's best. (Paper's greedy on two workers:
        # TestPaperGreedy.test_answer_with_speculation_is_the_one_worker_answer.)
        k, c, value, _ = answer(study)
        if study.sampler.refine or n_jobs == 1:
            cands, top = best_means(trainings(trials), acc_of)
            assert (k, c) in cands and value == pytest.approx(top)
        if n_jobs == 1 and not study.sampler.refine:
            assert (k, c) == best

    @pytest.mark.parametrize("seed", [1, 4])
    def test_ask_and_tell_is_optimize_then_a_revisit(self, sampler: SamplerFactory,
                                                      seed: int) -> None:
        acc_of, feasible_of, _, _, _ = reference(seed)
        reference_study = new_study(sampler())
        reference_study.optimize(make_objective(seed), n_trials=MAX_TRIALS)
        expected = [(candidate(t), level(t), t.state) for t in trials_of(reference_study)]

        study = new_study(sampler())
        trials = drive(study, make_objective(seed))
        assert_well_formed(trials, acc_of, feasible_of, n_jobs=2)
        # Ask-and-tell has no loop to stop: the sampler goes on to the one revisit of the best,
        # which the objective reuses without training.
        assert [(candidate(t), level(t), t.state) for t in trials[:-1]] == expected
        assert is_revisit(trials[-1]) and candidate(trials[-1]) == sampler().replay(study).best
        assert answer(study) == answer(reference_study)

    @pytest.mark.parametrize("n_fails", [1, 3])
    def test_ask_and_tell_failed_trial(self, sampler: SamplerFactory, n_fails: int) -> None:
        """A FAIL is retried at once; after ``max_retries`` (2) retries the candidate counts as
        accuracy -1 (never infeasible) and is never trained."""
        seed = 2
        acc_of, feasible_of, best, path, evaluations = reference(seed)
        victim = path[1]  # an accepted candidate: its result decides the search's path
        fails: list[int] = []

        def special(trial, frozen) -> bool:
            if candidate_of(frozen) == victim and level(frozen) == 0 and len(fails) < n_fails:
                fails.append(frozen.number)
                trial.suggest_int("k", *K_RANGE, log=True)  # then crashed in training
                trial.suggest_int("c", *C_RANGE)
                study.tell(trial, state=TrialState.FAIL)
                return True
            return False

        study = new_study(sampler())
        trials = drive(study, make_objective(seed), special)
        assert_well_formed(trials, acc_of, feasible_of, n_jobs=2, fails=n_fails)
        assert fails == list(range(fails[0], fails[0] + n_fails))  # retried at once
        if n_fails == 1:  # the retry succeeded: the specification's search, unchanged
            expected_best, expected_path, expected = best, path, evaluations
        else:
            _, expected_best, expected_path, expected = reference_search(
                lambda k, c: -1.0 if (k, c) == victim else acc_of(k, c), feasible_of,
                K_RANGE, C_RANGE)
            assert expected_path != path  # the -1 matters: this test can tell
            assert victim not in {cand for cand, _ in trainings(trials)}
        # The specification's visits, the victim asked again right after each failure.
        tries = n_fails + (n_fails == 1)
        assert [candidate(t) for t in trials if t.system_attrs[PHASE] == "greedy"
                and not is_revisit(t)] == [
            x for e in expected for x in [e] * (tries if e == victim else 1)]
        replay = sampler().replay(study)
        assert replay.finished and replay.best == expected_best
        assert replay.accepted == expected_path
        if study.sampler.refine:
            assert set(trainings(trials)) == exhausted(trials, feasible_of) - (
                {(victim, lv) for lv in LEVELS} if n_fails == 3 else set())

    def test_ask_and_tell_pruned_trials(self, sampler: SamplerFactory) -> None:
        """PRUNED by a learning-curve pruner counts its best reported value; PRUNED before any
        validation point (time bound) is not a result: the candidate is handed out again."""
        seed = 5
        acc_of, feasible_of, _, path, evaluations = reference(seed)
        # A candidate the search rejected: pruned at a high reported value it is accepted instead.
        curve_pruned = next(e for e in evaluations if feasible_of(*e) and e not in path)
        cut = next(e for e in evaluations[evaluations.index(curve_pruned) + 1:]
                   if feasible_of(*e))
        high = 1.2  # above anything the landscape gives
        told: list = []
        pruned: set[int] = set()

        def special(trial, frozen) -> bool:
            cand = candidate_of(frozen)
            if level(frozen) != 0 or cand in told:
                return False
            if cand == curve_pruned:
                trial.suggest_int("k", *K_RANGE, log=True)
                trial.suggest_int("c", *C_RANGE)
                trial.set_user_attr("feasible", True)
                trial.set_user_attr("phase", frozen.system_attrs[PHASE])
                trial.report(0.3, 100)
                trial.report(high, 200)
            elif cand == cut:
                trial.suggest_int("k", *K_RANGE, log=True)
                trial.suggest_int("c", *C_RANGE)
                trial.set_user_attr("interrupted", True)
                trial.set_user_attr("phase", frozen.system_attrs[PHASE])
            else:
                return False
            told.append(cand)
            pruned.add(frozen.number)
            study.tell(trial, state=TrialState.PRUNED)
            return True

        study = new_study(sampler())
        trials = drive(study, make_objective(seed), special)
        # The end-of-search revisit (of the curve-pruned best) is left to
        # test_end_of_search_revisit_never_trains.
        assert is_revisit(trials[-1]) and candidate(trials[-1]) == curve_pruned
        trials = trials[:-1]
        assert_well_formed(trials, acc_of, feasible_of, pruned_by_test=frozenset(pruned))
        _, expected_best, expected_path, expected = reference_search(
            lambda k, c: high if (k, c) == curve_pruned else acc_of(k, c), feasible_of,
            K_RANGE, C_RANGE)
        assert expected_path != path and expected_best == curve_pruned  # the value matters
        assert curve_pruned in told
        replay = sampler().replay(study)
        assert replay.finished and replay.best == expected_best
        assert replay.accepted == expected_path
        sequence = greedy_sequence(trials)
        if cut in told:  # the cut candidate came back at once and was then trained
            i = sequence.index(cut)
            assert sequence[i + 1] == cut and sequence[:i] + sequence[i + 1:] == expected
            assert trials_by(trials, cut)[0].user_attrs.get("interrupted") is True
            assert trials_by(trials, cut)[1].state == TrialState.COMPLETE
        else:  # the better path no longer needed it
            assert sequence == expected
        if study.sampler.refine:  # the curve-pruned candidate, now the best, is re-ranked first
            first = next(t for t in trials if t.system_attrs[PHASE] != "greedy")
            assert (candidate(first), level(first)) == (curve_pruned, 1)

    def test_ask_and_tell_several_trials_open(self, sampler: SamplerFactory) -> None:
        """Two trials asked before either is told (told newest first): no (candidate, level)
        handed out once its result is known, none trained twice, the one-worker greedy."""
        seed = 7
        acc_of, feasible_of, best, path, evaluations = reference(seed)
        study = new_study(sampler())
        trials = drive_two_open(study, make_objective(seed), acc_of, feasible_of)
        assert_well_formed(trials, acc_of, feasible_of, n_jobs=2)
        assert set(greedy_sequence(trials)) >= set(evaluations)
        replay = sampler().replay(study)
        assert replay.finished and replay.best == best and replay.accepted == path
        self.assert_search_complete(trials, study.sampler, feasible_of, evaluations, exact=False)

    def test_end_of_search_revisit_never_trains(self, sampler: SamplerFactory) -> None:
        seed = 5

        objective = make_objective(seed)

        def special(trial, frozen) -> bool:
            if frozen.number != 0:
                return False
            k = trial.suggest_int("k", *K_RANGE, log=True)
            c = trial.suggest_int("c", *C_RANGE)
            # What the objective records before a training a pruner then stops.
            arch = objective.architecture(k, c)
            trial.set_user_attr("widths", [*arch.widths, arch.dense])
            trial.set_user_attr("fidelity", objective.fidelity(0))
            trial.set_user_attr("feasible", True)
            trial.report(1.2, 100)  # then stopped by a learning-curve pruner
            study.tell(trial, state=TrialState.PRUNED)
            return True

        study = new_study(sampler())
        trials = drive(study, objective, special)
        assert candidate(trials[-1]) == candidate(trials[0]) == sampler().replay(study).best
        assert "trained_by" not in trials[-1].user_attrs, "the revisit trained the best again"

    @pytest.mark.parametrize(("kind", "cut", "how"), [
        ("journal", "greedy", "stop"), ("journal", "greedy", "ctrl-c"),
        ("journal", "late", "stop"), ("journal", "late", "ctrl-c"),
        # SQLite commits every attribute: two cases only, to keep this file to seconds.
        ("sqlite", "greedy", "ctrl-c"), ("sqlite", "late", "stop"),
    ])
    def test_resume_from_storage(self, sampler: SamplerFactory, storage_dir: Path, kind: str,
                                 cut: str, how: str, request: pytest.FixtureRequest) -> None:
        """Stopped (or Ctrl-C mid-training), then a new process: ``load_study`` with a new
        sampler continues without redoing anything and ends as an uninterrupted run."""
        seed = 4
        acc_of, feasible_of, best, path, evaluations = reference(seed)
        spec = (f"sqlite:///{storage_dir / 'search.db'}" if kind == "sqlite"
                else f"journal:{storage_dir / 'journal.log'}")
        options = {"refine_trials": RESUME_REFINE}

        whole = new_study(sampler(**options))  # uninterrupted, in memory
        whole.optimize(make_objective(seed), n_trials=MAX_TRIALS)
        expected = trials_of(whole)

        # Early in the greedy, or near its end (paper's greedy) / inside the refinement.
        late = 4 if sampler().refine else -3
        first = new_study(sampler(**options), make_storage(spec), "resumed")
        if how == "stop":  # after that many trials
            at = 5 if cut == "greedy" else len(evaluations) + late
            first.optimize(make_objective(seed), n_trials=at)
        else:  # in the middle of that many-th training
            n_trained = sum(feasible_of(*e) for e in evaluations)
            at = 3 if cut == "greedy" else n_trained + late
            with pytest.raises(KeyboardInterrupt):
                first.optimize(InterruptedObjective(seed, at=at), n_trials=MAX_TRIALS)
        before = trials_of(first)
        assert 0 < len(before) < len(expected)
        interrupted = [t for t in before if t.state == TrialState.FAIL]
        assert len(interrupted) == (how == "ctrl-c")

        # A new process: a new storage object and a new sampler, nothing else carried over.
        study = optuna.load_study(study_name="resumed", storage=make_storage(spec),
                                  sampler=sampler(**options),
                                  pruner=optuna.pruners.NopPruner())
        study.optimize(make_objective(seed, worker="restart"), n_trials=MAX_TRIALS)
        trials = trials_of(study)
        assert_well_formed(trials, acc_of, feasible_of, fails=len(interrupted))
        # Nothing recorded before the restart was rewritten...
        assert [(t.number, t.state, t.params) for t in trials[:len(before)]] == [
            (t.number, t.state, t.params) for t in before]
        # ...nothing completed was trained again, the interrupted training was redone once...
        redone = [(candidate(t), level(t)) for t in trials if t.state == TrialState.COMPLETE
                  and t.user_attrs.get("trained_by") == "restart"]
        assert not set(redone) & set(trainings(before))
        for t in interrupted:
            assert (candidate(t), level(t)) in redone
        # ...and the search went on exactly as the uninterrupted one, to the same answer.
        assert trainings(trials) == trainings(expected)
        assert greedy_sequence(trials) == greedy_sequence(expected) == evaluations
        assert len(trials) == len(expected) + len(interrupted)
        replay = sampler().replay(study)
        assert replay.finished and replay.best == best and replay.accepted == path
        assert answer(study) == answer(whole)


class TestPaperGreedy(TinyTNASSamplerTestCase):
    """``TinyTNASSampler(refine=False)``: the paper's greedy alone."""

    @pytest.fixture
    def sampler(self) -> SamplerFactory:
        return lambda **options: TinyTNASSampler(refine=False, **options)

    def test_answer_with_speculation_is_the_one_worker_answer(
            self, sampler: SamplerFactory) -> None:
        seed = 0
        acc_of, feasible_of, best, _, _ = reference(seed)
        study = new_study(sampler())
        drive_two_open(study, make_objective(seed), acc_of, feasible_of)
        assert sampler().replay(study).best == best  # the sampler's own answer is right
        assert answer(study)[:2] == best, "the summary's best is not the one-worker answer"


class TestGreedyThenRefinement(TinyTNASSamplerTestCase):
    """``TinyTNASSampler()``: the greedy, then the refinement until nothing is left."""

    @pytest.fixture
    def sampler(self) -> SamplerFactory:
        return lambda **options: TinyTNASSampler(**options)
