"""The hardware gate: a candidate's figures before any training, and whether they fit.

Exact analytic MACs first (a candidate over the MACs is refused without converting anything),
then RAM, flash and MACs measured on its int8 model in TFLite Micro, then, under a latency
budget, the board's emulated core. The figures go into the trial (user attrs and Optuna
constraints) whether the candidate fits or not: the sampler, the dashboard and ``show`` read
them there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinytnas_optuna._boards import check_board
from tinytnas_optuna._budget import FIGURES, LATENCY, HardwareBudget
from tinytnas_optuna._space import Architecture, architecture
from tinytnas_optuna._trial import CYCLES, FEASIBLE, FIGURES_METHOD, FIGURES_SOURCE, RAM_TARGET

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._hardware import HardwareProfile


def measure(arch: Architecture, budget: HardwareBudget, *, int8_io: bool) -> HardwareProfile:
    """Figures of a candidate: exact analytic MACs first, measured in TFLM if they fit.

    Args:
        arch: The candidate's architecture.
        budget: The search's budget.
        int8_io: Measure the model with int8 input/output.

    Returns:
        The analytic estimate when the MACs alone exceed the budget (no conversion needed to
        reject it), else the measured profile; under a latency budget, a profile that fits
        the other three figures also has the target's ``cycles`` and ``ram_target``.

    Raises:
        MeasurementError: When a measurement fails (the trial fails: never a figure).
    """
    from tinytnas_optuna._hardware import estimate_profile, profile_architecture

    estimate = estimate_profile(arch, int8_io=int8_io)
    if estimate.macs > budget.macs:
        return estimate
    host = profile_architecture(arch, method="measured", int8_io=int8_io)
    if budget.latency_ms is None or budget.over(host):
        return host
    # Only a network that fits the other three figures is run on the target (about 1 s).
    core = check_board(str(budget.board)).core
    return host.with_target(profile_architecture(arch, method="target", target=core,
                                                 cycles=True, int8_io=int8_io))


def record_figures(trial: optuna.Trial, profile: HardwareProfile, budget: HardwareBudget) -> bool:
    """Record a candidate's figures in its trial: user attrs and Optuna constraints.

    Args:
        trial: The candidate's trial.
        profile: Its figures (:func:`measure`).
        budget: The search's budget.

    Returns:
        Whether the candidate fits the budget.
    """
    feasible = budget.fits(profile)
    for name in FIGURES:
        trial.set_user_attr(name, int(getattr(profile, name)))
    trial.set_user_attr(FEASIBLE, feasible)
    trial.set_user_attr(FIGURES_METHOD, profile.method)
    trial.set_user_attr(FIGURES_SOURCE, profile.source)
    if budget.latency_ms is not None:
        latency = budget.latency_of(profile)
        trial.set_user_attr(LATENCY, None if latency is None else round(latency, 3))
        trial.set_user_attr(CYCLES, profile.cycles)
        trial.set_user_attr(RAM_TARGET, profile.ram_target)
    excess = budget.excess(profile)
    for name, value in excess.items():
        trial.set_constraint(name, value)
    # optuna-dashboard 0.21 reads only the legacy list attribute to mark infeasible trials.
    trial.storage.set_trial_system_attr(trial._trial_id, "constraints", list(excess.values()))
    return feasible


def check_reachable(
    budget: HardwareBudget, *, k_range: tuple[int, int], c_range: tuple[int, int],
    input_shape: tuple[int, int], num_classes: int, int8_io: bool,
) -> None:
    """Refuse a budget that no candidate of the ranges can fit, before any trial.

    The smallest networks have the smallest ``k`` (every figure grows with the width); each
    ``c`` is checked at that ``k`` with the analytic estimate (MACs exact, RAM and flash within
    1% of the measured figures, so a 2% margin avoids refusing a borderline fit).

    Args:
        budget: The budget.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        input_shape: ``(L, C)`` of the data.
        num_classes: Number of classes.
        int8_io: Whether the model has int8 input/output.

    Raises:
        ValueError: Naming the smallest figures found.

    Example:
        >>> check_reachable(HardwareBudget(ram="1KB", flash="64KB", macs="60K"), k_range=(2, 64),
        ...                 c_range=(0, 4), input_shape=(128, 9), num_classes=6,
        ...                 int8_io=False)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: no architecture fits the budget (...): the smallest candidates ...
    """
    from tinytnas_optuna._hardware import estimate_profile

    k = k_range[0]
    profiles = {c: estimate_profile(architecture(k, c, input_shape, num_classes), int8_io=int8_io)
                for c in range(c_range[0], c_range[1] + 1)}
    slack = {"ram": 1.02, "flash": 1.02, "macs": 1.0}
    if any(all(getattr(p, n) <= getattr(budget, n) * slack[n] for n in FIGURES)
           for p in profiles.values()):
        return
    smallest = ", ".join(
        f"{n} {min(getattr(p, n) for p in profiles.values()):,}" for n in FIGURES
    )
    raise ValueError(
        f"no architecture fits the budget ({budget}): the smallest candidates "
        f"(k={k}, c {c_range[0]}..{c_range[1]}) need at least {smallest} "
        "(analytic estimate)"
    )
