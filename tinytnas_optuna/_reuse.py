"""A network trained once at a fidelity is never trained again at it, whoever proposes it.

Two candidates can build the same network (short inputs stop the cell loop early), a sampler may
propose a candidate twice, and another process may be training it right now: the trial then
takes the earlier training's value, waiting for it while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from tinytnas_optuna._recovery import heartbeat_enabled, recover_stale_trials
from tinytnas_optuna._trial import (
    EPOCHS,
    FIDELITY,
    FOLDS,
    INPUT,
    INTERRUPTED,
    REUSED_FROM,
    WIDTHS,
    trial_value,
)

#: Seconds between looks at the storage while another trial trains the same network.
POLL_SECONDS = 0.5


def reuse_identical(
    trial: optuna.Trial, widths: list[int], fidelity: str, *, base: str, revisit: bool,
    check_time: Callable[[optuna.Trial], None], input_setting: dict | None = None,
) -> float | None:
    """Reuse the value of an earlier trial of the same training; wait while it is running.

    Args:
        trial: The trial about to train.
        widths: Its network (:attr:`Architecture.widths` plus the dense units).
        fidelity: Its training (:meth:`TinyTNASObjective.fidelity`).
        base: The search's own fidelity (level 0; trials without the attr have it).
        revisit: The sampler found the search finished and revisits its best, whose value may
            come from a pruned training (its best point): never trained again.
        check_time: Called while waiting; raises ``TrialPruned`` when the search's time is up.
        input_setting: Its input (the ``input`` user attr; None: the recorded input): the same
            widths on another input are another network.

    Returns:
        The earlier value (the trial records ``reused_from``), or None: train it.
    """
    storage, study_id = trial.storage, trial.study._study_id
    while True:
        earlier = [
            t for t in storage.get_all_trials(study_id, deepcopy=False)
            if t.number < trial.number and t.user_attrs.get(WIDTHS) == widths
            and t.user_attrs.get(INPUT) == input_setting
            and t.user_attrs.get(FIDELITY, base) == fidelity
        ]
        # A re-ranking cut by the time bound is not that training: it is trained again.
        # One stopped because it could not win stays so (the bar only rises).
        done = [t for t in earlier if trial_value(t) is not None and (
                    t.state == TrialState.COMPLETE
                    or (t.state == TrialState.PRUNED and (revisit or FOLDS in t.user_attrs)))
                and not (fidelity != base and t.user_attrs.get(INTERRUPTED))]
        if done:
            trial.set_user_attr(EPOCHS, 0)
            trial.set_user_attr(REUSED_FROM, done[0].number)
            return trial_value(done[0])
        if not any(t.state == TrialState.RUNNING for t in earlier):
            return None
        check_time(trial)
        time.sleep(POLL_SECONDS)
        # On heartbeat storages a dead worker's trial turns FAIL here, and we train it.
        if heartbeat_enabled(storage):
            recover_stale_trials(trial.study)
