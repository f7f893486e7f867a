"""The TinyTNAS architecture family: parameters ``k`` (width) and ``c`` (cells).

Pure Python except :func:`build_model`, which imports Keras lazily so that planning, replaying
and profiling analytically never pay for TensorFlow's import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    import numpy as np

#: Default search ranges (inclusive). ``k`` is unbounded in the original; we bound it.
K_RANGE: tuple[int, int] = (2, 1024)
C_RANGE: tuple[int, int] = (0, 4)
KERNEL_SIZE = 3


@dataclass(frozen=True)
class Architecture:
    """The network a ``(k, c)`` pair builds for one input shape and class count.

    Two candidates with equal ``Architecture`` are the same network (short inputs stop the cell
    loop early, so ``(k, 3)`` and ``(k, 4)`` can coincide); they share one result.

    Attributes:
        input_shape: ``(L, C)`` time steps and channels.
        num_classes: Number of output classes.
        widths: Filters of each separable convolution, in order.
        dense: Units of the hidden dense layer.
    """

    input_shape: tuple[int, int]
    num_classes: int
    widths: tuple[int, ...]
    dense: int

    @property
    def cells(self) -> int:
        """Number of cells actually built (may be fewer than the ``c`` asked for)."""
        return len(self.widths) - 1


def architecture(k: int, c: int, input_shape: tuple[int, ...], num_classes: int) -> Architecture:
    """Describe the network of ``(k, c)`` without building it.

    Args:
        k: Filters of the first separable convolution (>= 1).
        c: Cells requested (>= 0); fewer are built once the sequence length is <= 1.
        input_shape: ``(L, C)`` or ``(L,)`` (one channel).
        num_classes: Number of classes (>= 2).

    Returns:
        The :class:`Architecture`.
    """
    shape = _normalise_shape(input_shape)
    if k < 1 or c < 0:
        raise ValueError(f"k must be >= 1 and c >= 0, got k={k}, c={c}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    n = k
    length = shape[0]
    widths = [n]
    for _ in range(c):
        if length <= 1:
            break
        n = int(n * 1.5)
        length //= 2  # MaxPool1D(2), "valid" padding
        widths.append(n)
    return Architecture(shape, num_classes, tuple(widths), int(n * 1.5))


def build_model(
    k: int, c: int, input_shape: tuple[int, ...], num_classes: int, *,
    batch_norm: bool = False,
) -> keras.Model:
    """Build the (uncompiled) Keras model of the TinyTNAS family.

    ``SeparableConv1D(k)`` then ``c`` cells of ``MaxPool1D(2)`` + ``SeparableConv1D(int(n*1.5))``
    (stopping when the sequence length is <= 1), ``GlobalAveragePooling1D``,
    ``Dense(int(n*1.5), relu)`` and ``Dense(num_classes, softmax)``.

    Args:
        k: Filters of the first layer.
        c: Number of cells.
        input_shape: ``(L, C)`` or ``(L,)``.
        num_classes: Number of classes.
        batch_norm: The network to train: each separable convolution followed by a
            ``BatchNormalization`` before its ReLU. :func:`family_weights` folds each into its
            convolution, so the network that is converted and deployed is the family's own
            (same operators, RAM, flash and MACs).

    Returns:
        An uncompiled ``keras.Model`` with float32 input ``(None, L, C)``.
    """
    import keras

    arch = architecture(k, c, input_shape, num_classes)
    inputs = keras.Input(shape=arch.input_shape, dtype="float32")

    def convolution(x: Any, width: int) -> Any:
        if not batch_norm:
            return keras.layers.SeparableConv1D(width, KERNEL_SIZE, padding="same",
                                                activation="relu")(x)
        x = keras.layers.SeparableConv1D(width, KERNEL_SIZE, padding="same", use_bias=False)(x)
        # Momentum 0.9: a search training is a few hundred steps; the default 0.99 leaves the
        # moving statistics behind the weights at the early validation points.
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        return keras.layers.ReLU()(x)

    x = convolution(inputs, arch.widths[0])
    for width in arch.widths[1:]:
        x = keras.layers.MaxPooling1D(2)(x)
        x = convolution(x, width)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Dense(arch.dense, activation="relu")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"tinytnas_k{k}_c{c}")


def family_weights(model: keras.Model) -> list[np.ndarray]:
    """The weights of the family's network (:func:`build_model` without ``batch_norm``) that
    compute what ``model`` computes in inference mode.

    Each ``BatchNormalization`` after a separable convolution is folded into the convolution's
    pointwise kernel and bias: ``s = gamma / sqrt(moving_variance + epsilon)``, kernel ``* s``,
    bias ``beta - moving_mean * s``. A model without batch normalisation is returned as is.

    Args:
        model: A model of :func:`build_model`, with or without ``batch_norm``.

    Returns:
        Weights for ``build_model(k, c, ...)`` (``set_weights`` order).
    """
    import numpy as np

    layers = [layer for layer in model.layers if layer.weights]
    out: list[np.ndarray] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        weights = [np.asarray(w) for w in layer.get_weights()]
        following = layers[i + 1] if i + 1 < len(layers) else None
        if type(following).__name__ == "BatchNormalization":
            gamma, beta, mean, variance = (np.asarray(w) for w in following.get_weights())
            scale = gamma / np.sqrt(variance + following.epsilon)
            depthwise, pointwise = weights[:2]
            bias = weights[2] if len(weights) > 2 else np.zeros_like(beta)
            out += [depthwise, pointwise * scale, ((bias - mean) * scale + beta)]
            i += 2
            continue
        out += weights
        i += 1
    return [w.astype("float32") for w in out]


def _normalise_shape(input_shape: tuple[int, ...]) -> tuple[int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 1:
        shape = (shape[0], 1)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"input_shape must be (L, C) with L, C >= 1, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]
