"""Recover a search whose worker died: its trial is left RUNNING and must become FAIL.

A worker killed mid-training (kill -9, out of memory, a lost machine) leaves its trial RUNNING.
TinyTNASSampler treats a RUNNING candidate as "in training elsewhere" and TinyTNASObjective waits
for an identical network in training, so a RUNNING trial nobody is evaluating stalls the search
once it needs that candidate. Marking it FAIL makes the sampler hand the candidate out again
(a failed training is retried, see ``max_retries``).

What is decided without the user's help (:func:`fail_dead_trials`, run by the sampler and the
objective before every trial):

- Heartbeat storages (``RDBStorage(..., heartbeat_interval=...)``): Optuna's own heartbeat
  (``optuna.storages.fail_stale_trials``, run by ``study.optimize`` before every trial).
- Otherwise, a trial whose owner (recorded by :func:`claim`: host, boot, process id and start
  time) ran on this machine and whose process is gone, or a zombie, or another process with the
  same id: it is provably dead and is failed at once.
- A trial owned by a process on another machine, without heartbeat, cannot be decided: it may
  be training right now. It stays RUNNING; the sampler works around its candidate, and only
  :func:`recover_stale_trials` (``tinytnas search --recover-older-than``) fails it.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from tinytnas_optuna._trial import FAIL_REASON, OWNER

_logger = logging.getLogger("tinytnas_optuna")


@cache
def _machine() -> str:
    """This machine: its host name and, on Linux, its boot id (a host name can be shared)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), or None if unknown.

    Returns ``"zombie"`` for a process that has exited but was not reaped by its parent.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    except OSError:
        return None
    # Fields after the command name (which may hold spaces) in parentheses.
    fields = stat[stat.rindex(")") + 2:].split()
    return "zombie" if fields[0] in ("Z", "X") else fields[19]


def owner_record() -> dict[str, Any]:
    """This process as a trial's owner: machine, process id and start time."""
    return {"machine": _machine(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def claim(storage: optuna.storages.BaseStorage, trial_id: int) -> None:
    """Record this process as the owner of a RUNNING trial, so that its death can be proven.

    Args:
        storage: The study's storage.
        trial_id: The trial's id (``trial._trial_id``).
    """
    storage.set_trial_system_attr(trial_id, OWNER, owner_record())


def owner_gone(owner: dict[str, Any] | None) -> bool:
    """Whether a trial's recorded owner is provably no longer running.

    Args:
        owner: The trial's ``tinytnas:owner`` system attr (None: not recorded).

    Returns:
        True only for an owner on this machine whose process has exited (or is a zombie, or
        whose id now belongs to a process started at another time).

    Examples:
        >>> owner_gone(owner_record())
        False
        >>> owner_gone({"machine": "elsewhere/0", "pid": 1, "started": "0"})
        False
    """
    if not owner or owner.get("machine") != _machine():
        return False
    pid = int(owner["pid"])
    started = _process_start(pid)
    if started in ("gone", "zombie"):
        return True
    if started is not None:
        return owner.get("started") is not None and started != owner["started"]
    try:  # no /proc: only whether the id is in use
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_dead_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials whose owner process is provably gone (see the module's notes).

    Safe with live workers anywhere: a trial is failed only when its owner ran on this machine
    and has exited. Heartbeat storages are left to Optuna's heartbeat.

    Args:
        study: The study.

    Returns:
        The numbers of the trials marked FAIL, ascending.
    """
    storage = study._storage
    if heartbeat_enabled(storage):
        return []
    running = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
    dead = [t for t in running if owner_gone(t.system_attrs.get(OWNER))]
    return _fail(storage, dead, "its process exited while it ran (same machine)")


def _fail(storage: optuna.storages.BaseStorage, trials: list[optuna.trial.FrozenTrial],
          reason: str) -> list[int]:
    failed = []
    for t in trials:
        try:
            storage.set_trial_system_attr(t._trial_id, FAIL_REASON, reason)
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                failed.append(t.number)
                _logger.warning(f"Trial {t.number} {t.params or ''} was RUNNING but {reason}: "
                                "marked FAIL; its candidate will be evaluated again.")
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # it finished meanwhile: its worker was alive after all
    return sorted(failed)


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    """Whether the storage records heartbeats (``optuna.storages`` does not export its check).

    Args:
        storage: A study's storage (``study._storage``; a cached wrapper forwards the question).

    Returns:
        True for an RDB storage opened with ``heartbeat_interval``.
    """
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is not None and interval() is not None


def recover_stale_trials(study: optuna.Study, *, older_than: float | None = None) -> list[int]:
    """Mark RUNNING trials that no live worker is evaluating as FAIL.

    Which RUNNING trials are taken as dead depends on the storage as ``study`` opened it:

    - With heartbeat (``RDBStorage(url, heartbeat_interval=..., grace_period=...)``): those whose
      heartbeat is older than the grace period (:func:`optuna.storages.fail_stale_trials`, the
      storage's ``heartbeat_stale_trial_callback`` included). Live workers elsewhere are safe.
      ``older_than`` is not used. A trial started by a worker that ran *without* heartbeat has no
      heartbeat record and is never stale: open the storage without heartbeat to recover it.
    - Without heartbeat (SQLite, JournalStorage, RDB without ``heartbeat_interval``): every
      RUNNING trial, or with ``older_than`` only those started more than ``older_than`` seconds
      ago. This assumes no other live worker is evaluating them: call it when restarting the
      only worker (resuming a search), or after stopping all workers. With live workers, pass an
      ``older_than`` longer than any training can take (the objective's ``timeout``).

    WAITING trials (enqueued, not started) are left alone. Call it before ``study.optimize``:
    this process's own trials must not be RUNNING at that moment.

    Args:
        study: The study to repair.
        older_than: Without heartbeat: only fail trials started more than this many seconds ago
            (by this machine's clock; ``datetime_start`` is written by the worker's).

    Returns:
        The numbers of the trials marked FAIL, ascending.
    """
    storage = study._storage
    if older_than is not None and older_than < 0:
        raise ValueError(f"older_than must be >= 0 seconds, got {older_than}")
    running = storage.get_all_trials(study._study_id, deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    if heartbeat_enabled(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        failed = [
            t.number for t in running
            if storage.get_trial(t._trial_id).state == TrialState.FAIL
        ]
    else:
        cutoff = None if older_than is None else datetime.now() - timedelta(seconds=older_than)
        stale = [t for t in running if cutoff is None or t.datetime_start is None
                 or t.datetime_start <= cutoff]
        failed = _fail(storage, stale, "had no live worker (recover_stale_trials)")
    return sorted(failed)
