"""Running a search: open or join it, ``study.optimize`` on every core with progress and a
clean Ctrl-C, and retrain its best.

- :func:`optimize` (public, ``tinytnas_optuna.optimize``) runs a study with an objective: worker
  processes, the progress display, Ctrl-C, the dashboard's figures. A Python script gets the
  same run as ``tinytnas search`` with it.
- :func:`open_search`, :func:`join_search` and :func:`retrain_study` are what ``tinytnas search``,
  ``worker`` and ``retrain`` call: the settings given, else recorded, else the defaults
  (:class:`~tinytnas_optuna._study.SearchSettings`), the data given or recorded, the objective
  and sampler built from them, the study made or checked. They write nothing before every
  input has been checked.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._data import SearchData
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._results import SearchSummary
    from tinytnas_optuna._retrain import RetrainReport


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
    objective.start_clock()  # every process of the search counts from here
    objective.jobs = jobs  # before the workers get their copy: the final reserve counts them
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
                # Their trials are failed now, not left RUNNING for the next run to find.
                from tinytnas_optuna._recovery import fail_dead_trials

                fail_dead_trials(study)
                warnings.append(f"{len(dead)} worker process(es) ended early (exit "
                                f"{', '.join(map(str, dead))}): their trials are marked FAIL and "
                                "are redone by the next run")
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


# -- what the commands call ---------------------------------------------------------------------


@dataclass
class OpenedSearch:
    """A search ready to run: its study bound to its objective.

    Attributes:
        study: The study (made, resumed or joined), with its sampler.
        objective: The objective, bound to the study.
        data: The data it trains on (``data.test``: the final model's test set, if any).
        resumed: Whether the study existed before.
        timeout: This run's time bound in seconds (a worker's: what is left of the search's).
        recovered: Trials a dead run had left running, failed now so that they are redone.
        out: Where the final model goes (:func:`open_search`), or None.
    """

    study: optuna.Study
    objective: TinyTNASObjective
    data: SearchData
    resumed: bool
    timeout: float | None
    recovered: list[int] = field(default_factory=list)
    out: Path | None = None


def open_search(
    storage: str, study_name: str, *, dataset: str | None = None, train: str | None = None,
    val: str | None = None, test: str | None = None, timeout: float | None = None,
    trials: int | None = None, refine_trials: int | None = None, final_model: bool = True,
    out: str | Path | None = None, artifact_dir: str | Path | None = None,
    recover_older_than: float | None = None, clock_start: float | None = None,
    notify: Callable[[str], object] | None = None, **settings: Any,
) -> OpenedSearch:
    """Make a search, or resume the one the study holds: ``tinytnas search`` up to its trials.

    Settings not given are the study's (resuming), else the defaults; data not given is the
    study's. Every input is checked before the storage is written: a refused search leaves it
    as it was.

    Args:
        storage: The storage URL (or journal file).
        study_name: The study.
        dataset: A built-in dataset, or None.
        train: The training ``.npz``, or None.
        val: The validation ``.npz``, or None.
        test: The final model's test ``.npz`` (built-in datasets: their test split).
        timeout: This run's time bound in seconds, final model included (None: unbounded).
        trials: At most this many trials in this run (with ``timeout``, what makes a sampler
            that never ends by itself stop).
        refine_trials: At most this many refinement trials (default: the sampler's, until the
            time bound or until the refinement's grid is done).
        final_model: Keep time for the final model at the end of ``timeout``.
        out: The final model's folder (default beside a file storage,
            :meth:`~tinytnas_optuna._storage.StorageSpec.default_model`).
        artifact_dir: The artifact folder of a new search (default: the recorded one, else
            beside a file storage).
        recover_older_than: On resume, also fail trials left running by other machines for
            longer than this many seconds.
        clock_start: ``time.monotonic()`` from which ``timeout`` counts (default: now).
        notify: Called with one line before a slow step (building the emulated target), with
            the trials recovered, and once the search is open.
        **settings: The keyword arguments of
            :meth:`~tinytnas_optuna._study.SearchSettings.resolve` (``ram``, ``board``,
            ``steps``, ``metric``, ``sampler``...).

    Returns:
        The :class:`OpenedSearch`.

    Raises:
        ValueError: Bad input: settings, data (``DataError``), a storage URL, a study that is
            not a search's, or a sampler that never ends without a bound.
        StudyMismatchError: Data or settings other than the study's.
        RuntimeError: The storage cannot be opened; ``MeasurementError`` (one) when the
            emulated target of a latency budget cannot be built.
    """
    import optuna

    from tinytnas_optuna._budget import seconds_text
    from tinytnas_optuna._data import load_search_data, load_test, study_data
    from tinytnas_optuna._errors import MeasurementError
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._results import describe_search
    from tinytnas_optuna._sampler import make_sampler
    from tinytnas_optuna._storage import find_study, open_storage, parse_storage
    from tinytnas_optuna._study import RunRecord, SearchSettings, SearchSpec, record_run

    clock_start = time.monotonic() if clock_start is None else clock_start
    spec = parse_storage(storage)
    existing = find_study(spec, study_name)
    recorded = None if existing is None else SearchSpec.from_attrs(existing.user_attrs)
    if existing is not None and recorded is None:
        raise ValueError(f"study {study_name!r} exists in {spec.url} but was not made by a "
                         "TinyTNAS search; use another --study")
    chosen = SearchSettings.resolve(recorded, **settings)
    if not chosen.sampler.startswith("tinytnas") and timeout is None and trials is None:
        raise ValueError(f"--sampler {chosen.sampler} never ends by itself: give --timeout or "
                         "--trials")
    record = RunRecord() if existing is None else RunRecord.of(existing)
    if existing is not None and dataset is None and train is None:
        data = study_data(record, val=val)  # resuming on the recorded data
    else:
        data = load_search_data(dataset, train, val)
    if test is not None:
        features = data.train[0]
        data.test = load_test(test, (*features.shape[1:],) + ((1,) if features.ndim == 2
                                                               else ()))
    sampler = make_sampler(chosen.sampler, seed=chosen.seed, refine_trials=refine_trials)
    out = Path(out) if out is not None else spec.default_model()
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if chosen.budget.latency_ms is not None and notify is not None:
        notify(f"Latency budget: candidates that fit are measured on the emulated core of "
               f"{chosen.budget.board} (TFLM + CMSIS-NN, built once per machine: about 2 min)")
    try:
        objective = TinyTNASObjective.from_settings(
            chosen, data.train, val=data.val, groups=data.groups, timeout=timeout,
            reserve_final=final_model, clock_start=clock_start, class_names=data.class_names,
            artifact_dir=artifact_dir or record.artifact_dir or spec.default_artifacts())
    except MeasurementError as exc:  # only the latency's target is measured here
        raise MeasurementError(f"--latency: {exc}") from None
    study = optuna.create_study(
        storage=existing._storage if existing is not None else open_storage(spec),
        study_name=study_name, direction="maximize", sampler=sampler,
        pruner=optuna.pruners.NopPruner(), load_if_exists=True)
    recovered: list[int] = []
    # The spec is checked before anything else is written: a refused resume changes nothing.
    if objective.bind(study):
        record_run(study, **data.source)
    else:
        recovered = _recover(study, recover_older_than)
    if notify is not None:
        if recovered:
            notify("Recovered trials left running by a run that is gone (marked FAIL, to be "
                   f"redone): {', '.join(map(str, recovered))}")
        done = len(study.get_trials(deepcopy=False))
        notify(f"{'Resuming' if existing else 'Starting'} search '{study_name}' on "
               f"{describe_search(study)}, time bound {seconds_text(timeout)}"
               + (f", {done} trials recorded" if existing else ""))
    return OpenedSearch(study, objective, data, resumed=existing is not None, timeout=timeout,
                        recovered=recovered, out=out)


def _recover(study: optuna.Study, older_than: float | None) -> list[int]:
    """Fail the trials a dead run left RUNNING, so that the resumed search redoes them."""
    from tinytnas_optuna._recovery import fail_dead_trials, recover_stale_trials

    failed = fail_dead_trials(study)
    if older_than is not None:
        failed += recover_stale_trials(study, older_than=older_than)
    return sorted(failed)


def join_search(
    storage: str, study_name: str, *, train: str | None = None, val: str | None = None,
    timeout: float | None = None, notify: Callable[[str], object] | None = None,
) -> OpenedSearch | None:
    """Join a running search as another worker: ``tinytnas worker`` up to its trials.

    Everything comes from the study (made by ``tinytnas search`` or from Python): the spec,
    the class names, the artifact folder, and the search's time bound, less the final model's
    time, which the search's own process spends. The data is the recorded one, or the files
    given (a study made from Python records none), checked against the recorded fingerprints.

    Args:
        storage: The storage URL (or journal file).
        study_name: The study.
        train: The training ``.npz`` (needed for a study made from Python).
        val: Its validation ``.npz``.
        timeout: This worker's bound in seconds (default: what is left of the search's).
        notify: Called with one line: the worker joins, or the search's bound has passed.

    Returns:
        The joined search (``objective.records_bound`` is False: the search's bound stands),
        or None when the search's time bound has passed.

    Raises:
        ValueError: Bad input, a study that is not a search's, a sampler the command line
            cannot build, or a search that never ends and has no bound.
        StudyMismatchError: Data other than the search's.
        RuntimeError: The storage cannot be opened.
    """
    import optuna

    from tinytnas_optuna._budget import seconds_text
    from tinytnas_optuna._data import study_data
    from tinytnas_optuna._objective import TinyTNASObjective
    from tinytnas_optuna._sampler import make_sampler
    from tinytnas_optuna._storage import load_search_study
    from tinytnas_optuna._study import RunRecord, recorded_spec

    study = load_search_study(storage, study_name)
    record = RunRecord.of(study)
    if timeout is None:
        timeout = record.remaining()
        if timeout is not None and timeout <= 0:
            if notify is not None:
                notify(f"The time bound of search '{study_name}' has passed; nothing to do "
                       "(give --timeout to work anyway).")
            return None
    settings = recorded_spec(study).settings
    if timeout is None and not settings.sampler.startswith("tinytnas"):
        raise ValueError(f"search {study_name!r} uses the {settings.sampler} sampler, which "
                         "never ends by itself, and has no time bound: give --timeout")
    data = study_data(record, train=train, val=val)
    sampler = make_sampler(settings.sampler, seed=settings.seed)
    # The search's own process trains the final model: a worker stops its search when that
    # process does (same estimate of the final training's time, from the same storage).
    objective = TinyTNASObjective.from_settings(
        settings, data.train, val=data.val, groups=data.groups, timeout=timeout,
        reserve_final=record.reserve_final, artifact_dir=record.artifact_dir,
        class_names=record.class_names)
    objective.records_bound = False
    study = optuna.load_study(study_name=study_name, storage=study._storage, sampler=sampler,
                              pruner=optuna.pruners.NopPruner())
    objective.bind(study)  # other data than the search's is refused before any trial
    if notify is not None:
        notify(f"Worker joining search '{study_name}' ({len(study.trials)} trials recorded), "
               f"time bound {seconds_text(timeout)}")
    return OpenedSearch(study, objective, data, resumed=True, timeout=timeout)


def retrain_study(
    storage: str, study_name: str, *, out: str | Path, train: str | None = None,
    val: str | None = None, test: str | None = None, steps: int | None = None,
    epochs: int | None = None, timeout: float | None = None,
    notify: Callable[[str], object] | None = None,
) -> RetrainReport:
    """Retrain a search's best and export it: ``tinytnas retrain``.

    The study's data (or the files given, checked against it), its seed, metric, class names
    and artifact folder; with a built-in dataset the report is on its test split unless
    ``test`` is given.

    Args:
        storage: The storage URL (or journal file).
        study_name: The study.
        out: The output folder.
        train: The training ``.npz`` (needed for a study made from Python).
        val: Its validation ``.npz``.
        test: A test ``.npz`` for the report.
        steps: Gradient steps (default: the final schedule's).
        epochs: Instead of ``steps``: passes over the training data.
        timeout: Bound on the whole retraining, export included, in seconds.
        notify: Called with one line when the retraining starts.

    Returns:
        The :class:`~tinytnas_optuna.RetrainReport`.

    Raises:
        ValueError: Bad input (data other than the search's, a test set of another shape, an
            ``out`` that is a file...).
        RuntimeError: The storage cannot be opened, or the study has nothing to retrain.
    """
    from tinytnas_optuna._budget import seconds_text
    from tinytnas_optuna._data import load_test, study_data
    from tinytnas_optuna._quiet import import_keras_quietly
    from tinytnas_optuna._results import summarize
    from tinytnas_optuna._retrain import retrain_best
    from tinytnas_optuna._storage import load_search_study
    from tinytnas_optuna._study import RunRecord, recorded_spec

    study = load_search_study(storage, study_name)
    # Bad input is refused before anything about the study is looked at.
    test_set = None if test is None else load_test(test, recorded_spec(study).input_shape)
    if summarize(study).best is None:
        raise RuntimeError(f"study {study_name!r} has no feasible trained candidate to retrain")
    data = study_data(RunRecord.of(study), train=train, val=val)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    if notify is not None:
        bound = f" within {seconds_text(timeout)}" if timeout else ""
        notify(f"Retraining the best of '{study_name}'{bound}...")
    import_keras_quietly()
    return retrain_best(study, data.train, val=data.val, groups=data.groups,
                        test=test_set if test_set is not None else data.test, steps=steps,
                        epochs=epochs, timeout=timeout, out_dir=out)
