"""TinyTNASObjective: measure a candidate, refuse it if it cannot fit, else train it fast.

The objective never decides what comes next (the sampler does); it prepares the data once,
gates every candidate on its hardware figures before any training, trains under a hard deadline,
and records everything the sampler, the dashboard and :func:`summarize` read.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from tinytnas_optuna._boards import check_board
from tinytnas_optuna._budget import HardwareBudget, figure_text
from tinytnas_optuna._clock import SearchClock
from tinytnas_optuna._folds import epochs_after, pooled_curve, upper_bound
from tinytnas_optuna._gate import check_reachable, measure, record_figures
from tinytnas_optuna._hardware._types import MeasurementError
from tinytnas_optuna._input import InputSetting, InputSpace
from tinytnas_optuna._networks import NetworkKeeper, TrainedNetwork, kept_weights, upload_network
from tinytnas_optuna._recovery import (
    claim,
    fail_dead_trials,
)
from tinytnas_optuna._reuse import reuse_identical
from tinytnas_optuna._sampler import TinyTNASSampler, sampler_name
from tinytnas_optuna._space import C_RANGE, K_RANGE, Architecture, architecture
from tinytnas_optuna._study import (
    DEFAULT_METRIC,
    DEFAULT_SEED,
    RunRecord,
    SearchSettings,
    SearchSpec,
    StudyMismatchError,
    bind,
    check_class_names,
    fingerprint,
    record_run,
    set_metric_name,
    stop_search,
)
from tinytnas_optuna._training import (
    DEFAULT_RECIPE,
    FINAL_RECIPE,
    Recipe,
    Schedule,
    TrainResult,
    after_training_seconds,
    estimate_final_seconds,
    final_recipes,
    search_schedule,
    slowest_step,
)
from tinytnas_optuna._trial import (
    CANDIDATE,
    EPOCHS,
    ERROR,
    EVAL_SECONDS,
    FIDELITY,
    FINISHED,
    FOLDS,
    INPUT,
    INTERRUPTED,
    LEVEL,
    PARAMS,
    PHASE,
    SAMPLER_PHASE,
    STEP_SECONDS,
    STEPS,
    TRAIN_SECONDS,
    VALIDATION,
    WIDTHS,
    trial_value,
)
from tinytnas_optuna._validation import (
    METRICS,
    VAL_FRACTION,
    PreparedData,
    chance_rate,
    prepare_data,
    score,
)

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from tinytnas_optuna._hardware import HardwareProfile
    from tinytnas_optuna._parallel import WorkerPool
    from tinytnas_optuna._retrain import RetrainReport

#: A re-ranking training (fidelity level >= 1) is this many times the search's steps.
RERANK_STEPS_FACTOR = 2


class TinyTNASObjective:
    """The hardware-aware objective: suggests ``k`` and ``c``, returns validation accuracy.

    Each call suggests ``k`` (int, log scale) and ``c`` (int), measures the candidate (exact
    analytic MACs first, then RAM/flash/MACs measured on the int8 model in TFLite Micro), records
    the figures as user attrs and as Optuna constraints ``ram``, ``flash``, ``macs`` (relative
    excess, <= 0 fits), and then either prunes it untrained (infeasible) or trains it.

    On the first trial it runs on a study (or :meth:`bind`) it records the search's
    :class:`~tinytnas_optuna.SearchSpec` and what its other processes and views read (the
    class names, the artifact folder, the time bound: :class:`~tinytnas_optuna._study.RunRecord`),
    so that ``tinytnas show``, ``retrain``, ``worker`` and ``dashboard`` work on a study made
    from Python as on one made by ``tinytnas search``.

    .. note::
        Each validation point is reported, so the study's pruner applies.
        ``optuna.create_study`` defaults to ``MedianPruner``; pass
        ``pruner=optuna.pruners.NopPruner()`` for full trainings.

    Args:
        train: ``(features, labels)``; features ``(N, L, C)`` or ``(N, L)``.
        val: Optional ``(features, labels)`` for validation.
        budget: The :class:`HardwareBudget`. With a latency, candidates that fit the other
            three figures are also run on the board's emulated core (about 1 s each).
        steps: Gradient steps per candidate training (default
            :data:`~tinytnas_optuna._training.SEARCH_STEPS`), warm-up then cosine decay.
        epochs: Instead of ``steps``: this many passes over the training data per candidate
            (an explicit override; the step default ranks networks at any data size).
        seed: Seed for the split and for each candidate's training (derived from ``(k, c)`` so a
            candidate's accuracy does not depend on which worker trains it or when).
        timeout: Seconds from this objective's first call in this process for the whole job:
            the search, then (with ``reserve_final``) the final model of
            :meth:`retrain_best`. The search ends (any training in flight stopped, no new one
            started) early enough to leave the final training the time it needs, estimated
            from the measured speed of the best candidate's trainings.
        reserve_final: Keep that time for the final model (default); False: the search
            itself uses all of ``timeout``.
        clock_start: ``time.monotonic()`` from which ``timeout`` counts (default: this
            objective's first call); the CLI passes its own start, so that loading the data
            and TensorFlow count too.
        groups: Group ids of ``train`` samples for a group-aware validation split.
        val_fraction: Held-out share when ``val`` is None.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        batch_size: Override the batch size of the search schedule.
        learning_rate: Override its peak learning rate.
        int8_io: Measure the model with int8 input/output instead of float32.
        on_trained: ``callable(trial, model, data)`` called after each training that completed
            at least one epoch, with the trained Keras model (at its best validation point;
            under cross-validation its best fold's) and the :class:`PreparedData` (e.g. to
            store the model as an artifact); the model is discarded afterwards.
        artifact_store: Where each trained candidate's network is stored (weights, as an
            artifact of its trial), so that the final model of another process can fall back
            on it; the best few are kept in this process's memory either way.
        artifact_dir: A folder for both: each trained candidate's int8 ``.tflite``
            (:class:`~tinytnas_optuna.TFLiteArtifactUploader`, unless ``on_trained`` is given)
            and its network (unless ``artifact_store`` is given). The folder of a
            ``FileSystemArtifactStore`` (this one, or the one given) is recorded in the study
            for ``tinytnas dashboard`` and ``retrain``; a study that recorded another is
            refused.
        class_names: Readable names of the classes, in the order of the sorted labels (the
            label map); recorded for the final model's C header and reports (default: the
            labels themselves).
        recipe: How candidates are trained beyond their schedule (batch normalisation folded
            at export, augmentation, label smoothing; default: batch normalisation,
            :data:`~tinytnas_optuna._training.DEFAULT_RECIPE`). Recorded with the search.
        final_recipe: How the final model is trained (default: batch normalisation, jitter
            and scaling, :data:`~tinytnas_optuna._training.FINAL_RECIPE`, chosen by
            measurement on validation: see ``docs/search.md``). Recorded with the search.
        input_space: Input settings to search as well (:class:`~tinytnas_optuna.InputSpace`:
            decimation factors and window lengths): each candidate is (input, ``k``, ``c``), its
            figures measured on its own int8 model; the trial gets the params ``decimate`` and
            ``window``. None (default): the series as given.
    """

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],
        *,
        val: tuple[np.ndarray, np.ndarray] | None = None,
        budget: HardwareBudget,
        steps: int | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        timeout: float | None = None,
        reserve_final: bool = True,
        clock_start: float | None = None,
        groups: np.ndarray | None = None,
        val_fraction: float = VAL_FRACTION,
        metric: str = DEFAULT_METRIC,
        k_range: tuple[int, int] = K_RANGE,
        c_range: tuple[int, int] = C_RANGE,
        batch_size: int | None = None,
        learning_rate: float | None = None,
        int8_io: bool = False,
        on_trained: Callable[[optuna.Trial, Any, PreparedData], None] | None = None,
        artifact_store: ArtifactStore | None = None,
        recipe: Recipe | None = None,
        final_recipe: Recipe | None = None,
        artifact_dir: str | Path | None = None,
        class_names: Sequence[str] | None = None,
        input_space: InputSpace | None = None,
    ) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        for name, value in (("steps", steps), ("epochs", epochs)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if not isinstance(budget, HardwareBudget):
            raise TypeError("budget must be a HardwareBudget")
        self.seed = DEFAULT_SEED if seed is None else int(seed)
        # The raw inputs, for the final model (retrain_best prepares them the same way).
        self._inputs = {"train": train, "val": val, "groups": groups,
                        "val_fraction": val_fraction}
        self._prepared: dict[int, PreparedData] = {}
        self.input_space = input_space
        #: The input settings searched (None: the recorded input only); index 0 first.
        self.settings: list[InputSetting] | None = None
        if input_space is not None:
            self.settings = input_space.settings(int(np.asarray(train[0]).shape[1]))
        #: The data as the first input setting gives it (the recorded data without a space).
        self.data = self.data_for(0)
        self.class_names = check_class_names(class_names, self.data.num_classes)
        self.budget = budget
        if budget.latency_ms is not None:
            # Found in the cache, or built now (once per machine, about 2 min per core): a missing
            # toolchain is refused before any trial, not at the first candidate that fits.
            from tinytnas_optuna._target._build import build_runner

            build_runner(check_board(str(budget.board)).core)
        self.metric = metric
        self.k_range = k_range
        self.c_range = c_range
        # Sized on what one training sees: a fold's training part under cross-validation.
        self.schedule: Schedule = search_schedule(
            len(self.data.splits()[0].y_train), steps=steps, epochs=epochs,
            batch_size=batch_size, learning_rate=learning_rate)
        #: The time bound in this process (:class:`~tinytnas_optuna._clock.SearchClock`).
        self.clock = SearchClock(timeout, reserve_final=reserve_final, start=clock_start)
        self.int8_io = int8_io
        if artifact_dir is not None:
            from optuna.artifacts import FileSystemArtifactStore

            from tinytnas_optuna._dashboard import TFLiteArtifactUploader

            # The folder is made when the study is bound: a refused run leaves nothing behind.
            store = FileSystemArtifactStore(str(Path(artifact_dir).resolve()))
            on_trained = on_trained or TFLiteArtifactUploader(store, int8_io=int8_io)
            artifact_store = artifact_store or store
        self.on_trained = on_trained
        self.artifact_store = artifact_store
        self.recipe = DEFAULT_RECIPE if recipe is None else recipe
        self.final_recipe = FINAL_RECIPE if final_recipe is None else final_recipe
        #: The best networks this process trained (the final model's fallback).
        self.networks = NetworkKeeper()
        self._study: optuna.Study | None = None
        self._given = {"steps": steps, "epochs": epochs, "batch_size": batch_size,
                       "learning_rate": learning_rate, "val_fraction": val_fraction}
        self._fingerprints = {
            "train_fingerprint": fingerprint(*train),
            "val_fingerprint": None if val is None else fingerprint(*val),
            "groups_fingerprint": None if groups is None else fingerprint(groups),
        }
        self._bound: set[tuple[int, int]] = set()
        #: Whether this objective records its time bound in the study (:class:`RunRecord`):
        #: False for a worker that joined a search (the search's bound stands) and for the
        #: copies in the worker processes of a parallel search.
        self.records_bound = True
        self._bound_recorded: set[tuple[int, int]] = set()
        self.check_budget_reachable()
        #: The worker processes of a parallel search (:func:`tinytnas_optuna.optimize`).
        self.pool: WorkerPool | None = None
        #: Processes of the search (set by :func:`tinytnas_optuna.optimize`): the final
        #: training's first restarts run side by side on as many, which its reserve counts.
        self.jobs = 1
        # The measuring and converting processes start now: their imports overlap ours.
        from tinytnas_optuna._hardware._native import CONVERTER, TFLM

        CONVERTER.start()
        TFLM.start()

    def data_for(self, setting: int) -> PreparedData:
        """The data of an input setting, prepared once (same split or folds for every setting:
        they depend on the labels, groups and seed only).

        Args:
            setting: Index into :attr:`settings` (0 without an input space).

        Returns:
            The :class:`~tinytnas_optuna._validation.PreparedData`.
        """
        if setting not in self._prepared:
            train, val = self._inputs["train"], self._inputs["val"]
            if self.settings is not None:
                chosen = self.settings[setting]
                train = (chosen.apply(train[0]), train[1])
                val = None if val is None else (chosen.apply(val[0]), val[1])
            self._prepared[setting] = prepare_data(
                train, val, groups=self._inputs["groups"],
                val_fraction=self._inputs["val_fraction"], seed=self.seed)
        return self._prepared[setting]

    def input_of(self, setting: int) -> tuple[int, int] | None:
        """``(decimate, window)`` of an input setting (None without an input space)."""
        if self.settings is None:
            return None
        chosen = self.settings[setting]
        return chosen.decimate, int(chosen.window or self.recorded_shape[0])

    def input_shape_of(self, setting: int) -> tuple[int, int]:
        """``(length, channels)`` a model of an input setting takes."""
        shape = self.recorded_shape
        if self.settings is None:
            return shape
        return self.settings[setting].length(shape[0]), shape[1]

    @property
    def recorded_shape(self) -> tuple[int, int]:
        """``(length, channels)`` of the series as given."""
        x = np.asarray(self._inputs["train"][0])
        return int(x.shape[1]), int(x.shape[2]) if x.ndim == 3 else 1

    def __getstate__(self) -> dict[str, Any]:
        # Pickled into the worker processes of a parallel search: what is per process (the
        # study bound here, the networks kept, the pool) starts anew there.
        state = self.__dict__.copy()
        state.update(_study=None, _bound=set(), networks=NetworkKeeper(), pool=None,
                     records_bound=False)
        return state

    @classmethod
    def from_settings(
        cls, settings: SearchSettings, train: tuple[np.ndarray, np.ndarray], *,
        val: tuple[np.ndarray, np.ndarray] | None = None, groups: np.ndarray | None = None,
        **kwargs: Any,
    ) -> TinyTNASObjective:
        """The objective of a search's settings (given, or :attr:`SearchSpec.settings` of a
        recorded search) on its data.

        Args:
            settings: The :class:`~tinytnas_optuna._study.SearchSettings`.
            train: ``(features, labels)``.
            val: Validation set, or None.
            groups: Group ids, or None.
            **kwargs: The run's arguments (``timeout``, ``reserve_final``, ``clock_start``,
                ``artifact_dir``, ``class_names``...).

        Returns:
            The :class:`TinyTNASObjective`.
        """
        return cls(
            train, val=val, groups=groups, budget=settings.budget, steps=settings.steps,
            epochs=settings.epochs, seed=settings.seed, val_fraction=settings.val_fraction,
            metric=settings.metric, k_range=settings.k_range, c_range=settings.c_range,
            batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            int8_io=settings.int8_io, recipe=settings.recipe,
            final_recipe=settings.final_recipe, input_space=settings.input_space,
            **kwargs)

    @property
    def artifact_dir(self) -> Path | None:
        """The folder of this search's artifact store, when it is a folder (else None)."""
        from optuna.artifacts import FileSystemArtifactStore

        uploader_store = getattr(self.on_trained, "artifact_store", None)
        for store in (self.artifact_store, uploader_store):
            if isinstance(store, FileSystemArtifactStore):
                return Path(store._base_path).resolve()
        return None

    def start_clock(self) -> None:
        """Start the time bound now, unless it started already (default: at the first trial).

        :func:`tinytnas_optuna.optimize` calls it before starting worker processes, so that
        every process of the search counts from the same instant.
        """
        self.clock.start_now()

    def close_pool(self) -> None:
        """Release the worker processes of a parallel search (after its final model)."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def spec(self, sampler: optuna.samplers.BaseSampler) -> SearchSpec:
        """What defines this search, as the study records it (see :mod:`tinytnas_optuna._study`).

        Args:
            sampler: The study's sampler.

        Returns:
            The :class:`~tinytnas_optuna._study.SearchSpec`.
        """
        return SearchSpec(
            **self._fingerprints, budget=self.budget.to_dict(),
            input_shape=[int(n) for n in self.recorded_shape],
            label_map=np.asarray(self.data.classes).tolist(), seed=self.seed,
            metric=self.metric, k_range=list(self.k_range), c_range=list(self.c_range),
            int8_io=self.int8_io, sampler=sampler_name(sampler), recipe=self.recipe.to_dict(),
            final_recipe=self.final_recipe.to_dict(),
            input_settings=(None if self.input_space is None
                            else self.input_space.to_list(self.recorded_shape[0])),
            **self._given,
        )

    def bind(self, study: optuna.Study) -> bool:
        """Record this search's spec in a new study, or check it against the recorded one.

        Called by the first trial this objective runs on a study; call it yourself to get the
        check before ``study.optimize`` (``tinytnas search`` does). Also refuses a
        TinyTNASSampler whose ranges differ from this objective's.

        Args:
            study: The study.

        Returns:
            True when the study was new (the spec was recorded).

        Raises:
            StudyMismatchError: The study was made with other data or settings.
        """
        sampler = study.sampler
        if isinstance(sampler, TinyTNASSampler) and (
                sampler.k_range != tuple(self.k_range) or sampler.c_range != tuple(self.c_range)):
            raise StudyMismatchError(
                f"the sampler's ranges k={sampler.k_range}, c={sampler.c_range} differ from the "
                f"objective's k={tuple(self.k_range)}, c={tuple(self.c_range)}")
        new = bind(study, self.spec(sampler))
        folder = self.artifact_dir
        recorded = RunRecord.of(study).artifact_dir
        if folder is not None and recorded is not None and Path(recorded) != folder:
            # The dashboard, retrain and the workers read the recorded folder.
            raise StudyMismatchError(
                f"study {study.study_name!r} stores its models in {recorded}; this run's "
                f"artifact folder {folder} would split them (leave it out, or give that one)")
        if "chance_rate" not in study.user_attrs:
            # Summaries and the chance check read these, whoever made the study.
            for key, value in self.validation_facts().items():
                study.set_user_attr(key, value)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            record_run(study, artifact_dir=str(folder))
        if self.class_names is not None:
            record_run(study, class_names=self.class_names)
        set_metric_name(study, self.metric)
        self._bound.add((id(study._storage), study._study_id))
        return new

    def _record_bound(self, study: optuna.Study) -> None:
        """Record this run's time bound, once per study (not from a worker: it has the
        search's)."""
        key = (id(study._storage), study._study_id)
        if not self.records_bound or key in self._bound_recorded:
            return
        self._bound_recorded.add(key)
        left = self.clock.left()
        ends_at = None if left is None else time.time() + left
        record_run(study, timeout_seconds=self.timeout, search_ends_at=ends_at,
                   reserve_final=self.reserve_final)

    @property
    def timeout(self) -> float | None:
        """Seconds of the whole job (the search and, with ``reserve_final``, the final model)."""
        return self.clock.timeout

    @property
    def reserve_final(self) -> bool:
        """Whether the search leaves the final model its time."""
        return self.clock.reserve_final

    @property
    def clock_start(self) -> float | None:
        """``time.monotonic()`` from which ``timeout`` counts (None: the first trial)."""
        return self.clock.start

    @property
    def deadline(self) -> float | None:
        """``time.monotonic()`` at which the search ends (None before the first call).

        With ``reserve_final`` it is the end of the time bound minus the final training's
        estimated time, re-estimated before each candidate.
        """
        return self.clock.deadline

    @property
    def end(self) -> float | None:
        """``time.monotonic()`` at which the whole time bound ends (None before the first call)."""
        return self.clock.end

    def schedule_for(self, level: int) -> Schedule:
        """The training of a fidelity level: the search's (0), or a longer re-ranking one.

        Args:
            level: 0 for the search's training; >= 1 for a re-ranking (``RERANK_STEPS_FACTOR``
                times the steps, other initial weights).

        Returns:
            The :class:`Schedule`.
        """
        if level == 0:
            return self.schedule
        return replace(self.schedule, steps=self.schedule.steps * RERANK_STEPS_FACTOR)

    def fidelity(self, level: int) -> str:
        """What a training of this level is, e.g. ``"800 steps, seed 0"``: equal strings are
        the same training of a network (same schedule, same initial weights)."""
        return f"{self.schedule_for(level).steps} steps, seed {level}"

    def final_reserve(self, trials: list[optuna.trial.FrozenTrial]) -> float:
        """Seconds kept for the final model: an estimate from the candidates' measured speed.

        The best trained candidate's measured seconds per training step, scaled to the final
        schedule's batch, times its steps and the rounds of restarts (the first ``jobs`` side by
        side), plus its validations, conversion, TFLM
        scoring and export; within 10..50 % of ``timeout``.

        Args:
            trials: The study's trials.

        Returns:
            Seconds (0 without a timeout).
        """
        if self.timeout is None:
            return 0.0
        # Under cross-validation the final model has no validation series. The report scores
        # a test set of unknown size: at least 2,000 series are assumed.
        n_val = len(self.data.y_val) if self.data.folds is None else 0
        timed = [t for t in trials if t.state == TrialState.COMPLETE
                 and t.user_attrs.get(STEP_SECONDS)]
        if not timed:
            # Nothing trained yet: the first candidate's own network is all there would be to
            # export, so only exporting it is kept back. A quarter of the bound kept here let
            # a 40 s search on a busy machine (26 s to start) cut its first training and end
            # with nothing.
            return min(after_training_seconds(n_val=n_val, n_eval=max(2000, n_val),
                                               n_train=self.final_train_size, restarts=1),
                       0.25 * self.timeout)
        best = max(timed, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        # The final recipe's step may cost more than the candidates' (batch normalisation).
        recipes = final_recipes(self.final_recipe, self.recipe,
                                holdout=self.data.folds is None, n_train=self.final_train_size)
        step = float(best.user_attrs[STEP_SECONDS]) * slowest_step(recipes, self.recipe)
        seconds = estimate_final_seconds(
            step, self.schedule.batch_size,
            n_train=self.final_train_size, n_val=n_val,
            n_eval=max(2000, n_val, self.final_train_size),
            eval_seconds=float(best.user_attrs.get(EVAL_SECONDS, 0.0)) if n_val else 0.0,
            jobs=self.jobs)
        return min(max(seconds, 0.1 * self.timeout), 0.5 * self.timeout)

    @property
    def final_train_size(self) -> int:
        """Series the final model trains on: every series under cross-validation."""
        if self.data.folds is not None:
            return len(self.data.validation_labels)
        return len(self.data.y_train)

    def retrain_best(
        self, study: optuna.Study, *, out_dir: str | Path,
        test: tuple[np.ndarray, np.ndarray] | None = None, **kwargs: Any,
    ) -> RetrainReport:
        """Train, convert, check and export the search's best within what is left of ``timeout``.

        The one call after ``study.optimize(objective)``: :func:`retrain_best` on this
        objective's data, seed and metric, bounded by the end of the time bound. The network
        the search trained for the best architecture is exported instead when the final
        training cannot run its schedule in the time left, or ends below it.

        Args:
            study: The study this objective searched.
            out_dir: Where the model, C files and ``report.json`` go.
            test: Optional test set to report.
            **kwargs: Passed on to :func:`~tinytnas_optuna.retrain_best`.

        Returns:
            The :class:`~tinytnas_optuna.RetrainReport`.
        """
        from tinytnas_optuna._retrain import retrain_best

        timeout = None
        left = self.clock.left()
        if left is not None:
            timeout = max(left, 1.0)
        elif self.timeout is not None:
            timeout = self.timeout
        from tinytnas_optuna._results import summarize

        best = summarize(study).best
        kwargs = {"timeout": timeout, "seed": self.seed, "metric": self.metric,
                  "int8_io": self.int8_io, "artifact_store": self.artifact_store,
                  "candidate": None if best is None else self.networks.best_of(
                      best.k, best.c, best.input),
                  "pool": self.pool, **kwargs}
        try:
            return retrain_best(study, self._inputs["train"], val=self._inputs["val"],
                                test=test, groups=self._inputs["groups"],
                                val_fraction=self._inputs["val_fraction"], out_dir=out_dir,
                                **kwargs)
        finally:
            self.close_pool()

    def check_budget_reachable(self) -> None:
        """Refuse a budget that no candidate of the ranges can fit, before any trial
        (:func:`~tinytnas_optuna._gate.check_reachable`).

        Raises:
            ValueError: Naming the smallest figures found.
        """
        check_reachable(self.budget, k_range=self.k_range, c_range=self.c_range,
                        input_shape=self.input_shape_of(len(self.settings or [None]) - 1),
                        num_classes=self.data.num_classes,
                        int8_io=self.int8_io)

    def architecture(self, k: int, c: int, setting: int = 0) -> Architecture:
        """The network ``(k, c)`` builds for this data on an input setting.

        Args:
            k: Width.
            c: Cells.
            setting: Index into :attr:`settings` (0 without an input space).

        Returns:
            The :class:`Architecture`.
        """
        return architecture(k, c, self.input_shape_of(setting), self.data.num_classes)

    def profile(self, arch: Architecture) -> HardwareProfile:
        """Figures of a candidate (:func:`~tinytnas_optuna._gate.measure`): exact analytic MACs
        first, measured in TFLM if they fit, on the target under a latency budget.

        Args:
            arch: The candidate's architecture.

        Returns:
            The :class:`~tinytnas_optuna.HardwareProfile`.

        Raises:
            MeasurementError: When a measurement fails (the trial fails: never a figure).
        """
        return measure(arch, self.budget, int8_io=self.int8_io)

    def __call__(self, trial: optuna.Trial) -> float:
        now = time.monotonic()
        study, storage = trial.study, trial.storage
        if (id(storage), study._study_id) not in self._bound:
            try:
                self.bind(study)
            except StudyMismatchError:
                # Nothing was trained: the trial goes back to WAITING for the next run to use,
                # rather than staying behind as a FAIL.
                storage.set_trial_system_attr(trial._trial_id, CANDIDATE, None)
                storage.set_trial_state_values(trial._trial_id, TrialState.WAITING)
                raise
        claim(storage, trial._trial_id)
        fail_dead_trials(study)
        self.clock.begin(now)
        self._record_bound(study)
        k = trial.suggest_int("k", *self.k_range, log=True)
        c = trial.suggest_int("c", *self.c_range)
        setting = self._suggest_input(trial)
        system = trial.storage.get_trial_system_attrs(trial._trial_id)
        level = int(system.get(LEVEL, 0))
        trial.set_user_attr(PHASE, system.get(SAMPLER_PHASE, "search"))
        trial.set_user_attr(FIDELITY, self.fidelity(level))
        self._study = trial.study
        self.clock.refresh(self._reserve)
        self._stop_if_out_of_time(trial)
        arch = self.architecture(k, c, setting)
        trial.set_user_attr(WIDTHS, list(arch.widths) + [arch.dense])

        try:
            profile = self.profile(arch)
        except MeasurementError as error:  # the trial fails; the search goes on
            trial.set_user_attr(ERROR, " ".join(str(error).split())[:1000])
            raise
        if not record_figures(trial, profile, self.budget):
            trial.set_user_attr(EPOCHS, 0)
            over = ", ".join(f"{n} {figure_text(v)} > {figure_text(self.budget.limits[n])}"
                             for n, v in self.budget.over(profile).items())
            raise optuna.TrialPruned(f"infeasible, not trained: {over}")

        reused = reuse_identical(trial, list(arch.widths) + [arch.dense], self.fidelity(level),
                                 base=self.fidelity(0), revisit=bool(system.get(FINISHED)),
                                 check_time=self._stop_if_out_of_time,
                                 input_setting=self._input_attr(setting))
        if reused is not None:
            return reused
        return self._train(trial, arch, k, c, level, setting)

    def _input_attr(self, setting: int) -> dict[str, int] | None:
        """The ``input`` user attr of a setting's trials (None without an input space)."""
        pair = self.input_of(setting)
        if pair is None:
            return None
        return {"decimate": pair[0], "window": pair[1],
                "length": self.input_shape_of(setting)[0]}

    def _suggest_input(self, trial: optuna.Trial) -> int:
        """Suggest the input setting (with an input space) and record it; its index."""
        if self.settings is None:
            return 0
        recorded = self.recorded_shape[0]
        decimate = trial.suggest_categorical(
            "decimate", sorted({s.decimate for s in self.settings}))
        window = trial.suggest_categorical(
            "window", sorted({int(s.window or recorded) for s in self.settings}, reverse=True))
        setting = self.settings.index(InputSetting(int(decimate), int(window)))
        trial.set_user_attr(INPUT, self._input_attr(setting))
        return setting

    def _keep(self, trial: optuna.Trial, network: TrainedNetwork) -> None:
        """Keep a trained network for the final model: in memory, and as an artifact."""
        self.networks.add(network)
        if self.artifact_store is None:
            return
        try:
            upload_network(trial, network, self.artifact_store)
        except Exception as exc:  # noqa: BLE001 - a stored copy never costs the trial
            optuna.logging.get_logger(__name__).warning(
                f"trial {trial.number}: network not stored as an artifact: {exc}")

    def validation_facts(self) -> dict[str, Any]:
        """How candidates are validated and what predicting the majority class would score.

        Returns:
            ``validation`` (``"holdout"`` or ``"<k>-fold"``), ``validation_size`` (series
            validated per candidate), ``chance_rate`` (the metric of always predicting the
            majority class: its share for accuracy, 1/K for balanced accuracy),
            ``majority_rate`` (the majority class's share), ``steps_per_candidate``.
        """
        y = self.data.validation_labels
        return {
            "validation": self.data.validation,
            "validation_size": len(y),
            "chance_rate": chance_rate(y, self.metric, self.data.num_classes),
            "majority_rate": chance_rate(y, "accuracy", self.data.num_classes),
            "steps_per_candidate": self.schedule.steps * len(self.data.splits()),
        }

    def out_of_time(self) -> bool:
        """Whether the search's time is up (or a stop was requested).

        The final model's reserve is re-estimated every few seconds from the study, so that a
        training in flight stops at the current deadline, not at the one of its start.
        """
        return self.clock.out_of_time(self._reserve if self._study is not None else None)

    def request_stop(self) -> None:
        """End the search now, as if the time bound were reached (e.g. on Ctrl-C).

        A training in flight stops after its current batch and keeps its completed epochs;
        no new training starts in this process.
        """
        self.clock.request_stop()

    def _reserve(self) -> float:
        """The final model's reserve now, from the trials of the study being searched."""
        if self._study is None:
            return 0.0
        return self.final_reserve(self._study.get_trials(deepcopy=False))

    def _stop_if_out_of_time(self, trial: optuna.Trial) -> None:
        if self.out_of_time():
            trial.set_user_attr(INTERRUPTED, True)
            trial.set_user_attr(EPOCHS, 0)
            stop_search(trial.study, "interrupted" if self.clock.stopped else "time bound")
            raise optuna.TrialPruned("time bound reached before training")

    def _train(self, trial: optuna.Trial, arch: Architecture, k: int, c: int, level: int,
               setting: int = 0) -> float:
        import keras

        from tinytnas_optuna._space import build_model
        from tinytnas_optuna._training import train

        data = self.data_for(setting)
        splits = data.splits()
        schedule = self.schedule_for(level)
        holdout = len(splits) == 1
        pruned = {"flag": False, "bound": False}

        def on_evaluation(step: int, pred: np.ndarray) -> bool:
            if not holdout:  # folds: progress only; the pooled curve is reported at the end
                trial.set_user_attr(EPOCHS, epochs_after(step, schedule, splits[0]))
                return False
            # Hold-out: each validation point is reported as it comes, so pruners can act.
            value = score(splits[0].y_val, pred, self.metric, self.data.num_classes)
            trial.report(value, step)
            trial.set_user_attr(EPOCHS, epochs_after(step, schedule, splits[0]))
            if step < schedule.steps and trial.should_prune():
                pruned["flag"] = True
            return pruned["flag"]

        trial.set_user_attr(EPOCHS, 0)
        trial.set_user_attr(STEPS, 0)
        trial.set_user_attr(VALIDATION, self.data.validation)
        trial.set_user_attr(PARAMS, {"k": k, "c": c, **schedule.to_dict()})
        start = time.monotonic()
        # Level 0 keeps the seed of earlier versions; each re-ranking level other weights.
        seed = _candidate_seed(self.seed, arch) + 7919 * level
        results: list[TrainResult] = []
        for fold, split in enumerate(splits):
            keras.utils.set_random_seed(seed + fold)  # before building: the initial weights
            model = build_model(k, c, data.input_shape, data.num_classes,
                                batch_norm=self.recipe.batch_norm)
            result = train(
                model, split, schedule, seed=seed + fold, stop=self.out_of_time,
                on_evaluation=on_evaluation, recipe=self.recipe,
                keep_best=lambda pred, y=split.y_val: score(y, pred, self.metric,
                                                            self.data.num_classes))
            results.append(result)
            if result.cut or pruned["flag"]:
                break
            if fold + 1 < len(splits) and self._cannot_win(trial, splits, results):
                pruned["bound"] = True
                break
        curve = pooled_curve(splits, results, self.metric, self.data.num_classes)
        if not holdout:
            for step, value in curve:
                trial.report(value, step)
        steps_done = sum(r.steps for r in results)
        trial.set_user_attr(TRAIN_SECONDS, round(time.monotonic() - start, 3))
        for key, attr in (("step_seconds", STEP_SECONDS), ("eval_seconds", EVAL_SECONDS)):
            rates = [getattr(r, key) for r in results if getattr(r, key)]
            if rates:
                trial.set_user_attr(attr, float(np.median(rates)))
        trial.set_user_attr(STEPS, steps_done)
        trial.set_user_attr(EPOCHS,
                            epochs_after(curve[-1][0], schedule, splits[0]) if curve else 0)
        kept = kept_weights([(r.best_weights, r.best_value) for r in results])
        if curve and kept is not None and self.on_trained is not None:
            # The family's network at its best point: what the final model may fall back on.
            network = build_model(k, c, data.input_shape, data.num_classes)
            network.set_weights(kept[0])
            self.on_trained(trial, network, data)
        if kept is not None:
            weights, value, fold = kept
            self._keep(trial, TrainedNetwork(trial.number, k, c, weights, value,
                                             results[fold].steps, None if holdout else fold,
                                             self.input_of(setting)))
        if any(r.cut for r in results):
            trial.set_user_attr(INTERRUPTED, True)
            stop_search(trial.study, "interrupted" if self.clock.stopped else "time bound")
            if not curve:
                raise optuna.TrialPruned("time bound reached before the first validation")
        if pruned["flag"]:
            raise optuna.TrialPruned(f"pruned after {steps_done} steps")
        if pruned.get("bound"):
            trial.set_user_attr(FOLDS, len(results))
            raise optuna.TrialPruned(f"cannot win: after {len(results)} of {len(splits)} folds "
                                     "its value is at most what the search already has")
        return max(value for _, value in curve)

    def _cannot_win(self, trial: optuna.Trial, splits: list[PreparedData],
                    results: list[TrainResult]) -> bool:
        """Whether the folds still to train cannot lift this training above the value it must
        beat (:meth:`TinyTNASSampler.value_to_beat`), even if every series they hold were
        right: then they are not trained (a certain bound, so the greedy's path is unchanged).
        """
        study = trial.study
        frozen = trial.storage.get_trial(trial._trial_id)
        if isinstance(study.sampler, TinyTNASSampler):
            bar = study.sampler.value_to_beat(study, frozen)
        else:  # another sampler: the best finished training at this fidelity
            fidelity = frozen.user_attrs.get(FIDELITY)
            values = [trial_value(t) for t in study.get_trials(deepcopy=False)
                      if t.state == TrialState.COMPLETE and t.number != trial.number
                      and t.user_attrs.get(FIDELITY) == fidelity]
            bar = max((v for v in values if v is not None), default=None)
        if bar is None:
            return False
        return upper_bound(splits, results, self.metric, self.data.num_classes) <= bar


def _candidate_seed(seed: int, arch: Architecture) -> int:
    # A candidate's seed depends on the network, not on trial order or worker.
    return zlib.crc32(repr((seed, arch.widths, arch.dense)).encode()) % (2**31)
