"""Keras model to fully int8-quantised TFLite flatbuffer, with TensorFlow's converter.

TensorFlow is imported inside the functions, so importing this module stays light. The
converter runs in the converting process of :mod:`._native` (a crash there is a
:class:`MeasurementError`); its C++ output on fd 2 is captured there, routine chatter is
dropped and the rest written back here. Every conversion is counted in :data:`CONVERSIONS`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tinytnas_optuna._errors import MeasurementError
from tinytnas_optuna._quiet import FD2_LOCK, capture_fd2, reemit, tail

if TYPE_CHECKING:
    import keras
    import numpy as np

# Noise the converter prints from C++ on every call; dropped when we re-emit captured stderr.
_CONVERTER_NOISE = re.compile(
    r"fully_quantize:|tf_tfl_flatbuffer_helpers|Ignored output_format|Ignored drop_control|"
    r"Saved artifact at|trackable_obj|Statistics for quantized inputs|warnings\.warn\(|"
    r"absl::InitializeLog|^I\d{4} |Skipping runtime version metadata"
)


@dataclass
class ConversionCount:
    """How many conversions this process has completed, by any caller.

    Attributes:
        value: The count; one per conversion, added by the process that asked for it.
    """

    value: int = 0


#: The conversions of this process (``profile_cache_info()["conversions"]``).
CONVERSIONS = ConversionCount()


def _input_shape(model: keras.Model) -> tuple[int, ...]:
    """The static shape of a model's single input, without the batch dimension.

    Args:
        model: A Keras model.

    Returns:
        The shape, e.g. ``(187, 1)``.

    Raises:
        MeasurementError: When the model has several inputs or a dimension is not fixed.
    """
    inputs = getattr(model, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise MeasurementError("only models with exactly one input can be profiled")
    dims = tuple(inputs[0].shape)[1:]
    if not dims or any(d is None for d in dims):
        raise MeasurementError(
            f"input shape {tuple(inputs[0].shape)} is not static; TFLM needs fixed shapes"
        )
    return tuple(int(d) for d in dims)


def _representative(
    shape: tuple[int, ...], data: Any, samples: int
) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A representative-dataset generator of float32 batches of one sample.

    Args:
        shape: The input shape without the batch dimension.
        data: Samples, ``(x, y)`` pairs, or None for seeded random normal data.
        samples: How many batches to yield at most.

    Returns:
        The generator function the converter calls.
    """
    import numpy as np

    def generate() -> Iterator[list[np.ndarray]]:
        if data is None:
            # Quantisation ranges only change scale values, never sizes, so seeded noise is
            # enough for figures; a trained model should pass its training data instead.
            rng = np.random.default_rng(0)
            for _ in range(samples):
                yield [rng.standard_normal((1, *shape)).astype(np.float32)]
            return
        for i, sample in enumerate(data):
            if i >= samples:
                break
            if isinstance(sample, (tuple, list)):  # (x, y) pairs from a dataset
                sample = sample[0]
            array = np.asarray(sample, dtype=np.float32).reshape((1, *shape))
            yield [array]

    return generate


def convert_int8(
    model: keras.Model,
    representative_data: Iterable[Any] | np.ndarray | None = None,
    *,
    int8_io: bool = False,
    strip_names: bool = True,
) -> bytes:
    """Convert a Keras model to a fully int8-quantised TFLite flatbuffer.

    Post-training full-integer quantisation with TF's ``TFLiteConverter``
    (``supported_ops=[TFLITE_BUILTINS_INT8]``), batch size fixed to 1. The converter runs in
    the converting process (:mod:`._native`), where a crash is an error, not a dead caller; a
    model that cannot be rebuilt there from its config (custom layers) is converted here.

    Args:
        model: A Keras model with one static-shape input.
        representative_data: Samples (an array ``(N, ...)`` or an iterable of samples or of
            ``(x, y)`` pairs; at most 100 are used). None: seeded random normal data.
        int8_io: int8 input/output tensors instead of float32 (the paper uses float32).
        strip_names: Remove tensor names and signatures (``flatbuffer_utils.strip_strings``).
            TFLM never reads them, and they are derived from Keras' process-global layer
            counters, so keeping them would make the size depend on what ran before.

    Returns:
        The ``.tflite`` bytes.

    Raises:
        MeasurementError: When the model cannot be converted.
    """
    return _convert(model, representative_data, int8_io, strip_names, samples=100)


