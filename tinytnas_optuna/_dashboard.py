"""What optuna-dashboard shows of a search: models as artifacts, notes, metric names, figures.

- :class:`TFLiteArtifactUploader` is a :class:`TinyTNASObjective` ``on_trained`` hook: it converts
  each trained model to int8 TFLite and attaches the ``.tflite`` to its trial as an artifact.
- :func:`publish_to_dashboard` names the metric, writes the summary as a note on the study and on
  the best trial, and saves the plotly figures (accuracy against RAM/flash/MAC, search path).
- :class:`DashboardCallback` keeps the notes current during ``study.optimize``.
- :func:`search_artifact_folders` finds the artifact folder each search of a storage recorded
  (:class:`~tinytnas_optuna._study.RunRecord`, from Python or the command line alike);
  :func:`prepare_dashboard` publishes every search and makes their folders;
  :func:`make_dashboard_server` serves optuna-dashboard on a storage with those folders.

The per-trial figures (k, c, RAM, flash, MAC, feasible) are the trial's params and user attrs,
and the legacy ``"constraints"`` system attr the objective writes marks infeasible trials.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from tinytnas_optuna._budget import LATENCY, HardwareBudget, figure_text
from tinytnas_optuna._plots import FIGURE_LABELS, PlotData, pareto_front, plot_data
from tinytnas_optuna._study import RunRecord, SearchSpec, set_metric_name
from tinytnas_optuna._trial import ARTIFACT

if TYPE_CHECKING:
    from typing import BinaryIO
    from wsgiref.simple_server import WSGIServer

    import plotly.graph_objects as go
    from optuna.artifacts._protocol import ArtifactStore

    from tinytnas_optuna._validation import PreparedData

#: Ids of the plotly figures saved to the study (overwritten on each publish).
GRAPH_IDS = ("tinytnas-accuracy-vs-figures", "tinytnas-search-path")
_NOTED_BEST_ATTR = "tinytnas:noted_best_trial"
_log = optuna.logging.get_logger(__name__)


class TFLiteArtifactUploader:
    """Attach each trained candidate's int8 ``.tflite`` to its trial (an ``on_trained`` hook).

    The model is the one the search trained (weights of its last epoch), converted as the
    hardware figures are (post-training int8 quantisation, representative data from the
    training set). A failed conversion or upload is logged and never fails the trial.

    Args:
        artifact_store: Where the files go, e.g.
            ``optuna.artifacts.FileSystemArtifactStore("artifacts")``.
        int8_io: Convert with int8 input/output instead of float32.
        samples: Representative samples for the quantisation.

    Example:
        >>> from optuna.artifacts import FileSystemArtifactStore
        >>> uploader = TFLiteArtifactUploader(FileSystemArtifactStore("/tmp"))
        >>> # TinyTNASObjective(train, budget=budget, on_trained=uploader)
    """

    def __init__(
        self, artifact_store: ArtifactStore, *, int8_io: bool = False, samples: int = 100
    ) -> None:
        self.artifact_store = artifact_store
        self.int8_io = int8_io
        self.samples = samples

    def __call__(self, trial: optuna.Trial, model: Any, data: PreparedData) -> None:
        from tinytnas_optuna._hardware import convert_and_profile

        try:
            step = max(1, len(data.x_train) // self.samples)
            model_bytes, _ = convert_and_profile(model, data.x_train[::step][: self.samples],
                                                 int8_io=self.int8_io)
            k, c = trial.params.get("k"), trial.params.get("c")
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"trial{trial.number}_k{k}_c{c}_int8.tflite"
                path.write_bytes(model_bytes)
                artifact_id = optuna.artifacts.upload_artifact(
                    artifact_store=self.artifact_store, file_path=str(path),
                    study_or_trial=trial, mimetype="application/octet-stream",
                )
            trial.set_user_attr(ARTIFACT, artifact_id)
        except Exception as exc:  # noqa: BLE001 - an artifact never costs a trial
            _log.warning(f"trial {trial.number}: .tflite artifact not stored: {exc}")


def publish_to_dashboard(
    study: optuna.Study,
    *,
    budget: HardwareBudget | Mapping[str, int] | None = None,
    figures: bool = True,
) -> None:
    """Name the metric, note the summary on the study and its best trial, save the figures.

    Args:
        study: A study run with :class:`TinyTNASObjective`.
        budget: The budget to draw; default the one ``tinytnas search`` recorded.
        figures: Also save the plotly figures (the slower part).
    """
    from optuna_dashboard import save_note, save_plotly_graph_object

    data = plot_data(study, budget=budget)
    set_metric_name(study, data.metric)
    note = summary_note(study, data)
    save_note(study, note)
    _note_best_trial(study, data, note)
    if figures:
        for graph_id, fig in zip(GRAPH_IDS, plotly_figures(data), strict=True):
            save_plotly_graph_object(study, fig, graph_object_id=graph_id)


def _note_best_trial(study: optuna.Study, data: PlotData, note: str) -> None:
    from optuna_dashboard import save_note

    if data.best is None:
        return
    storage, study_id = study._storage, study._study_id
    best_id = storage.get_trial_id_from_study_id_trial_number(study_id, data.best.trial)
    previous = storage.get_study_system_attrs(study_id).get(_NOTED_BEST_ATTR)
    if previous is not None and previous != data.best.trial:
        old_id = storage.get_trial_id_from_study_id_trial_number(study_id, previous)
        save_note(optuna.Trial(study, old_id),
                  f"Was the best so far; superseded by trial {data.best.trial}.")
    save_note(optuna.Trial(study, best_id), note)
    storage.set_study_system_attr(study_id, _NOTED_BEST_ATTR, data.best.trial)


def summary_note(study: optuna.Study, data: PlotData | None = None) -> str:
    """The search's summary as Markdown (the dashboard's note).

    Args:
        study: The study.
        data: Its :class:`PlotData`, if already collected.

    Returns:
        Markdown text.
    """
    data = data or plot_data(study)
    lines = [f"## TinyTNAS search `{study.study_name}`", ""]
    if data.best is None:
        lines.append("No feasible candidate has been trained yet.")
    else:
        b = data.best
        runs = f" (mean of {b.runs} trainings)" if b.runs > 1 else ""
        lines += [
            (f"**Best: k={b.k}, c={b.c}** (trial {b.trial}), validation {data.metric} "
             f"**{b.value:.4f}**{runs}"), "",
            "| figure | used | budget |", "|---|---:|---:|",
        ]
        for name in data.figures:
            limit = figure_text(data.budget[name] if data.budget else None)
            lines.append(f"| {FIGURE_LABELS[name]} | {figure_text(getattr(b, name))} "
                         f"| {limit} |")
        # The chance verdict and the plateau note of summarize, in its words.
        lines += [f"\n**{line}**" for line in (data.warning, data.ranking_note) if line]
    # The same counts as `summarize` and the progress display (one classification: trial_state).
    trained = sum(r.state == "trained" for r in data.scored)
    pruned = sum(r.state == "pruned" for r in data.scored)
    lines += [
        "",
        f"Trained {trained}" + (f", stopped early by the pruner {pruned}" if pruned else "")
        + f", rejected for the budget {len(data.infeasible)}, visited {len(data.visits)}.",
        "",
        "Search path: " + (" → ".join(f"({k},{c})" for k, c in data.path) or "(none yet)"),
    ]
    if data.phases:
        lines += ["", "| phase | trials | trained | seconds |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {p['trials']:.0f} | {p['trained']:.0f} | {p['seconds']:.0f} |"
                  for name, p in data.phases.items()]
    if data.final:
        f = data.final
        lines += ["", (f"**Final model** (k={f['k']}, c={f['c']}): int8 {f['evaluated_on']} "
                       f"accuracy in TFLite Micro {f['int8_accuracy']:.4f} (float "
                       f"{f['float_accuracy']:.4f}), trained in {f['seconds']:.0f} s, files in "
                       f"`{f['out_dir']}`.")]
    spec = SearchSpec.from_attrs(study.user_attrs)
    if spec is not None:
        lines += ["", (f"Data: {RunRecord.of(study).source}; {spec.training} per candidate "
                       f"({study.user_attrs.get('validation', 'holdout')} validation); "
                       f"sampler {spec.sampler}; seed {spec.seed}.")]
    return "\n".join(lines)


def plotly_figures(study: optuna.Study | PlotData) -> list[go.Figure]:
    """The two figures of :mod:`tinytnas_optuna._plots`, as plotly figures for the dashboard.

    Args:
        study: The study (or its :class:`PlotData`).

    Returns:
        ``[accuracy against RAM/flash/MAC, search path over (k, c)]``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    data = study if isinstance(study, PlotData) else plot_data(study)
    titles = {"ram": "RAM (B)", "flash": "flash (B)", "macs": "MAC", LATENCY: "latency (ms)"}
    acc = make_subplots(rows=1, cols=len(data.figures), shared_yaxes=True,
                        horizontal_spacing=0.04,
                        subplot_titles=[titles[name] for name in data.figures])
    values = [r.value for r in data.scored if r.value is not None]
    bottom = max(0.0, min(values, default=0.0) - 0.08)
    for col, name in enumerate(data.figures, start=1):
        first = col == 1
        scored = [r for r in data.scored if getattr(r, name) is not None]
        xs = [getattr(r, name) for r in scored]
        ys = [r.value for r in scored]
        text = [f"trial {r.trial}: k={r.k}, c={r.c}" for r in scored]
        acc.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="trained", text=text,
                                 marker={"color": "#1f77b4", "size": 9}, showlegend=first,
                                 legendgroup="trained"), row=1, col=col)
        front = pareto_front(list(zip(xs, ys, strict=True)))
        acc.add_trace(go.Scatter(x=[xs[i] for i in front], y=[ys[i] for i in front],
                                 mode="lines", line={"shape": "hv", "color": "#2ca02c"},
                                 name="Pareto front", showlegend=first, legendgroup="front"),
                      row=1, col=col)
        rej = [r for r in data.infeasible if getattr(r, name) is not None]
        acc.add_trace(go.Scatter(
            x=[getattr(r, name) for r in rej], y=[bottom] * len(rej), mode="markers",
            text=[f"trial {r.trial}: k={r.k}, c={r.c} (not trained)" for r in rej],
            marker={"symbol": "x", "color": "#d62728", "size": 9},
            name="rejected (over budget)", showlegend=first, legendgroup="rejected",
        ), row=1, col=col)
        if data.budget and name in data.budget:
            acc.add_vline(x=data.budget[name], line_dash="dash", line_color="#d62728",
                          row=1, col=col)
        acc.update_xaxes(type="log", row=1, col=col)
    acc.update_yaxes(title_text=f"validation {data.metric}", row=1, col=1)
    acc.update_layout(title=f"{data.metric} against hardware figures (dashed: budget)",
                      legend={"orientation": "h", "y": -0.2})

    path = go.Figure()
    greedy = [r for r in data.visits if r.phase in (None, "greedy", "search")]
    path.add_trace(go.Scatter(x=[r.k for r in greedy], y=[r.c for r in greedy],
                              mode="lines", line={"color": "#bbbbbb", "width": 1},
                              name="visit order"))
    for symbol, name, group in (
        ("circle", "trained", [r for r in data.explored if r.phase != "refine"]),
        ("square", "trained (refinement)", [r for r in data.explored if r.phase == "refine"]),
    ):
        path.add_trace(go.Scatter(
            x=[r.k for r in group], y=[r.c for r in group], mode="markers+text",
            text=[f"{r.value:.3f}" for r in group], textposition="top center",
            marker={"size": 14, "color": [r.value for r in group], "colorscale": "Viridis",
                    "symbol": symbol, "showscale": symbol == "circle" and bool(data.scored),
                    "line": {"width": 1, "color": "black"},
                    "colorbar": {"title": {"text": data.metric}}},
            name=name,
        ))
    path.add_trace(go.Scatter(
        x=[r.k for r in data.reranked], y=[r.c for r in data.reranked], mode="markers",
        text=[f"trial {r.trial}: {r.fidelity}: {r.value:.3f}" for r in data.reranked],
        marker={"size": 24, "symbol": "circle-open", "color": "#9467bd",
                "line": {"width": 2}},
        name="re-ranked (longer training, other seed)"))
    path.add_trace(go.Scatter(x=[r.k for r in data.infeasible],
                              y=[r.c for r in data.infeasible], mode="markers",
                              marker={"symbol": "x", "size": 12, "color": "#d62728"},
                              name="rejected (over budget)"))
    path.add_trace(go.Scatter(x=[k for k, _ in data.path], y=[c for _, c in data.path],
                              mode="lines+markers", line={"color": "#ff7f0e", "width": 3},
                              marker={"symbol": "arrow", "angleref": "previous", "size": 12},
                              name="accepted path"))
    path.update_xaxes(type="log", title_text="k (width of the first layer)")
    path.update_yaxes(title_text="c (cells)", dtick=1)
    path.update_layout(title="search path over (k, c)", legend={"orientation": "h", "y": -0.2})
    return [acc, path]


