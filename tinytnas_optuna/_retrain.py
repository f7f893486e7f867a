"""The deployable winner: train the best architecture to convergence, quantise, check, export.

Three steps: :func:`_train_final` (restarts of a warm-up + cosine schedule, checkpoint and choice
on validation), :func:`~tinytnas_optuna._quantise.quantise` (int8 conversion scored in TFLite
Micro; recalibration when int8 loses more than a point), and the evaluation in
:func:`retrain_best`, whose files :mod:`tinytnas_optuna._export` writes. How long it takes is
estimated in :mod:`tinytnas_optuna._training` (the search keeps that time for it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna._errors import MeasurementError
from tinytnas_optuna._input import InputSetting
from tinytnas_optuna._quantise import Quantised, int8_labels, quantise
from tinytnas_optuna._training import (
    RESTARTS,
    Recipe,
    Schedule,
    after_training_seconds,
    final_recipes,
    final_schedule,
    predict_labels,
    restart_seconds,
    slowest_step,
)
from tinytnas_optuna._validation import (
    PreparedData,
    chance_rate,
    clearly_above,
    prepare_data,
    score,
)

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts._protocol import ArtifactStore

    from tinytnas_optuna._budget import HardwareBudget
    from tinytnas_optuna._hardware import HardwareProfile
    from tinytnas_optuna._networks import TrainedNetwork
    from tinytnas_optuna._parallel import WorkerPool

@dataclass(frozen=True)
class RetrainReport:
    """The retrained winner, measured again and scored as int8 in TensorFlow Lite Micro.

    Attributes:
        k: Width.
        c: Cells.
        epochs_run: Passes over the training data of the kept training.
        best_val: Validation metric of the kept checkpoint (float); under cross-validation,
            the search's cross-validated value of this architecture.
        evaluated_on: ``"test"`` or ``"val"`` (``"train"`` under cross-validation without a
            test set: the final model is trained on every series).
        float_accuracy: Accuracy of the float Keras model on ``evaluated_on``.
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
        validation: ``"holdout"`` or ``"<k>-fold"``: how the study validated.
        steps: Gradient steps of the kept training; ``schedule`` its plan.
        restarts_run: Trainings from different initial weights (the best on validation kept;
            under cross-validation the one with the lowest training loss).
        val_float_accuracy: Float accuracy on validation (None under cross-validation).
        val_int8_accuracy: int8 (TFLM) accuracy on validation (None under cross-validation).
        quantization: The int8 check: where it was measured, float and int8 figures there,
            calibration series used, and what was done.
        majority_rate: Share of the majority class in ``evaluated_on``.
        above_chance: Whether the int8 model is clearly above chance on ``evaluated_on``
            (one-sided binomial test at 1 %).
        warning: One line when it is not, else None.
        seconds: Wall time of the whole retraining.
        target: Under a latency budget, the exported model measured on the board's emulated
            core: ``board``, ``core``, ``latency_ms``, ``cycles``, ``ram_target``, ``source``;
            None otherwise.
        model_source: ``"final training"``, or ``"search network (trial N)"`` when the
            search's own trained network was exported instead (see ``model_reason``).
        model_reason: Why that model was exported: the comparison made, or why the final
            training could not run.
        comparison: Where the final training and the search's network were both scored
            (``"on"``: ``"validation"`` or ``"training series"``) and their int8 figures
            there (``"final_training"``, ``"search_network"``); None when there was no choice.
        phase_seconds: Wall seconds of ``"train"``, ``"quantise"`` and ``"export"``.
        input: The input the model takes: ``decimate``, ``window`` (samples at the recorded
            rate: the newest ones), ``length`` (samples the model sees) and ``searched`` (whether
            the search chose it from an input space).
        recipe: How the exported model was trained (``batch_norm``: normalisation folded into
            its convolutions at export; ``jitter``, ``scaling``: augmentation;
            ``label_smoothing``): the final recipe, or the candidates' when the search's network
            was exported.
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
    validation: str
    steps: int
    schedule: dict[str, Any]
    restarts_run: int
    val_float_accuracy: float | None
    val_int8_accuracy: float | None
    quantization: dict[str, Any]
    majority_rate: float
    above_chance: bool
    warning: str | None
    seconds: float
    target: dict[str, Any] | None = None
    model_source: str = "final training"
    model_reason: str | None = None
    comparison: dict[str, Any] | None = None
    phase_seconds: dict[str, float] | None = None
    input: dict[str, Any] | None = None
    recipe: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    def __str__(self) -> str:
        cm = "\n".join("  " + " ".join(f"{v:>5}" for v in row) for row in self.confusion_matrix)
        val = ("" if self.val_int8_accuracy is None else
               f"On validation: float {self.val_float_accuracy:.4f}, int8 "
               f"{self.val_int8_accuracy:.4f} ({self.quantization['action']})\n")
        if self.model_source == "final training":
            made = (f"Retrained k={self.k}, c={self.c}: {self.steps} steps ({self.epochs_run} "
                    f"epochs), {self.restarts_run} restart(s), best val {self.best_val:.4f}, "
                    f"{self.seconds:.0f} s\n")
        else:
            made = (f"Exported the {self.model_source}, k={self.k}, c={self.c}: {self.steps} "
                    f"steps, val {self.best_val:.4f}, {self.seconds:.0f} s\n")
        if self.model_reason:
            made += f"Why: {self.model_reason}\n"
        if self.input and self.input.get("searched"):
            made += (f"Input: the newest {self.input['window']} samples at the recorded rate, "
                     f"decimated by {self.input['decimate']}: {self.input['length']} samples\n")
        return (
            made + val +
            f"On {self.evaluated_on}: float accuracy {self.float_accuracy:.4f} "
            f"(balanced {self.float_balanced_accuracy:.4f}); int8 in TFLite Micro "
            f"{self.int8_accuracy:.4f} (balanced {self.int8_balanced_accuracy:.4f}); "
            f"majority class {self.majority_rate:.4f}\n"
            f"RAM {self.ram:,} B (arena to allocate {self.arena_bytes:,} B), "
            f"flash {self.flash:,} B, {self.macs:,} MAC\n"
            + (f"On {self.target['board']} (emulated {self.target['core']}): "
               f"{self.target['latency_ms']:.2f} ms ({self.target['cycles']:,} cycles, "
               f"estimate), arena {self.target['ram_target']:,} B\n" if self.target else "")
            + f"Confusion matrix (int8, rows true):\n{cm}\n"
            f"Files: {', '.join(self.files.values())}"
            + (f"\n{self.warning}" if self.warning else "")
        )


