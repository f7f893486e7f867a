"""Several processes on one search: the worker processes that train beside the main one.

A search is one process per usable core: the main one (progress, Ctrl-C, the final model) and
``jobs - 1`` workers started here. They share nothing but the study's storage, as the workers of
``tinytnas worker`` do: each runs ``study.optimize`` with a copy of the search's sampler and
objective (pickled into a job folder), so the guarantees the sampler gives across processes hold
(nothing trained twice at one fidelity, nothing infeasible trained, resumable after ``kill -9``
of any of them). The objective's clock is the main process's (``time.monotonic`` is one clock
per machine), so every process stops at the same deadline.

Each process is pinned to its own core and TensorFlow runs one thread per process: a small
network's step gains little from two threads, and two processes each on one core train more
networks than one process on two. Measured on HAR (150 s searches, 2 cores): 29.5 fold
trainings with pinned single-threaded processes, 22.1 with two unpinned default processes,
16.0 with one process (``benchmarks/bench_parallel.py`` has the medians).

After the search a worker waits for one order (a restart of the final training, see
:meth:`WorkerPool.run_orders`) and then exits; it also exits when the main process is gone.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._objective import TinyTNASObjective

# Seconds a worker waits for an order after its search when the search has no time bound.
_IDLE_SECONDS = 600.0
_POLL_SECONDS = 0.1


def usable_cores(sample_seconds: float = 0.3) -> int:
    """Cores this process may run on (its CPU affinity) that are not busy already, at least 1.

    Busy is what the other processes use now: the share of non-idle, non-niced time of each
    allowed core over ``sample_seconds`` (Linux's ``/proc/stat``), summed and rounded. On an
    idle 2-core machine 2; with one other CPU-bound process, 1 (two trainings would only share
    one core).
    The 1-minute load average, used before, still counted a search that had just ended and
    gave the next one a single process on an idle machine; it remains the fallback where
    ``/proc/stat`` is missing.

    Args:
        sample_seconds: How long the cores are watched.

    Examples:
        >>> usable_cores() >= 1
        True
    """
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        allowed = list(range(os.cpu_count() or 1))
    cores = len(allowed)
    try:
        before = _cpu_times(allowed)
        time.sleep(sample_seconds)
        after = _cpu_times(allowed)
        busy = 0.0
        for (idle0, total0), (idle1, total1) in zip(before, after, strict=True):
            if total1 > total0:
                busy += 1.0 - (idle1 - idle0) / (total1 - total0)
        busy_cores = round(busy)
    except (OSError, ValueError):
        try:
            busy_cores = round(os.getloadavg()[0])
        except OSError:
            busy_cores = 0
    return max(1, min(cores, cores - busy_cores))


def _cpu_times(cpus: list[int]) -> list[tuple[int, int]]:
    """``(idle, total)`` jiffies of each of ``cpus`` from ``/proc/stat`` (idle includes
    iowait and niced time)."""
    wanted = {f"cpu{n}" for n in cpus}
    times: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if name in wanted:
                values = [int(v) for v in fields[:8]]
                # Niced work (e.g. a test run under `nice -n 19`) yields to ours: it counts
                # as idle, not busy.
                times[name] = (values[1] + values[3] + values[4], sum(values))
    if len(times) != len(wanted):
        raise ValueError("/proc/stat lacks some of this process's cores")
    return [times[f"cpu{n}"] for n in cpus]


def storage_url(storage: optuna.storages.BaseStorage) -> str:
    """The URL (or journal file path) another process opens the same storage with.

    Args:
        storage: A study's storage.

    Returns:
        An RDB URL, or the path of a journal file.

    Raises:
        ValueError: For an in-memory storage (other processes cannot see it) or another kind.
    """
    import optuna
    from optuna.storages.journal import JournalFileBackend

    backend = getattr(storage, "_backend", storage)  # _CachedStorage wraps an RDBStorage
    if isinstance(backend, optuna.storages.RDBStorage):
        return str(backend.url)
    if isinstance(storage, optuna.storages.JournalStorage):
        journal = getattr(storage, "_backend", None)
        if isinstance(journal, JournalFileBackend):
            return str(journal._file_path)
    raise ValueError("jobs > 1 needs a storage other processes can open (sqlite:///file.db, "
                     "a journal file, PostgreSQL); this study's is in memory")


def pin_to_core(index: int) -> None:
    """Run this process on one of its usable cores (the ``index``-th, cyclically).

    Args:
        index: Which core.
    """
    try:
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[index % len(cores)]})
    except (AttributeError, OSError):  # not Linux, or not allowed: the OS schedules
        pass


def single_thread_tensorflow() -> None:
    """One intra-op and one inter-op thread for TensorFlow in this process, if still possible."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran an operation here: its pools are fixed
        # Measured (benchmarks/results/parallel.md): such a process shares the cores with its
        # workers and a two-process search trains little more than one.
        from optuna.logging import get_logger

        get_logger(__name__).warning(
            "TensorFlow already ran in this process, so it keeps its thread pools and shares "
            "the cores with the search's workers: start a parallel search in a fresh process "
            "for its full speed")


class WorkerPool:
    """The worker processes of one search, started from a pickled job.

    Args:
        study: The search's study (its storage must be reachable by other processes).
        objective: The search's objective.
        workers: How many worker processes (the main process is not counted).
        timeout: Seconds of ``study.optimize`` in each worker (None: the objective's own bound).
        n_trials: At most this many trials in each worker.
    """

    def __init__(self, study: optuna.Study, objective: TinyTNASObjective, workers: int, *,
                 timeout: float | None = None, n_trials: int | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="tinytnas-jobs-"))
        job = {"storage": storage_url(study._storage), "study": study.study_name,
               "sampler": study.sampler, "pruner": study.pruner, "objective": objective,
               "timeout": timeout, "n_trials": n_trials, "parent": os.getpid(),
               "max_trials": len(study.trials) + (n_trials or 0)}
        try:
            (self.folder / "job.pkl").write_bytes(pickle.dumps(job))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise ValueError(f"jobs > 1 needs a picklable sampler and objective: {exc}") from None
        self.processes: list[subprocess.Popen[bytes]] = []
        for index in range(1, workers + 1):
            log = (self.folder / f"worker-{index}.log").open("wb")
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "tinytnas_optuna._parallel", str(self.folder),
                 str(index)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                start_new_session=True,  # Ctrl-C reaches them through the main process only
            ))
            log.close()

    @property
    def alive(self) -> list[subprocess.Popen[bytes]]:
        """The workers still running."""
        return [p for p in self.processes if p.poll() is None]

    def interrupt(self) -> None:
        """Pass a Ctrl-C on: each worker stops its training as the main process does."""
        for process in self.alive:
            process.send_signal(signal.SIGINT)

    def end_search(self) -> None:
        """The main process's search has ended: each worker stops its own now (its training in
        flight keeps its completed steps, as at the time bound)."""
        for process in self.alive:
            process.send_signal(signal.SIGUSR1)

    def wait_search(self, timeout: float) -> None:
        """Wait until every worker has finished its search (or is gone).

        Args:
            timeout: Seconds to wait at most.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p.poll() is not None or (self.folder / f"searched-{i}").exists()
                   for i, p in enumerate(self.processes, start=1)):
                return
            time.sleep(_POLL_SECONDS)

    def send_orders(self, function: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> None:
        """Give worker ``i + 1`` the order ``function(*arguments[i])`` (one order per worker).

        Args:
            function: A module-level function (pickled by name).
            arguments: One tuple of arguments per worker, at most one per live worker.
        """
        for index, args in enumerate(arguments, start=1):
            path = self.folder / f"order-{index}.pkl"
            path.with_suffix(".tmp").write_bytes(pickle.dumps((function, args)))
            path.with_suffix(".tmp").rename(path)  # whole orders only

    def results(self, count: int, timeout: float) -> list[Any | None]:
        """The results of the orders of workers 1..``count``.

        Args:
            count: How many orders were sent.
            timeout: Seconds to wait for them.

        Returns:
            Each result, or None for a worker that died, failed or did not answer in time.
        """
        deadline = time.monotonic() + timeout
        results: list[Any | None] = [None] * count
        pending = set(range(count))
        while pending and time.monotonic() < deadline:
            for i in list(pending):
                result = self.folder / f"result-{i + 1}.pkl"
                if result.exists():
                    status, value = pickle.loads(result.read_bytes())
                    results[i] = value if status == "ok" else None
                    pending.discard(i)
                elif self.processes[i].poll() is not None:
                    pending.discard(i)
            time.sleep(_POLL_SECONDS)
        return results

    def close(self) -> None:
        """Release the workers (no more orders) and stop those still running after 5 s."""
        (self.folder / "quit").touch()
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def networks(self) -> list[Any]:
        """The networks the workers kept (:class:`~tinytnas_optuna.TrainedNetwork`), for the
        final model's fallback."""
        kept = []
        for path in sorted(self.folder.glob("networks-*.pkl")):
            try:
                kept.extend(pickle.loads(path.read_bytes()))
            except (OSError, pickle.UnpicklingError, EOFError):  # a worker killed while writing
                continue
        return kept

    def logs(self) -> str:
        """What the workers printed (for error messages)."""
        return "\n".join(p.read_text(errors="replace")[-2000:]
                         for p in sorted(self.folder.glob("worker-*.log")))


