"""RAM, flash and MAC figures of a candidate: measured (TF converter + TFLM) or analytic.

Measured figures come from the real tools: TensorFlow's converter makes a fully int8 ``.tflite``
(flash is its length), the flatbuffer graph gives the MACs, and TensorFlow Lite for
Microcontrollers (``tflite-micro`` on PyPI, run in-process) reports its tensor arena, from which
the arena of a 32-bit microcontroller is derived (see ``docs/figures.md``). Analytic figures are
computed from the :class:`~tinytnas_optuna._space.Architecture` alone in pure Python; they are
calibrated against measurements and tested to stay within 5 %.

TensorFlow and ``tflite_micro`` are imported inside the functions that need them so that
``import tinytnas_optuna`` stays fast.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from tinytnas_optuna._space import KERNEL_SIZE, Architecture, architecture, build_model

if TYPE_CHECKING:
    import keras
    import numpy as np

__all__ = [
    "ArenaReport",
    "HardwareProfile",
    "MeasurementError",
    "clear_profile_cache",
    "convert_and_profile",
    "convert_int8",
    "count_macs",
    "estimate_profile",
    "profile_architecture",
    "profile_cache_info",
    "profile_model",
    "ram_32bit",
    "tflm_arena",
]

METHODS = ("measured", "analytic")

#: TFLM aligns every planned (head) buffer and every persistent buffer to 16 bytes
#: (``MicroArenaBufferAlignment()``); we round the 32-bit arena up to it as well.
ARENA_ALIGNMENT = 16

#: Per-kind lines of ``RecordingMicroAllocator::PrintAllocations`` whose items are fixed-size
#: structs of ``TF_LITE_STATIC_MEMORY`` builds: ``(bytes on a 64-bit host, on a 32-bit MCU)``.
#: Derivation in docs/figures.md. Every other tail byte is kept at its 64-bit size (an upper
#: bound: no struct grows when pointers shrink).
STRUCT_SIZES: dict[str, tuple[int, int]] = {
    # {TfLitePtrUnion data; TfLiteIntArray* dims; TfLiteType type;}: 8+8+4(+4 pad) vs 4+4+4.
    "TfLiteEvalTensor data": (24, 12),
    # {TfLiteNode (6 pointers + int); const TFLMRegistration*}: 6*8+4(+4)+8 vs 6*4+4+4.
    "NodeAndRegistration struct": (64, 32),
    # Reduced TfLiteTensor: quantization{enum, void*} 16/8, params 8/8, data 8/4, dims 8/4,
    # bytes (size_t) 8/4, type 4/4, allocation_type 4/4, is_variable 1 -> 57 -> 64 vs 37 -> 40.
    "Persistent TfLiteTensor data": (64, 40),
}
#: Kinds allocated as one array per subgraph (the recorder rewrites their ``count`` to the number
#: of tensors / operators); the others are one allocation per counted item.
_ONE_ALLOCATION_PER_SUBGRAPH = frozenset({"TfLiteEvalTensor data", "NodeAndRegistration struct"})

_LINE_TOTAL = re.compile(
    r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes"
)
_LINE_KIND = re.compile(
    r"\[RecordingMicroAllocator\] '([^']+)' used (\d+) bytes with alignment overhead "
    r"\(requested (\d+) bytes for (\d+) ([^)]*)\)"
)

_MAC_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Noise the converter prints from C++ on every call; dropped when we re-emit captured stderr.
_CONVERTER_NOISE = re.compile(
    r"fully_quantize:|tf_tfl_flatbuffer_helpers|Ignored output_format|Ignored drop_control|"
    r"Saved artifact at|trackable_obj|Statistics for quantized inputs|warnings\.warn\(|"
    r"absl::InitializeLog|^I\d{4} |Skipping runtime version metadata|^\s*$"
)


class MeasurementError(RuntimeError):
    """Conversion to TFLite, running TFLM or reading its report failed; no figure exists."""


@dataclass(frozen=True)
class HardwareProfile:
    """RAM, flash and MACs of one network, and how they were obtained.

    Attributes:
        ram: Bytes of TFLM tensor arena on a 32-bit microcontroller.
        flash: Bytes of the int8 ``.tflite`` flatbuffer.
        macs: Multiply-accumulates of one inference (conv, depthwise conv, fully connected).
        method: ``"measured"`` or ``"analytic"``.
        source: One sentence saying how each figure was obtained.
        ram_host: TFLM's own arena total on this 64-bit host (None for analytic figures).
        operators: TFLite builtin operator names in the model, sorted (expected set if analytic).
    """

    ram: int
    flash: int
    macs: int
    method: str
    source: str
    ram_host: int | None = None
    operators: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready plain values (operators as a list)."""
        data = asdict(self)
        data["operators"] = list(self.operators)
        return data


