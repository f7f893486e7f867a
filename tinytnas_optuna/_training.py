"""How a network of the family is trained: schedules, the recipe, the loop, time estimates.

Trainings are sized in optimisation steps, not epochs: five epochs are ten gradient steps on a
60-series set and a thousand on HAR, so a fixed epoch count leaves small sets untrained. Every
training follows one schedule shape, linear warm-up then cosine decay to 1 % of the peak
learning rate, so it ends converged whatever its length.

- The search gives each candidate :data:`SEARCH_STEPS` steps (``search_schedule``).
- The final model gets :data:`FINAL_EPOCHS` epochs, at least :data:`FINAL_MIN_STEPS` and at
  most :data:`FINAL_MAX_STEPS` steps (``final_schedule``), :data:`RESTARTS` times; how long that
  takes, estimated from a search training's measured speed (``estimate_final_seconds``), is
  what a search keeps of its time bound for it.
- How candidates are validated (the data prepared, hold-out or folds, the metric, chance):
  :mod:`tinytnas_optuna._validation`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinytnas_optuna._validation import PreparedData

#: Gradient steps of one search training. 1,600 ranked networks better than 800 on Ham and
#: ECG5000 (benchmarks/results/rank_agreement_partial.txt) but halves the candidates a 3-minute
#: search can train; 800 with the higher peak learning rate below learns every tried set.
SEARCH_STEPS = 800
#: Final training length: this many epochs, clipped to the step range below.
FINAL_EPOCHS = 150
FINAL_MIN_STEPS = 3000
FINAL_MAX_STEPS = 15000
#: Validation points of one training (the search's value is the best of them).
SEARCH_EVALUATIONS = 8
FINAL_EVALUATIONS = 30
#: Peak Adam learning rate of a search training at batch 64 and above (smaller batches: scaled
#: with the square root of the batch). Short trainings need a high peak: at 3e-3, 800 steps left
#: most networks at chance on Ham and ECG5000; 5e-3..1e-2 learned them (docs/search.md).
SEARCH_LEARNING_RATE = 1e-2
#: Peak learning rate of the final training (HAR: 92.2 % at 3e-3, batch 64, 150 epochs).
FINAL_LEARNING_RATE = 3e-3
_WARMUP_SHARE = 0.05
_FLOOR = 0.01


@dataclass(frozen=True)
class Schedule:
    """One training's length and optimiser settings.

    Attributes:
        steps: Gradient steps.
        batch_size: Series per step.
        learning_rate: Peak Adam learning rate (after warm-up; cosine decay follows).
        evaluations: Validation points, evenly spaced; the last one ends the training.
    """

    steps: int
    batch_size: int
    learning_rate: float
    evaluations: int

    def epochs(self, n_samples: int) -> float:
        """Passes over ``n_samples`` training series this schedule makes."""
        return self.steps * self.batch_size / max(1, n_samples)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"steps": self.steps, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "evaluations": self.evaluations}


def _batch_size(n_samples: int, largest: int) -> int:
    # About 1/16 of the set per step, a power of two in 16..largest, never above the set.
    batch = 2 ** round(math.log2(min(max(n_samples / 16, 16), largest)))
    return int(max(1, min(batch, 2 ** int(math.log2(max(1, n_samples))))))


def _schedule(
    n_samples: int, steps: int, evaluations: int, *, epochs: int | None, batch_size: int | None,
    learning_rate: float | None, largest_batch: int, peak: float,
) -> Schedule:
    batch = batch_size or _batch_size(n_samples, largest_batch)
    if epochs is not None:
        steps = max(1, math.ceil(epochs * n_samples / batch))
    lr = learning_rate or peak * math.sqrt(min(batch, 64) / 64)
    return Schedule(int(steps), int(batch), float(lr), max(1, min(evaluations, int(steps))))


def search_schedule(
    n_samples: int, *, steps: int | None = None, epochs: int | None = None,
    batch_size: int | None = None, learning_rate: float | None = None,
) -> Schedule:
    """The schedule of one candidate's training in the search.

    Args:
        n_samples: Series it trains on (per fold under cross-validation).
        steps: Gradient steps (default :data:`SEARCH_STEPS`).
        epochs: Instead of steps: this many passes over the data (overrides ``steps``).
        batch_size: Override the batch size (about 1/16 of the set, 16..256).
        learning_rate: Override the peak learning rate (default :data:`SEARCH_LEARNING_RATE`).

    Returns:
        The :class:`Schedule`.

    Example:
        >>> search_schedule(60).steps, search_schedule(60, epochs=5).steps
        (800, 19)
    """
    return _schedule(n_samples, steps or SEARCH_STEPS, SEARCH_EVALUATIONS, epochs=epochs,
                     batch_size=batch_size, learning_rate=learning_rate, largest_batch=256,
                     peak=SEARCH_LEARNING_RATE)


def final_schedule(
    n_samples: int, *, steps: int | None = None, epochs: int | None = None,
    batch_size: int | None = None, learning_rate: float | None = None,
) -> Schedule:
    """The schedule of the final model's training.

    Args:
        n_samples: Training series.
        steps: Gradient steps (default: :data:`FINAL_EPOCHS` epochs within
            :data:`FINAL_MIN_STEPS`..:data:`FINAL_MAX_STEPS`).
        epochs: Instead of steps: this many passes over the data.
        batch_size: Override the batch size (about 1/16 of the set, 16..64).
        learning_rate: Override the peak learning rate.

    Returns:
        The :class:`Schedule`.

    Example:
        >>> final_schedule(60).steps, final_schedule(6258).steps
        (3000, 14668)
    """
    batch = batch_size or _batch_size(n_samples, 64)
    if steps is None:
        steps = min(max(math.ceil(FINAL_EPOCHS * n_samples / batch), FINAL_MIN_STEPS),
                    FINAL_MAX_STEPS)
    return _schedule(n_samples, steps, FINAL_EVALUATIONS, epochs=epochs, batch_size=batch,
                     learning_rate=learning_rate, largest_batch=64, peak=FINAL_LEARNING_RATE)


@dataclass(frozen=True)
class Recipe:
    """How a network is trained, beyond its schedule: what the deployed network never sees.

    Attributes:
        batch_norm: Train with a ``BatchNormalization`` after each separable convolution,
            folded into the convolution afterwards
            (:func:`~tinytnas_optuna._space.family_weights`): the deployed network is the
            family's own.
        jitter: Standard deviation of Gaussian noise added to each (standardised) training
            series at every step (0: none).
        scaling: Standard deviation of a per-series, per-channel factor around 1 that multiplies
            each training series at every step (0: none).
        label_smoothing: Share of each one-hot target spread over all classes (0: none).
    """

    batch_norm: bool = False
    jitter: float = 0.0
    scaling: float = 0.0
    label_smoothing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"batch_norm": self.batch_norm, "jitter": self.jitter, "scaling": self.scaling,
                "label_smoothing": self.label_smoothing}

    @property
    def step_cost(self) -> float:
        """Seconds of a training step relative to the plain recipe's (an estimate).

        Measured on the final schedule (``benchmarks/recipe_levers.py``, 2026-12-07): batch
        normalisation 1.49x on HAR, 1.57x on CBF and Car; jitter and scaling 1.04x on HAR.

        Example:
            >>> Recipe().step_cost, round(FINAL_RECIPE.step_cost, 2)
            (1.0, 1.65)
        """
        return ((_BATCH_NORM_COST if self.batch_norm else 1.0)
                * (_AUGMENT_COST if self.jitter or self.scaling else 1.0))


_BATCH_NORM_COST = 1.5
_AUGMENT_COST = 1.1

#: The recipe of the search's candidates unless another is given: batch normalisation (folded
#: at export). At the search's 800 steps it lifted the validation accuracy of two networks on
#: 13 sets by 7.5 points on average (Fish and Car from chance to 45-70 %) and lost up to 7 on
#: Coffee's 28 series (``docs/search.md``, "Recipe levers"); a training takes 1.1-1.9x as long.
DEFAULT_RECIPE = Recipe(batch_norm=True)
#: The recipe of the final model unless another is given: batch normalisation (folded at
#: export: the deployed network is the family's own), jitter and scaling. Chosen on
#: validation only (``docs/search.md``, "The final model's recipe").
FINAL_RECIPE = Recipe(batch_norm=True, jitter=0.03, scaling=0.1)


def final_recipes(final: Recipe, candidates: Recipe, *, holdout: bool,
                  n_train: int) -> list[Recipe]:
    """The recipes of the final training's restarts, in turn (restart ``i``: ``[i % len]``).

    With a hold-out both, and validation chooses per dataset. Under cross-validation nothing is
    left to choose on: the final recipe when there are at least ``CV_BELOW`` series (HAR's
    subject folds: +1.8 points on validation, +3.2 on test over 3 seeds), else the candidates'.
    On the small sets the augmentation's gain on validation changed sign from set to set (3-4
    folds of 10-60 series) and on CBF's 900 test series it lost 14 points over 4 seeds
    (``docs/search.md``, "The final model's recipe").

    Example:
        >>> final_recipes(FINAL_RECIPE, DEFAULT_RECIPE, holdout=False, n_train=30)
        [Recipe(batch_norm=True, jitter=0.0, scaling=0.0, label_smoothing=0.0)]
        >>> len(final_recipes(FINAL_RECIPE, DEFAULT_RECIPE, holdout=True, n_train=30))
        2
    """
    from tinytnas_optuna._validation import CV_BELOW

    if holdout:
        return [final] if final == candidates else [final, candidates]
    return [final if n_train >= CV_BELOW else candidates]


def slowest_step(recipes: Sequence[Recipe], measured_with: Recipe) -> float:
    """How much longer the slowest of ``recipes`` takes per step than ``measured_with``, whose
    step time was measured (an estimate from :attr:`Recipe.step_cost`).

    Example:
        >>> round(slowest_step([FINAL_RECIPE, DEFAULT_RECIPE], Recipe()), 2)
        1.65
    """
    return max(r.step_cost for r in recipes) / measured_with.step_cost


@dataclass
class TrainResult:
    """What one training did.

    Attributes:
        steps: Gradient steps completed.
        eval_steps: Step count at each completed validation point.
        predictions: Predicted validation labels at each of those points.
        cut: Whether ``stop`` (the time bound) ended it before its schedule.
        best_weights: Weights at the best validation point (``keep_best``), else None.
        best_value: ``keep_best``'s value there, else None.
        seconds: Wall time.
        step_seconds: Seconds per training step after the first validation point (the
            compilation of training and prediction, and the validations, excluded); None when
            it ended before.
        eval_seconds: Median seconds of a validation point after the first (prediction and
            callbacks); None without one.
    """

    steps: int
    eval_steps: list[int]
    predictions: list[np.ndarray]
    cut: bool
    best_weights: list[np.ndarray] | None
    seconds: float
    step_seconds: float | None = None
    eval_seconds: float | None = None
    best_value: float | None = None


def train(
    model: Any,
    data: PreparedData,
    schedule: Schedule,
    *,
    seed: int = 0,
    stop: Callable[[], bool] | None = None,
    time_limit: float | None = None,
    on_evaluation: Callable[[int, np.ndarray], bool] | None = None,
    keep_best: Callable[[np.ndarray], float] | None = None,
    recipe: Recipe = Recipe(),
) -> TrainResult:
    """Train a compiled-here Keras model on ``data``'s hold-out with warm-up + cosine decay.

    Args:
        model: An uncompiled Keras model of :func:`~tinytnas_optuna._space.build_model` (with
            ``batch_norm`` when the recipe has it).
        data: A hold-out (``data.folds`` None); ``x_val`` may be empty (nothing is validated,
            the schedule still runs to its end).
        schedule: Steps, batch, peak learning rate, validation points.
        seed: Seed of the data order (the initial weights are the caller's).
        stop: Asked after every few steps (the time bound); True cuts the training, and a
            validation point not reached is not scored.
        time_limit: Seconds this training may take: after the first validation point the
            schedule is shortened (still decaying to its end) to what the measured speed
            affords.
        on_evaluation: ``callable(step, predictions) -> bool`` after each validation point;
            True stops training (a pruner).
        keep_best: ``callable(predictions) -> float``: keep the weights of the best validation
            point (ties go to the later, more converged, point), as the family network's
            (:func:`~tinytnas_optuna._space.family_weights`).
        recipe: Augmentation and loss of the training (:class:`Recipe`).

    Returns:
        The :class:`TrainResult`.
    """
    import keras
    import tensorflow as tf

    from tinytnas_optuna._space import family_weights

    started = time.monotonic()
    keras.utils.set_random_seed(seed)
    total = tf.Variable(float(schedule.steps), trainable=False, dtype=tf.float32)
    chunk = max(1, math.ceil(schedule.steps / schedule.evaluations))
    # Several steps per call of the compiled function (less Python overhead per step); a
    # validation chunk is a whole number of calls, so validation lands on the planned steps.
    per_call = min(8, chunk)
    chunk = per_call * math.ceil(chunk / per_call)
    classes = int(model.outputs[0].shape[-1])
    smoothing = recipe.label_smoothing
    model.compile(
        optimizer=keras.optimizers.Adam(_warmup_cosine(schedule.learning_rate, schedule.steps,
                                                       total)),
        loss=(keras.losses.CategoricalCrossentropy(label_smoothing=smoothing) if smoothing
              else "sparse_categorical_crossentropy"),
        steps_per_execution=per_call,
    )
    n = len(data.y_train)
    batch = min(schedule.batch_size, n)
    # No autotuning: its background thread outlives the training, and destroying the iterator
    # later waits for it to wake up (seconds, mid-way through the next training's tracing).
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = (tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
               .shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
               .batch(batch, drop_remainder=True))
    if recipe.jitter or recipe.scaling or smoothing:
        dataset = dataset.map(_augmentation(recipe, classes, seed))
    dataset = dataset.prefetch(2).with_options(options)
    result = TrainResult(0, [], [], False, None, 0.0)
    state: dict[str, Any] = {"steps": 0, "best": -math.inf, "planned": schedule.steps}
    validate = len(data.y_val) > 0

    class _Loop(keras.callbacks.Callback):
        def _fit_to_time(self) -> None:
            # The speed is measured from the end of the first validation point on (later
            # validations included): the first chunk includes building the training function
            # and the first validation the prediction one. Measured from the first chunk's end
            # instead, the prediction's compilation made one-core runs on ElectricDevices
            # look a third slower than they were, and final schedules were cut for nothing.
            if "first" not in state:
                return
            now = time.monotonic()
            t0, s0 = state["first"]
            rate = (state["steps"] - s0) / max(now - t0, 1e-6)
            left = time_limit - (now - started)  # type: ignore[operator]
            affordable = state["steps"] + int(rate * max(left, 0.0))
            if affordable < state["planned"]:
                state["planned"] = max(state["steps"], affordable)
                total.assign(float(state["planned"]))

        def on_train_batch_end(self, batch_index: int, logs: Any = None) -> None:
            # Called once per compiled call (per_call steps): the optimiser counts the steps.
            state["steps"] = int(self.model.optimizer.iterations.numpy())
            if stop is not None and stop():
                result.cut = True
                self.model.stop_training = True
            elif state["steps"] >= state["planned"]:
                self.model.stop_training = True

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if result.cut:
                return
            begun = time.monotonic()
            if time_limit is not None:
                self._fit_to_time()
            if not validate:
                state.setdefault("first", (time.monotonic(), state["steps"]))
                return
            pred = predict_labels(self.model, data.x_val)
            result.eval_steps.append(state["steps"])
            result.predictions.append(pred)
            if keep_best is not None:
                value = keep_best(pred)
                if value >= state["best"]:
                    state["best"] = value
                    result.best_weights = family_weights(self.model)
                    result.best_value = value
            if on_evaluation is not None and on_evaluation(state["steps"], pred):
                self.model.stop_training = True
            # Speed is timed from here: the first validation compiled the prediction function.
            if "first" in state:
                evals.append(time.monotonic() - begun)
            state.setdefault("first", (time.monotonic(), state["steps"]))

    evals: list[float] = []
    epochs = math.ceil(schedule.steps / chunk)
    model.fit(dataset, epochs=epochs, steps_per_epoch=chunk, shuffle=False, verbose=0,
              callbacks=[_Loop()])
    result.steps = state["steps"]
    result.seconds = time.monotonic() - started
    if "first" in state and result.steps > state["first"][1]:
        t0, s0 = state["first"]
        result.step_seconds = (started + result.seconds - t0 - sum(evals)) / (result.steps - s0)
    if evals:
        result.eval_seconds = float(np.median(evals))
    return result


def _augmentation(recipe: Recipe, classes: int, seed: int) -> Callable[[Any, Any], Any]:
    """The per-batch map of a recipe: jitter, scaling, one-hot targets for label smoothing."""
    import tensorflow as tf

    generator = tf.random.Generator.from_seed(seed)

    def augment(x: Any, y: Any) -> Any:
        if recipe.scaling:
            shape = tf.stack([tf.shape(x)[0], 1, tf.shape(x)[2]])
            x = x * generator.normal(shape, 1.0, recipe.scaling)
        if recipe.jitter:
            x = x + generator.normal(tf.shape(x), 0.0, recipe.jitter)
        if recipe.label_smoothing:
            y = tf.one_hot(y, classes)
        return x, y

    return augment


def _warmup_cosine(peak: float, steps: int, total: Any) -> Any:
    """Linear warm-up to ``peak``, then cosine decay to 1 % of it at ``total`` (a variable,
    so that a training shortened to its time limit still decays to its end)."""
    import keras
    from keras import ops

    warmup = max(1.0, _WARMUP_SHARE * steps)

    class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            step = ops.cast(step, "float32")
            end = ops.cast(total, "float32")
            warm = peak * (step + 1.0) / warmup
            progress = ops.clip((step - warmup) / ops.maximum(end - warmup, 1.0), 0.0, 1.0)
            decay = _FLOOR + (1.0 - _FLOOR) * 0.5 * (1.0 + ops.cos(math.pi * progress))
            return ops.where(step < warmup, warm, peak * decay)

        def get_config(self) -> dict[str, Any]:
            return {"peak": peak, "steps": steps}

    return WarmupCosine()


def predict_labels(model: Any, x: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Predicted class of each series, in chunks.

    Calling the model directly skips ``predict()``'s per-call set-up (~20 % of a search epoch).
    """
    if len(x) == 0:
        return np.empty(0, np.int64)
    return np.concatenate(
        [np.asarray(model(x[i:i + chunk], training=False)).argmax(axis=1)
         for i in range(0, len(x), chunk)]
    )


# -- how long the final model takes (the search keeps that much of its bound for it) -----------

# Seconds kept back from ``timeout`` for conversion, TFLM scoring and export: a fixed part, a
# part per conversion (0.2-1 s measured here, calibration included) and a per-series TFLM cost
# (measured ~0.3 ms per HAR window on this CPU; 1 ms is generous).
_RESERVE_SECONDS = 2.0
_CONVERSION_SECONDS = 1.5
_TFLM_SECONDS_PER_SERIES = 1e-3
#: Restarts of the final training.
RESTARTS = 3
# For the estimate of the final training's time: building, compiling and tracing the model,
# and scoring its fit (per restart). Measured: 2-2.6 s in a lone process; 4.4 s in `tinytnas
# search` beside another CPU-bound process (CBF, 3,000 steps of (4,3) in 8.8 s, estimated 6.1 s
# with 2 s here: the reserve held one restart of three).
_RESTART_SECONDS = 3.0


def after_training_seconds(*, n_val: int, n_eval: int, n_train: int, restarts: int) -> float:
    """Seconds :func:`~tinytnas_optuna.retrain_best` keeps back from its ``timeout`` for
    conversion, TFLM scoring and export (its training is planned to end that long before the
    bound): with a hold-out every restart is converted and scored, else the one that fits best.

    Example:
        >>> round(after_training_seconds(n_val=0, n_eval=1000, n_train=6258, restarts=3), 1)
        10.8
    """
    conversions = restarts if n_val else 1
    return (_RESERVE_SECONDS + _CONVERSION_SECONDS * conversions
            + _TFLM_SECONDS_PER_SERIES * (n_val * restarts + n_eval + n_train))


def estimate_final_seconds(
    step_seconds: float, search_batch: int, *, n_train: int, n_val: int, n_eval: int,
    eval_seconds: float = 0.0, restarts: int = RESTARTS, jobs: int = 1,
) -> float:
    """Estimated wall time of :func:`~tinytnas_optuna.retrain_best` (default schedule), from a
    search training: the final model's reserve at the end of a search's time bound.

    The training part comes from the search's measured speed (:func:`restart_seconds`). The
    rest is what ``retrain_best`` itself keeps back for conversion, TFLM scoring and export (its
    training is planned to end that long before its bound), so that a bound of this many
    seconds lets the final schedule run to its end: without that part, runs on ECG5000 had
    their final schedule cut to a third.

    Args:
        step_seconds: Measured seconds per training step of the network in the search.
        search_batch: The search's batch size.
        n_train: Series the final model trains on.
        n_val: Validation series of the final model (0 under cross-validation).
        n_eval: Series the report scores.
        eval_seconds: Measured seconds of one validation point (0 when ``n_val`` is 0).
        restarts: Restarts of the final training.
        jobs: Processes of the search: the first ``jobs`` restarts train side by side, the
            others one after another (:func:`~tinytnas_optuna._retrain.retrain_best`).

    Returns:
        Seconds (an estimate).

    Example:
        >>> round(estimate_final_seconds(0.004, 256, n_train=6258, n_val=0, n_eval=1000))
        116
        >>> round(estimate_final_seconds(0.004, 256, n_train=6258, n_val=0, n_eval=1000,
        ...                              jobs=2))
        83
    """
    schedule = final_schedule(n_train)
    per_restart = restart_seconds(step_seconds, search_batch, schedule, eval_seconds)
    # One round for the restarts trained side by side, then one per remaining restart. The
    # search's step time was measured with its ``jobs`` processes busy: it holds the contention.
    rounds = 1 + max(restarts - max(jobs, 1), 0)
    # The search's own network is converted and checked first (the fallback).
    fallback = _CONVERSION_SECONDS + _TFLM_SECONDS_PER_SERIES * (n_val or n_train)
    return fallback + rounds * per_restart + after_training_seconds(
        n_val=n_val, n_eval=n_eval, n_train=n_train, restarts=restarts)


def restart_seconds(
    step_seconds: float, search_batch: int, schedule: Schedule, eval_seconds: float = 0.0
) -> float:
    """Estimated seconds of one final training (one restart), from the search's speed.

    A step's time grows with the batch less than in proportion (the per-step overhead of a
    small network dominates), so the search's seconds per step are scaled by the square root
    of the batch ratio; building and compiling the model adds about 2 s.

    Args:
        step_seconds: Measured seconds per training step of the network in the search.
        search_batch: The search's batch size.
        schedule: The final schedule.
        eval_seconds: Measured seconds of one validation point (0: none).

    Returns:
        Seconds (an estimate).

    Example:
        >>> round(restart_seconds(0.004, 256, final_schedule(6258)), 1)
        32.3
    """
    per_step = step_seconds * math.sqrt(schedule.batch_size / search_batch)
    return (schedule.steps * per_step + schedule.evaluations * eval_seconds
            + _RESTART_SECONDS)
