"""One record of a trial: what every view of a search reads, and the attribute names it stores.

A trial of :class:`~tinytnas_optuna.TinyTNASObjective` keeps its figures, phase and fidelity in
Optuna user attrs and its sampler bookkeeping in system attrs. :func:`trial_record` turns a
``FrozenTrial`` into a :class:`CandidateRecord`; ``summarize``, ``show`` (text, JSON, CSV), the
progress display, the plots, the dashboard note, the sampler and the benchmarks all read that,
so a trial's state and value are computed in one place. The stored names below never change:
studies already on disk must still read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from optuna.trial import FrozenTrial, TrialState

from tinytnas_optuna._budget import LATENCY
from tinytnas_optuna._greedy import INFEASIBLE

# -- user attrs (visible in optuna-dashboard) ----------------------------------------------------
FEASIBLE = "feasible"  #: bool: the figures fit the budget (False: pruned untrained)
FIGURES_METHOD = "figures_method"  #: "measured" (TFLM) or "analytic" (estimate)
FIGURES_SOURCE = "figures_source"  #: how the figures were obtained, in words
EPOCHS = "epochs_trained"  #: passes over the training data (> 0 exactly when trained)
STEPS = "steps"  #: gradient steps run
TRAIN_SECONDS = "train_seconds"  #: wall seconds of the training
STEP_SECONDS = "step_seconds"  #: seconds per training step (after the first validation)
EVAL_SECONDS = "eval_seconds"  #: seconds per validation pass
PHASE = "phase"  #: "greedy", "refine", "rerank" (TinyTNASSampler) or "search"
FIDELITY = "fidelity"  #: the training, e.g. "800 steps, seed 0": equal only for one training
WIDTHS = "widths"  #: the network's layer widths (identifies a network across k, c aliases)
REUSED_FROM = "reused_from"  #: number of the earlier trial whose identical training was reused
INTERRUPTED = "interrupted"  #: the time bound cut this trial (before or during training)
VALIDATION = "validation"  #: "holdout" or "<k>-fold"
ERROR = "error"  #: why the trial failed: a measurement that failed or crashed, in one line
#: Folds trained when the others could not lift it above what the search already had (pruned)
FOLDS = "folds_trained"
#: Under a latency budget, for candidates that fit the other three figures (measured on the
#: emulated core; "latency_ms" itself is :data:`tinytnas_optuna._budget.LATENCY`):
CYCLES = "cycles"  #: estimated cycles of one inference on the board's core
RAM_TARGET = "ram_target"  #: the target's smallest working arena (beside the host's ``ram``)
PARAMS = "params"  #: k, c and the training schedule
ARTIFACT = "tflite_artifact"  #: artifact id of the trained model's int8 .tflite
#: With an input space: the input the model sees, ``{"decimate", "window", "length"}`` (window
#: in samples at the recorded rate, length in samples the model sees)
INPUT = "input"

# -- system attrs (the sampler's and the lifecycle's bookkeeping) -------------------------------
CANDIDATE = "tinytnas:candidate"  #: [k, c] assigned by TinyTNASSampler before the objective runs
LEVEL = "tinytnas:level"  #: fidelity level: 0 the search's training, >= 1 a re-ranking
SAMPLER_PHASE = "tinytnas:phase"  #: the phase TinyTNASSampler assigned
FINISHED = "tinytnas:search_finished"  #: assigned after the search had nothing left
FAIL_REASON = "tinytnas:fail_reason"  #: why the lifecycle failed a trial (its process died)
OWNER = "tinytnas:owner"  #: {"host", "pid", "started"} of the process evaluating the trial
SETTING = "tinytnas:input"  #: index of the input setting assigned (0: the first of the space)

# -- study user attrs ----------------------------------------------------------------------------
#: The search's input settings, ``[[decimate, window], ...]`` in the order of their indices
#: (absent: the recorded input only)
INPUT_SETTINGS = "input_settings"

#: What happened to a candidate, as every view names it.
Outcome = Literal["trained", "infeasible", "reused", "pruned", "interrupted", "failed",
                  "running", "waiting"]

@dataclass(frozen=True)
class CandidateRecord:
    """One trial of the search, as every view shows it.

    Attributes:
        trial: Trial number.
        k: Width (None when no candidate was assigned yet).
        c: Cells (None likewise).
        state: The :data:`Outcome`: ``"trained"``, ``"infeasible"`` (over budget, never
            trained), ``"reused"`` (an earlier identical training), ``"pruned"`` (stopped by a
            learning-curve pruner), ``"interrupted"`` (the time bound came first), ``"failed"``,
            ``"running"`` or ``"waiting"``.
        value: Validation metric: a completed trial's value, a pruned one's best reported
            point; None when nothing was validated.
        ram: Tensor arena bytes (32-bit MCU).
        flash: Flatbuffer bytes.
        macs: MACs per inference.
        figures_method: ``"measured"`` or ``"analytic"`` (estimate).
        epochs: Epochs trained.
        seconds: Training seconds.
        phase: ``"greedy"``, ``"refine"``, ``"rerank"`` (TinyTNASSampler), ``"search"`` (other
            samplers), or None (studies from before phases were recorded).
        fidelity: The training, e.g. ``"800 steps, seed 0"`` (equal only for the same training).
        runs: Trainings averaged in ``value`` (more than 1 only for a best after re-ranking).
        level: Fidelity level (0: the search's training).
        cut: The time bound cut the training before its schedule ended.
        reused_from: The earlier trial whose training this one reused.
        feasible: Whether the figures fit the budget (None: not measured).
        latency_ms: One inference's latency on the budget's board, measured on its emulated
            core (None without a latency budget, or when another figure rejected it first).
        input: ``(decimate, window)`` of the input the network sees, with an input space (the
            window in samples at the recorded rate); None: the recorded input.
    """

    trial: int
    k: int | None
    c: int | None
    state: str
    value: float | None
    ram: int | None
    flash: int | None
    macs: int | None
    figures_method: str | None
    epochs: int
    seconds: float
    phase: str | None = None
    fidelity: str | None = None
    runs: int = 1
    level: int = 0
    cut: bool = False
    reused_from: int | None = None
    feasible: bool | None = None
    latency_ms: float | None = None
    input: tuple[int, int] | None = None

    @property
    def candidate(self) -> tuple[int, int] | None:
        """``(k, c)``, or None when the trial has no candidate yet."""
        return None if self.k is None or self.c is None else (self.k, self.c)

    @property
    def key(self) -> tuple[tuple[int, int] | None, int, int] | None:
        """``(input, k, c)``: one network on one input (``input`` None: the recorded one)."""
        return None if self.candidate is None else (self.input, *self.candidate)

    def describe(self) -> str:
        """``trial 3 greedy k=8 c=3  RAM 9,104 B  flash 17,352 B  38,509 MAC``."""
        phase = f" {self.phase}" if self.phase else ""
        text = f"trial {self.trial}{phase} k={self.k} c={self.c}"
        if self.input is not None:
            text += f" 1/{self.input[0]} rate, window {self.input[1]}"
        if self.ram is not None:
            text += f"  RAM {self.ram:,} B  flash {self.flash:,} B  {self.macs:,} MAC"
        if self.latency_ms is not None:
            text += f"  {self.latency_ms:.2f} ms"
        return text

    @property
    def scored(self) -> bool:
        """Whether this is a training with a validation value (reuses repeat an earlier one)."""
        return (self.state in ("trained", "pruned") and self.value is not None
                and not math.isnan(self.value))


def trial_candidate(trial: FrozenTrial) -> tuple[int, int] | None:
    """The ``(k, c)`` a trial evaluates: its params, else what a sampler assigned it.

    Args:
        trial: Any trial of the study.

    Returns:
        ``(k, c)`` or None when the trial has not been given one yet.
    """
    if "k" in trial.params and "c" in trial.params:
        return int(trial.params["k"]), int(trial.params["c"])
    fixed = trial.system_attrs.get("fixed_params") or {}
    if "k" in fixed and "c" in fixed:
        return int(fixed["k"]), int(fixed["c"])
    assigned = trial.system_attrs.get(CANDIDATE)
    return (int(assigned[0]), int(assigned[1])) if assigned else None


def trial_input(trial: FrozenTrial) -> tuple[int, int] | None:
    """``(decimate, window)`` of a trial's input: its params, else what the objective recorded.

    Args:
        trial: Any trial.

    Returns:
        The pair, or None (a search without an input space).
    """
    for source in (trial.params, trial.system_attrs.get("fixed_params") or {}):
        if "decimate" in source and "window" in source:
            return int(source["decimate"]), int(source["window"])
    recorded = trial.user_attrs.get(INPUT)
    return (int(recorded["decimate"]), int(recorded["window"])) if recorded else None


def trial_setting(trial: FrozenTrial, settings: list[list[int]] | None = None) -> int:
    """The index of a trial's input setting among the search's ``settings`` (0 without one).

    Args:
        trial: Any trial.
        settings: The study's :data:`INPUT_SETTINGS`.

    Returns:
        What the sampler assigned, else the index of the trial's input, else 0.
    """
    if SETTING in trial.system_attrs:
        return int(trial.system_attrs[SETTING])
    pair = trial_input(trial)
    if pair is not None and settings:
        return [tuple(s) for s in settings].index(pair) if list(pair) in settings else 0
    return 0


def trial_level(trial: FrozenTrial) -> int:
    """The fidelity level a trial trains at: 0 unless the refinement assigned a re-ranking.

    Args:
        trial: Any trial of the study.

    Returns:
        The level (0 for the greedy's, the exploration's and other samplers' trials).
    """
    return int(trial.system_attrs.get(LEVEL, 0))


def trial_feasible(trial: FrozenTrial) -> bool | None:
    """Whether the trial's figures fit: the objective's ``feasible``, else Optuna constraints.

    Args:
        trial: Any trial.

    Returns:
        True, False, or None when nothing was measured.
    """
    feasible = trial.user_attrs.get(FEASIBLE)
    if feasible is None and trial.constraints:
        feasible = all(v <= 0 for v in trial.constraints.values())
    return feasible


def trial_value(trial: FrozenTrial) -> float | None:
    """The validation value a trial produced: its value when complete, else its best point.

    A training stopped by a pruner or the time bound counts with its best reported
    validation point, as the paper's "best epoch" rule asks.

    Args:
        trial: Any trial.

    Returns:
        The value, or None when nothing was validated (or it failed).

    Examples:
        >>> import optuna
        >>> t = optuna.trial.create_trial(value=0.75)
        >>> trial_value(t)
        0.75
    """
    if trial.state == TrialState.COMPLETE:
        value = trial.value
        return None if value is None or math.isnan(value) else float(value)
    if trial.state in (TrialState.PRUNED, TrialState.RUNNING):  # running: best point so far
        curve = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        return max(curve) if curve else None
    return None


def trial_outcome(trial: FrozenTrial) -> str:
    """What happened to a candidate; the one classification every view uses.

    Args:
        trial: A trial of :class:`TinyTNASObjective`.

    Returns:
        An :data:`Outcome`.

    Examples:
        >>> import optuna
        >>> trial_outcome(optuna.trial.create_trial(value=0.9, user_attrs={"feasible": True}))
        'trained'
    """
    ua = trial.user_attrs
    if ua.get(FEASIBLE) is False:
        return "infeasible"
    if trial.state == TrialState.COMPLETE:
        return "reused" if REUSED_FROM in ua else "trained"
    if trial.state == TrialState.PRUNED:
        return "pruned" if trial.intermediate_values else "interrupted"
    if trial.state == TrialState.FAIL:
        return "failed"
    return trial.state.name.lower()


def search_result(trial: FrozenTrial) -> float | str | None:
    """What a finished trial tells the search about its candidate.

    Args:
        trial: A trial (any state).

    Returns:
        Its value (:func:`trial_value`), ``"infeasible"``, or None when the candidate was not
        evaluated (failed, interrupted before a validation, still running).
    """
    if trial_feasible(trial) is False:
        return INFEASIBLE
    return trial_value(trial)


def trial_record(trial: FrozenTrial) -> CandidateRecord:
    """The search's record of a trial.

    Args:
        trial: Any trial of the study.

    Returns:
        The :class:`CandidateRecord`.

    Examples:
        >>> import optuna
        >>> t = optuna.trial.create_trial(
        ...     params={"k": 8, "c": 1}, value=0.9,
        ...     distributions={"k": optuna.distributions.IntDistribution(1, 64),
        ...                    "c": optuna.distributions.IntDistribution(0, 5)},
        ...     user_attrs={"feasible": True, "ram": 7152, "phase": "greedy"})
        >>> r = trial_record(t)
        >>> (r.k, r.c, r.state, r.value, r.ram, r.phase)
        (8, 1, 'trained', 0.9, 7152, 'greedy')
    """
    cand = trial_candidate(trial)
    ua = trial.user_attrs
    state = trial_outcome(trial)
    return CandidateRecord(
        trial=trial.number, k=cand[0] if cand else None, c=cand[1] if cand else None,
        state=state, value=trial_value(trial) if state != "infeasible" else None,
        ram=ua.get("ram"), flash=ua.get("flash"), macs=ua.get("macs"),
        figures_method=ua.get(FIGURES_METHOD), epochs=int(ua.get(EPOCHS, 0) or 0),
        seconds=float(ua.get(TRAIN_SECONDS, 0.0) or 0.0), phase=ua.get(PHASE),
        fidelity=ua.get(FIDELITY), level=trial_level(trial),
        cut=bool(ua.get(INTERRUPTED)) and state == "trained",
        reused_from=ua.get(REUSED_FROM), feasible=trial_feasible(trial),
        latency_ms=ua.get(LATENCY), input=trial_input(trial),
    )


def trial_row(trial: FrozenTrial, metric: str = "value") -> dict[str, Any]:
    """A trial as one flat dict (``tinytnas show --json/--csv``).

    Args:
        trial: Any trial.
        metric: Name of the value's column.

    Returns:
        Parameters, outcome, phase, fidelity, value, figures, training and times.
    """
    r = trial_record(trial)
    ua = trial.user_attrs
    return {
        "trial": r.trial, "state": trial.state.name, "outcome": r.state, "k": r.k, "c": r.c,
        "decimate": r.input[0] if r.input else None, "window": r.input[1] if r.input else None,
        "phase": r.phase, "fidelity": r.fidelity, metric: r.value,
        "ram": r.ram, "flash": r.flash, "macs": r.macs, "latency_ms": r.latency_ms,
        "cycles": ua.get(CYCLES), "ram_target": ua.get(RAM_TARGET), "feasible": ua.get(FEASIBLE),
        "figures_method": r.figures_method, "epochs_trained": ua.get(EPOCHS),
        "train_seconds": ua.get(TRAIN_SECONDS), "reused_from": r.reused_from,
        "cut_by_time_bound": r.cut, "tflite_artifact": ua.get(ARTIFACT),
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": (trial.datetime_complete.isoformat()
                              if trial.datetime_complete else None),
    }


def best_candidate(records: list[CandidateRecord]) -> CandidateRecord | None:
    """The candidate whose trainings have the best mean value (first trial wins ties).

    Each distinct training (fidelity) of a candidate counts once: reuses repeat a value. A
    re-ranking training the time bound cut is left out: it would average a half-trained
    network's value with complete ones.

    Args:
        records: Trial records.

    Returns:
        The candidate's first record with ``value`` the mean and ``runs`` the count, or None.
    """
    values: dict[Any, dict[str | None, float]] = {}
    first: dict[Any, CandidateRecord] = {}
    for r in sorted(records, key=lambda r: r.trial):
        cand = r.key
        if cand is None or not r.scored or (r.cut and r.level > 0):
            continue
        values.setdefault(cand, {}).setdefault(r.fidelity, r.value)  # type: ignore[arg-type]
        first.setdefault(cand, r)
    if not values:
        return None
    mean = {cand: sum(v.values()) / len(v) for cand, v in values.items()}
    cand = max(mean, key=lambda c: (mean[c], -first[c].trial))
    return replace(first[cand], value=mean[cand], runs=len(values[cand]))
