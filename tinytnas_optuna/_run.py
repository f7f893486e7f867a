"""Running a search: ``study.optimize`` on every core, with progress and a clean Ctrl-C.

:func:`optimize` is the one call: ``tinytnas search`` and ``tinytnas worker`` use it, and so can
a Python script that wants the same parallel trainings, display and Ctrl-C behaviour.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._results import SearchSummary


@dataclass(frozen=True)
class SearchRun:
    """How a run of the search ended.

    Attributes:
        summary: The study's :class:`~tinytnas_optuna.SearchSummary` after the run.
        interrupted: Ctrl-C stopped it (the best so far is in ``summary``).
        warnings: One line each: what went wrong without stopping the search (dashboard
            figures not saved, a worker process that died, for instance).
        jobs: Processes that trained (this one included).
    """

    summary: SearchSummary
    interrupted: bool
    warnings: list[str] = field(default_factory=list)
    jobs: int = 1


def optimize(
    study: optuna.Study, objective: TinyTNASObjective, *, jobs: int | None = None,
    timeout: float | None = None, n_trials: int | None = None,
    progress: Literal["auto", "live", "plain", "none"] = "none",
) -> SearchRun:
    """Run the search until it ends, training on ``jobs`` processes, with progress on stderr.

    With ``jobs`` > 1, ``jobs - 1`` worker processes join this one on the study
    (:mod:`tinytnas_optuna._parallel`): each on its own core, each with a copy of the study's
    sampler and of ``objective`` (so both must pickle) and the same deadline. They keep the
    sampler's guarantees (nothing trained twice at one fidelity, nothing infeasible trained,
    resumable after ``kill -9`` of any process) and stay for the final model, whose restarts
    they train beside this process (:meth:`TinyTNASObjective.retrain_best`). The study's
    storage must be one other processes can open (an SQLite or journal file, PostgreSQL).

    The first Ctrl-C stops the search as if its time bound were reached
    (:meth:`TinyTNASObjective.request_stop`, passed on to the workers: the training in flight
    stops after its batch and keeps its completed steps); a second one aborts at once. A trial
    that raises is recorded as failed and the search goes on (``catch=(Exception,)``); a
    :class:`StudyMismatchError` is not an ``Exception`` and stops it.

    Args:
        study: The study (its sampler decides what comes next).
        objective: The search's objective.
        jobs: Processes that train (default: the cores not already busy,
            :func:`~tinytnas_optuna._parallel.usable_cores`; 1: this process only).
        timeout: Seconds for ``study.optimize`` (the objective's own bound ends the search first).
        n_trials: At most this many trials in each process.
        progress: ``"live"`` display, ``"plain"`` lines, ``"none"``, or ``"auto"`` (live on a
            terminal).

    Returns:
        The :class:`SearchRun`.

    Raises:
        ValueError: ``jobs`` > 1 with an in-memory storage, or a sampler or objective that does
            not pickle.
    """
    from tinytnas_optuna._dashboard import DashboardCallback, publish_to_dashboard
    from tinytnas_optuna._parallel import (
        WorkerPool,
        pin_to_core,
        single_thread_tensorflow,
        usable_cores,
    )
    from tinytnas_optuna._progress import SearchProgress
    from tinytnas_optuna._quiet import import_keras_quietly
    from tinytnas_optuna._results import summarize
    from tinytnas_optuna._study import stop_search

    jobs = usable_cores() if jobs is None else int(jobs)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    interrupts = {"count": 0}
    pool = None

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts["count"] += 1
        if interrupts["count"] > 1:
            raise KeyboardInterrupt
        print("\nStopping: the training in progress keeps its completed epochs (Ctrl-C "
              "again to abort it)", file=sys.stderr, flush=True)
        objective.request_stop()
        stop_search(study, "interrupted")
        if pool is not None:
            pool.interrupt()

    from optuna.study import MaxTrialsCallback

    import_keras_quietly()  # before the live display, which its log lines would break
    first_trial = len(study._storage.get_all_trials(study._study_id, deepcopy=False))
    if jobs > 1:
        objective.close_pool()  # a pool left by an earlier run of this objective
        pool = WorkerPool(study, objective, jobs - 1, timeout=timeout, n_trials=n_trials)
        objective.pool = pool
        pin_to_core(0)
        single_thread_tensorflow()
    # Signal handlers belong to the main thread; elsewhere Ctrl-C keeps Python's behaviour.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    display = SearchProgress(study, timeout=timeout, metric=objective.metric,
                             live=None if progress == "auto" else progress == "live",
                             started=objective.clock_start)
    aborted = False
    warnings = []
    callbacks: list[Any] = [DashboardCallback()]
    if n_trials is not None:  # the run's trials, all processes together
        callbacks.append(MaxTrialsCallback(first_trial + n_trials, states=None))
    try:
        if progress == "none":
            study.optimize(objective, timeout=timeout, n_trials=n_trials, callbacks=callbacks,
                           catch=(Exception,))
        else:
            with display:
                study.optimize(objective, timeout=timeout, n_trials=n_trials,
                               callbacks=callbacks, catch=(Exception,))
        if pool is not None:
            # The search has ended here (its bound, nothing left, its trials): there too.
            pool.end_search()
            pool.wait_search(60.0)
            for network in pool.networks():
                objective.networks.add(network)
            dead = [p.returncode for p in pool.processes if p.poll() not in (None, 0)]
            if dead:
                warnings.append(f"{len(dead)} worker process(es) ended early (exit "
                                f"{', '.join(map(str, dead))}): their trials are redone")
    except KeyboardInterrupt:
        aborted = True
        objective.close_pool()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    if not objective.reserve_final:
        objective.close_pool()  # no final model: the workers are done
    try:
        publish_to_dashboard(study)
    except Exception as exc:  # noqa: BLE001 - the figures never cost the search's result
        warnings.append(f"dashboard figures not saved: {' '.join(str(exc).split())}")
    return SearchRun(summarize(study), bool(interrupts["count"] or aborted), warnings, jobs)