class DashboardCallback:
    """An ``optimize`` callback that keeps the dashboard's notes and figures current.

    Notes are rewritten when a new best appears; figures at most every ``interval`` seconds
    (and on the first trial).

    Args:
        budget: The budget to draw; default the one recorded in the study.
        interval: Seconds between figure updates.
    """

    def __init__(
        self, *, budget: HardwareBudget | Mapping[str, int] | None = None, interval: float = 30.0
    ) -> None:
        self.budget = budget
        self.interval = interval
        self._last_figures = -math.inf
        self._best: float | None = None

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = time.monotonic()
        improved = (trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None
                    and (self._best is None or trial.value > self._best))
        figures = now - self._last_figures >= self.interval
        if not (improved or figures):
            return
        if improved:
            self._best = trial.value
        try:
            publish_to_dashboard(study, budget=self.budget, figures=figures)
        except Exception as exc:  # noqa: BLE001 - the dashboard view never stops the search
            _log.warning(f"dashboard notes/figures not updated: {exc}")
            return
        if figures:
            self._last_figures = now


def search_artifact_folders(
    storage: str | optuna.storages.BaseStorage, *, first: str | Path | None = None,
) -> list[Path]:
    """The artifact folders the searches of a storage recorded (one storage may hold several
    searches, each with its own folder).

    Args:
        storage: Storage URL or object.
        first: A folder to put first (where the dashboard's uploads go), or None.

    Returns:
        Each folder once, ``first`` first, then in study order.
    """
    folders = [Path(first)] if first is not None else []
    for summary in optuna.get_all_study_summaries(storage):
        folder = summary.user_attrs.get("artifact_dir")
        if "budget" in summary.user_attrs and folder and Path(folder) not in folders:
            folders.append(Path(folder))
    return folders