# -- the worker's side ----------------------------------------------------------------------------


def _watch_parent(parent: int) -> None:
    """End this process when the main one is gone (killed with -9, say)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    threading.Thread(target=watch, name="tinytnas-parent-watch", daemon=True).start()


def _serve(folder: Path, index: int) -> None:
    """A worker: search, then run at most one order, then exit."""
    # Until the search runs, a stop from the main process means: do not start it.
    stopped: list[Callable[[], None]] = []

    def on_signal(signum: int, frame: Any) -> None:
        for stop in stopped:
            stop()
        stopped.append(lambda: None)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, on_signal)
    job = pickle.loads((folder / "job.pkl").read_bytes())
    _watch_parent(job["parent"])
    pin_to_core(index)
    single_thread_tensorflow()
    import optuna

    from tinytnas_optuna._storage import open_storage, parse_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = job["objective"]
    storage = open_storage(parse_storage(job["storage"]))
    study = optuna.load_study(study_name=job["study"], storage=storage, sampler=job["sampler"],
                              pruner=job["pruner"])

    def stop() -> None:
        objective.request_stop()
        study.stop()

    if stopped:  # stopped while starting: nothing to search
        (folder / f"searched-{index}").touch()
        return
    stopped.append(stop)
    callbacks = []
    if job["n_trials"] is not None:  # the run's trials, all processes together
        callbacks.append(optuna.study.MaxTrialsCallback(job["max_trials"], states=None))
    study.optimize(objective, timeout=job["timeout"], n_trials=job["n_trials"],
                   callbacks=callbacks, catch=(Exception,))
    kept = folder / f"networks-{index}.pkl"
    kept.with_suffix(".tmp").write_bytes(pickle.dumps(objective.networks.all()))
    kept.with_suffix(".tmp").rename(kept)
    (folder / f"searched-{index}").touch()
    end = objective.end
    deadline = time.monotonic() + _IDLE_SECONDS if end is None else end + 60.0
    order = folder / f"order-{index}.pkl"
    while time.monotonic() < deadline and not (folder / "quit").exists():
        if order.exists():
            function, args = pickle.loads(order.read_bytes())
            try:
                reply = ("ok", function(*args))
            except Exception as exc:  # noqa: BLE001 - the main process decides without it
                reply = ("error", f"{type(exc).__name__}: {exc}")
            result = folder / f"result-{index}.pkl"
            result.with_suffix(".tmp").write_bytes(pickle.dumps(reply))
            result.with_suffix(".tmp").rename(result)
            return
        time.sleep(_POLL_SECONDS)


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), int(sys.argv[2]))
