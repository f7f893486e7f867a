"""What a search found (:func:`summarize`) and the deployable winner (:func:`retrain_best`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.trial import TrialState

from tinytnas_optuna._budget import FIGURES
from tinytnas_optuna._objective import VAL_FRACTION
from tinytnas_optuna._sampler import TinyTNASSampler, trial_candidate

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class CandidateRecord:
    """One evaluated candidate of the search.

    Attributes:
        trial: Trial number.
        k: Width.
        c: Cells.
        state: ``"trained"``, ``"infeasible"``, ``"reused"`` (same network as an earlier trial),
            ``"pruned"``, ``"interrupted"`` or ``"failed"``.
        value: Validation metric (None when not trained).
        ram: Tensor arena bytes (32-bit MCU).
        flash: Flatbuffer bytes.
        macs: MACs per inference.
        figures_method: ``"measured"`` or ``"analytic"`` (estimate).
        epochs: Epochs trained.
        seconds: Training seconds.
    """

    trial: int
    k: int
    c: int
    state: str
    value: float | None
    ram: int | None
    flash: int | None
    macs: int | None
    figures_method: str | None
    epochs: int
    seconds: float


@dataclass(frozen=True)
class SearchSummary:
    """The search's outcome, as the original TinyTNAS reported it and more.

    Attributes:
        metric: Name of the validation metric.
        best: The best feasible trained candidate, or None when nothing fits.
        trained_count: Candidates actually trained (reuses not counted).
        path: Accepted candidates in order (TinyTNAS's search path; for other samplers, each
            improvement of the best in trial order).
        finished: Whether the greedy search has nothing left to evaluate.
        trained: Every trained candidate.
        infeasible: Every candidate rejected for the budget, with its figures.
        smallest: The smallest figures measured (useful when nothing fits).
        other: Trials neither trained nor infeasible (failed, interrupted, reused).
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    def __str__(self) -> str:
        lines = []
        if self.best is None:
            smallest = ", ".join(f"{k} {v:,}" for k, v in self.smallest.items())
            lines.append(f"No feasible candidate found. Smallest figures measured: {smallest}")
        else:
            b = self.best
            lines.append(
                f"Best: k={b.k}, c={b.c}, {self.metric}={b.value:.4f}, RAM {b.ram:,} B, "
                f"flash {b.flash:,} B, {b.macs:,} MAC (trial {b.trial})"
            )
        lines.append(
            f"Trained {self.trained_count}, infeasible {len(self.infeasible)}, "
            f"search {'finished' if self.finished else 'not finished'}"
        )
        lines.append("Search path: " + " -> ".join(f"({k},{c})" for k, c in self.path))
        lines.append(_table(self.trained + self.infeasible + self.other, self.metric))
        return "\n".join(lines)


def _table(rows: list[CandidateRecord], metric: str) -> str:
    head = f"{'trial':>5} {'k':>5} {'c':>2} {'state':<11} {metric[:8]:>8} {'RAM B':>8} " \
           f"{'flash B':>8} {'MAC':>9} {'figures':<9} {'epochs':>6} {'sec':>6}"
    out = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: r.trial):
        value = "" if r.value is None else f"{r.value:.4f}"
        out.append(
            f"{r.trial:>5} {r.k:>5} {r.c:>2} {r.state:<11} {value:>8} {_n(r.ram):>8} "
            f"{_n(r.flash):>8} {_n(r.macs):>9} {r.figures_method or '':<9} {r.epochs:>6} "
            f"{r.seconds:>6.1f}"
        )
    return "\n".join(out)


