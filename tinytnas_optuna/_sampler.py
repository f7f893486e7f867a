"""TinyTNASSampler: the greedy expansion of TinyTNAS, then a refinement, as an Optuna sampler.

The sampler holds no search state. On every trial it reads the study's trials from the storage,
turns them into known results, and replays the greedy search (:mod:`tinytnas_optuna._greedy`) to
find the next candidate; once the greedy has ended, the refinement (:mod:`tinytnas_optuna._refine`)
picks the next training from the same results. That makes a killed search resumable and lets
several workers (threads, processes, machines) share one study: whatever they have recorded is the
state.
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tinytnas_optuna import _greedy, _refine
from tinytnas_optuna._greedy import Candidate
from tinytnas_optuna._recovery import claim, fail_dead_trials
from tinytnas_optuna._space import C_RANGE, K_RANGE
from tinytnas_optuna._study import SAMPLERS, stop_search
from tinytnas_optuna._trial import (
    CANDIDATE,
    FINISHED,
    INPUT_SETTINGS,
    INTERRUPTED,
    LEVEL,
    SAMPLER_PHASE,
    SETTING,
    search_result,
    trial_candidate,
    trial_level,
    trial_setting,
)

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study

_PARAMS = ("k", "c")
#: The input setting's parameters (with an input space): ``settings[i]`` is ``[decimate, window]``.
_INPUT_PARAMS = ("decimate", "window")


def _check_single_maximize(study: Study, *, strict: bool) -> None:
    if study._is_multi_objective():
        raise ValueError("TinyTNASSampler supports single-objective studies only")
    if strict and study.direction != StudyDirection.MAXIMIZE:
        raise ValueError("TinyTNASSampler needs a study with direction='maximize' (accuracy)")


class TinyTNASSampler(BaseSampler):
    """Propose ``(k, c)`` by TinyTNAS's greedy expansion (arXiv 2408.16535), then refine.

    The objective must suggest ``k`` and ``c`` as integers (as :class:`TinyTNASObjective` does);
    any other parameter is sampled by ``independent_sampler``. The study must maximize.

    Behaviour:

    - Same accuracies, same candidates in the same order, infeasible ones included.
    - A candidate whose training completed is never handed out again.
    - A failed trial's candidate is handed out again, at most ``max_retries`` more times; after
      that it counts as accuracy -1.
    - The greedy's trajectory is exactly the paper's: it reads only the search's own trainings
      (level 0). When it has ended and ``refine`` is on, the refinement of
      :mod:`tinytnas_optuna._refine` follows: re-ranking of the best candidates by a longer
      training from other initial weights (level 1, 2), and exploration of the feasible
      candidates the greedy skipped around the best ones. Each trial gets the phase
      (``greedy``, ``refine``, ``rerank``) and the level in its system attrs; the objective
      records them as the user attrs ``phase`` and ``fidelity``.
    - A candidate is never trained twice at the same level, by any number of workers.
    - When there is nothing left (the greedy's end with ``refine=False``; with refinement,
      every feasible candidate of the refinement's grid trained at every level, or
      ``refine_trials`` reached), the study is stopped (inside ``optimize`` only, so
      ask-and-tell keeps working). A time bound usually ends the refinement first.
    - With several workers, a worker whose next candidate is being trained elsewhere takes a
      candidate the search will need under one of that training's possible outcomes
      (speculation); when there is none, it re-ranks one of the best candidates so far rather
      than wait (with ``refine``). The answer is the one-worker search's: its replay reads only
      the results the one-worker search would read; speculative candidates are extra
      evaluations.

    Args:
        seed: Seed of the independent sampler used for parameters other than ``k`` and ``c``.
        k_range: Inclusive range of ``k``; must match the objective's. Outside: infeasible.
        c_range: Inclusive range of ``c``.
        start: The first candidate (the paper starts at ``(4, 3)``).
        max_retries: How many more times a failed candidate is tried.
        independent_sampler: Sampler for other parameters (default ``RandomSampler(seed)``).
        claim_timeout: Seconds a new trial waits for earlier running trials to be assigned their
            candidates, so that concurrent workers do not pick the same one.
        refine: Refine after the greedy (default); False gives the paper's greedy alone.
        refine_trials: At most this many refinement trials (None: until the study is stopped,
            by a time bound for instance, or nothing is left).
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        k_range: tuple[int, int] = K_RANGE,
        c_range: tuple[int, int] = C_RANGE,
        start: tuple[int, int] = _greedy.START,
        max_retries: int = 2,
        independent_sampler: BaseSampler | None = None,
        claim_timeout: float = 10.0,
        refine: bool = True,
        refine_trials: int | None = None,
    ) -> None:
        if k_range[0] < 1 or k_range[0] > k_range[1] or c_range[0] < 0 or c_range[0] > c_range[1]:
            raise ValueError(f"invalid ranges k={k_range}, c={c_range}")
        self._k_range = (int(k_range[0]), int(k_range[1]))
        self._c_range = (int(c_range[0]), int(c_range[1]))
        self._start = (int(start[0]), int(start[1]))
        self._max_retries = max_retries
        self._independent = independent_sampler or RandomSampler(seed=seed)
        self._claim_timeout = claim_timeout
        if refine_trials is not None and refine_trials < 0:
            raise ValueError(f"refine_trials must be >= 0, got {refine_trials}")
        self.refine = refine
        self._refine_trials = refine_trials
        # Threads of one process (n_jobs > 1) claim one at a time; processes use the ordering
        # protocol in `_wait_for_earlier_claims`.
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into the worker processes of a search: the lock is per process.
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def k_range(self) -> tuple[int, int]:
        """Inclusive range of ``k``."""
        return self._k_range

    @property
    def c_range(self) -> tuple[int, int]:
        """Inclusive range of ``c``."""
        return self._c_range

    # -- the search state, rebuilt from the storage ------------------------------------------

    def known_results(
        self, trials: Sequence[FrozenTrial], *, exclude: int | None = None, setting: int = 0,
        settings: list[list[int]] | None = None,
    ) -> tuple[dict[_greedy.Candidate, _greedy.Result], set[_greedy.Candidate]]:
        """Turn trials into the greedy search's known results and running candidates.

        Args:
            trials: The study's trials (any order).
            exclude: A trial number to leave out (the trial being sampled).
            setting: The input setting whose greedy it is (0: the first, or the only one).
            settings: The study's input settings (:data:`~tinytnas_optuna._trial.INPUT_SETTINGS`).

        Returns:
            ``(results, running)``: the first result of each candidate in trial order, and the
            candidates other trials are evaluating now.
        """
        results: dict[_greedy.Candidate, _greedy.Result] = {}
        running: set[_greedy.Candidate] = set()
        failures: Counter[_greedy.Candidate] = Counter()
        for t in sorted(trials, key=lambda t: t.number):
            cand = trial_candidate(t)
            if (cand is None or t.number == exclude or trial_level(t) != 0
                    or trial_setting(t, settings) != setting):
                continue
            if t.state == TrialState.RUNNING:
                running.add(cand)
                continue
            if t.state == TrialState.FAIL:
                failures[cand] += 1
                continue
            if not t.state.is_finished() or cand in results:
                continue
            outcome = search_result(t)
            if outcome is not None:
                results[cand] = outcome
        for cand, n in failures.items():
            if cand not in results and n > self._max_retries:
                results[cand] = -1.0
        return results, running

    def replay(self, study: Study, setting: int = 0) -> _greedy.Replay:
        """Replay the greedy search over the study's recorded trials.

        Args:
            study: The study.
            setting: The input setting whose greedy to replay (0: the first input, where the
                paper's greedy runs; the others start at its best).

        Returns:
            The :class:`~tinytnas_optuna._greedy.Replay` (path, best, next candidate needed).
        """
        trials = study._storage.get_all_trials(study._study_id)
        settings = input_settings(study)
        results, _ = self.known_results(trials, setting=setting, settings=settings)
        return _greedy.replay(results, k_range=self._k_range, c_range=self._c_range,
                              start=self._start_of(trials, setting, settings))

    def _start_of(self, trials: Sequence[FrozenTrial], setting: int,
                  settings: list[list[int]] | None, exclude: int | None = None) -> Candidate:
        """Where a setting's greedy starts: the paper's start on the first input; on the
        others, the first input's greedy best (a shorter or slower input makes wider networks
        fit, and the greedy's doubling of ``k`` climbs there in a few trainings)."""
        if setting == 0:
            return self._start
        results, _ = self.known_results(trials, exclude=exclude, settings=settings)
        best = _greedy.replay(results, k_range=self._k_range, c_range=self._c_range,
                              start=self._start).best
        return best or self._start

    def _frontier(self, trials: Sequence[FrozenTrial], exclude: int | None,
                  settings: list[list[int]] | None) -> tuple[
        list[tuple[int, Candidate]], set[tuple[int, Candidate]]
    ]:
        """The greedy candidates the search needs next, ``(setting, candidate)`` in priority
        order, and those other trials train now. The other settings' greedies start once the
        first input's has ended (they start at its best)."""
        order: list[tuple[int, Candidate]] = []
        running: set[tuple[int, Candidate]] = set()
        for setting in range(len(settings or [None])):
            if setting > 0 and any(s == 0 for s, _ in order):
                break  # the first input's greedy has not ended: its best is not known
            results, busy = self.known_results(trials, exclude=exclude, setting=setting,
                                               settings=settings)
            start = self._start_of(trials, setting, settings, exclude)
            order += [(setting, c) for c in _greedy.frontier(
                results, busy, k_range=self._k_range, c_range=self._c_range, start=start)]
            running |= {(setting, c) for c in busy}
        return order, running

    def refinement(self, trials: Sequence[FrozenTrial], *, exclude: int | None = None,
                   settings: list[list[int]] | None = None) -> Next | None:
        """The refinement's next training given the trials, or None when nothing is left.

        With several input settings, the refinement works on the input whose best estimate is
        the highest (its re-rankings and neighbours); the greedies of every input have ended.

        Args:
            trials: The study's trials (the greedy must have ended).
            exclude: A trial number to leave out (the trial being sampled).
            settings: The study's input settings.

        Returns:
            The :class:`Next` training, or None (also when ``refine`` is off or
            ``refine_trials`` is reached).
        """
        if not self.refine:
            return None
        setting = self._best_setting(trials, exclude, settings)
        runs, infeasible, busy, failures, refining = self._refinement_state(
            trials, exclude, setting, settings)
        if self._refine_trials is not None and refining >= self._refine_trials:
            return None
        tried = {key for key, n in failures.items() if n > self._max_retries}
        pick = _refine.next_refinement(runs, infeasible, tried=tried, busy=busy,
                                       k_range=self._k_range, c_range=self._c_range)
        return None if pick is None else Next(setting, *pick)

    def _best_setting(self, trials: Sequence[FrozenTrial], exclude: int | None,
                      settings: list[list[int]] | None) -> int:
        """The input setting with the best estimate of any candidate (0 when none is known)."""
        best, chosen = -float("inf"), 0
        for setting in range(len(settings or [None])):
            runs = self._refinement_state(trials, exclude, setting, settings)[0]
            top = max(_refine.estimates(runs).values(), default=-float("inf"))
            if top > best:
                best, chosen = top, setting
        return chosen

    def _refinement_state(self, trials: Sequence[FrozenTrial], exclude: int | None,
                          setting: int = 0, settings: list[list[int]] | None = None) -> tuple[
        dict[_greedy.Candidate, dict[int, float]], set[_greedy.Candidate],
        set[tuple[_greedy.Candidate, int]], Counter[tuple[_greedy.Candidate, int]], int,
    ]:
        """Values by candidate and level, infeasible candidates, trainings in flight, failures
        by training, and the refinement trials so far."""
        runs: dict[_greedy.Candidate, dict[int, float]] = {}
        infeasible: set[_greedy.Candidate] = set()
        busy: set[tuple[_greedy.Candidate, int]] = set()
        failures: Counter[tuple[_greedy.Candidate, int]] = Counter()
        refining = 0
        for t in trials:
            cand = trial_candidate(t)
            if cand is None or t.number == exclude:
                continue
            # A failed training (a crash) is redone, not counted against refine_trials.
            refining += (t.system_attrs.get(SAMPLER_PHASE) in ("refine", "rerank")
                         and t.state != TrialState.FAIL)
            if trial_setting(t, settings) != setting:
                continue
            level = trial_level(t)
            if t.state == TrialState.RUNNING:
                busy.add((cand, level))
                continue
            if t.state == TrialState.FAIL:
                failures[(cand, level)] += 1
                continue
            outcome = search_result(t)
            if outcome == _greedy.INFEASIBLE:
                infeasible.add(cand)
            elif outcome is not None and not (level > 0 and t.user_attrs.get(INTERRUPTED)):
                # A re-ranking cut by the time bound is no estimate: a resumed search redoes it.
                runs.setdefault(cand, {}).setdefault(level, float(outcome))
        return runs, infeasible, busy, failures, refining

    def value_to_beat(self, study: Study, trial: FrozenTrial) -> float | None:
        """The value at or below which this trial's training cannot change what the search does.

        - In the greedy (level 0, phase ``greedy``): the greedy's best accuracy so far. A
          candidate is accepted only when strictly better, and a rejected one never moves the
          search, so a training that cannot exceed it leaves the paper's trajectory unchanged
          (the best so far only grows along the path, also for the candidates other workers
          train ahead of it).
        - In the refinement's exploration (level 0): the best estimate of any trained candidate.
        - In a re-ranking at level ``L``: what this training must score for the candidate's mean
          over its levels to exceed the best estimate of any other candidate.

        The objective stops a cross-validated training after a fold when even perfect remaining
        folds could not score above it (:meth:`TinyTNASObjective` ``fold bound``).

        Args:
            study: The study.
            trial: The trial being trained (its candidate and level assigned).

        Returns:
            The value, or None when any value may matter (nothing to compare with yet).
        """
        cand, level = trial_candidate(trial), trial_level(trial)
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        settings = input_settings(study)
        setting = trial_setting(trial, settings)
        if trial.system_attrs.get(SAMPLER_PHASE) == "greedy":
            results, _ = self.known_results(trials, exclude=trial.number, setting=setting,
                                            settings=settings)
            start = self._start_of(trials, setting, settings, trial.number)
            best = _greedy.replay(results, k_range=self._k_range, c_range=self._c_range,
                                  start=start).best_accuracy
            return None if best < 0 else best
        runs = self._refinement_state(trials, trial.number, setting, settings)[0]
        est = _refine.estimates({c: v for c, v in runs.items() if c != cand})
        if not est:
            return None
        bar = max(est.values())
        if level == 0:
            return bar
        others = [v for lvl, v in runs.get(cand, {}).items() if lvl != level]  # type: ignore[arg-type]
        return bar * (len(others) + 1) - sum(others)

    # -- Optuna's sampler interface -------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._independent.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _check_single_maximize(study, strict=False)
        return {}

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        # A trial left RUNNING by a process that died on this machine is failed before the
        # pick, so that its candidate is handed out again rather than taken as busy.
        if trial.state == TrialState.RUNNING:  # not e.g. optuna.Trial() on a finished one
            claim(study._storage, trial._trial_id)
            fail_dead_trials(study)
        if trial_candidate(trial) is not None:  # enqueued, or retried with fixed params
            return
        if study._is_multi_objective() or study.direction != StudyDirection.MAXIMIZE:
            return  # refused at the first suggest of k or c (sample_independent)
        self._wait_for_earlier_claims(study, trial.number)
        with self._lock:
            self._assign(study, trial)

    def _assign(self, study: Study, trial: FrozenTrial) -> None:
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        settings = input_settings(study)
        order, running = self._frontier(trials, trial.number, settings)
        level, phase = 0, "greedy"
        pick = None if order else self.refinement(trials, exclude=trial.number,
                                                  settings=settings)
        if order:
            free = [item for item in order if item not in running]
            early = None if free else self._rerank_meanwhile(trials, trial.number, settings)
            if free:
                setting, cand = free[0]
            elif early is not None:
                setting, cand, level, phase = early
            else:
                # All candidates the search could need are in training elsewhere: take the
                # first; the objective waits for that result instead of training it twice.
                setting, cand = order[0]
        elif pick is not None:
            setting, cand, level, phase = pick
        else:
            # Finished (another worker completed it): revisit the best; the objective reuses its
            # result without training, and after_trial stops this worker.
            setting = self._best_setting(trials, trial.number, settings)
            results, _ = self.known_results(trials, exclude=trial.number, setting=setting,
                                            settings=settings)
            best = _greedy.replay(results, k_range=self._k_range, c_range=self._c_range,
                                  start=self._start_of(trials, setting, settings)).best
            cand = best or self._start
            study._storage.set_trial_system_attr(trial._trial_id, FINISHED, True)
        study._storage.set_trial_system_attr(trial._trial_id, SETTING, setting)
        study._storage.set_trial_system_attr(trial._trial_id, LEVEL, level)
        study._storage.set_trial_system_attr(trial._trial_id, SAMPLER_PHASE, phase)
        study._storage.set_trial_system_attr(trial._trial_id, CANDIDATE, list(cand))

    def _rerank_meanwhile(self, trials: Sequence[FrozenTrial], exclude: int,
                          settings: list[list[int]] | None) -> Next | None:
        """A re-ranking to train while every candidate the greedy needs is trained elsewhere.

        Rather than wait for another worker's result, a worker re-ranks one of the best
        candidates so far (a level >= 1 training it would run after the greedy anyway). The
        greedy reads only level-0 results, so its path is unchanged. Exploration (level 0) is
        not started early: its "cannot win" bar is the refinement's, not the greedy's.
        """
        pick = self.refinement(trials, exclude=exclude, settings=settings)
        return pick if pick is not None and pick.phase == "rerank" else None

    def _wait_for_earlier_claims(self, study: Study, number: int) -> None:
        # Trials are assigned in trial-number order: a trial picks only once every earlier running
        # trial has its candidate, so two processes never pick the same one. A trial that stays
        # unassigned longer than `claim_timeout` (its worker died before assigning) is ignored.
        deadline = time.monotonic() + self._claim_timeout
        while time.monotonic() < deadline:
            trials = study._storage.get_all_trials(
                study._study_id, deepcopy=False, states=(TrialState.RUNNING,)
            )
            if all(t.number >= number or trial_candidate(t) is not None for t in trials):
                return
            time.sleep(0.02)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _check_single_maximize(study, strict=param_name in _PARAMS)
        if param_name not in _PARAMS + _INPUT_PARAMS:
            return self._independent.sample_independent(
                study, trial, param_name, param_distribution
            )
        cand = trial_candidate(trial)
        if cand is None:  # the trial did not go through before_trial (a storage-level trial)
            self.before_trial(study, trial)
            trial = study._storage.get_trial(trial._trial_id)
            cand = trial_candidate(trial)
        assert cand is not None
        if param_name in _INPUT_PARAMS:
            settings = input_settings(study)
            if not settings:
                raise ValueError("TinyTNASSampler: the study records no input settings; the "
                                 "objective records them when it is given an input space")
            value = settings[trial_setting(trial, settings)][_INPUT_PARAMS.index(param_name)]
            return value
        value = cand[_PARAMS.index(param_name)]
        if not param_distribution._contains(param_distribution.to_internal_repr(value)):
            raise ValueError(
                f"TinyTNASSampler proposes {param_name}={value}, outside the objective's "
                f"{param_distribution}; give the sampler the same k_range/c_range"
            )
        return value

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._independent.after_trial(study, trial, state, values)
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
        # This trial's final state is not stored yet: count it as it is about to be.
        finished_trial = copy.copy(study._storage.get_trial(trial._trial_id))
        finished_trial.state = state
        finished_trial.values = list(values) if values and state == TrialState.COMPLETE else None
        others = [t for t in trials if t.number != trial.number] + [finished_trial]
        settings = input_settings(study)
        order, _ = self._frontier(others, None, settings)
        if not order and self.refinement(others, settings=settings) is None:
            stop_search(study, "search exhausted")