#: Seconds one conversion may take in the converting process before it counts as hung.
_CONVERT_SECONDS = 900.0


def _convert(
    model: keras.Model, data: Any, int8_io: bool, strip_names: bool, samples: int
) -> bytes:
    """Convert a Keras model in the converting process and count one conversion.

    Args:
        model: A Keras model with one static-shape input.
        data: Representative data as for :func:`convert_int8`, or None.
        int8_io: int8 instead of float32 input/output.
        strip_names: Remove tensor names and signatures.
        samples: How many representative samples the converter calibrates on.

    Returns:
        The ``.tflite`` bytes.

    Raises:
        MeasurementError: When the model cannot be converted.
    """
    shape = _input_shape(model)
    calibration = _samples(shape, data, samples)
    try:
        source: tuple[Any, ...] = ("keras", model.to_json(), model.get_weights())
    except (NotImplementedError, TypeError, ValueError):  # a model Keras cannot describe
        source = ()
    if source:
        model_bytes, captured = convert_source(source, calibration, int8_io, strip_names,
                                               samples)
        if model_bytes is not None:
            return model_bytes
    # Custom layers the converting process cannot rebuild: convert here (not contained).
    with FD2_LOCK:
        model_bytes, captured = _convert_here(model, calibration, int8_io, strip_names, samples)
    reemit(captured, _CONVERTER_NOISE)
    CONVERSIONS.value += 1
    return model_bytes


def convert_source(
    source: tuple[Any, ...], calibration: np.ndarray | None, int8_io: bool, strip_names: bool,
    samples: int,
) -> tuple[bytes | None, str]:
    """Convert in the converting process, re-emit its warnings, count the conversion.

    Args:
        source: ``("keras", model_json, weights)`` or ``("arch", k, c, input_shape,
            num_classes)`` (built there, all-zero biases made non-zero as for a trained model).
        calibration: ``(N, *input_shape)`` float32 samples, or None for seeded noise.
        int8_io: int8 instead of float32 input/output.
        strip_names: Remove tensor names and signatures.
        samples: How many representative samples the converter calibrates on.

    Returns:
        ``(bytes, captured text)``; bytes None when the model could not be rebuilt there.

    Raises:
        MeasurementError: When the conversion fails or the converting process dies.
    """
    from tinytnas_optuna._hardware._native import CONVERTER

    model_bytes, captured = CONVERTER.call(
        "convert", source, calibration, int8_io, strip_names, samples,
        timeout=_CONVERT_SECONDS, what="converting a model to int8")
    if model_bytes is not None:
        reemit(captured, _CONVERTER_NOISE)
        CONVERSIONS.value += 1
    return model_bytes, captured


def _samples(shape: tuple[int, ...], data: Any, samples: int) -> np.ndarray | None:
    """The representative samples as one array ``(n, *shape)``, at most ``samples`` of them.

    Args:
        shape: The input shape without the batch dimension.
        data: Samples, ``(x, y)`` pairs, or None.
        samples: How many to keep at most.

    Returns:
        The float32 array, or None for seeded random normal data.
    """
    import numpy as np

    if data is None:
        return None
    kept = []
    for i, sample in enumerate(data):
        if i >= samples:
            break
        if isinstance(sample, (tuple, list)):  # (x, y) pairs from a dataset
            sample = sample[0]
        kept.append(np.asarray(sample, dtype=np.float32).reshape(shape))
    if not kept:
        raise MeasurementError("the representative data holds no sample")
    return np.stack(kept)


