"""What a search found: :func:`summarize`, and every trial as a row (:func:`trial_rows`)."""

from __future__ import annotations

import datetime
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import TrialState

from tinytnas_optuna._budget import FIGURES
from tinytnas_optuna._sampler import TinyTNASSampler, input_settings
from tinytnas_optuna._study import RunRecord, SearchSpec
from tinytnas_optuna._trial import (
    CANDIDATE,
    CandidateRecord,
    best_candidate,
    trial_level,
    trial_outcome,
    trial_record,
    trial_row,
)
from tinytnas_optuna._validation import clearly_above

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class SearchSummary:
    """The search's outcome, as the original TinyTNAS reported it and more.

    Attributes:
        metric: Name of the validation metric.
        best: The best feasible trained candidate, or None when nothing fits: the candidate
            whose trainings have the best mean value (its first trial; ``value`` is the mean,
            ``runs`` how many trainings it averages).
        trained_count: Trainings run (reuses not counted).
        path: Accepted candidates in order (TinyTNAS's search path; for other samplers, each
            improvement of the best in trial order).
        finished: Whether the greedy search has nothing left to evaluate.
        trained: Every trained candidate.
        infeasible: Every candidate rejected for the budget, with its figures.
        smallest: The smallest figures measured (useful when nothing fits).
        other: Trials neither trained nor infeasible (failed, interrupted, reused).
        chance_rate: What always predicting the majority class scores on the validation
            series (None for studies that did not record it).
        validation: ``"holdout"`` or ``"<k>-fold"`` (cross-validation), when recorded.
        above_chance: Whether the best is clearly above ``chance_rate`` (a one-sided binomial
            test on the validated series at 1 % divided by the validation points looked at,
            :func:`chance_level`); None when unknown.
        phases: Per phase (``greedy``, ``refine``, ``rerank``, ``search``): ``trials``,
            ``trained`` and ``seconds`` (wall time of its trials), in order of first trial.
        final: What the study recorded of its final model (``record_final``), or None.
        plateau: Trained candidates (the search's own trainings) none of whose validation
            points was clearly above chance: they never left the majority rate (a plateau),
            so their values do not rank them (None when unknown).
    """

    metric: str
    best: CandidateRecord | None
    trained_count: int
    path: list[tuple[int, int]]
    finished: bool
    trained: list[CandidateRecord] = field(default_factory=list)
    infeasible: list[CandidateRecord] = field(default_factory=list)
    smallest: dict[str, int] = field(default_factory=dict)
    other: list[CandidateRecord] = field(default_factory=list)
    chance_rate: float | None = None
    validation: str | None = None
    above_chance: bool | None = None
    phases: dict[str, dict[str, float]] = field(default_factory=dict)
    final: dict[str, Any] | None = None
    plateau: int | None = None

    @property
    def no_answer(self) -> str | None:
        """One line saying why the search has no answer (no feasible trained candidate), or None.

        Example:
            >>> print(SearchSummary("accuracy", None, 0, [], False).no_answer)
            ... # doctest: +NORMALIZE_WHITESPACE
            the search ended before any candidate finished training:
            give it more time or more trials
        """
        if self.best is not None:
            return None
        if self.finished and self.infeasible:
            smallest = ", ".join(f"{k} {v:,}" for k, v in self.smallest.items())
            return (f"no candidate of the family fits the budget (smallest figures measured: "
                    f"{smallest}): give a larger budget")
        rejected = f" ({len(self.infeasible)} rejected for the budget)" if self.infeasible else ""
        return (f"the search ended before any candidate finished training{rejected}: "
                "give it more time or more trials")

    @property
    def warning(self) -> str | None:
        """One line saying the answer is no better than chance, or None."""
        if self.best is None or self.above_chance is not False:
            return None
        return (f"WARNING: the best candidate's validation {self.metric} "
                f"{self.best.value:.4f} is not clearly above the {self.chance_rate:.4f} of "
                "always predicting the majority class: not a deployable answer. Try more "
                "steps per candidate (--steps), balanced_accuracy as the metric for "
                "imbalanced classes, or more data.")

    @property
    def ranking_note(self) -> str | None:
        """One line when most trained candidates never left chance (a plateau), or None.

        Their values are then all about the majority rate, and which of them the search
        ranks first says little about which network would learn this data best.

        Example:
            >>> s = SearchSummary("accuracy", None, 4, [], False, plateau=3)
            >>> s.ranking_note.split(": ")[1]
            '3 of 4 trained candidates never left the majority rate in their training'
        """
        if not self.plateau or self.trained_count < 3 or 2 * self.plateau < self.trained_count:
            return None
        return (f"NOTE: {self.plateau} of {self.trained_count} trained candidates never left "
                "the majority rate in their training: on this data their ranking says little "
                "(their curves are still flat, a plateau many small networks need more steps "
                "to leave). Give each candidate more steps (--steps) or the search more time.")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict: every attribute, and ``warning``, ``no_answer`` and
        ``ranking_note``.

        Example:
            >>> sorted(SearchSummary("accuracy", None, 0, [], False).to_dict())[-3:]
            ['trained_count', 'validation', 'warning']
        """
        return {**asdict(self), "warning": self.warning, "no_answer": self.no_answer,
                "ranking_note": self.ranking_note}

    def __str__(self) -> str:
        lines = []
        if self.best is None:
            smallest = ", ".join(f"{k} {v:,}" for k, v in self.smallest.items())
            lines.append(f"No feasible candidate found. Smallest figures measured: {smallest}")
        else:
            b = self.best
            runs = f", mean of {b.runs} trainings" if b.runs > 1 else ""
            if b.input is not None:
                runs += f", input 1/{b.input[0]} rate, window {b.input[1]} samples"
            lines.append(
                f"Best: k={b.k}, c={b.c}, {self.metric}={b.value:.4f}{runs}, RAM {b.ram:,} B, "
                f"flash {b.flash:,} B, {b.macs:,} MAC (trial {b.trial})"
            )
        lines.append(
            f"Trained {self.trained_count}, infeasible {len(self.infeasible)}, "
            f"greedy {'finished' if self.finished else 'not finished'}"
        )
        if self.phases:
            lines.append("Time by phase: " + "; ".join(
                f"{name} {p['trials']:.0f} trials ({p['trained']:.0f} trained) "
                f"{p['seconds']:.0f} s"
                for name, p in self.phases.items()))
        if self.final:
            f = self.final
            lines.append(f"Final model: k={f['k']}, c={f['c']}, int8 {f['evaluated_on']} accuracy "
                         f"{f['int8_accuracy']:.4f}, {f['seconds']:.0f} s, in {f['out_dir']}")
        lines.append("Search path: " + " -> ".join(f"({k},{c})" for k, c in self.path))
        lines.append(_table(self.trained + self.infeasible + self.other, self.metric))
        lines += [line for line in (self.warning, self.ranking_note) if line]
        return "\n".join(lines)


def _table(rows: list[CandidateRecord], metric: str) -> str:
    # A latency column only for searches with a latency budget (the figure is measured then).
    latency = any(r.latency_ms is not None for r in rows)
    # An input column (decimation/window) only for searches with an input space.
    inputs = any(r.input is not None for r in rows)
    head = f"{'trial':>5} " + (f"{'input':>9} " if inputs else "") + \
           f"{'k':>5} {'c':>2} {'phase':<7} {'state':<11} {metric[:8]:>8} " \
           f"{'RAM B':>8} {'flash B':>8} {'MAC':>9} " + (f"{'ms':>6} " if latency else "") + \
           f"{'figures':<9} {'epochs':>6} {'sec':>6}"
    out = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: r.trial):
        value = "" if r.value is None else f"{r.value:.4f}"
        ms = "" if r.latency_ms is None else f"{r.latency_ms:.2f}"
        shown = "" if r.input is None else f"/{r.input[0]} {r.input[1]}"
        out.append(
            f"{r.trial:>5} " + (f"{shown:>9} " if inputs else "")
            + f"{r.k:>5} {r.c:>2} {r.phase or '':<7} {r.state:<11} {value:>8} "
            f"{_n(r.ram):>8} {_n(r.flash):>8} {_n(r.macs):>9} " + (f"{ms:>6} " if latency else "")
            + f"{r.figures_method or '':<9} {r.epochs:>6} {r.seconds:>6.1f}"
        )
    return "\n".join(out)


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial as a flat dict (:func:`~tinytnas_optuna._trial.trial_row`), in trial order.

    Args:
        study: The study.

    Returns:
        One row per trial, the value under the study's metric name.
    """
    metric = study.user_attrs.get("metric") or "value"
    return [trial_row(t, metric) for t in study.get_trials(deepcopy=False)]