def retrain_best(
    study: optuna.Study,
    train: tuple[np.ndarray, np.ndarray],
    *,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    out_dir: str | Path,
    steps: int | None = None,
    epochs: int | None = None,
    timeout: float | None = None,
    groups: np.ndarray | None = None,
    val_fraction: float | None = None,
    restarts: int = RESTARTS,
    metric: str | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    seed: int | None = None,
    int8_io: bool | None = None,
    class_names: list[str] | None = None,
    candidate: TrainedNetwork | None = None,
    artifact_store: ArtifactStore | None = None,
    pool: WorkerPool | None = None,
) -> RetrainReport:
    """Retrain the best architecture, convert it to int8, check it in TFLM, export it.

    The schedule is :func:`~tinytnas_optuna._training.final_schedule` (warm-up, cosine decay,
    150 epochs within 3,000..15,000 steps): no early stopping, so a training still at chance is
    never cut short. The final recipe (the study's ``final_recipe``: batch normalisation folded
    at export, jitter and scaling by default) trains the restarts. With a hold-out, the
    restarts alternate it with the candidates' recipe, each keeps its best validation
    checkpoint, and the restart whose int8 model scores best on validation is exported: the
    recipe is chosen per dataset. Under cross-validation (a small set, or subjects, without
    ``val``) every restart trains on every series with the final recipe and the one that fits
    them best (lowest training cross-entropy) is exported.

    Args:
        study: A study run with :class:`TinyTNASObjective`.
        train: ``(features, labels)`` as given to the search.
        val: Validation ``(features, labels)``; else the study's plan (split or folds).
        test: Test set for the report; validation is reported when None.
        out_dir: Where ``model.tflite``, the C files and ``report.json`` go.
        steps: Override the gradient steps.
        epochs: Override: this many passes over the training data instead.
        timeout: Seconds the whole call may take: the training is planned (and cut) to leave
            time for conversion, scoring and export; the best model so far is exported.
        groups: Group ids for the validation split when ``val`` is None.
        val_fraction: Held-out share when ``val`` is None (default: the search's).
        restarts: Trainings from different initial weights.
        metric: Validation metric for checkpoints and the choice of restart (default: the
            search's).
        batch_size: Override the batch size.
        learning_rate: Override the peak learning rate.
        seed: Seed for the split and the training (default: the search's).
        int8_io: Export with int8 input/output instead of float32 (default: the search's).
        class_names: Readable class names for the C header (default: those the search
            recorded, else the labels).
        candidate: The search's own trained network of the best architecture (what
            :class:`TinyTNASObjective` kept); exported instead of the final training when
            that cannot run its schedule in the time left or ends below it (``report.json``
            says which and why).
        artifact_store: Where the search stored its networks: the candidate is read from it
            when not given (default: the artifact folder the search recorded).
        pool: The worker processes of a parallel search: the first restarts train side by side
            (one here, one in each worker).

    Returns:
        The :class:`RetrainReport` (also written as ``report.json``).

    Raises:
        ValueError: Bad arguments, no feasible trained candidate, data other than the
            search's (content fingerprints), or test data that does not match the training
            data (``DataError``).
    """
    from tinytnas_optuna._results import record_final, summarize
    from tinytnas_optuna._study import RunRecord, check_class_names, check_data, recorded_spec
    from tinytnas_optuna.datasets import DataError, validate_arrays

    started = time.monotonic()
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    for name, value in (("steps", steps), ("epochs", epochs), ("timeout", timeout)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be positive, got {value}")
    # The search's own settings unless overridden, and only the data it searched.
    spec = recorded_spec(study)
    seed = spec.seed if seed is None else seed
    metric = spec.metric if metric is None else metric
    val_fraction = spec.val_fraction if val_fraction is None else val_fraction
    int8_io = spec.int8_io if int8_io is None else int8_io
    record = RunRecord.of(study)
    class_names = record.class_names if class_names is None else class_names
    if artifact_store is None and record.artifact_dir and Path(record.artifact_dir).is_dir():
        from optuna.artifacts import FileSystemArtifactStore

        artifact_store = FileSystemArtifactStore(record.artifact_dir)
    check_data(study, train, val, groups)
    summary = summarize(study)
    if summary.best is None:
        raise ValueError("the study has no feasible trained candidate to retrain")
    k, c = summary.best.k, summary.best.c
    # With an input space, the model takes the input its candidate was searched on: every
    # array is what a device at that setting would buffer (as the search saw it).
    chosen_input = summary.best.input
    if chosen_input is not None:
        setting = InputSetting(*chosen_input)
        train = (setting.apply(train[0]), train[1])
        val = None if val is None else (setting.apply(val[0]), val[1])
        test = None if test is None else (setting.apply(test[0]), test[1])
    data = prepare_data(train, val, groups=groups, val_fraction=val_fraction, seed=seed)
    class_names = check_class_names(class_names, data.num_classes)
    # Checked before minutes of training, not after.
    if test is not None:
        x_eval, y_raw = validate_arrays(*test, what="test")
        x_eval = data.standardise(x_eval)
        y_eval = _encode_like(y_raw, data.classes, DataError)
        evaluated_on = "test"
    elif data.folds is None:
        x_eval, y_eval, evaluated_on = data.x_val, data.y_val, "val"
    else:
        x_eval, y_eval, evaluated_on = data.x_train, data.y_train, "train"
    holdout = data.folds is None
    if not holdout:
        # Cross-validated search: the final model learns from every series.
        data = replace(data, folds=None)
    schedule = final_schedule(len(data.y_train), steps=steps, epochs=epochs,
                              batch_size=batch_size, learning_rate=learning_rate)
    deadline = None
    if timeout is not None:
        reserve = after_training_seconds(n_val=len(data.y_val), n_eval=len(y_eval),
                                          n_train=len(data.y_train), restarts=restarts)
        deadline = started + max(timeout - reserve, 0.25 * timeout)
    if candidate is None and artifact_store is not None:
        from tinytnas_optuna._networks import find_network

        candidate = find_network(study, k, c, artifact_store, chosen_input)
    if candidate is not None and (candidate.k, candidate.c, candidate.input) != (
            k, c, chosen_input):
        raise ValueError(f"the network given is k={candidate.k}, c={candidate.c} on input "
                         f"{candidate.input}; the search's best is k={k}, c={c} on "
                         f"{chosen_input}")
    phases: dict[str, float] = {}
    clock = time.monotonic()
    # The search's own network first: whatever happens next, it is ready to export.
    fallback = None
    if candidate is not None:
        try:
            fallback = quantise([_candidate_run(candidate, data)], data, metric=metric,
                                 seed=seed, int8_io=int8_io, deadline=deadline)
        except MeasurementError:  # its conversion failed: the final training must do
            candidate = None
    recipes = final_recipes(spec.final_training_recipe, spec.training_recipe,
                            holdout=holdout, n_train=len(data.y_train))
    estimate = _restart_estimate(study, k, c, schedule, holdout, chosen_input)
    if estimate is not None:  # measured with the candidates' recipe; the slowest's
        estimate *= slowest_step(recipes, spec.training_recipe)
    if (steps is None and epochs is None and deadline is not None and estimate
            and candidate is not None):
        schedule, estimate = _fit_schedule(schedule, estimate, deadline - time.monotonic(),
                                           candidate.steps)
    runs = _train_final(k, c, data, schedule, restarts=restarts, metric=metric, seed=seed,
                        deadline=deadline, optional=fallback is not None, estimate=estimate,
                        pool=pool, recipes=recipes)
    phases["train"] = time.monotonic() - clock
    clock = time.monotonic()
    final, failed = None, None
    if runs:
        try:
            final = quantise(runs, data, metric=metric, seed=seed, int8_io=int8_io,
                              deadline=deadline)
        except MeasurementError as error:
            if fallback is None:
                raise
            failed = " ".join(str(error).split())
    chosen, source, reason, comparison = _choose(final, fallback, runs, schedule, candidate,
                                                 holdout)
    if failed:
        reason = f"the final model's conversion or TFLM check failed: {failed}"
    model, model_bytes, profile, quant = chosen
    phases["quantise"] = time.monotonic() - clock
    clock = time.monotonic()
    target = _on_target(model_bytes, spec.hardware_budget)
    float_pred = predict_labels(model, x_eval)
    int8_pred = int8_labels(model_bytes, x_eval)
    if chosen is final:
        kept_steps, kept_val = runs[quant["restart"]]["steps"], runs[quant["restart"]]["val"]
    else:
        assert candidate is not None
        kept_steps, kept_val = candidate.steps, candidate.value
    report = _report(
        out_dir, k=k, c=c, data=data, x_eval=x_eval, y_eval=y_eval, evaluated_on=evaluated_on,
        float_pred=float_pred, int8_pred=int8_pred, model_bytes=model_bytes, profile=profile,
        quant=quant, schedule=schedule, steps=kept_steps, restarts_run=len(runs),
        best_val=(kept_val if holdout or chosen is not final
                  else float(summary.best.value)),  # type: ignore[arg-type]
        holdout=holdout, validation="holdout" if holdout else summary.validation or "k-fold",
        class_names=class_names, started=started, target=target,
        model_source=source, model_reason=reason, comparison=comparison, phases=phases,
        input_setting=chosen_input,
        recipe=(runs[quant["restart"]]["recipe"] if chosen is final
                else spec.training_recipe.to_dict()),
    )
    record_final(study, report, out_dir)
    return report


def _candidate_run(candidate: TrainedNetwork, data: PreparedData) -> dict[str, Any]:
    """The search's network as :func:`~tinytnas_optuna._quantise.quantise` takes a run."""
    model = candidate.model(data.input_shape, data.num_classes)
    return {"model": model, "val": candidate.value, "steps": candidate.steps,
            "complete": True, "fit_loss": 0.0}


def _restart_estimate(
    study: optuna.Study, k: int, c: int, schedule: Schedule, holdout: bool,
    chosen_input: tuple[int, int] | None = None,
) -> float | None:
    """Seconds one final restart should take, from the search's trainings of ``(k, c)`` on
    its input.

    Returns:
        The estimate (:func:`restart_seconds`), or None when the search measured no speed.
    """
    from tinytnas_optuna._trial import EVAL_SECONDS, PARAMS, STEP_SECONDS, trial_input

    timed = [t for t in study.get_trials(deepcopy=False)
             if (t.params.get("k"), t.params.get("c")) == (k, c)
             and trial_input(t) == chosen_input
             and t.user_attrs.get(STEP_SECONDS) and t.user_attrs.get(PARAMS)]
    if not timed:
        return None
    trial = timed[-1]
    evals = float(trial.user_attrs.get(EVAL_SECONDS) or 0.0) if holdout else 0.0
    return restart_seconds(float(trial.user_attrs[STEP_SECONDS]),
                           int(trial.user_attrs[PARAMS]["batch_size"]), schedule, evals)


def _fit_schedule(
    schedule: Schedule, estimate: float, left: float, search_steps: int
) -> tuple[Schedule, float]:
    """The default schedule, or a shorter one that runs to its end in the time left.

    When the whole default schedule does not fit, a schedule shortened to what fits (its own
    warm-up and cosine decay, run to the end) still trains far longer than the search's network
    had, which it then has to beat (:func:`_choose`); a shortened schedule under twice the
    search's steps is not worth the time (the search's network is exported). On ElectricDevices
    (8,926 series, 3-minute bound) the default schedule did not fit the 90 s left and the
    search's 800-step network was exported 84 s before the bound.

    Args:
        schedule: The default final schedule.
        estimate: Seconds one restart of ``schedule`` should take.
        left: Seconds left for the training.
        search_steps: Steps of the search's network.

    Returns:
        The schedule and its estimated seconds per restart.

    Example:
        >>> s = final_schedule(8926)
        >>> fitted, seconds = _fit_schedule(s, 120.0, 80.0, 800)
        >>> fitted.steps < s.steps, fitted.batch_size == s.batch_size, seconds < 80
        (True, True, True)
        >>> _fit_schedule(s, 120.0, 10.0, 800)[0] is s
        True
    """
    if left >= estimate:
        return schedule, estimate
    # 0.85: room for the estimate's error; the training is also cut at the deadline.
    steps = int(schedule.steps * 0.85 * left / estimate)
    if steps < 2 * search_steps:
        return schedule, estimate
    return replace(schedule, steps=steps), estimate * steps / schedule.steps


def _choose(
    final: Quantised | None, fallback: Quantised | None, runs: list[dict[str, Any]],
    schedule: Schedule, candidate: TrainedNetwork | None, holdout: bool,
) -> tuple[Quantised, str, str | None, dict[str, Any] | None]:
    """The model to export: the final training's, unless the search's network is better.

    With a hold-out both are scored in TFLM on it and the better wins (ties: the final model).
    Under cross-validation there is no series the final model did not train on: it is kept
    when its schedule ran to its end and it fits the training series at least as well as the
    search's network, which trained on two thirds of them (a final model at one class does not).

    Returns:
        ``(chosen, model_source, model_reason, comparison)``; ``comparison`` holds where both
        were scored (``"on"``) and their int8 figures there, or None when there was no choice.
    """
    if fallback is None:
        assert final is not None
        return final, "final training", None, None
    assert candidate is not None
    source = f"search network (trial {candidate.trial})"
    if final is None:
        return fallback, source, ("the time left could not fit one run of the final "
                                  f"training's schedule ({schedule.steps} steps)"), None
    ours, theirs = final[3]["int8"], fallback[3]["int8"]
    where = "validation" if holdout else "training series"
    comparison = {"on": where, "final_training": ours, "search_network": theirs}
    scores = (f"on the {where}, int8 in TFLM: the final training {ours:.4f}, the search's "
              f"network {theirs:.4f}")
    run = runs[final[3]["restart"]]
    if holdout:
        chosen = (fallback, source) if theirs > ours else (final, "final training")
        return *chosen, scores, comparison
    if not run["complete"]:
        return fallback, source, (f"the final training ran {run['steps']} of its "
                                  f"{schedule.steps} steps before the time bound"), comparison
    if theirs > ours:
        return fallback, source, (f"{scores}, which trained on two thirds of them, above the "
                                  "final training"), comparison
    return final, "final training", scores, comparison


def _on_target(model_bytes: bytes, budget: HardwareBudget) -> dict[str, Any] | None:
    """The exported model on the board's emulated core, under a latency budget (about 1 s).

    Args:
        model_bytes: The exported flatbuffer.
        budget: The search's budget.

    Returns:
        ``RetrainReport.target``, or None without a latency budget.

    Raises:
        MeasurementError: When the target run fails (never a figure).
    """
    if budget.latency_ms is None:
        return None
    from tinytnas_optuna._boards import check_board
    from tinytnas_optuna._hardware import profile_tflite

    board = check_board(str(budget.board))
    measured = profile_tflite(model_bytes, method="target", target=board.core, cycles=True)
    return {"board": board.name, "core": board.core,
            "latency_ms": round(board.latency_ms(measured.cycles), 3),
            "cycles": measured.cycles, "ram_target": measured.ram, "source": measured.source}


def _train_final(
    k: int, c: int, data: PreparedData, schedule: Schedule, *, restarts: int, metric: str,
    seed: int, deadline: float | None, optional: bool = False, estimate: float | None = None,
    pool: WorkerPool | None = None, recipes: Sequence[Recipe],
) -> list[dict[str, Any]]:
    """Train up to ``restarts`` models, each only if its whole schedule fits the time left.

    A restart starts only when the time left holds its estimated length (``estimate`` from the
    search's speed, then the measured time of the first ones); a shortened schedule trains
    less than the search's own network had. Only when there is nothing to fall back on
    (``optional`` False) does a first restart run in whatever time there is, its schedule
    shortened to fit. The first restarts run side by side: one here, one in each worker
    process of ``pool``. Restart ``i`` is trained with ``recipes[i % len(recipes)]``.

    Returns:
        Per restart: ``model`` (left at its best validation checkpoint), ``val`` (its float
        validation metric, nan without validation), ``steps``, ``complete`` (the whole
        schedule ran), ``fit_loss``, ``recipe`` (as a dict). Empty when nothing could run.
    """
    runs: list[dict[str, Any]] = []
    restart = 0
    while restart < restarts:
        time_limit = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if (runs or optional) and (left <= 0 or (estimate is not None and left < estimate)):
                break
            time_limit = max(left, 1.0)
        begun = time.monotonic()
        helpers = [] if pool is None or runs else list(range(1, min(len(pool.alive) + 1,
                                                                   restarts - restart)))
        args = [(k, c, data, schedule, restart + i, metric, seed, deadline, time_limit,
                 recipes[(restart + i) % len(recipes)]) for i in helpers]
        if args:
            assert pool is not None
            pool.send_orders(_restart_weights, args)
        runs.append(_train_restart(k, c, data, schedule, restart, metric, seed, deadline,
                                   time_limit, recipes[restart % len(recipes)]))
        if args:
            assert pool is not None
            wait = 60.0 if deadline is None else max(deadline - time.monotonic(), 0) + 60.0
            for result in pool.results(len(args), wait):
                if result is not None:
                    model = _build(k, c, data)
                    model.set_weights(result.pop("weights"))
                    runs.append({"model": model, **result})
        restart += 1 + len(args)
        # The next restart needs what these took.
        estimate = time.monotonic() - begun
    return runs


def _build(k: int, c: int, data: PreparedData, *, batch_norm: bool = False) -> Any:
    from tinytnas_optuna._space import build_model

    return build_model(k, c, data.input_shape, data.num_classes, batch_norm=batch_norm)


def _train_restart(
    k: int, c: int, data: PreparedData, schedule: Schedule, restart: int, metric: str,
    seed: int, deadline: float | None, time_limit: float | None, recipe: Recipe,
) -> dict[str, Any]:
    """One restart of the final training (see :func:`_train_final`); its model is the
    family's network (batch normalisation folded)."""
    import keras

    from tinytnas_optuna._space import family_weights
    from tinytnas_optuna._training import train

    n = data.num_classes
    keras.utils.set_random_seed(seed + restart)  # before building: initial weights
    trained = _build(k, c, data, batch_norm=recipe.batch_norm)
    stop = None if deadline is None else (lambda: time.monotonic() >= deadline)
    result = train(trained, data, schedule, seed=seed + restart, stop=stop,
                   time_limit=time_limit, recipe=recipe,
                   keep_best=lambda pred: score(data.y_val, pred, metric, n))
    model = _build(k, c, data)
    model.set_weights(result.best_weights if result.best_weights is not None
                      else family_weights(trained))
    values = [score(data.y_val, p, metric, n) for p in result.predictions]
    return {"model": model, "val": max(values) if values else math.nan,
            "fit_loss": None if values else _fit_loss(model, data),
            "steps": result.steps, "complete": result.steps >= schedule.steps,
            "restart": restart, "recipe": recipe.to_dict()}


def _restart_weights(*args: Any) -> dict[str, Any]:
    """:func:`_train_restart` in a worker process: the model travels back as its weights."""
    run = _train_restart(*args)
    model = run.pop("model")
    return {**run, "weights": model.get_weights()}


def _fit_loss(model: Any, data: PreparedData) -> float:
    """Mean cross-entropy of the trained model on its own training series.

    With no held-out series (cross-validation), restarts are chosen on it: on CBF, ECGFiveDays
    and Ham (5 seeds each, same network and schedule) the restart that fitted its training data
    best was the best or second best on the official test split, and a bad initialisation
    (CBF: 65 % test against 97 %) fitted visibly worse.
    """
    probs = np.concatenate([np.asarray(model(data.x_train[i:i + 2048], training=False))
                            for i in range(0, len(data.x_train), 2048)])
    picked = probs[np.arange(len(data.y_train)), data.y_train]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, 1.0))))


