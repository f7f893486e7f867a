"""The networks the search trained, kept so that the deliverable is never worse than them.

The final model is a new, longer training of the best architecture. When it cannot run its
schedule in the time left, or ends below what the search had, the search's own trained network
is exported instead (:func:`~tinytnas_optuna.retrain_best` decides). For that the objective
keeps each trained candidate's network: its weights at its best validation point (under
cross-validation, those of its best fold). The best few stay in this process's memory
(:class:`NetworkKeeper`); with an artifact store, each is also stored as an artifact of its
trial (``.weights.npz``), where another process finds it (``tinytnas retrain``, the final model
of a search whose candidate a worker trained).
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna._trial import trial_input

if TYPE_CHECKING:
    import keras
    import optuna
    from optuna.artifacts._protocol import ArtifactStore

#: Trial user attr: the artifact id of the trial's kept network (its weights).
WEIGHTS_ARTIFACT = "weights_artifact"


@dataclass(frozen=True)
class TrainedNetwork:
    """One trained candidate network, as the search left it.

    Attributes:
        trial: The trial that trained it.
        k: Width.
        c: Cells.
        weights: Keras weights at its best validation point.
        value: Its validation metric there (on its own hold-out or fold).
        steps: Gradient steps its training ran.
        fold: The cross-validation fold it was trained without, or None (hold-out).
        input: ``(decimate, window)`` of the input it was trained on (None: the recorded one).
    """

    trial: int
    k: int
    c: int
    weights: list[np.ndarray]
    value: float
    steps: int
    fold: int | None = None
    input: tuple[int, int] | None = None

    def model(self, input_shape: tuple[int, int], num_classes: int) -> keras.Model:
        """The Keras model with these weights.

        Args:
            input_shape: ``(L, C)`` of the data it was trained on.
            num_classes: Its class count.

        Returns:
            The model, ready to predict or convert.
        """
        from tinytnas_optuna._space import build_model

        model = build_model(self.k, self.c, input_shape, num_classes)
        model.set_weights(self.weights)
        return model

    def to_bytes(self) -> bytes:
        """The network as an ``.npz`` file's bytes (weights and a JSON of the rest).

        Examples:
            >>> net = TrainedNetwork(3, 8, 1, [np.ones((2, 2), np.float32)], 0.9, 800, 1)
            >>> TrainedNetwork.from_bytes(net.to_bytes()).value
            0.9
        """
        meta = {"trial": self.trial, "k": self.k, "c": self.c, "value": self.value,
                "steps": self.steps, "fold": self.fold, "input": self.input}
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)),
                 **{f"w{i}": w for i, w in enumerate(self.weights)})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrainedNetwork:
        """Read what :meth:`to_bytes` wrote.

        Args:
            data: The ``.npz`` bytes.

        Returns:
            The network.
        """
        with np.load(io.BytesIO(data)) as arrays:
            meta = json.loads(str(arrays["meta"]))
            weights = [arrays[f"w{i}"] for i in range(len(arrays.files) - 1)]
        pair = meta.get("input")
        return cls(meta["trial"], meta["k"], meta["c"], weights, meta["value"], meta["steps"],
                   meta["fold"], None if pair is None else (int(pair[0]), int(pair[1])))


class NetworkKeeper:
    """The best trained networks of this process, by their own validation value.

    Args:
        keep: How many to keep.

    Examples:
        >>> keeper = NetworkKeeper(keep=1)
        >>> keeper.add(TrainedNetwork(0, 8, 1, [], 0.7, 800))
        >>> keeper.add(TrainedNetwork(1, 8, 1, [], 0.9, 800))
        >>> keeper.best_of(8, 1).trial
        1
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._networks: list[TrainedNetwork] = []
        self._lock = threading.Lock()

    def add(self, network: TrainedNetwork) -> None:
        """Keep ``network`` if it is among the best ``keep`` (once per trial).

        Args:
            network: A trained network.
        """
        with self._lock:
            if any(n.trial == network.trial for n in self._networks):
                return
            self._networks.append(network)
            self._networks.sort(key=lambda n: n.value, reverse=True)
            del self._networks[self.keep:]

    def __getstate__(self) -> dict[str, Any]:
        with self._lock:
            return {"keep": self.keep, "_networks": list(self._networks)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def all(self) -> list[TrainedNetwork]:
        """The kept networks, best first."""
        with self._lock:
            return list(self._networks)

    def best_of(self, k: int, c: int,
                input: tuple[int, int] | None = None) -> TrainedNetwork | None:
        """The best kept network of ``(k, c)`` on an input (any fidelity), or None.

        Args:
            k: Width.
            c: Cells.
            input: ``(decimate, window)`` of its input (None: the recorded one).

        Returns:
            The network.
        """
        with self._lock:
            return next((n for n in self._networks
                         if (n.k, n.c, n.input) == (k, c, input)), None)


def upload_network(
    trial: optuna.Trial, network: TrainedNetwork, artifact_store: ArtifactStore
) -> str:
    """Store a trial's network as an artifact of it; its id goes in :data:`WEIGHTS_ARTIFACT`.

    Args:
        trial: The trial that trained it.
        network: The network.
        artifact_store: Where the file goes.

    Returns:
        The artifact id.
    """
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"trial{trial.number}_k{network.k}_c{network.c}.weights.npz"
        path.write_bytes(network.to_bytes())
        artifact_id = optuna.artifacts.upload_artifact(
            artifact_store=artifact_store, file_path=str(path), study_or_trial=trial,
            mimetype="application/octet-stream")
    trial.set_user_attr(WEIGHTS_ARTIFACT, artifact_id)
    return artifact_id


def find_network(
    study: optuna.Study, k: int, c: int, artifact_store: ArtifactStore,
    input: tuple[int, int] | None = None,
) -> TrainedNetwork | None:
    """The best stored network of ``(k, c)`` among the study's trials, read from the store.

    Args:
        study: The search's study.
        k: Width.
        c: Cells.
        artifact_store: Where the networks were stored.
        input: ``(decimate, window)`` of its input (None: the recorded one).

    Returns:
        The network with the highest own validation value, or None when none was stored (or
        none can be read).
    """
    best: TrainedNetwork | None = None
    for trial in study.get_trials(deepcopy=False):
        artifact_id = trial.user_attrs.get(WEIGHTS_ARTIFACT)
        if artifact_id is None or (trial.params.get("k"), trial.params.get("c"),
                                   trial_input(trial)) != (k, c, input):
            continue
        try:
            with artifact_store.open_reader(artifact_id) as reader:
                network = TrainedNetwork.from_bytes(reader.read())
        except Exception:  # noqa: BLE001, S112 - a missing or damaged file: a network we lack
            continue
        if best is None or network.value > best.value:
            best = network
    return best


def kept_weights(results: list[Any]) -> tuple[list[np.ndarray], float, int] | None:
    """The weights to keep from a candidate's trainings: the fold whose best point is highest.

    Args:
        results: ``(best_weights, best_value)`` per fold, in fold order (None weights: that
            training reached no validation point).

    Returns:
        ``(weights, value, fold index)``, or None when no training reached one.

    Examples:
        >>> kept_weights([(None, None), (["w1"], 0.8), (["w2"], 0.7)])
        (['w1'], 0.8, 1)
    """
    scored = [(value, i, weights) for i, (weights, value) in enumerate(results)
              if weights is not None]
    if not scored:
        return None
    value, fold, weights = max(scored, key=lambda s: (s[0], -s[1]))
    return weights, value, fold
