"""The search's lifecycle: what defines a search, recorded in its study and checked on every run.

The first time :class:`~tinytnas_optuna.TinyTNASObjective` runs on a study (from Python, from
``tinytnas search`` or ``tinytnas worker``), it records a :class:`SearchSpec` in the study's user
attrs: content fingerprints of the data, the budget, the training settings, the seed, the metric,
the sampler, the label map and the input shape. Every later run and every worker checks it before
anything is trained; one that differs is refused with one line naming what differs. ``summarize``,
``retrain_best`` and ``tinytnas show/retrain/worker`` read it back, for studies made from Python
or from the shell alike.

What may differ between runs and workers, and is not recorded: the time bound, a sampler's
seed, ``refine_trials`` and other settings that do not change what a training means.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna._budget import HardwareBudget

if TYPE_CHECKING:
    import optuna

    from tinytnas_optuna._training import Recipe

#: Study user attr holding the package version that created the study.
VERSION_ATTR = "tinytnas_version"
#: The sampler names a spec records that :func:`~tinytnas_optuna._sampler.make_sampler`
#: rebuilds (the CLI's ``--sampler`` choices).
SAMPLERS = ("tinytnas", "tinytnas-paper", "random", "tpe", "gp", "nsga2")


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
            the candidates and the final model; None for studies from before it was recorded
            (trained without one).
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
        from tinytnas_optuna._space import C_RANGE, K_RANGE
        from tinytnas_optuna._training import VAL_FRACTION

        if "budget" not in attrs:
            return None
        defaults: dict[str, Any] = {
            "train_fingerprint": "", "val_fingerprint": None, "groups_fingerprint": None,
            "input_shape": [], "label_map": [], "steps": None, "epochs": None, "seed": 0,
            "metric": "accuracy", "val_fraction": VAL_FRACTION, "k_range": list(K_RANGE),
            "c_range": list(C_RANGE), "batch_size": None, "learning_rate": None,
            "int8_io": False, "sampler": "tinytnas", "recipe": None,
        }
        return cls(**{f.name: attrs.get(f.name, defaults.get(f.name)) for f in fields(cls)})

    @property
    def hardware_budget(self) -> HardwareBudget:
        """The budget as a :class:`HardwareBudget`."""
        return HardwareBudget(**self.budget)

    @property
    def training_recipe(self) -> Recipe:
        """The recipe as a :class:`~tinytnas_optuna._training.Recipe` (none recorded: plain)."""
        from tinytnas_optuna._training import Recipe

        return Recipe(**(self.recipe or {}))


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