def _convert_in_child(
    source: tuple[Any, ...], calibration: np.ndarray | None, int8_io: bool, strip_names: bool,
    samples: int,
) -> tuple[bytes | None, str]:
    """The converting process's side of :func:`convert_source`.

    Returns:
        ``(bytes, captured text)``, or ``(None, why)`` when a ``"keras"`` model cannot be
        rebuilt here (its caller converts it itself).
    """
    import keras

    if source[0] == "arch":
        from tinytnas_optuna._space import build_model

        model = build_model(*source[1:])
        with _nonzero_biases(model):
            result = _convert_here(model, calibration, int8_io, strip_names, samples)
    else:
        try:
            model = keras.models.model_from_json(source[1])
            model.set_weights(source[2])
        except Exception as error:  # noqa: BLE001 - custom layers: converted by the caller
            return None, f"{type(error).__name__}: {error}"
        result = _convert_here(model, calibration, int8_io, strip_names, samples)
    keras.backend.clear_session()  # one long-lived process converts thousands of models
    return result


def _convert_here(
    model: keras.Model, calibration: np.ndarray | None, int8_io: bool, strip_names: bool,
    samples: int,
) -> tuple[bytes, str]:
    """Convert in this process, capturing the converter's fd 2 output.

    Args:
        model: A Keras model with one static-shape input.
        calibration: Representative samples, or None for seeded noise.
        int8_io: int8 instead of float32 input/output.
        strip_names: Remove tensor names and signatures.
        samples: How many representative samples the converter calibrates on.

    Returns:
        ``(bytes, captured text)``.

    Raises:
        MeasurementError: When the model cannot be converted.
    """
    shape = _input_shape(model)
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    captured = ""
    try:
        with warnings.catch_warnings(), capture_fd2() as read:
            # Float I/O always triggers this converter warning; it says nothing about the model.
            warnings.filterwarnings("ignore", message="Statistics for quantized inputs")
            try:
                # from_keras_model fails on Keras 3 models with TF 2.21 (READ_VARIABLE in the
                # calibrator), so freeze a batch-1 concrete function ourselves.
                spec = tf.TensorSpec((1, *shape), tf.float32)
                function = tf.function(lambda x: model(x, training=False))
                frozen = convert_variables_to_constants_v2(function.get_concrete_function(spec))
                converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                converter.representative_dataset = _representative(shape, calibration, samples)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if int8_io:
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
                model_bytes = bytes(converter.convert())
            finally:
                captured = read()
    except Exception as error:  # the converter raises many types; all mean "no figure"
        raise MeasurementError(
            f"TFLite conversion failed: {type(error).__name__}: {error}\n{tail(captured)}"
        ) from error
    if strip_names:
        model_bytes = _strip_strings(model_bytes)
    return model_bytes, captured


def _strip_strings(model_bytes: bytes) -> bytes:
    """Remove tensor names and signatures from a flatbuffer.

    Args:
        model_bytes: A ``.tflite`` flatbuffer.

    Returns:
        The flatbuffer without its strings.

    Raises:
        MeasurementError: When TF's ``flatbuffer_utils`` cannot rewrite it.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    try:
        model_object = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
        flatbuffer_utils.strip_strings(model_object)
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))
    except Exception as error:
        raise MeasurementError(f"stripping names from the flatbuffer failed: {error}") from error


@contextlib.contextmanager
def _nonzero_biases(model: keras.Model) -> Iterator[None]:
    """Temporarily give all-zero bias vectors small seeded values; restore them afterwards.

    The converter drops an all-zero bias of a fully connected layer (a freshly initialised
    model has them), which a trained model never has; without this the untrained candidate
    would be profiled a few hundred bytes smaller than the network that gets deployed.

    Args:
        model: The Keras model whose bias variables are altered inside the block.

    Returns:
        A context manager; the original values are back when it exits.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    saved: list[tuple[Any, np.ndarray]] = []
    try:
        for variable in model.weights:
            name = str(getattr(variable, "path", None) or variable.name)
            if not name.endswith("bias"):
                continue
            value = np.asarray(variable.numpy())
            if value.size and not np.any(value):
                saved.append((variable, value))
                variable.assign(rng.normal(0.0, 0.01, value.shape).astype(value.dtype))
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)
