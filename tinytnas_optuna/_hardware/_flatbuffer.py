"""Reading a ``.tflite`` flatbuffer: its operators, multiply-accumulates and subgraphs.

Uses the schema module generated for TFLM, which needs only the ``flatbuffers`` package (not
TensorFlow); it is imported on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tinytnas_optuna._errors import MeasurementError

_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


@dataclass(frozen=True)
class Graph:
    """What profiling needs from a flatbuffer.

    Attributes:
        operators: Builtin operator name of every operator, in execution order.
        macs: Multiply-accumulates of one inference.
        subgraphs: Number of subgraphs.
        int8_input: Whether the first input tensor is int8 (else float32, for our models).
    """

    operators: tuple[str, ...]
    macs: int
    subgraphs: int
    int8_input: bool = False


def _schema() -> ModuleType:
    """The generated TFLite schema module (``Model``, ``BuiltinOperator``, ``TensorType``...).

    Returns:
        TFLM's ``schema_py_generated``.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def read_graph(model_bytes: bytes) -> Graph:
    """Parse a flatbuffer far enough to list its operators and count its MACs.

    Args:
        model_bytes: A ``.tflite`` flatbuffer.

    Returns:
        Its :class:`Graph`.

    Raises:
        MeasurementError: When the bytes are not a readable TFLite model.
    """
    if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
        raise MeasurementError(f"expected .tflite bytes, got {type(model_bytes).__name__}")
    data = bytes(model_bytes)
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise MeasurementError("not a TFLite flatbuffer (missing 'TFL3' identifier)")
    fb = _schema()
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    try:
        model = fb.Model.GetRootAsModel(data, 0)
        if model.SubgraphsLength() < 1:
            raise MeasurementError("the flatbuffer has no subgraph")
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            codes.append(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        operators: list[str] = []
        macs = 0
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                name = names.get(codes[op.OpcodeIndex()], f"BUILTIN_{codes[op.OpcodeIndex()]}")
                operators.append(name)
                if name in _MAC_OPS:
                    macs += _op_macs(name, graph, op)
        first = model.Subgraphs(0)
        # Reading the input tensors validates them.
        types = [first.Tensors(first.Inputs(i)).Type() for i in range(first.InputsLength())]
        int8_input = bool(types) and types[0] == fb.TensorType.INT8
        return Graph(tuple(operators), macs, model.SubgraphsLength(), int8_input)
    except MeasurementError:
        raise
    except Exception as error:  # garbage bytes surface as struct/index errors
        raise MeasurementError(f"cannot parse the TFLite flatbuffer: {error}") from error


def _shape(graph: Any, index: int) -> tuple[int, ...]:
    """The shape of one tensor of a subgraph.

    Args:
        graph: A schema ``SubGraph``.
        index: The tensor's index in it.

    Returns:
        The dimensions.
    """
    tensor = graph.Tensors(index)
    return tuple(int(tensor.Shape(i)) for i in range(tensor.ShapeLength()))


def _op_macs(name: str, graph: Any, op: Any) -> int:
    """Multiply-accumulates of one CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED operator.

    Args:
        name: The operator's builtin name (one of ``_MAC_OPS``).
        graph: The schema ``SubGraph`` holding it.
        op: The schema ``Operator``.

    Returns:
        Its MACs per inference.
    """
    out = _shape(graph, op.Outputs(0))
    weights = _shape(graph, op.Inputs(1))
    out_elements = math.prod(out)
    if name == "CONV_2D":  # filter [C_out, kh, kw, C_in]: kh*kw*C_in MACs per output element
        return out_elements * math.prod(weights[1:])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, kh, kw, C_in*multiplier]
        return out_elements * weights[1] * weights[2]
    # FULLY_CONNECTED: weights [out, in]; every output element takes `in` MACs.
    return out_elements * weights[-1]


def count_macs(model_bytes: bytes) -> int:
    """Multiply-accumulates of one inference, per layer of the converted graph.

    CONV_2D: output elements x kernel elements per output (1x1: L_out*C_out*C_in);
    DEPTHWISE_CONV_2D: L_out*kernel*C_in*multiplier; FULLY_CONNECTED: in*out; others 0.

    Args:
        model_bytes: A ``.tflite`` flatbuffer.

    Returns:
        The MAC count.

    Raises:
        MeasurementError: When the bytes are not a readable TFLite model.

    Examples:
        >>> try:
        ...     count_macs(b"not a model")
        ... except MeasurementError as error:
        ...     print(error)
        not a TFLite flatbuffer (missing 'TFL3' identifier)
    """
    return read_graph(model_bytes).macs


def model_operators(model_bytes: bytes) -> tuple[str, ...]:
    """Sorted TFLite builtin operator names used by a model (for an op resolver).

    Args:
        model_bytes: A ``.tflite`` flatbuffer.

    Returns:
        The distinct operator names, sorted.

    Raises:
        MeasurementError: When the bytes are not a readable TFLite model.
    """
    return tuple(sorted(set(read_graph(model_bytes).operators)))


def input_quantization(model_bytes: bytes) -> tuple[float, int]:
    """Scale and zero point that turn a standardised float input into the model's int8 input.

    For a float32-input model this is the model's own QUANTIZE step (done on the board by the
    model); for an int8-input model the firmware applies it before ``Invoke()``.

    Args:
        model_bytes: The ``.tflite`` flatbuffer.

    Returns:
        ``(scale, zero_point)``.
    """
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