def prepare_dashboard(
    storage: str | optuna.storages.BaseStorage, *, artifact_dir: str | Path | None = None,
) -> tuple[list[Path], list[str]]:
    """Publish every search of a storage (:func:`publish_to_dashboard`) and make their
    artifact folders: what ``tinytnas dashboard`` does before serving.

    Args:
        storage: Storage URL or object.
        artifact_dir: The folder the dashboard's uploads go to (first), or None.

    Returns:
        ``(folders, warnings)``: the folders to serve (:func:`search_artifact_folders`), and one
        line per search whose figures could not be updated (a view never stops serving).

    Raises:
        ValueError: A folder that cannot be made.
    """
    warned = []
    for summary in optuna.get_all_study_summaries(storage):
        if "budget" not in summary.user_attrs:
            continue
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        try:
            publish_to_dashboard(study)
        except Exception as exc:  # noqa: BLE001 - a view, never a reason to refuse serving
            warned.append(f"figures of '{summary.study_name}' not updated: "
                          f"{' '.join(str(exc).split())}")
    folders = search_artifact_folders(storage, first=artifact_dir)
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"artifact folder {folder}: {exc.strerror}") from None
    return folders, warned


def artifact_store(path: str | Path) -> Any:
    """A :class:`optuna.artifacts.FileSystemArtifactStore` on ``path`` (created)."""
    from optuna.artifacts import FileSystemArtifactStore

    Path(path).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(str(path))


