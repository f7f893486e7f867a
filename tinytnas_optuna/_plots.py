"""Plots of a search as PNG files (matplotlib, no display needed).

Two views, drawn from one :class:`PlotData` that the dashboard's plotly figures share:

- accuracy against RAM, flash and MAC, with the budget lines and the Pareto front of each;
- the search path over the ``(k, c)`` grid, rejected (over budget) candidates marked, and the
  phases told apart: the paper's greedy (circles on the visit line), the refinement's
  exploration (squares) and its re-ranking (rings around the re-trained candidates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tinytnas_optuna._budget import FIGURES, LATENCY, HardwareBudget, figure_text

if TYPE_CHECKING:
    import optuna
    from matplotlib.figure import Figure

    from tinytnas_optuna._trial import CandidateRecord

#: Axis titles of the three hardware figures.
FIGURE_LABELS = {"ram": "RAM (tensor arena, bytes)", "flash": "flash (.tflite, bytes)",
                 "macs": "MAC per inference", LATENCY: "latency (ms, emulated core)"}


@dataclass(frozen=True)
class PlotData:
    """What the plots show, read once from a study.

    Attributes:
        study_name: The study's name.
        metric: Name of the validation metric.
        scored: Trained candidates with a metric value (reuses of a network left out).
        infeasible: Candidates rejected for the budget, never trained.
        visits: Every candidate in trial order (the order the search visited them).
        path: Accepted candidates in order (the search path).
        best: The best trained candidate, or None.
        budget: Each constrained figure's limit (``HardwareBudget.limits``: ram, flash, macs,
            and latency_ms under a latency budget), or None when unknown.
        phases: Trials, trainings and seconds per phase (``SearchSummary.phases``).
        final: The final model's record (``SearchSummary.final``), or None.
        warning: The chance verdict's line when the best is not clearly above chance
            (``SearchSummary.warning``), or None.
        ranking_note: The line saying most candidates never left chance
            (``SearchSummary.ranking_note``), or None.
    """

    study_name: str
    metric: str
    scored: list[CandidateRecord]
    infeasible: list[CandidateRecord]
    visits: list[CandidateRecord]
    path: list[tuple[int, int]]
    best: CandidateRecord | None
    budget: dict[str, float] | None
    phases: dict[str, dict[str, float]] | None = None
    final: dict | None = None
    warning: str | None = None
    ranking_note: str | None = None

    @property
    def figures(self) -> tuple[str, ...]:
        """The figures drawn: RAM, flash, MACs, and latency under a latency budget."""
        return tuple(self.budget) if self.budget else FIGURES

    @property
    def explored(self) -> list[CandidateRecord]:
        """Trained candidates of the search's own trainings (re-rankings left out)."""
        return [r for r in self.scored if r.phase != "rerank"]

    @property
    def reranked(self) -> list[CandidateRecord]:
        """The re-ranking trainings."""
        return [r for r in self.scored if r.phase == "rerank"]


def plot_data(
    study: optuna.Study, *, budget: HardwareBudget | Mapping[str, int] | None = None
) -> PlotData:
    """Collect what the plots show from a study run with :class:`TinyTNASObjective`.

    Args:
        study: The study.
        budget: The budget to draw; default the ``budget`` user attr ``tinytnas search`` records.

    Returns:
        The :class:`PlotData`.
    """
    from tinytnas_optuna._results import summarize

    summary = summarize(study)
    if budget is None:
        budget = study.user_attrs.get("budget")
    if budget is not None and not isinstance(budget, HardwareBudget):
        budget = HardwareBudget(**budget)
    records = summary.trained + summary.infeasible + summary.other
    scored = [r for r in records if r.state in ("trained", "pruned", "interrupted")
              and r.value is not None and not math.isnan(r.value) and r.ram is not None]
    return PlotData(
        study_name=study.study_name,
        metric=summary.metric,
        scored=sorted(scored, key=lambda r: r.trial),
        infeasible=sorted(summary.infeasible, key=lambda r: r.trial),
        visits=sorted(records, key=lambda r: r.trial),
        path=list(summary.path),
        best=summary.best,
        budget=budget.limits if budget else None,
        phases=summary.phases,
        final=summary.final,
        warning=summary.warning,
        ranking_note=summary.ranking_note,
    )


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: smaller cost and at least the same score.

    Args:
        points: ``(cost, score)`` pairs; lower cost and higher score are better.

    Returns:
        Indices of the front, by increasing cost.

    Example:
        >>> pareto_front([(1, 0.5), (2, 0.4), (3, 0.9), (3, 0.8)])
        [0, 2]
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    top = -math.inf
    for i in order:
        if points[i][1] > top:
            front.append(i)
            top = points[i][1]
    return front