@dataclass(frozen=True)
class AllocationRecord:
    """One per-kind line of TFLM's allocation report.

    Attributes:
        kind: The quoted name, e.g. ``"TfLiteEvalTensor data"``.
        used: Bytes used including alignment overhead.
        requested: Bytes requested.
        count: Number of items (TFLM's own unit, see ``unit``).
        unit: The unit word, e.g. ``"allocations"`` or ``"tensors"``.
    """

    kind: str
    used: int
    requested: int
    count: int
    unit: str


@dataclass(frozen=True)
class ArenaReport:
    """TFLM's arena report for one model on this (64-bit) host, and its 32-bit figure.

    Attributes:
        total: Arena bytes in use (head + tail), as TFLM printed it.
        head: Non-persistent bytes (planned activation and scratch buffers).
        tail: Persistent bytes (runtime structs, operator data, allocator objects).
        records: The per-kind lines.
        subgraphs: Number of subgraphs in the model (for the alignment slack).
        text: The raw captured report.
    """

    total: int
    head: int
    tail: int
    records: tuple[AllocationRecord, ...]
    subgraphs: int
    text: str

    def record(self, kind: str) -> AllocationRecord | None:
        """The record of ``kind``, or None when TFLM printed no line for it."""
        return next((r for r in self.records if r.kind == kind), None)

    @property
    def ram_32(self) -> int:
        """The derived 32-bit arena bytes (see :func:`ram_32bit`)."""
        return ram_32bit(self)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _align_up(value: int, alignment: int = ARENA_ALIGNMENT) -> int:
    return -(-value // alignment) * alignment


# One lock serialises everything that redirects fd 2 or touches the cache: fd redirection is
# process-wide, and two threads redirecting at once would lose each other's output.
_LOCK = threading.RLock()


@contextlib.contextmanager
def _capture_fd2() -> Iterator[Callable[[], str]]:
    """Redirect file descriptor 2 (C/C++ stderr) into a temp file; always restore it.

    Yields a callable returning what was captured so far.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)

            def read() -> str:
                sys.stderr.flush()
                tmp.flush()
                tmp.seek(0)
                return tmp.read().decode("utf-8", errors="replace")

            yield read
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _reemit(text: str) -> None:
    """Write captured stderr back, minus the converter's routine chatter."""
    kept = [line for line in text.splitlines() if not _CONVERTER_NOISE.search(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------


def _input_shape(model: keras.Model) -> tuple[int, ...]:
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
    """A representative-dataset generator of float32 batches of one sample."""
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
    (``supported_ops=[TFLITE_BUILTINS_INT8]``), batch size fixed to 1.

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
    with _LOCK:
        return _convert(model, representative_data, int8_io, strip_names, samples=100)


_conversions = 0  # conversions performed in this process (exposed through profile_cache_info)


def _convert(
    model: keras.Model, data: Any, int8_io: bool, strip_names: bool, samples: int
) -> bytes:
    global _conversions
    shape = _input_shape(model)
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    captured = ""
    try:
        with warnings.catch_warnings(), _capture_fd2() as read:
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
                converter.representative_dataset = _representative(shape, data, samples)
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                if int8_io:
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
                model_bytes = bytes(converter.convert())
            finally:
                captured = read()
    except Exception as error:  # the converter raises many types; all mean "no figure"
        raise MeasurementError(
            f"TFLite conversion failed: {type(error).__name__}: {error}\n{_tail(captured)}"
        ) from error
    _reemit(captured)
    _conversions += 1
    if strip_names:
        model_bytes = _strip_strings(model_bytes)
    return model_bytes


def _strip_strings(model_bytes: bytes) -> bytes:
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


# --------------------------------------------------------------------------------------------
# Reading the flatbuffer: operators and MACs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Graph:
    operators: tuple[str, ...]  # per operator, in execution order
    macs: int
    subgraphs: int
    input_types: tuple[int, ...]


def _schema() -> Any:
    # TFLM's generated schema needs only the ``flatbuffers`` package, not TensorFlow.
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _read_graph(model_bytes: bytes) -> _Graph:
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
        input_types = tuple(
            first.Tensors(first.Inputs(i)).Type() for i in range(first.InputsLength())
        )
        return _Graph(tuple(operators), macs, model.SubgraphsLength(), input_types)
    except MeasurementError:
        raise
    except Exception as error:  # garbage bytes surface as struct/index errors
        raise MeasurementError(f"cannot parse the TFLite flatbuffer: {error}") from error


def _shape(graph: Any, index: int) -> tuple[int, ...]:
    tensor = graph.Tensors(index)
    return tuple(int(tensor.Shape(i)) for i in range(tensor.ShapeLength()))


def _op_macs(name: str, graph: Any, op: Any) -> int:
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
    """
    return _read_graph(model_bytes).macs


def model_operators(model_bytes: bytes) -> tuple[str, ...]:
    """Sorted TFLite builtin operator names used by a model (for an op resolver).

    Args:
        model_bytes: A ``.tflite`` flatbuffer.

    Returns:
        The distinct operator names, sorted.
    """
    return tuple(sorted(set(_read_graph(model_bytes).operators)))


# --------------------------------------------------------------------------------------------
# TFLM arena
# --------------------------------------------------------------------------------------------


def tflm_arena(model_bytes: bytes) -> ArenaReport:
    """Run TFLM on the model and read its arena report (``print_allocations``).

    The interpreter gets an arena of 1 MiB or 10x the model; when TFLM reports memory missing,
    the arena is quadrupled (up to 256 MiB) before giving up. The bytes are checked to be a
    readable TFLite flatbuffer first, so garbage never reaches TFLM's C++.

    Args:
        model_bytes: An int8 ``.tflite`` flatbuffer.

    Returns:
        The parsed :class:`ArenaReport`; ``report.ram_32`` is the derived 32-bit figure.

    Raises:
        MeasurementError: When TFLM fails or its report cannot be parsed.
    """
    graph = _read_graph(model_bytes)  # refuse garbage before it reaches C++
    from tflite_micro.python.tflite_micro import runtime

    data = bytes(model_bytes)
    arena = max(1 << 20, 10 * len(data))
    with _LOCK:
        while True:
            text = ""
            try:
                with _capture_fd2() as read:
                    try:
                        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
                        interpreter.print_allocations()
                    finally:
                        text = read()
                break
            except Exception as error:
                # An arena too small for head or tail makes TFLM print "... Requested: R,
                # available A, missing: M"; offer more before giving up. Other failures (e.g. an
                # operator TFLM lacks) are final.
                if "missing:" in text and arena < (1 << 28):
                    arena *= 4
                    continue
                raise MeasurementError(
                    f"TFLM failed: {type(error).__name__}: {error}\n{_tail(text)}"
                ) from error
    return parse_arena_report(text, subgraphs=graph.subgraphs)


def parse_arena_report(text: str, *, subgraphs: int = 1) -> ArenaReport:
    """Parse the text of ``RecordingMicroAllocator::PrintAllocations``.

    Args:
        text: Captured stderr containing the report.
        subgraphs: Number of subgraphs of the model.

    Returns:
        The :class:`ArenaReport`.

    Raises:
        MeasurementError: When total, head or tail is missing or inconsistent.
    """
    totals: dict[str, int] = {}
    for match in _LINE_TOTAL.finditer(text):
        totals[match.group(1)] = int(match.group(2))
    missing = {"total", "head", "tail"} - set(totals)
    if missing:
        raise MeasurementError(
            f"TFLM report lacks the {', '.join(sorted(missing))} line(s):\n{_tail(text)}"
        )
    if totals["head"] + totals["tail"] != totals["total"] or totals["total"] <= 0:
        raise MeasurementError(f"inconsistent TFLM report: {totals}")
    records = tuple(
        AllocationRecord(
            m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5).strip()
        )
        for m in _LINE_KIND.finditer(text)
    )
    if not records:
        raise MeasurementError(f"TFLM report has no per-kind lines:\n{_tail(text)}")
    if sum(r.used for r in records) > totals["tail"] + totals["head"]:
        raise MeasurementError("TFLM per-kind lines exceed the arena total")
    report_lines = [line for line in text.splitlines() if "[RecordingMicroAllocator]" in line]
    return ArenaReport(
        totals["total"],
        totals["head"],
        totals["tail"],
        records,
        subgraphs,
        "\n".join(report_lines),
    )


def ram_32bit(report: ArenaReport) -> int:
    """Derive the 32-bit MCU arena from a 64-bit host report (docs/figures.md).

    ``head`` is kept (planned buffers do not depend on pointer size). In the tail, each kind
    of :data:`STRUCT_SIZES` whose requested bytes are exactly ``count * size64`` shrinks by
    ``count * (size64 - size32)``; every other tail byte is kept at its 64-bit size. Each
    shrunk allocation may misalign the next 16-byte-aligned one, so 15 bytes are added per
    shrunk allocation; the sum is rounded up to 16 and never exceeds the host figure.

    Args:
        report: A parsed TFLM report.

    Returns:
        Arena bytes for a 32-bit target.
    """
    saved = 0
    slack = 0
    for kind, (size64, size32) in STRUCT_SIZES.items():
        record = report.record(kind)
        if record is None or record.count <= 0 or record.requested != record.count * size64:
            continue  # unknown layout on this build: keep the 64-bit bytes (upper bound)
        saved += record.count * (size64 - size32)
        allocations = report.subgraphs if kind in _ONE_ALLOCATION_PER_SUBGRAPH else record.count
        slack += (ARENA_ALIGNMENT - 1) * allocations
    derived = _align_up(report.head + report.tail - saved + slack)
    return min(derived, report.total)


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def _tflm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _measured_source(int8_io: bool) -> str:
    import tensorflow as tf

    io = "int8" if int8_io else "float32"
    return (
        f"RAM: TFLM arena (tflite-micro {_tflm_version()}, reference kernels) reported on this "
        f"64-bit host and converted to 32-bit by shrinking TfLiteEvalTensor, "
        f"NodeAndRegistration and TfLiteTensor structs (docs/figures.md); flash: length of the "
        f"TF {tf.__version__} converter's full-int8 output ({io} I/O) with tensor names "
        f"stripped; MACs: per-layer count of the converted graph."
    )


def _profile_bytes(model_bytes: bytes, int8_io: bool) -> HardwareProfile:
    graph = _read_graph(model_bytes)
    report = tflm_arena(model_bytes)
    ram = report.ram_32
    if not 0 < ram <= report.total:
        raise MeasurementError(f"derived 32-bit arena {ram} outside (0, {report.total}]")
    return HardwareProfile(
        ram=ram,
        flash=len(model_bytes),
        macs=graph.macs,
        method="measured",
        source=_measured_source(int8_io),
        ram_host=report.total,
        operators=tuple(sorted(set(graph.operators))),
    )


def convert_and_profile(
    model: keras.Model,
    representative_data: Iterable[Any] | np.ndarray | None,
    *,
    int8_io: bool = False,
    calibration_samples: int = 100,
) -> tuple[bytes, HardwareProfile]:
    """Convert a (trained) model and measure the very bytes returned; never cached.

    Args:
        model: The Keras model to export.
        representative_data: Calibration samples (see :func:`convert_int8`).
        int8_io: int8 instead of float32 input/output.
        calibration_samples: How many of them the converter calibrates on.

    Returns:
        ``(tflite_bytes, profile)`` with ``profile.flash == len(tflite_bytes)``.

    Raises:
        MeasurementError: When conversion or TFLM fails.
    """
    with _LOCK:
        model_bytes = _convert(model, representative_data, int8_io, True,
                               samples=calibration_samples)
        return model_bytes, _profile_bytes(model_bytes, int8_io)


# Profiles keyed by (Architecture or structural signature, method, int8_io). Figures depend on
# the network's structure only, not on representative data values (they change quantisation
# scales, never sizes) nor on weight values (zero biases are made non-zero before conversion),
# so the cache ignores both.
_cache: dict[tuple[Any, str, bool], HardwareProfile] = {}
_hits = 0
_misses = 0

# Figures only need sizes, so a few calibration samples suffice and keep conversion fast.
_PROFILE_SAMPLES = 8


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _cached(key: tuple[Any, str, bool], compute: Callable[[], HardwareProfile]) -> HardwareProfile:
    global _hits, _misses
    with _LOCK:
        if key in _cache:
            _hits += 1
            return _cache[key]
        _misses += 1
        profile = compute()
        _cache[key] = profile
        return profile


def profile_cache_info() -> dict[str, int]:
    """Statistics of the profile cache.

    Returns:
        ``hits``, ``misses``, ``size`` and ``conversions`` (TF conversions done in this
        process by any function of this module).
    """
    with _LOCK:
        return {"hits": _hits, "misses": _misses, "size": len(_cache), "conversions": _conversions}


def clear_profile_cache() -> None:
    """Forget all cached profiles (counters are reset too)."""
    global _hits, _misses
    with _LOCK:
        _cache.clear()
        _hits = 0
        _misses = 0


def _measure_model(model: keras.Model, int8_io: bool) -> HardwareProfile:
    with _LOCK, _nonzero_biases(model):
        model_bytes = _convert(model, None, int8_io, True, samples=_PROFILE_SAMPLES)
        return _profile_bytes(model_bytes, int8_io)


def profile_architecture(
    arch: Architecture, *, method: str = "measured", int8_io: bool = False
) -> HardwareProfile:
    """Profile the network an :class:`Architecture` describes; cached per process.

    Args:
        arch: The architecture (from :func:`~tinytnas_optuna._space.architecture`).
        method: ``"measured"`` (convert + TFLM) or ``"analytic"`` (:func:`estimate_profile`).
        int8_io: int8 instead of float32 input/output.

    Returns:
        The :class:`HardwareProfile`.

    Raises:
        ValueError: For an unknown method or an architecture outside the family.
        MeasurementError: When a measurement fails.
    """
    _check_method(method)
    _check_family(arch)
    if method == "analytic":
        return _cached((arch, method, int8_io), lambda: estimate_profile(arch, int8_io=int8_io))

    def measure() -> HardwareProfile:
        model = build_model(arch.widths[0], arch.cells, arch.input_shape, arch.num_classes)
        return _measure_model(model, int8_io)

    return _cached((arch, method, int8_io), measure)


def _check_family(arch: Architecture) -> None:
    expected = architecture(arch.widths[0], arch.cells, arch.input_shape, arch.num_classes)
    if expected != arch:
        raise ValueError(f"{arch} is not a TinyTNAS-family architecture (expected {expected})")


def model_signature(model: keras.Model) -> str:
    """A structural signature of a Keras model, equal for two builds of the same network.

    Layer classes and configs (layer names canonicalised to positions, so connectivity is
    kept), weight shapes and input shape.

    Args:
        model: A Keras model.

    Returns:
        A JSON string.
    """
    layers = list(model.layers)
    aliases = {layer.name: f"#{i}" for i, layer in enumerate(layers)}
    aliases[model.name] = "#model"

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items() if k != "name"}
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        if isinstance(value, str):
            return aliases.get(value, value)
        return value

    try:
        config: Any = canonical(model.get_config())
    except (NotImplementedError, TypeError, ValueError):  # subclassed models may not serialise
        config = [canonical(layer.get_config()) for layer in layers]
    weights = [[list(w.shape) for w in layer.weights] for layer in layers]
    inputs = [list(t.shape) for t in getattr(model, "inputs", []) or []]
    return json.dumps(
        {
            "classes": [type(layer).__name__ for layer in layers],
            "config": config,
            "weights": weights,
            "inputs": inputs,
        },
        sort_keys=True,
        default=str,
    )


def profile_model(
    model: keras.Model,
    representative_data: Iterable[Any] | np.ndarray | None = None,
    *,
    method: str = "measured",
    int8_io: bool = False,
) -> HardwareProfile:
    """Profile a Keras model; cached by its structural signature.

    Args:
        model: The Keras model (its weights are briefly altered if a bias is all zeros, then
            restored; see :func:`_nonzero_biases`).
        representative_data: Ignored for the figures (sizes do not depend on calibration
            values); accepted so callers can pass what they would pass to the converter.
        method: ``"measured"`` or ``"analytic"`` (TinyTNAS-family models only).
        int8_io: int8 instead of float32 input/output.

    Returns:
        The :class:`HardwareProfile`.

    Raises:
        ValueError: For an unknown method, or ``"analytic"`` on a model outside the family.
        MeasurementError: When a measurement fails.
    """
    del representative_data  # figures depend on sizes only; see the cache comment above
    _check_method(method)
    if method == "analytic":
        arch = architecture_of(model)
        return _cached((arch, method, int8_io), lambda: estimate_profile(arch, int8_io=int8_io))
    key = (model_signature(model), method, int8_io)
    return _cached(key, lambda: _measure_model(model, int8_io))


def architecture_of(model: keras.Model) -> Architecture:
    """Recover the :class:`Architecture` of a TinyTNAS-family Keras model.

    Args:
        model: A model built by :func:`~tinytnas_optuna._space.build_model` (or identical).

    Returns:
        Its architecture.

    Raises:
        ValueError: When the model is not of the family.
    """
    kinds = [
        type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer"
    ]
    separable = [layer for layer in model.layers if type(layer).__name__ == "SeparableConv1D"]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    try:
        shape = _input_shape(model)
    except MeasurementError as error:
        raise ValueError(str(error)) from None
    if not separable or len(dense) != 2 or len(shape) != 2:
        raise ValueError(f"not a TinyTNAS-family model: layers {kinds}")
    k, cells = int(separable[0].filters), len(separable) - 1
    arch = architecture(k, cells, shape, int(dense[1].units))
    expected = (
        ["SeparableConv1D"]
        + ["MaxPooling1D", "SeparableConv1D"] * cells
        + ["GlobalAveragePooling1D", "Dense", "Dense"]
    )
    widths = tuple(int(layer.filters) for layer in separable)
    if (
        kinds != expected
        or widths != arch.widths
        or int(dense[0].units) != arch.dense
        or any(tuple(layer.kernel_size) != (KERNEL_SIZE,) for layer in separable)
    ):
        raise ValueError(f"not a TinyTNAS-family model: layers {kinds}, widths {widths}")
    return arch


# --------------------------------------------------------------------------------------------
# Analytic estimate
# --------------------------------------------------------------------------------------------

# Calibration of the analytic model against tflite-micro 0.dev20261023182759 and TF 2.21 on 180
# seeded random TinyTNAS architectures (120 float I/O, 60 int8 I/O; docs/figures.md). With n
# separable convolutions the converted graph always has 3n + 7 operators and 7n + 15 tensors
# (int8 I/O: QUANTIZE and DEQUANTIZE and their float tensors disappear).
_CAL = {
    # flash = base + per_conv * n + sum(align4(constant buffer)) + 24 * channels, where
    # "channels" counts per-channel quantised output channels (each weight and bias tensor
    # stores a float32 scale and an int64 zero point per channel: 12 bytes, twice).
    # Residual of the fit: -22..+20 bytes.
    "flash": {False: (2159, 817), True: (1918, 815)},
    # Requested bytes of TFLM's "Persistent buffer data" (operator data + per-channel
    # multiplier/shift arrays): base + 192 n + 8 * channels; exact on every sample.
    "op_data": {False: 316, True: 252},
    # Tail bytes TFLM does not itemise (allocator objects, memory planner, builtin options):
    # 620 + 96 n; exact on every sample.
    "unrecorded": (620, 96),
    # "Persistent TfLiteTensor quantization data" of int8 I/O: 2 x (TfLiteAffineQuantization 24
    # + zero-point TfLiteIntArray 8) bytes on the host.
    "io_quantization": 64,
}


def _pad16(size: int) -> int:
    return _align_up(size) - size


def _greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Arena bytes of TFLM's ``GreedyMemoryPlanner`` for ``(size, first, last)`` buffers.

    Mirrors the C++: buffers are listed in reverse order and bubble-sorted by size descending
    (so equal sizes are placed last-added first); each goes into the first gap, in offset order,
    between buffers alive at the same time; the offset-ordered list inserts after equal offsets.
    """
    if not buffers:
        return 0
    # Stable sort of the reversed insertion order: equal sizes keep TFLM's reversed order.
    order = sorted(range(len(buffers) - 1, -1, -1), key=lambda i: -buffers[i][0])
    offsets: dict[int, int] = {}
    by_offset: list[int] = []
    for position, buffer in enumerate(order):
        size, first, last = buffers[buffer]
        candidate = 0
        if position:
            for other in by_offset:
                _, other_first, other_last = buffers[other]
                if other_first > last or first > other_last:
                    continue
                if offsets[other] - candidate >= size:
                    break
                candidate = max(candidate, offsets[other] + buffers[other][0])
        offsets[buffer] = candidate
        index = 0
        while index < len(by_offset) and offsets[by_offset[index]] <= candidate:
            index += 1
        by_offset.insert(index, buffer)
    return max(offsets[i] + buffers[i][0] for i in offsets)


def _estimate_head(arch: Architecture, int8_io: bool) -> int:
    length, channels = arch.input_shape
    # Activation tensors in the converter's tensor order (= operator order), in bytes.
    sizes = [length * channels * (1 if int8_io else 4)]  # graph input
    if not int8_io:
        sizes.append(length * channels)  # QUANTIZE
    sizes.append(length * channels)  # RESHAPE to (1, 1, L, C)
    c_in = channels
    for i, width in enumerate(arch.widths):
        sizes += [length * c_in, length * width]  # DEPTHWISE_CONV_2D, CONV_2D
        if i + 1 < len(arch.widths):
            length //= 2
            sizes.append(length * width)  # MAX_POOL_2D
        c_in = width
    sizes += [length * c_in, c_in, arch.dense, arch.num_classes, arch.num_classes]
    if not int8_io:
        sizes.append(4 * arch.num_classes)  # DEQUANTIZE (float output)
    operators = len(sizes) - 1
    # Input created at scope 0; operator j (1-based) creates its output at scope j, the next
    # operator reads it at j + 1; the graph output lives until the end.
    buffers = [(_align_up(sizes[0]), 0, 1)]
    buffers += [(_align_up(s), j, min(j + 1, operators)) for j, s in enumerate(sizes[1:], 1)]
    return _greedy_plan(buffers)


def _expected_operators(arch: Architecture, int8_io: bool) -> tuple[str, ...]:
    names = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "RESHAPE", "SOFTMAX"}
    if len(arch.widths) > 1:
        names.add("MAX_POOL_2D")
    if not int8_io:
        names |= {"QUANTIZE", "DEQUANTIZE"}
    return tuple(sorted(names))


def _estimate_macs(arch: Architecture) -> int:
    length, c_in = arch.input_shape
    macs = 0
    for i, width in enumerate(arch.widths):
        if i:
            length //= 2
        # SeparableConv1D converts to a depthwise 1x3 then a pointwise 1x1 convolution.
        macs += length * KERNEL_SIZE * c_in + length * c_in * width
        c_in = width
    return macs + c_in * arch.dense + arch.dense * arch.num_classes


def estimate_profile(arch: Architecture, *, int8_io: bool = False) -> HardwareProfile:
    """Analytic figures from the architecture alone (pure Python, well under 5 ms).

    MACs are exact. The arena head is TFLM's greedy plan replayed on the known tensor sizes;
    the tail reproduces TFLM's host report from fitted, exact-on-calibration formulas and then
    goes through the same 32-bit derivation as measurements (:func:`ram_32bit`). Flash is a
    fitted size model (within about 25 bytes on the calibration sample).

    Args:
        arch: The architecture.
        int8_io: int8 instead of float32 input/output.

    Returns:
        A :class:`HardwareProfile` with ``method="analytic"`` and ``ram_host=None``.
    """
    n = len(arch.widths)
    c_ins = (arch.input_shape[1], *arch.widths[:-1])
    # Output channels of every per-channel quantised tensor pair (weights + bias).
    channels = (*c_ins, *arch.widths, arch.dense, arch.num_classes)
    constant_sizes = (
        [KERNEL_SIZE * c for c in c_ins]
        + [c * w for c, w in zip(c_ins, arch.widths)]
        + [arch.widths[-1] * arch.dense, arch.dense * arch.num_classes]
        + [4 * c for c in channels]
    )
    base, per_conv = _CAL["flash"][int8_io]
    flash = base + per_conv * n + sum(-(-s // 4) * 4 for s in constant_sizes)
    flash += 24 * sum(channels)

    io_tensors = 0 if int8_io else 2
    tensors = 7 * n + 13 + io_tensors
    operators = 3 * n + 5 + io_tensors
    op_data_requested = _CAL["op_data"][int8_io] + 192 * n + 8 * sum(channels)
    op_data_used = op_data_requested + sum(2 * _pad16(4 * c) for c in channels)
    op_data_used += 40 if n % 2 else 32  # fixed structs' padding; exact on calibration
    unrecorded = _CAL["unrecorded"][0] + _CAL["unrecorded"][1] * n
    records = [
        AllocationRecord("TfLiteEvalTensor data", 24 * tensors, 24 * tensors, tensors, ""),
        AllocationRecord("Persistent TfLiteTensor data", 128, 128, 2, "tensors"),
        AllocationRecord("Persistent buffer data", op_data_used, op_data_requested, 0, ""),
        AllocationRecord(
            "NodeAndRegistration struct", 64 * operators, 64 * operators, operators, ""
        ),
    ]
    if int8_io:
        quantization = _CAL["io_quantization"]
        records.append(
            AllocationRecord(
                "Persistent TfLiteTensor quantization data", quantization, quantization, 4, ""
            )
        )
    head = _estimate_head(arch, int8_io)
    tail = sum(r.used for r in records) + unrecorded
    report = ArenaReport(head + tail, head, tail, tuple(records), 1, "")
    return HardwareProfile(
        ram=ram_32bit(report),
        flash=flash,
        macs=_estimate_macs(arch),
        method="analytic",
        source=(
            "RAM: TFLM greedy memory plan replayed on the tensor sizes plus a persistent-tail "
            "model calibrated on tflite-micro 0.dev20261023182759, converted to 32-bit as "
            "measurements are; flash: size model calibrated on TF 2.21 int8 flatbuffers with "
            "names stripped; MACs: exact per-layer count from the architecture."
        ),
        ram_host=None,
        operators=_expected_operators(arch, int8_io),
    )