class Next(NamedTuple):
    """The next training: the input setting, the candidate, its fidelity level and phase."""

    setting: int
    candidate: Candidate
    level: int
    phase: str


def input_settings(study: Study) -> list[list[int]] | None:
    """The input settings a study's search records (None: the recorded input only).

    Args:
        study: The study.

    Returns:
        ``[[decimate, window], ...]`` in the order of their indices, or None.
    """
    settings = study._storage.get_study_user_attrs(study._study_id).get(INPUT_SETTINGS)
    return [list(map(int, s)) for s in settings] if settings else None


# -- samplers by the name a study records --------------------------------------------------------

def sampler_name(sampler: BaseSampler) -> str:
    """The name a sampler is recorded under (the CLI's ``--sampler`` names where there is one).

    Args:
        sampler: Any Optuna sampler.

    Returns:
        ``"tinytnas"``, ``"tinytnas-paper"``, ``"tpe"``, ``"random"``, ``"gp"``, ``"nsga2"``,
        or the class name.

    Examples:
        >>> import optuna
        >>> sampler_name(optuna.samplers.TPESampler())
        'tpe'
    """
    if isinstance(sampler, TinyTNASSampler):
        return "tinytnas" if sampler.refine else "tinytnas-paper"
    names = {"TPESampler": "tpe", "RandomSampler": "random", "GPSampler": "gp",
             "NSGAIISampler": "nsga2"}
    return names.get(type(sampler).__name__, type(sampler).__name__)


def make_sampler(name: str, *, seed: int | None = None,
                 refine_trials: int | None = None) -> BaseSampler:
    """The sampler of a recorded name (:func:`sampler_name` inverts it).

    Args:
        name: One of :data:`~tinytnas_optuna._study.SAMPLERS`.
        seed: Its seed.
        refine_trials: For ``"tinytnas"``: at most this many refinement trials.

    Returns:
        A new sampler.

    Raises:
        ValueError: An unknown name (a study made from Python with another sampler), or
            ``"gp"`` without PyTorch.

    Examples:
        >>> type(make_sampler("tpe", seed=0)).__name__
        'TPESampler'
    """
    import optuna

    if name == "gp":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise ValueError("the gp sampler needs PyTorch, which is not installed "
                             "(pip install torch)")
        return optuna.samplers.GPSampler(seed=seed)
    factories = {
        "tinytnas": lambda: TinyTNASSampler(seed=seed, refine_trials=refine_trials),
        "tinytnas-paper": lambda: TinyTNASSampler(seed=seed, refine=False),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }
    if name not in factories:
        raise ValueError(f"sampler {name!r} is not one the command line can build "
                         f"({', '.join(SAMPLERS)}): run this study's workers from Python")
    return factories[name]()