def study_json(study: optuna.Study) -> dict[str, Any]:
    """Everything ``tinytnas show --json`` prints, the same for a study made from Python.

    Args:
        study: A search's study.

    Returns:
        ``study`` (its name), ``inputs`` (the :class:`~tinytnas_optuna.SearchSpec` and the
        :class:`~tinytnas_optuna._study.RunRecord`), :meth:`SearchSummary.to_dict`'s keys and
        ``trials`` (:func:`trial_rows`).
    """
    spec = SearchSpec.from_attrs(study.user_attrs)
    inputs = {**RunRecord.of(study).to_dict(), **(spec.to_attrs() if spec else {})}
    return {"study": study.study_name, "inputs": inputs, **summarize(study).to_dict(),
            "trials": trial_rows(study)}


def describe_search(study: optuna.Study) -> str:
    """A search in one line: its data, input, budget, training and sampler.

    Args:
        study: A search's study.

    Returns:
        E.g. ``"gunpoint (input 150 x 1, 2 classes), budget RAM 20,480 B, ..., 800 steps per
        candidate, sampler tinytnas"``.
    """
    spec = SearchSpec.from_attrs(study.user_attrs)
    if spec is None:
        return "not a TinyTNAS search"
    shape = " x ".join(map(str, spec.input_shape)) or "?"
    return (f"{RunRecord.of(study).source} (input {shape}, {len(spec.label_map)} classes), "
            f"budget {spec.hardware_budget}, {spec.training} per candidate, "
            f"sampler {spec.sampler}")