def plot_accuracy_vs_figures(
    study: optuna.Study | PlotData,
    *,
    budget: HardwareBudget | Mapping[str, int] | None = None,
) -> Figure:
    """Accuracy against RAM, flash and MAC: trained candidates, budget lines, Pareto fronts.

    Candidates rejected for the budget were never trained: they sit on the bottom axis (a red x
    at their figures).

    Args:
        study: The study (or its :class:`PlotData`).
        budget: The budget to draw; default the one recorded in the study.

    Returns:
        A matplotlib ``Figure`` (three panels); save it with ``fig.savefig(path)``.
    """
    from matplotlib.figure import Figure

    data = study if isinstance(study, PlotData) else plot_data(study, budget=budget)
    fig = Figure(figsize=(5 * len(data.figures), 4.6), layout="constrained")
    axes = fig.subplots(1, len(data.figures), sharey=True)
    values = [r.value for r in data.scored if r.value is not None]
    floor = min(values, default=0.0)
    bottom = max(0.0, floor - 0.08)
    for ax, name in zip(axes, data.figures, strict=True):
        scored = [r for r in data.scored if getattr(r, name) is not None]
        xs = [getattr(r, name) for r in scored]
        ys = [r.value for r in scored]
        ax.scatter(xs, ys, s=36, color="tab:blue", zorder=3, label="trained")
        front = pareto_front(list(zip(xs, ys, strict=True)))
        if front:
            ax.step([xs[i] for i in front], [ys[i] for i in front], where="post",
                    color="tab:green", lw=1.5, zorder=2, label="Pareto front")
        for r in scored:
            ax.annotate(f"({r.k},{r.c})", (getattr(r, name), r.value), fontsize=7,
                        xytext=(3, 3), textcoords="offset points", color="0.3")
        rejected = [getattr(r, name) for r in data.infeasible if getattr(r, name) is not None]
        if rejected:
            ax.scatter(rejected, [bottom] * len(rejected), marker="x", color="tab:red",
                       zorder=3, clip_on=False, label="rejected (over budget, not trained)")
        if data.best is not None and getattr(data.best, name) is not None:
            ax.scatter([getattr(data.best, name)], [data.best.value], marker="*", s=220,
                       color="gold", edgecolor="black", zorder=4, label="best")
        if data.budget and name in data.budget:
            ax.axvline(data.budget[name], color="tab:red", ls="--", lw=1.2,
                       label=f"budget {figure_text(data.budget[name])}")
        ax.set_xlabel(FIGURE_LABELS[name])
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel(f"validation {data.metric}")
    axes[0].set_ylim(bottom=bottom - 0.02)
    fig.suptitle(f"{data.study_name}: {data.metric} against hardware figures")
    return fig


def plot_search_path(study: optuna.Study | PlotData) -> Figure:
    """The search over the ``(k, c)`` grid: visit order, accepted path, rejected candidates.

    Args:
        study: The study (or its :class:`PlotData`).

    Returns:
        A matplotlib ``Figure``.
    """
    from matplotlib.figure import Figure

    data = study if isinstance(study, PlotData) else plot_data(study)
    fig = Figure(figsize=(10, 5), layout="constrained")
    ax = fig.subplots()
    visits = [r for r in data.visits if r.phase in (None, "greedy", "search")]
    if visits:
        ax.plot([r.k for r in visits], [r.c for r in visits], color="0.75", lw=0.8, zorder=1,
                label="visit order")
    scored = data.explored
    values = [r.value for r in data.scored]
    norm = (min(values), max(values)) if values else (0.0, 1.0)
    for marker, label, group in (
        ("o", "trained", [r for r in scored if r.phase != "refine"]),
        ("s", "trained (refinement)", [r for r in scored if r.phase == "refine"]),
    ):
        if not group:
            continue
        points = ax.scatter([r.k for r in group], [r.c for r in group],
                            c=[r.value for r in group], cmap="viridis", vmin=norm[0],
                            vmax=norm[1], s=120, zorder=3, marker=marker, edgecolor="black",
                            label=label)
    if scored:
        fig.colorbar(points, ax=ax, label=f"validation {data.metric}")
        for r in scored:
            ax.annotate(f"{r.value:.3f}", (r.k, r.c), fontsize=7, xytext=(0, 9),
                        textcoords="offset points", ha="center")
    if data.reranked:
        ax.scatter([r.k for r in data.reranked], [r.c for r in data.reranked], s=360,
                   facecolors="none", edgecolors="tab:purple", lw=1.5, zorder=2,
                   label="re-ranked (longer training, other seed)")
    if data.infeasible:
        ax.scatter([r.k for r in data.infeasible], [r.c for r in data.infeasible], marker="x",
                   s=90, color="tab:red", zorder=3, label="rejected (over budget)")
    for (k0, c0), (k1, c1) in zip(data.path, data.path[1:]):
        ax.annotate("", xy=(k1, c1), xytext=(k0, c0),
                    arrowprops={"arrowstyle": "->", "color": "tab:orange", "lw": 2}, zorder=2)
    if data.path:
        ax.plot([], [], color="tab:orange", lw=2, label="accepted path")
    if data.best is not None:
        ax.scatter([data.best.k], [data.best.c], marker="*", s=320, color="gold",
                   edgecolor="black", zorder=4, label="best")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (width of the first layer)")
    ax.set_ylabel("c (cells)")
    ax.set_yticks(range(max([4] + [r.c for r in visits]) + 1))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(f"{data.study_name}: search path over (k, c)")
    return fig


def save_plots(
    study: optuna.Study,
    out_dir: str | Path,
    *,
    budget: HardwareBudget | Mapping[str, int] | None = None,
) -> list[Path]:
    """Write ``accuracy_vs_figures.png`` and ``search_path.png`` into ``out_dir``.

    Args:
        study: The study.
        out_dir: Folder to write into (created).
        budget: The budget to draw; default the one recorded in the study.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = plot_data(study, budget=budget)
    written = []
    for name, fig in (("accuracy_vs_figures", plot_accuracy_vs_figures(data)),
                      ("search_path", plot_search_path(data))):
        path = out / f"{name}.png"
        fig.savefig(path, dpi=110)
        written.append(path)
    return written
