"""The search's lifecycle: what defines a search, recorded in its study and checked on every run.

The first time :class:`~tinytnas_optuna.TinyTNASObjective` runs on a study (from Python, from
``tinytnas search`` or ``tinytnas worker``), it records a :class:`SearchSpec` in the study's user
attrs: content fingerprints of the data, the budget, the training settings, the seed, the metric,
the sampler, the label map and the input shape. Every later run and every worker checks it before
anything is trained; one that differs is refused with one line naming what differs. ``summarize``,
``retrain_best`` and ``tinytnas show/retrain/worker`` read it back, for studies made from Python
or from the shell alike.

Beside the spec, every run records a :class:`RunRecord` (the class names, the artifact folder,
the time bound; ``tinytnas search`` adds where its data came from): what a worker, ``show``,
``retrain``, the dashboard and the C header read. It may change from run to run (a resumed search
has a new bound) and is never checked. What a user chooses for a search, and every default of it,
is :class:`SearchSettings`.

What may differ between runs and workers: the time bound, a sampler's seed, ``refine_trials``
and other settings that do not change what a training means.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna._budget import HardwareBudget
from tinytnas_optuna._input import InputSpace
from tinytnas_optuna._space import C_RANGE, K_RANGE
from tinytnas_optuna._training import FINAL_RECIPE, SEARCH_STEPS, Recipe
from tinytnas_optuna._validation import VAL_FRACTION

if TYPE_CHECKING:
    import optuna

#: Study user attr holding the package version that created the study.
VERSION_ATTR = "tinytnas_version"
#: The sampler names a spec records that :func:`~tinytnas_optuna._sampler.make_sampler`
#: rebuilds (the CLI's ``--sampler`` choices).
SAMPLERS = ("tinytnas", "tinytnas-paper", "random", "tpe", "gp", "nsga2")
#: The defaults of a search, whichever door it comes through (the objective, the command line).
DEFAULT_SEED = 0
DEFAULT_METRIC = "accuracy"
DEFAULT_SAMPLER = "tinytnas"


class StudyMismatchError(BaseException):
    """This run's data or settings differ from what the study recorded; nothing was trained.

    It derives from ``BaseException`` (as ``KeyboardInterrupt`` does) on purpose: raised inside
    ``study.optimize``, an ``Exception`` would be recorded as a FAIL trial, and
    ``catch=(Exception,)`` would swallow it and refuse trial after trial until the time bound.
    This way the refused trial is handed back (WAITING, to be reused by the next run) and the
    error reaches the caller at once. Catch it explicitly: ``except StudyMismatchError``.
    """


def fingerprint(features: np.ndarray, labels: np.ndarray | None = None) -> str:
    """A content hash of the feature values and labels, in order (SHA-256, hex).

    Independent of file format and dtype: the features are hashed as float64 with their shape,
    the labels as text.

    Args:
        features: The samples.
        labels: Their labels, if any.

    Returns:
        64 hex digits.

    Examples:
        >>> a = fingerprint(np.zeros((2, 3), np.float32), np.array([0, 1]))
        >>> a == fingerprint(np.zeros((2, 3)), [0, 1]), a == fingerprint(np.ones((2, 3)), [0, 1])
        (True, False)
    """
    x = np.ascontiguousarray(np.asarray(features, dtype=np.float64))
    digest = hashlib.sha256(repr(x.shape).encode())
    digest.update(x.tobytes())
    if labels is not None:
        digest.update("\x00".join(map(str, np.asarray(labels).tolist())).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class SearchSpec:
    """What defines a search: two runs with equal specs train the same candidates the same way.

    Stored flat in the study's user attrs under these names (``budget`` as a dict), which
    ``tinytnas search`` has always used, so studies already on disk still read.

    Attributes:
        train_fingerprint: :func:`fingerprint` of the training features and labels.
        val_fingerprint: Of the validation set, or None (split from the training data).
        groups_fingerprint: Of the group ids (subject-wise folds), or None.
        budget: ``HardwareBudget.to_dict()``: ram, flash (bytes), macs, and latency (ms) and
            board when set.
        input_shape: ``[length, channels]``.
        label_map: The class labels in the order of the model's outputs.
        steps: Steps per candidate training as given (None: the default).
        epochs: Epochs per candidate as given (overrides steps), or None.
        seed: The search's seed.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        val_fraction: Held-out share when no validation set is given.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        batch_size: Batch size override, or None.
        learning_rate: Peak learning rate override, or None.
        int8_io: Whether models are measured with int8 input/output.
        sampler: :func:`~tinytnas_optuna._sampler.sampler_name` of the study's sampler.
        recipe: The training recipe (:class:`~tinytnas_optuna._training.Recipe` as a dict) of
            the candidates; None for studies from before it was recorded (trained without one).
        final_recipe: The final model's recipe; None for studies from before it was recorded
            (the final model then gets today's default).
        input_settings: The input settings searched, ``[[decimate, window], ...]`` (window in
            samples at the recorded rate), in the order the sampler indexes them; None: the
            recorded input only.
    """

    train_fingerprint: str
    val_fingerprint: str | None
    groups_fingerprint: str | None
    budget: dict[str, Any]
    input_shape: list[int]
    label_map: list[Any]
    steps: int | None
    epochs: int | None
    seed: int
    metric: str
    val_fraction: float
    k_range: list[int]
    c_range: list[int]
    batch_size: int | None
    learning_rate: float | None
    int8_io: bool
    sampler: str
    recipe: dict[str, Any] | None = None
    input_settings: list[list[int]] | None = None
    final_recipe: dict[str, Any] | None = None

    def to_attrs(self) -> dict[str, Any]:
        """The user attrs this spec is stored as."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> SearchSpec | None:
        """The spec a study recorded, or None when it recorded none (not a search's study).

        Studies from before a field existed get its default (ranges, fingerprints unknown).

        Args:
            attrs: ``study.user_attrs``.

        Returns:
            The :class:`SearchSpec` or None.
        """
        if "budget" not in attrs:
            return None
        defaults: dict[str, Any] = {
            "train_fingerprint": "", "val_fingerprint": None, "groups_fingerprint": None,
            "input_shape": [], "label_map": [], "steps": None, "epochs": None,
            "seed": DEFAULT_SEED, "metric": DEFAULT_METRIC, "val_fraction": VAL_FRACTION,
            "k_range": list(K_RANGE), "c_range": list(C_RANGE), "batch_size": None,
            "learning_rate": None, "int8_io": False, "sampler": DEFAULT_SAMPLER, "recipe": None,
            "input_settings": None, "final_recipe": None,
        }
        return cls(**{f.name: attrs.get(f.name, defaults.get(f.name)) for f in fields(cls)})

    @property
    def hardware_budget(self) -> HardwareBudget:
        """The budget as a :class:`HardwareBudget`."""
        return HardwareBudget(**self.budget)

    @property
    def training_recipe(self) -> Recipe:
        """The recipe as a :class:`~tinytnas_optuna._training.Recipe` (none recorded: plain)."""
        return Recipe(**(self.recipe or {}))

    @property
    def final_training_recipe(self) -> Recipe:
        """The final model's recipe (none recorded: today's default,
        :data:`~tinytnas_optuna._training.FINAL_RECIPE`)."""
        return FINAL_RECIPE if self.final_recipe is None else Recipe(**self.final_recipe)

    @property
    def settings(self) -> SearchSettings:
        """What the user chose for this search (the rest came from its data)."""
        return SearchSettings(
            budget=self.hardware_budget, steps=self.steps, epochs=self.epochs, seed=self.seed,
            metric=self.metric, val_fraction=self.val_fraction,
            k_range=(int(self.k_range[0]), int(self.k_range[1])),
            c_range=(int(self.c_range[0]), int(self.c_range[1])), batch_size=self.batch_size,
            learning_rate=self.learning_rate, int8_io=self.int8_io, sampler=self.sampler,
            recipe=self.training_recipe, final_recipe=self.final_training_recipe,
            input_space=InputSpace.of(self.input_settings))

    @property
    def training(self) -> str:
        """How long each candidate trains, e.g. ``"800 steps"`` or ``"5 epochs"``."""
        return f"{self.epochs} epochs" if self.epochs else f"{self.steps or SEARCH_STEPS} steps"


@dataclass(frozen=True)
class SearchSettings:
    """What a user chooses for a search: its :class:`SearchSpec` less what its data decides.

    The defaults here are the search's, whichever door it comes through:
    :class:`~tinytnas_optuna.TinyTNASObjective` has the same ones, and ``tinytnas search``
    fills what it is not given from the study it resumes, then from these
    (:meth:`resolve`).

    Attributes:
        budget: The :class:`HardwareBudget`.
        steps: Steps per candidate training (None: the search schedule's default).
        epochs: Instead of ``steps``: passes over the data per candidate.
        seed: The search's seed.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        val_fraction: Held-out share when there is no validation set.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        batch_size: Batch size override, or None.
        learning_rate: Peak learning rate override, or None.
        int8_io: Measure models with int8 input/output.
        sampler: A name of :data:`SAMPLERS`.
        recipe: The candidates' training recipe (None: the objective's default).
        final_recipe: The final model's recipe (None: the objective's default).
        input_space: The input settings searched (None: the recorded input only).
    """

    budget: HardwareBudget
    steps: int | None = None
    epochs: int | None = None
    seed: int = DEFAULT_SEED
    metric: str = DEFAULT_METRIC
    val_fraction: float = VAL_FRACTION
    k_range: tuple[int, int] = K_RANGE
    c_range: tuple[int, int] = C_RANGE
    batch_size: int | None = None
    learning_rate: float | None = None
    int8_io: bool = False
    sampler: str = DEFAULT_SAMPLER
    recipe: Recipe | None = None
    input_space: InputSpace | None = None
    final_recipe: Recipe | None = None

    @classmethod
    def resolve(
        cls, recorded: SearchSpec | None, *, ram: str | None = None, flash: str | None = None,
        macs: str | None = None, latency: str | None = None, board: str | None = None,
        steps: int | None = None, epochs: int | None = None, seed: int | None = None,
        metric: str | None = None, sampler: str | None = None,
        val_fraction: float | None = None, decimate: str | None = None,
        windows: str | None = None, rates: str | None = None, rate_hz: str | None = None,
    ) -> SearchSettings:
        """The settings given, else those the study recorded, else the defaults.

        A budget figure given replaces the recorded budget's (a resumed search with another
        budget is then refused by :func:`bind`); ``steps`` or ``epochs`` given replace both.
        The messages name the command line's options (``tinytnas search`` resolves with it).

        Args:
            recorded: The resumed study's spec, or None for a new search.
            ram: RAM budget as typed (``"20KB"``), or None.
            flash: Flash budget, or None.
            macs: MAC budget, or None.
            latency: Latency budget (needs a board, given or recorded), or None.
            board: A board preset: its RAM, flash and MACs unless given.
            steps: Steps per candidate, or None.
            epochs: Epochs per candidate, or None.
            seed: The seed, or None.
            metric: The metric, or None.
            sampler: A sampler name, or None.
            val_fraction: The held-out share, or None.
            decimate: Decimation factors to search, e.g. ``"1,2,4"`` (:meth:`InputSpace.parse`).
            windows: Window lengths to search: samples, or seconds with ``rate_hz``.
            rates: Instead of ``decimate``: sampling rates in Hz, with ``rate_hz``.
            rate_hz: The rate the data was recorded at.

        Returns:
            The :class:`SearchSettings`.

        Raises:
            ValueError: A new search without a complete budget, a latency without a board, or
                an unreadable figure (one line).

        Examples:
            >>> SearchSettings.resolve(None, ram="20KB", flash="64KB", macs="60K").budget.macs
            60000
            >>> SearchSettings.resolve(None, board="rp2350", seed=3).seed
            3
        """
        base = recorded.settings if recorded is not None else None
        given = {"ram": ram, "flash": flash, "macs": macs, "latency": latency, "board": board}
        if base is None or any(v is not None for v in given.values()):
            budget = _resolve_budget(given, {} if base is None else base.budget.to_dict())
        else:
            budget = base.budget
        changes: dict[str, Any] = {
            name: value for name, value in (("seed", seed), ("metric", metric),
                                            ("sampler", sampler), ("val_fraction", val_fraction),
                                            ("input_space", InputSpace.parse(
                                                decimate=decimate, windows=windows, rates=rates,
                                                rate_hz=rate_hz)))
            if value is not None}
        if steps is not None or epochs is not None:  # the two together: one replaces both
            changes.update(steps=steps, epochs=epochs)
        return replace(base or cls(budget=budget), budget=budget, **changes)


def _resolve_budget(given: dict[str, str | None], recorded: dict[str, Any]) -> HardwareBudget:
    """The budget of the figures given (a board's preset first), over the recorded ones."""
    if given["board"] is not None:
        return HardwareBudget.for_board(given["board"], latency=given["latency"],
                                        ram=given["ram"], flash=given["flash"],
                                        macs=given["macs"])
    if given["latency"] is not None and "board" not in recorded:
        raise ValueError("--latency needs --board: its core and clock turn cycles into time "
                         "(see `tinytnas boards`)")
    values = {**recorded, **{name: v for name, v in given.items() if v is not None}}
    missing = [f"--{name}" for name in ("ram", "flash", "macs") if name not in values]
    if missing:
        raise ValueError(f"a new search needs a budget: give {', '.join(missing)} (e.g. --ram "
                         "20KB --flash 64KB --macs 60K) or --board (see `tinytnas boards`)")
    return HardwareBudget(**values)


def _describe(name: str, value: Any) -> str:
    if name == "budget" and isinstance(value, dict):
        return str(HardwareBudget(**value))
    if name.endswith("_fingerprint") and isinstance(value, str):
        return f"{value[:12]}..."
    return repr(value)


_WHAT = {"train_fingerprint": "training data (content fingerprint)",
         "val_fingerprint": "validation data (content fingerprint)",
         "groups_fingerprint": "group ids (content fingerprint)"}


def differences(recorded: dict[str, Any], spec: SearchSpec) -> list[str]:
    """What differs between a study's recorded attrs and a spec, one phrase per field.

    Fields the study did not record (studies from older versions) are not compared.

    Args:
        recorded: ``study.user_attrs``.
        spec: This run's spec.

    Returns:
        Phrases like ``"budget RAM 20,000 B, ... (this run: RAM 10,000 B, ...)"``; empty if equal.
    """
    out = []
    for name, value in spec.to_attrs().items():
        if name in recorded and recorded[name] != value:
            out.append(f"{_WHAT.get(name, name.replace('_', ' '))} "
                       f"{_describe(name, recorded[name])} (this run: {_describe(name, value)})")
    return out


def bind(study: optuna.Study, spec: SearchSpec) -> bool:
    """Record the spec in a new study, or check it against the one the study recorded.

    Args:
        study: The study.
        spec: This run's spec.

    Returns:
        True when this call recorded it (a new search), False when it matched.

    Raises:
        StudyMismatchError: The study recorded something else; names the first difference.
    """
    from tinytnas_optuna import __version__

    recorded = study.user_attrs
    diff = differences(recorded, spec)
    if diff:
        raise StudyMismatchError(
            f"study {study.study_name!r} was created with {diff[0]}; refusing to mix "
            "(use another study name)")
    new = "budget" not in recorded
    for name, value in spec.to_attrs().items():
        if name not in recorded:  # a new study, or one from a version that did not record it
            study.set_user_attr(name, value)
    if new:
        study.set_user_attr(VERSION_ATTR, __version__)
        # Two processes starting one new study at once: the last write wins; the other sees it.
        diff = differences(study.user_attrs, spec)
        if diff:
            raise StudyMismatchError(
                f"study {study.study_name!r} was just created by another run with {diff[0]}; "
                "refusing to mix (use another study name)")
    return new


def recorded_spec(study: optuna.Study) -> SearchSpec:
    """The spec a study recorded.

    Args:
        study: The study.

    Returns:
        The :class:`SearchSpec`.

    Raises:
        ValueError: The study was not made by a search (no objective ever ran on it).
    """
    spec = SearchSpec.from_attrs(study.user_attrs)
    if spec is None:
        raise ValueError(f"study {study.study_name!r} was not made by a TinyTNAS search "
                         "(TinyTNASObjective never ran on it)")
    return spec


def check_data(study: optuna.Study, train: tuple[Any, Any], val: tuple[Any, Any] | None,
               groups: Any = None) -> None:
    """Refuse data other than the search's (e.g. to retrain its best).

    Args:
        study: The study.
        train: ``(features, labels)``.
        val: Validation set or None.
        groups: Group ids or None.

    Raises:
        ValueError: One line naming the data that differs from the recorded fingerprint.
    """
    given = {"train_fingerprint": fingerprint(*train),
             "val_fingerprint": None if val is None else fingerprint(*val),
             "groups_fingerprint": None if groups is None else fingerprint(groups)}
    for name, value in given.items():
        recorded = study.user_attrs.get(name, value)
        if recorded != value:
            raise ValueError(f"{_WHAT[name]} {_describe(name, value)} differs from the one study "
                             f"{study.study_name!r} searched ({_describe(name, recorded)})")


#: Study system attr: why the last run's search stopped (see :func:`stop_search`).
STOPPED_ATTR = "tinytnas:stopped"
#: Reasons :func:`stop_search` records.
STOP_REASONS = ("time bound", "interrupted", "search exhausted")


def stop_search(study: optuna.Study, reason: str) -> None:
    """End ``study.optimize`` after the trial in flight, and record why: the one place that does.

    The objective calls it when the time bound is reached or a stop was requested (Ctrl-C), the
    sampler when nothing is left to train. Outside ``optimize`` (ask-and-tell) only the
    reason is recorded.

    Args:
        study: The study.
        reason: One of :data:`STOP_REASONS`.
    """
    if reason not in STOP_REASONS:
        raise ValueError(f"reason must be one of {STOP_REASONS}, got {reason!r}")
    study._storage.set_study_system_attr(study._study_id, STOPPED_ATTR, reason)
    try:
        study.stop()
    except RuntimeError:
        pass  # ask-and-tell: no optimize loop to stop


def stop_reason(study: optuna.Study) -> str | None:
    """Why the search last stopped (:func:`stop_search`), or None if it never was."""
    return study._storage.get_study_system_attrs(study._study_id).get(STOPPED_ATTR)


# -- what a run records beside the spec -----------------------------------------------------------


@dataclass(frozen=True)
class RunRecord:
    """What the last run of a search recorded beside its :class:`SearchSpec`.

    The objective records the class names, the artifact folder and the time bound, whichever
    door the search came through; ``tinytnas search`` adds where its data came from. Stored flat
    in the study's user attrs under these names.

    Attributes:
        class_names: Readable names of the classes in the order of the label map (the C
            header, the reports), or None (the labels stand for themselves).
        artifact_dir: Folder of the artifact store holding each trained model's ``.tflite``
            and weights, or None when the search stored none.
        timeout_seconds: The last run's time bound in seconds, or None (unbounded).
        search_ends_at: When that bound ends (``time.time()``), or None.
        reserve_final: Whether that run keeps time for the final model at the end of its
            bound (its workers stop their search that much earlier).
        dataset: The built-in dataset searched (``tinytnas search --dataset``), or None.
        train_path: The training file searched (``tinytnas search --train``), or None.
        val_path: Its validation file, or None.
    """

    class_names: list[str] | None = None
    artifact_dir: str | None = None
    timeout_seconds: float | None = None
    search_ends_at: float | None = None
    reserve_final: bool = True
    dataset: str | None = None
    train_path: str | None = None
    val_path: str | None = None

    @classmethod
    def of(cls, study: optuna.Study) -> RunRecord:
        """What the study recorded (defaults for what it did not).

        Args:
            study: The study.

        Returns:
            The :class:`RunRecord`.
        """
        attrs = study.user_attrs
        return cls(**{f.name: attrs[f.name] for f in fields(cls)
                      if attrs.get(f.name) is not None})

    def to_dict(self) -> dict[str, Any]:
        """The record as its user attrs."""
        return asdict(self)

    def remaining(self) -> float | None:
        """Seconds left of the recorded time bound (negative once it passed), or None."""
        return None if self.search_ends_at is None else self.search_ends_at - time.time()

    @property
    def source(self) -> str:
        """Where the data came from, in words: the dataset, the file, or Python."""
        return self.dataset or self.train_path or "data given in Python"


def record_run(study: optuna.Study, **values: Any) -> None:
    """Record fields of the :class:`RunRecord` in the study (those given, as given).

    Args:
        study: The study.
        **values: Field names of :class:`RunRecord` and their values.

    Raises:
        TypeError: For a name that is not a field.
    """
    names = {f.name for f in fields(RunRecord)}
    for name, value in values.items():
        if name not in names:
            raise TypeError(f"{name!r} is not a RunRecord field")
        if study.user_attrs.get(name, ...) != value:
            study.set_user_attr(name, value)


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    """Class names as recorded: one readable name per class, as text.

    Args:
        class_names: Names in the order of the label map, or None.
        num_classes: Classes of the data.

    Returns:
        The names as a list of str, or None.

    Raises:
        ValueError: When their number is not the number of classes.

    Examples:
        >>> check_class_names(("gun", "point"), 2)
        ['gun', 'point']
    """
    if class_names is None:
        return None
    names = [str(name) for name in class_names]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    return names


def set_metric_name(study: optuna.Study, metric: str) -> None:
    """Name the objective value (optuna-dashboard and ``tinytnas show`` display it).

    Args:
        study: The study.
        metric: The validation metric's name.
    """
    import optuna

    if study.metric_names == [metric]:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([metric])