def _n(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def trial_state(t: optuna.trial.FrozenTrial) -> str:
    """What happened to a candidate; the one classification every view uses.

    Args:
        t: A trial of :class:`TinyTNASObjective`.

    Returns:
        ``"infeasible"`` (over budget, never trained), ``"trained"`` (all its epochs, or cut by
        the time bound), ``"pruned"`` (stopped early by a learning-curve pruner), ``"reused"``
        (an earlier trial's network), ``"interrupted"`` (time bound before training),
        ``"failed"``, or the Optuna state in lower case (``"running"``, ``"waiting"``).
    """
    ua = t.user_attrs
    if ua.get("feasible") is False:
        return "infeasible"
    if t.state == TrialState.COMPLETE:
        return "reused" if "reused_from" in ua else "trained"
    if t.state == TrialState.PRUNED:
        return "pruned" if t.intermediate_values else "interrupted"
    if t.state == TrialState.FAIL:
        return "failed"
    return t.state.name.lower()


def _record(t: optuna.trial.FrozenTrial) -> CandidateRecord | None:
    cand = trial_candidate(t)
    if cand is None:
        return None
    ua = t.user_attrs
    state = trial_state(t)
    value = t.value if t.state == TrialState.COMPLETE else (
        max(t.intermediate_values.values()) if t.intermediate_values else None
    )
    return CandidateRecord(
        trial=t.number, k=cand[0], c=cand[1], state=state, value=value,
        ram=ua.get("ram"), flash=ua.get("flash"), macs=ua.get("macs"),
        figures_method=ua.get("figures_method"), epochs=int(ua.get("epochs_trained", 0)),
        seconds=float(ua.get("train_seconds", 0.0)),
    )


def summarize(study: optuna.Study, *, sampler: TinyTNASSampler | None = None) -> SearchSummary:
    """Summarise a study run with :class:`TinyTNASObjective` (any sampler).

    Args:
        study: The study.
        sampler: The TinyTNASSampler used (for its ranges); default ranges otherwise.

    Returns:
        The :class:`SearchSummary`.
    """
    trials = study.get_trials(deepcopy=False)
    records = [r for r in (_record(t) for t in trials) if r is not None]
    trained = [r for r in records if r.state == "trained"]
    infeasible = [r for r in records if r.state == "infeasible"]
    other = [r for r in records if r.state not in ("trained", "infeasible")]
    # Reused trials repeat an earlier trial's value: the earlier one stands for both.
    scored = [r for r in records if r.state in ("trained", "pruned")
              and r.value is not None and not math.isnan(r.value)]
    best = max(scored, key=lambda r: (r.value, -r.trial)) if scored else None

    greedy = sampler or TinyTNASSampler()
    replay = greedy.replay(study)
    if any("tinytnas:candidate" in t.system_attrs for t in trials):
        path = replay.accepted
        finished = replay.finished
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
    return SearchSummary(metric, best, len(trained), path, finished, trained, infeasible,
                         smallest, other)


@dataclass(frozen=True)
class RetrainReport:
    """The retrained winner, measured again and scored as int8 in TensorFlow Lite Micro.

    Attributes:
        k: Width.
        c: Cells.
        epochs_run: Epochs the kept training ran before early stopping.
        best_val: Best validation metric (the checkpoint kept).
        evaluated_on: ``"test"`` or ``"val"``.
        float_accuracy: Accuracy of the float Keras model.
        float_balanced_accuracy: Its balanced accuracy.
        int8_accuracy: Accuracy of the int8 model run by TFLite Micro.
        int8_balanced_accuracy: Its balanced accuracy.
        confusion_matrix: int8 confusion matrix, rows true class, columns predicted.
        classes: Original label of each class index.
        ram: Tensor arena bytes (32-bit MCU) of the exported model.
        flash: Bytes of the exported ``.tflite``.
        macs: MACs per inference.
        arena_bytes: Arena size written to the C header (RAM figure plus margin).
        figures_source: How the figures were obtained.
        files: Paths written.
    """

    k: int
    c: int
    epochs_run: int
    best_val: float
    evaluated_on: str
    float_accuracy: float
    float_balanced_accuracy: float
    int8_accuracy: float
    int8_balanced_accuracy: float
    confusion_matrix: list[list[int]]
    classes: list[Any]
    ram: int
    flash: int
    macs: int
    arena_bytes: int
    figures_source: str
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    def __str__(self) -> str:
        cm = "\n".join("  " + " ".join(f"{v:>5}" for v in row) for row in self.confusion_matrix)
        return (
            f"Retrained k={self.k}, c={self.c} for {self.epochs_run} epochs "
            f"(best val {self.best_val:.4f})\n"
            f"On {self.evaluated_on}: float accuracy {self.float_accuracy:.4f} "
            f"(balanced {self.float_balanced_accuracy:.4f}); int8 in TFLite Micro "
            f"{self.int8_accuracy:.4f} (balanced {self.int8_balanced_accuracy:.4f})\n"
            f"RAM {self.ram:,} B (arena to allocate {self.arena_bytes:,} B), "
            f"flash {self.flash:,} B, {self.macs:,} MAC\n"
            f"Confusion matrix (int8, rows true):\n{cm}\n"
            f"Files: {', '.join(self.files.values())}"
        )


def retrain_best(
    study: optuna.Study,
    train: tuple[np.ndarray, np.ndarray],
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    epochs: int = 500,
    out_dir: str | Path,
    groups: np.ndarray | None = None,
    val_fraction: float = VAL_FRACTION,
    patience: int = 20,
    restarts: int = 3,
    metric: str = "accuracy",
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    int8_io: bool = False,
    class_names: list[str] | None = None,
) -> RetrainReport:
    """Retrain the best architecture, convert it to int8, measure it, score it in TFLM, export.

    Checkpointing (best weights), early stopping (``patience`` epochs) and learning-rate
    reduction on plateau (halving after ``patience // 2`` epochs) all watch ``val``; ``test`` is
    only used for the final report.

    Args:
        study: A study run with :class:`TinyTNASObjective`.
        train: ``(features, labels)`` as given to the search.
        val: Validation ``(features, labels)``; a seeded (group) split of train when None.
        test: Test set for the report; ``val`` is reported when None.
        epochs: Maximum epochs.
        out_dir: Where ``model.tflite``, the C files and ``report.json`` go.
        groups: Group ids for the validation split when ``val`` is None.
        val_fraction: Held-out share when ``val`` is None (use the search's).
        patience: Early-stopping patience in epochs.
        restarts: Trainings from different initial weights; the best on ``val`` is kept.
        metric: Validation metric for checkpointing and early stopping.
        batch_size: Override the batch size.
        learning_rate: Override the initial learning rate.
        seed: Seed for the split and the training.
        int8_io: Export with int8 input/output instead of float32.
        class_names: Readable class names for the C header.

    Returns:
        The :class:`RetrainReport` (also written as ``report.json``).

    Raises:
        ValueError: Bad arguments, no feasible trained candidate, or test data that does not
            match the training data (``DataError``).
    """
    import keras

    from tinytnas_optuna._export import tflm_predict, write_firmware_files
    from tinytnas_optuna._hardware import convert_and_profile
    from tinytnas_optuna._objective import fit, prepare_data, score, training_recipe
    from tinytnas_optuna._space import build_model
    from tinytnas_optuna.datasets import DataError, validate_arrays

    if restarts < 1 or epochs < 1 or patience < 1:
        raise ValueError("restarts, epochs and patience must be >= 1")
    summary = summarize(study)
    if summary.best is None:
        raise ValueError("the study has no feasible trained candidate to retrain")
    k, c = summary.best.k, summary.best.c
    data = prepare_data(train, val, groups=groups, val_fraction=val_fraction, seed=seed)
    # Checked before hours of training, not after.
    if test is not None:
        x_eval, y_raw = validate_arrays(*test, what="test")
        x_eval = data.standardise(x_eval)
        y_eval = _encode_like(y_raw, data.classes, DataError)
        evaluated_on = "test"
    else:
        x_eval, y_eval, evaluated_on = data.x_val, data.y_val, "val"

    recipe = training_recipe(len(data.y_train))
    best_curve: list[float] = []
    model = None
    for restart in range(restarts):
        # Small networks land in quite different optima from different initial weights: keep
        # the restart with the best validation metric (test data is never looked at).
        keras.utils.set_random_seed(seed + restart)  # before building: initial weights
        candidate = build_model(k, c, data.input_shape, data.num_classes)
        callbacks = [
            keras.callbacks.EarlyStopping(monitor="val_metric", mode="max", patience=patience),
            keras.callbacks.ReduceLROnPlateau(monitor="val_metric", mode="max", factor=0.5,
                                              patience=max(1, patience // 2), min_lr=1e-5),
        ]
        curve, _ = fit(candidate, data, epochs=epochs, batch_size=batch_size or recipe[0],
                       learning_rate=learning_rate or recipe[1], seed=seed + restart,
                       callbacks=callbacks, restore_best=True, metric=metric)
        if model is None or max(curve) > max(best_curve):
            model, best_curve = candidate, curve
    assert model is not None
    curve = best_curve

    rng = np.random.default_rng(seed)
    rep = data.x_train[rng.choice(len(data.x_train), min(200, len(data.x_train)), replace=False)]
    model_bytes, profile = convert_and_profile(model, rep, int8_io=int8_io)
    float_pred = model.predict(x_eval, batch_size=1024, verbose=0).argmax(axis=1)
    int8_pred = tflm_predict(model_bytes, x_eval).argmax(axis=1)
    n = data.num_classes
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y_eval, int8_pred), 1)
    # Arena to allocate: TFLM's own 64-bit host figure bounds the 32-bit need from above.
    arena = int(math.ceil(max(profile.ram, profile.ram_host or 0) / 16) * 16)
    out = Path(out_dir)
    files = write_firmware_files(
        out, model_bytes, arena_bytes=arena, input_shape=data.input_shape,
        operators=profile.operators, mean=data.mean, std=data.std, classes=data.classes,
        class_names=class_names, name="tinytnas_model",
    )
    report = RetrainReport(
        k=k, c=c, epochs_run=len(curve), best_val=max(curve), evaluated_on=evaluated_on,
        float_accuracy=score(y_eval, float_pred, "accuracy", n),
        float_balanced_accuracy=score(y_eval, float_pred, "balanced_accuracy", n),
        int8_accuracy=score(y_eval, int8_pred, "accuracy", n),
        int8_balanced_accuracy=score(y_eval, int8_pred, "balanced_accuracy", n),
        confusion_matrix=cm.tolist(), classes=[_plain(v) for v in data.classes],
        ram=profile.ram, flash=profile.flash, macs=profile.macs, arena_bytes=arena,
        figures_source=profile.source, files={k_: str(v) for k_, v in files.items()},
    )
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2))
    return report


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _encode_like(labels: np.ndarray, classes: tuple[Any, ...], error: type[Exception]) -> np.ndarray:
    """Encode test labels with the label map learnt on train/val."""
    labels = np.asarray(labels)
    if labels.ndim == 2:  # one-hot: the column index is the original label
        labels = labels.argmax(axis=1)
    index = {_plain(v): i for i, v in enumerate(classes)}
    try:
        return np.array([index[_plain(v.item() if hasattr(v, "item") else v)] for v in
                         labels.astype(np.int64)], dtype=np.int64)
    except KeyError as missing:
        raise error(f"test labels contain {missing}, a class absent from train/val") from None