def phase_times(trials: list[optuna.trial.FrozenTrial]) -> dict[str, dict[str, float]]:
    """Trials, trainings and wall seconds per phase, in order of each phase's first trial.

    Args:
        trials: The study's trials.

    Returns:
        ``{phase: {"trials", "trained", "seconds"}}`` (empty when no phase was recorded).
    """
    out: dict[str, dict[str, float]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        phase = t.user_attrs.get("phase")
        if phase is None or t.datetime_start is None:
            continue
        p = out.setdefault(phase, {"trials": 0, "trained": 0, "seconds": 0.0})
        p["trials"] += 1
        p["trained"] += trial_outcome(t) == "trained"
        if t.datetime_complete is not None:
            p["seconds"] += (t.datetime_complete - t.datetime_start).total_seconds()
    return out


def record_final(study: optuna.Study, report: Any, out_dir: str | Path) -> None:
    """Record the final model's outcome in the study (``show``, the dashboard and plots read it).

    Args:
        study: The study.
        report: The :class:`~tinytnas_optuna.RetrainReport`.
        out_dir: Where its files were written.
    """
    study.set_user_attr("final", {
        "k": report.k, "c": report.c, "evaluated_on": report.evaluated_on,
        "int8_accuracy": report.int8_accuracy, "float_accuracy": report.float_accuracy,
        "seconds": report.seconds, "out_dir": str(out_dir), "above_chance": report.above_chance,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
    })


def chance_level(trials: list[optuna.trial.FrozenTrial]) -> float:
    """The significance level of the search's chance check, corrected for the looks taken.

    The best is the maximum over every validation point of every trained candidate: on labels
    shuffled at random, some of dozens of looks land well above chance. The 1 % level is
    divided by the number of looks (Bonferroni), so a search on noise is reported as such.

    Args:
        trials: The study's trials.

    Returns:
        ``0.01 / looks``.
    """
    looks = sum(len(t.intermediate_values) for t in trials if t.state == TrialState.COMPLETE)
    return 0.01 / max(1, looks)


def summarize(study: optuna.Study, *, sampler: TinyTNASSampler | None = None) -> SearchSummary:
    """Summarise a study run with :class:`TinyTNASObjective` (any sampler).

    Args:
        study: The study.
        sampler: The TinyTNASSampler used (for its ranges); default: the ranges the study
            recorded.

    Returns:
        The :class:`SearchSummary`.
    """
    trials = study.get_trials(deepcopy=False)
    records = [r for r in map(trial_record, trials) if r.candidate is not None]
    trained = [r for r in records if r.state == "trained"]
    infeasible = [r for r in records if r.state == "infeasible"]
    other = [r for r in records if r.state not in ("trained", "infeasible")]
    # Reused trials repeat an earlier trial's value: the earlier one stands for both.
    scored = [r for r in records if r.scored]
    best = best_candidate(records)

    spec = SearchSpec.from_attrs(study.user_attrs)
    if sampler is None:  # the recorded ranges, not the defaults
        sampler = TinyTNASSampler() if spec is None else TinyTNASSampler(
            k_range=tuple(spec.k_range), c_range=tuple(spec.c_range),  # type: ignore[arg-type]
            refine=spec.sampler != "tinytnas-paper")
    settings = input_settings(study)
    # One greedy per input setting (the first input's is the paper's; the others start at
    # its best): the path shown is the first one's.
    replays = [sampler.replay(study, i) for i in range(len(settings or [None]))]
    if any(CANDIDATE in t.system_attrs for t in trials):
        path = replays[0].accepted
        finished = all(r.finished for r in replays)
        if not sampler.refine:
            # The paper's greedy answers with its replay's best, whatever extra (speculative)
            # trainings other workers added: the one-worker search's answer (per input, the
            # best of them).
            bests = [best_candidate([r for r in records if r.candidate == replay.best
                                     and r.level == 0 and r.input == _input_of(settings, i)])
                     for i, replay in enumerate(replays) if replay.best is not None]
            bests = [b for b in bests if b is not None]
            if bests:
                best = max(bests, key=lambda b: (b.value, -b.trial))
    else:  # another sampler: the path is each improvement of the best, in trial order
        path, top = [], -math.inf
        for r in sorted(scored, key=lambda r: r.trial):
            if r.value is not None and r.value > top:
                path.append((r.k, r.c))
                top = r.value
        finished = False
    measured = [r for r in records if r.ram is not None]
    smallest = {name: min(getattr(r, name) for r in measured) for name in FIGURES} if measured \
        else {}
    metric = (study.metric_names[0] if study.metric_names
              else study.user_attrs.get("metric", "accuracy"))
    chance = study.user_attrs.get("chance_rate")
    n_val = study.user_attrs.get("validation_size")
    above = plateau = None
    if best is not None and chance is not None and n_val:
        above = clearly_above(float(best.value), float(chance), int(n_val),  # type: ignore[arg-type]
                              level=chance_level(trials))
    if chance is not None and n_val:
        plateau = sum(never_left_chance(t, float(chance), int(n_val)) for t in trials
                      if trial_outcome(t) == "trained" and trial_level(t) == 0)
    return SearchSummary(metric, best, len(trained), path, finished, trained, infeasible,
                         smallest, other, chance, study.user_attrs.get("validation"), above,
                         phase_times(trials), study.user_attrs.get("final"), plateau)


def _input_of(settings: list[list[int]] | None, setting: int) -> tuple[int, int] | None:
    """The ``(decimate, window)`` of a setting index (None: the recorded input only)."""
    return None if settings is None else (settings[setting][0], settings[setting][1])


def never_left_chance(trial: optuna.trial.FrozenTrial, chance: float, n_val: int) -> bool:
    """Whether no validation point of a training was clearly above chance (a flat curve).

    Args:
        trial: A trained trial (its reported validation points).
        chance: What predicting the majority class scores.
        n_val: Series validated per point.

    Returns:
        True when every point is within what a majority-class guess could score.

    Example:
        >>> import optuna
        >>> flat = optuna.trial.create_trial(value=0.5, intermediate_values={1: 0.5, 2: 0.5})
        >>> never_left_chance(flat, 0.5, 100)
        True
    """
    points = trial.intermediate_values.values() or [trial.value]
    return not any(v is not None and clearly_above(float(v), chance, n_val) for v in points)
