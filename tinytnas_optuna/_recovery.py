"""Recover a search whose worker died: its trial is left RUNNING and must become FAIL.

A worker killed mid-training (kill -9, out of memory, a lost machine) leaves its trial RUNNING.
TinyTNASSampler treats a RUNNING candidate as "in training elsewhere" and TinyTNASObjective waits
for an identical network in training, so a RUNNING trial nobody is evaluating stalls the search
once it needs that candidate. Marking it FAIL makes the sampler hand the candidate out again
(a failed training is retried, see ``max_retries``).
"""

from __future__ import annotations

import logging
import warnings
from datetime import datetime, timedelta

import optuna
from optuna.trial import TrialState

_REASON_ATTR = "tinytnas:fail_reason"
_logger = logging.getLogger("tinytnas_optuna")


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
        failed = []
        for t in running:
            if cutoff is not None and t.datetime_start is not None and t.datetime_start > cutoff:
                continue
            try:
                storage.set_trial_system_attr(
                    t._trial_id, _REASON_ATTR, "RUNNING without a live worker (recover_stale_trials)"
                )
                if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                    failed.append(t.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # it finished meanwhile: its worker was alive after all
    for number in sorted(failed):
        params = next(t for t in running if t.number == number).params
        _logger.warning(
            f"Trial {number} {params or ''} was RUNNING without a live worker: marked FAIL; "
            "its candidate will be evaluated again."
        )
    return sorted(failed)
