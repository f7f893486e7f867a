"""Analytic RAM, flash and MACs from an :class:`~tinytnas_optuna._space.Architecture` alone.

Pure Python, well under 5 ms. MACs are exact; RAM replays TFLM's greedy memory planner on the
known tensor sizes and models the persistent tail, then goes through the same 32-bit
derivation as measurements; flash is a fitted size model. The constants in :data:`_CAL` are
calibrated against measurements, which the figures are tested to stay within 5 % of.
"""

from __future__ import annotations

from tinytnas_optuna._arena_report import AllocationRecord, ArenaReport, align_up, ram_32bit
from tinytnas_optuna._hardware._types import HardwareProfile
from tinytnas_optuna._space import KERNEL_SIZE, Architecture

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
    # The smallest arena TFLM allocates with on the host, when above the reported total: the
    # tail plus the memory planner's temporary data (allocation info per tensor and planner
    # scratch per buffer, freed before the report) = tail + base + 344 n, + 16 for even n
    # (alignment); exact on the 18 of 60 seeded architectures whose head is small enough for
    # this to exceed the total (docs/figures.md).
    "planning": {False: 1120, True: 912},
}


def _pad16(size: int) -> int:
    """Bytes TFLM adds to align an allocation of ``size`` bytes to 16.

    Args:
        size: Bytes requested.

    Returns:
        The padding, 0 to 15.
    """
    return align_up(size) - size


def _greedy_plan(buffers: list[tuple[int, int, int]]) -> int:
    """Arena bytes of TFLM's ``GreedyMemoryPlanner`` for ``(size, first, last)`` buffers.

    Mirrors the C++: buffers are listed in reverse order and bubble-sorted by size descending
    (so equal sizes are placed last-added first); each goes into the first gap, in offset order,
    between buffers alive at the same time; the offset-ordered list inserts after equal offsets.

    Args:
        buffers: Size in bytes and first and last scope (operator) using it, per buffer.

    Returns:
        The planned arena bytes (the end of the highest buffer).

    Examples:
        The first and last buffers are never alive together and share offset 0:

        >>> _greedy_plan([(32, 0, 1), (16, 1, 2), (32, 2, 3)])
        48
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
    """The arena head: TFLM's greedy plan of the converted graph's activation tensors.

    Args:
        arch: The architecture.
        int8_io: int8 instead of float32 input/output.

    Returns:
        Head bytes.
    """
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
    buffers = [(align_up(sizes[0]), 0, 1)]
    buffers += [(align_up(s), j, min(j + 1, operators)) for j, s in enumerate(sizes[1:], 1)]
    return _greedy_plan(buffers)


def _expected_operators(arch: Architecture, int8_io: bool) -> tuple[str, ...]:
    """The builtin operators the converted graph uses.

    Args:
        arch: The architecture.
        int8_io: int8 instead of float32 input/output.

    Returns:
        Their names, sorted.
    """
    names = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MEAN", "RESHAPE", "SOFTMAX"}
    if len(arch.widths) > 1:
        names.add("MAX_POOL_2D")
    if not int8_io:
        names |= {"QUANTIZE", "DEQUANTIZE"}
    return tuple(sorted(names))


def _estimate_macs(arch: Architecture) -> int:
    """Exact multiply-accumulates of one inference.

    Args:
        arch: The architecture.

    Returns:
        The MAC count, as :func:`~tinytnas_optuna._hardware._flatbuffer.count_macs` gives it.
    """
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
    the tail reproduces TFLM's host report from fitted, exact-on-calibration formulas, the
    memory planner's temporary peak gives the smallest working host arena, and the report then
    goes through the same 32-bit derivation as measurements (:func:`ram_32bit`). Flash is a
    fitted size model (within about 25 bytes on the calibration sample).

    Args:
        arch: The architecture.
        int8_io: int8 instead of float32 input/output.

    Returns:
        A :class:`HardwareProfile` with ``method="analytic"`` and ``ram_host=None``.

    Examples:
        >>> from tinytnas_optuna._space import architecture
        >>> profile = estimate_profile(architecture(8, 3, (187, 1), 5))
        >>> profile.macs, profile.method
        (38509, 'analytic')
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
    planning = align_up(tail + _CAL["planning"][int8_io] + 344 * n + 16 * (n % 2 == 0))
    report = ArenaReport(
        head + tail, head, tail, tuple(records), 1, "", min_arena=max(head + tail, planning)
    )
    return HardwareProfile(
        ram=ram_32bit(report),
        flash=flash,
        macs=_estimate_macs(arch),
        method="analytic",
        source=(
            "RAM: TFLM greedy memory plan replayed on the tensor sizes plus a persistent-tail "
            "and planning-peak model calibrated on tflite-micro 0.dev20261023182759, converted "
            "to 32-bit as measurements are; flash: size model calibrated on TF 2.21 int8 "
            "flatbuffers with names stripped; MACs: exact per-layer count from the architecture."
        ),
        ram_host=None,
        operators=_expected_operators(arch, int8_io),
    )