class _ArtifactFolders:
    """Several artifact folders as one store: reads try each folder, writes go to the first.

    One storage can hold several searches, each with its own artifact folder, while
    optuna-dashboard takes a single artifact store.
    """

    def __init__(self, folders: Sequence[str | Path]) -> None:
        self._stores = [artifact_store(folder) for folder in folders]

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self._first("open_reader", artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        self._stores[0].write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        self._first("remove", artifact_id)

    def _first(self, method: str, artifact_id: str) -> Any:
        """Call ``method`` on the first folder that holds the artifact."""
        from optuna.artifacts.exceptions import ArtifactNotFound

        for store in self._stores:
            try:
                return getattr(store, method)(artifact_id)
            except ArtifactNotFound:
                continue
        raise ArtifactNotFound(f"artifact {artifact_id} is in none of the artifact folders")


def make_dashboard_server(
    storage: str | optuna.storages.BaseStorage,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifact_dir: str | Path | Sequence[str | Path] | None = None,
) -> WSGIServer:
    """An optuna-dashboard HTTP server (threaded wsgiref) on a storage, with its artifacts.

    Call ``serve_forever()`` on it; ``shutdown()`` from another thread stops it.

    Args:
        storage: Storage URL or object.
        host: Interface to listen on (loopback by default).
        port: Port; 0 picks a free one (read it from ``server.server_port``).
        artifact_dir: Folder of the :class:`FileSystemArtifactStore` the search wrote to, or
            several folders (searches of one storage that recorded different ones).

    Returns:
        The server.
    """
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    class _Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class _QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    folders = [artifact_dir] if isinstance(artifact_dir, (str, Path)) else list(artifact_dir or [])
    store = _ArtifactFolders(folders) if folders else None
    app = wsgi(storage, artifact_store=store)
    return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)