def _report(
    out_dir: str | Path, *, k: int, c: int, data: PreparedData, x_eval: np.ndarray,
    y_eval: np.ndarray, evaluated_on: str, float_pred: np.ndarray, int8_pred: np.ndarray,
    model_bytes: bytes, profile: HardwareProfile, quant: dict[str, Any], schedule: Schedule,
    steps: int, restarts_run: int, best_val: float, holdout: bool, validation: str,
    class_names: list[str] | None, started: float, target: dict[str, Any] | None,
    model_source: str, model_reason: str | None, comparison: dict[str, Any] | None,
    phases: dict[str, float], input_setting: tuple[int, int] | None = None,
    recipe: dict[str, Any] | None = None,
) -> RetrainReport:
    """Score the exported model, write its files (:mod:`tinytnas_optuna._export`) and
    ``report.json``; return the report."""
    from tinytnas_optuna._export import arena_bytes, write_firmware_files, write_report

    export_started = time.monotonic()
    n = data.num_classes
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y_eval, int8_pred), 1)
    arena = arena_bytes(profile, None if target is None else target["ram_target"])
    out = Path(out_dir)
    files = write_firmware_files(
        out, model_bytes, arena_bytes=arena, input_shape=data.input_shape,
        operators=profile.operators, mean=data.mean, std=data.std, classes=data.classes,
        class_names=class_names, name="tinytnas_model", input_setting=input_setting,
    )
    int8_acc = score(y_eval, int8_pred, "accuracy", n)
    majority = chance_rate(y_eval, "accuracy", n)
    above = clearly_above(int8_acc, majority, len(y_eval))
    warning = None if above else (
        f"WARNING: the int8 model's {evaluated_on} accuracy {int8_acc:.4f} is not clearly above "
        f"the majority-class rate {majority:.4f}: not a deployable answer. Try more steps "
        "(--steps), balanced_accuracy as the metric, or more data.")
    report = RetrainReport(
        k=k, c=c, epochs_run=max(1, round(schedule.epochs(len(data.y_train)) * steps
                                          / schedule.steps)),
        best_val=best_val, evaluated_on=evaluated_on,
        float_accuracy=score(y_eval, float_pred, "accuracy", n),
        float_balanced_accuracy=score(y_eval, float_pred, "balanced_accuracy", n),
        int8_accuracy=int8_acc,
        int8_balanced_accuracy=score(y_eval, int8_pred, "balanced_accuracy", n),
        confusion_matrix=cm.tolist(), classes=[_plain(v) for v in data.classes],
        ram=profile.ram, flash=profile.flash, macs=profile.macs, arena_bytes=arena,
        figures_source=profile.source, files={k_: str(v) for k_, v in files.items()},
        validation=validation, steps=steps, schedule=schedule.to_dict(),
        restarts_run=restarts_run,
        val_float_accuracy=quant["float"] if holdout else None,
        val_int8_accuracy=quant["int8"] if holdout else None,
        quantization=quant, majority_rate=majority, above_chance=above, warning=warning,
        seconds=round(time.monotonic() - started, 1), target=target,
        model_source=model_source, model_reason=model_reason, comparison=comparison,
        phase_seconds={**{k_: round(v, 1) for k_, v in phases.items()},
                       "export": round(time.monotonic() - export_started, 1)},
        input=_input_report(input_setting, data.input_shape[0]),
        recipe=recipe,
    )
    write_report(out, report.to_dict())
    return report


def _input_report(input_setting: tuple[int, int] | None, length: int) -> dict[str, Any]:
    """What the model takes: ``decimate``, ``window`` (samples at the recorded rate), and
    ``length`` (samples the model sees)."""
    decimate, window = input_setting or (1, length)
    return {"decimate": int(decimate), "window": int(window), "length": int(length),
            "searched": input_setting is not None}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _encode_like(
    labels: np.ndarray, classes: tuple[Any, ...], error: type[Exception]
) -> np.ndarray:
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
