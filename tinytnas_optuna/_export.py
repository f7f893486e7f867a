"""The deployable model: run it in TFLite Micro, write ``model.tflite`` and C files for firmware."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# TFLite builtin operator name -> the MicroMutableOpResolver method that registers it.
_RESOLVER_METHODS = {
    "CONV_2D": "AddConv2D",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "FULLY_CONNECTED": "AddFullyConnected",
    "MAX_POOL_2D": "AddMaxPool2D",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "MEAN": "AddMean",
    "SOFTMAX": "AddSoftmax",
    "RESHAPE": "AddReshape",
    "EXPAND_DIMS": "AddExpandDims",
    "SQUEEZE": "AddSqueeze",
    "QUANTIZE": "AddQuantize",
    "DEQUANTIZE": "AddDequantize",
    "RELU": "AddRelu",
}


def tflm_predict(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Run every sample through TensorFlow Lite Micro (the runtime on the board).

    TFLM runs in the measuring process (:mod:`tinytnas_optuna._hardware._native`): a crash
    there raises a ``MeasurementError`` here.

    Args:
        model_bytes: An int8 ``.tflite`` flatbuffer (float32 or int8 input/output).
        features: ``(N, L, C)`` float32 features, already standardised.

    Returns:
        ``(N, K)`` float32 class scores (dequantised when the output is int8).

    Raises:
        MeasurementError: When TFLM fails or crashes.
    """
    from tinytnas_optuna._hardware._native import TFLM

    features = np.asarray(features, dtype=np.float32)
    # About 0.3 ms per HAR window here; a generous allowance before the call counts as hung.
    timeout = 120.0 + 0.05 * len(features)
    return TFLM.call("predict", bytes(model_bytes), features, timeout=timeout,
                     what=f"running {len(features)} series through TFLM")


