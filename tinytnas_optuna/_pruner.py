"""HardwareAwarePruner: prune what cannot fit, defer the rest to a learning-curve pruner."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna.pruners import BasePruner, NopPruner

from tinytnas_optuna._budget import HardwareBudget

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial


class HardwareAwarePruner(BasePruner):
    """Prune a trial whose recorded figures exceed the budget; otherwise ask ``base``.

    The figures are the trial's user attrs ``ram``, ``flash`` and ``macs`` (as
    :class:`TinyTNASObjective` records them before training). A trial without them is judged by
    ``base`` alone. :class:`TinyTNASObjective` itself rejects an infeasible candidate before its
    first report, so this pruner matters for objectives of your own that record the figures and
    then report epochs; with :class:`TinyTNASObjective` it behaves as ``base``.

    Args:
        budget: The hardware budget.
        base: A learning-curve pruner (e.g. ``MedianPruner()``); default never prunes.

    Example:
        >>> import optuna
        >>> pruner = HardwareAwarePruner(HardwareBudget(ram="20KB", flash="64KB", macs="60K"),
        ...                              base=optuna.pruners.MedianPruner())
    """

    def __init__(self, budget: HardwareBudget, *, base: BasePruner | None = None) -> None:
        self.budget = budget
        self.base = base or NopPruner()

    def over_budget(self, trial: FrozenTrial) -> bool:
        """Whether any recorded figure exceeds its budget.

        Args:
            trial: The trial.

        Returns:
            True if ``ram``, ``flash``, ``macs`` (or ``latency_ms``) is recorded and over
            budget.
        """
        return any(
            trial.user_attrs.get(name) is not None and trial.user_attrs[name] > limit
            for name, limit in self.budget.limits.items()
        )

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        """Optuna's pruner hook.

        Args:
            study: The study.
            trial: The running trial.

        Returns:
            True when the trial is over budget or ``base`` prunes it.
        """
        if self.over_budget(trial):
            return True
        return self.base.prune(study, trial)
