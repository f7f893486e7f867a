"""Running a search: ``study.optimize`` with progress, a clean Ctrl-C, and the dashboard kept current.

``tinytnas search`` and ``tinytnas worker`` call :func:`run_search`; so can a Python script that
wants the same display and the same Ctrl-C behaviour.
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
            figures not saved, for instance).
    """

    summary: SearchSummary
    interrupted: bool
    warnings: list[str] = field(default_factory=list)


def run_search(
    study: optuna.Study, objective: TinyTNASObjective, *, timeout: float | None = None,
    n_trials: int | None = None, progress: Literal["auto", "live", "plain", "none"] = "auto",
) -> SearchRun:
    """Run the trials until the search ends, with progress on stderr and a clean Ctrl-C.

    The first Ctrl-C stops the search as if its time bound were reached
    (:meth:`TinyTNASObjective.request_stop`: the training in flight stops after its batch and
    keeps its completed steps); a second one aborts at once. A trial that raises is recorded as
    failed and the search goes on (``catch=(Exception,)``); a :class:`StudyMismatchError` is not
    an ``Exception`` and stops it.

    Args:
        study: The study (its sampler decides what comes next).
        objective: The search's objective.
        timeout: Seconds for ``study.optimize`` (the objective's own bound ends the search first).
        n_trials: At most this many trials.
        progress: ``"live"`` display, ``"plain"`` lines, ``"none"``, or ``"auto"`` (live on a
            terminal).

    Returns:
        The :class:`SearchRun`.
    """
    from tinytnas_optuna._dashboard import DashboardCallback, publish_to_dashboard
    from tinytnas_optuna._progress import SearchProgress
    from tinytnas_optuna._quiet import import_keras_quietly
    from tinytnas_optuna._results import summarize
    from tinytnas_optuna._study import stop_search

    interrupts = {"count": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts["count"] += 1
        if interrupts["count"] > 1:
            raise KeyboardInterrupt
        print("\nStopping: the training in progress keeps its completed epochs (Ctrl-C "
              "again to abort it)", file=sys.stderr, flush=True)
        objective.request_stop()
        stop_search(study, "interrupted")

    import_keras_quietly()  # before the live display, which its log lines would break
    # Signal handlers belong to the main thread; elsewhere Ctrl-C keeps Python's behaviour.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    display = SearchProgress(study, timeout=timeout, metric=objective.metric,
                             live=None if progress == "auto" else progress == "live",
                             started=objective.clock_start)
    aborted = False
    try:
        if progress == "none":
            study.optimize(objective, timeout=timeout, n_trials=n_trials,
                           callbacks=[DashboardCallback()], catch=(Exception,))
        else:
            with display:
                study.optimize(objective, timeout=timeout, n_trials=n_trials,
                               callbacks=[DashboardCallback()], catch=(Exception,))
    except KeyboardInterrupt:
        aborted = True
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
    warnings = []
    try:
        publish_to_dashboard(study)
    except Exception as exc:  # noqa: BLE001 - the figures never cost the search's result
        warnings.append(f"dashboard figures not saved: {' '.join(str(exc).split())}")
    return SearchRun(summarize(study), bool(interrupts["count"] or aborted), warnings)