def serve_dashboard(
    storage: str | optuna.storages.BaseStorage, *, host: str = "127.0.0.1", port: int = 8080,
    artifact_dir: str | Path | None = None, notify: Callable[[str], object] | None = None,
) -> None:
    """``tinytnas dashboard``: publish every search of a storage and serve optuna-dashboard on
    it, with every search's artifact folder, until Ctrl-C.

    Args:
        storage: Storage URL (an existing database) or object.
        host: Interface to listen on.
        port: Port; 0 picks a free one.
        artifact_dir: The folder uploads go to, served first (default: the recorded ones only).
        notify: Called with each warning, then with the line naming the URL, once listening.

    Raises:
        ValueError: No such database file, a folder that cannot be made, or an address that
            cannot be listened on.
        RuntimeError: The storage cannot be opened.
    """
    from tinytnas_optuna._storage import open_storage

    if isinstance(storage, str):
        storage = open_storage(storage, existing=True)
    folders, warned = prepare_dashboard(storage, artifact_dir=artifact_dir)
    try:
        server = make_dashboard_server(storage, host=host, port=port, artifact_dir=folders)
    except OSError as exc:
        raise ValueError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    address = server.server_address
    lines = [f"warning: {line}" for line in warned]
    lines.append(f"optuna-dashboard on http://{address[0]}:{address[1]}/dashboard (artifacts: "
                 f"{', '.join(map(str, folders)) or 'none'}); Ctrl-C to stop")
    if notify is not None:
        for line in lines:
            notify(line)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