def _predict_in_process(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """:func:`tflm_predict`'s work, in this process (the measuring process runs it)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(model_bytes))
    inp = interpreter.get_input_details(0)
    out = interpreter.get_output_details(0)
    in_scale, in_zero = _quant(inp)
    out_scale, out_zero = _quant(out)
    results = []
    for sample in features:
        x = sample[None, ...]
        if inp["dtype"] == np.int8:
            x = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_input(x.reshape(inp["shape"]), 0)
        interpreter.invoke()
        y = np.asarray(interpreter.get_output(0)).reshape(-1)
        if out["dtype"] == np.int8:
            y = (y.astype(np.float32) - out_zero) * out_scale
        results.append(y.astype(np.float32))
    return np.stack(results)


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    params = details.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    return (float(scales[0]) if len(scales) else 1.0, int(zeros[0]) if len(zeros) else 0)


def input_quantization(model_bytes: bytes) -> tuple[float, int]:
    """Scale and zero point that turn a standardised float input into the model's int8 input.

    For a float32-input model this is the model's own QUANTIZE step (done on the board by the
    model); for an int8-input model the firmware applies it before ``Invoke()``.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.

    Returns:
        ``(scale, zero_point)``.
    """
    from tinytnas_optuna._hardware import _schema

    fb = _schema()
    graph = fb.Model.GetRootAsModel(bytes(model_bytes), 0).Subgraphs(0)
    model = fb.Model.GetRootAsModel(bytes(model_bytes), 0)
    source = graph.Inputs(0)

    def params(index: int) -> tuple[float, int]:
        q = graph.Tensors(index).Quantization()
        return float(q.Scale(0)), int(q.ZeroPoint(0))

    if graph.Tensors(source).Type() == fb.TensorType.INT8:
        return params(source)
    for o in range(graph.OperatorsLength()):  # the QUANTIZE that reads the float input
        op = graph.Operators(o)
        code = model.OperatorCodes(op.OpcodeIndex())
        opcode = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if opcode == fb.BuiltinOperator.QUANTIZE and op.Inputs(0) == source:
            return params(op.Outputs(0))
    raise ValueError("model has float input but no QUANTIZE op on it")


def write_firmware_files(
    out_dir: str | Path,
    model_bytes: bytes,
    *,
    arena_bytes: int,
    input_shape: tuple[int, int],
    operators: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    classes: Sequence[Any],
    class_names: Sequence[str] | None = None,
    name: str = "tinytnas_model",
) -> dict[str, Path]:
    """Write ``model.tflite`` and a C source + header for a TFLM firmware.

    Args:
        out_dir: Directory to write into (created).
        model_bytes: The int8 ``.tflite`` flatbuffer.
        arena_bytes: Tensor arena size to allocate (already including any margin).
        input_shape: ``(L, C)`` of one sample.
        operators: TFLite builtin operator names the model uses.
        mean: Per-channel mean to subtract from raw input (training standardisation).
        std: Per-channel standard deviation to divide by.
        classes: Original label of each output index (the label map).
        class_names: Optional readable names of the classes.
        name: C identifier prefix.

    Returns:
        Paths written, by kind (``tflite``, ``source``, ``header``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ident = re.sub(r"\W", "_", name)
    upper = ident.upper()
    scale, zero = input_quantization(model_bytes)
    tflite_path = out / "model.tflite"
    tflite_path.write_bytes(bytes(model_bytes))

    ops = sorted(set(operators))
    resolver = "\n".join(
        f" *   resolver.{_RESOLVER_METHODS.get(op, '/* ' + op + ' */')}();" for op in ops
    )
    names = class_names or [str(c) for c in classes]
    header = f"""// Generated by tinytnas-optuna. Model: {len(model_bytes)} bytes of int8 TFLite.
#ifndef {upper}_H_
#define {upper}_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

// Tensor arena to allocate (bytes, 16-byte aligned): see the comment in the source.
#define {upper}_ARENA_SIZE {arena_bytes}
#define {upper}_INPUT_LENGTH {int(input_shape[0])}
#define {upper}_NUM_CHANNELS {int(input_shape[1])}
#define {upper}_NUM_CLASSES {len(classes)}
#define {upper}_NUM_OPERATORS {len(ops)}

extern const unsigned char {ident}[];
extern const unsigned int {ident}_len;

// Quantisation of the standardised input: q = round(x / scale) + zero_point.
extern const float {ident}_input_scale;
extern const int32_t {ident}_input_zero_point;

// Standardisation applied in training: x = (raw - mean[ch]) / std[ch].
extern const float {ident}_mean[{upper}_NUM_CHANNELS];
extern const float {ident}_std[{upper}_NUM_CHANNELS];

// Label map: output index i is original label {ident}_labels[i].
extern const int32_t {ident}_labels[{upper}_NUM_CLASSES];
extern const char* const {ident}_class_names[{upper}_NUM_CLASSES];

/* Operators to register (tflite::MicroMutableOpResolver<{upper}_NUM_OPERATORS> resolver;):
{resolver}
 */

#ifdef __cplusplus
}}
#endif

#endif  // {upper}_H_
"""
    rows = [", ".join(f"0x{b:02x}" for b in model_bytes[i:i + 12])
            for i in range(0, len(model_bytes), 12)]
    source = f"""// Generated by tinytnas-optuna.
#include "{ident}.h"

// Arena: RAM figure measured by TensorFlow Lite Micro's own allocator for this model on the
// 64-bit host (an upper bound of the 32-bit need), rounded up to 16 bytes.
// Model data must be 16-byte aligned for TFLM.
alignas(16) const unsigned char {ident}[] = {{
  {(","+chr(10)+"  ").join(rows)}
}};
const unsigned int {ident}_len = {len(model_bytes)};

const float {ident}_input_scale = {_c_float(scale)};
const int32_t {ident}_input_zero_point = {zero};
const float {ident}_mean[{upper}_NUM_CHANNELS] = {{{", ".join(_c_float(v) for v in mean)}}};
const float {ident}_std[{upper}_NUM_CHANNELS] = {{{", ".join(_c_float(v) for v in std)}}};
const int32_t {ident}_labels[{upper}_NUM_CLASSES] = {{{", ".join(str(int(c)) for c in classes)}}};
const char* const {ident}_class_names[{upper}_NUM_CLASSES] = {{{", ".join(_c_str(n) for n in names)}}};
"""
    source_path, header_path = out / f"{ident}.cc", out / f"{ident}.h"
    header_path.write_text(header)
    source_path.write_text(source)
    return {"tflite": tflite_path, "source": source_path, "header": header_path}


def _c_float(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot export non-finite value {value}")
    return f"{value:.9g}f" if "." in f"{value:.9g}" or "e" in f"{value:.9g}" else f"{value:.1f}f"


def _c_str(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'
