"""TFLM's arena report, the same text on this host and on an emulated Cortex-M core.

``RecordingMicroAllocator::PrintAllocations`` prints the arena's total, head and tail and one
line per kind of allocation. :func:`parse_arena_report` reads it into an :class:`ArenaReport`;
:func:`ram_32bit` derives, from a report made on this 64-bit host, the arena of a 32-bit
microcontroller (derivation in ``docs/figures.md``). Pure Python: the host's measurement
(:mod:`tinytnas_optuna._hardware._tflm`) and the target's (:mod:`tinytnas_optuna._target`)
both read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tinytnas_optuna._errors import MeasurementError
from tinytnas_optuna._quiet import tail

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
        min_arena: The smallest arena found to let ``AllocateTensors`` succeed on this host,
            searched in 16-byte steps above ``total`` only when ``total`` itself fails (the
            memory planner's temporary data can outgrow a small head); None: not searched,
            taken as ``total``.
    """

    total: int
    head: int
    tail: int
    records: tuple[AllocationRecord, ...]
    subgraphs: int
    text: str
    min_arena: int | None = None

    @property
    def shortfall(self) -> int:
        """Bytes beyond the reported total that ``AllocateTensors`` needs on this host (>= 0).

        Examples:
            >>> ArenaReport(1000, 100, 900, (), 1, "", min_arena=1216).shortfall
            216
        """
        return max(0, (self.min_arena or self.total) - self.total)

    def record(self, kind: str) -> AllocationRecord | None:
        """The record of one kind.

        Args:
            kind: The kind, e.g. ``"TfLiteEvalTensor data"``.

        Returns:
            Its record, or None when TFLM printed no line for it.
        """
        return next((r for r in self.records if r.kind == kind), None)

    @property
    def ram_32(self) -> int:
        """The derived 32-bit arena bytes (see :func:`ram_32bit`)."""
        return ram_32bit(self)


def align_up(value: int, alignment: int = ARENA_ALIGNMENT) -> int:
    """Round up to a multiple of ``alignment``.

    Args:
        value: Bytes.
        alignment: The multiple.

    Returns:
        The smallest multiple of ``alignment`` not below ``value``.

    Examples:
        >>> align_up(17), align_up(32)
        (32, 32)
    """
    return -(-value // alignment) * alignment


def parse_arena_report(text: str, *, subgraphs: int = 1) -> ArenaReport:
    """Parse the text of ``RecordingMicroAllocator::PrintAllocations``.

    Args:
        text: Captured stderr containing the report.
        subgraphs: Number of subgraphs of the model.

    Returns:
        The :class:`ArenaReport`.

    Raises:
        MeasurementError: When total, head or tail is missing or inconsistent.

    Examples:
        >>> report = parse_arena_report(
        ...     "[RecordingMicroAllocator] Arena allocation total 1000 bytes\\n"
        ...     "[RecordingMicroAllocator] Arena allocation head 600 bytes\\n"
        ...     "[RecordingMicroAllocator] Arena allocation tail 400 bytes\\n"
        ...     "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 240 bytes with "
        ...     "alignment overhead (requested 240 bytes for 10 allocations)\\n"
        ... )
        >>> report.head, report.tail, report.record("TfLiteEvalTensor data").count
        (600, 400, 10)
    """
    totals: dict[str, int] = {}
    for match in _LINE_TOTAL.finditer(text):
        totals[match.group(1)] = int(match.group(2))
    missing = {"total", "head", "tail"} - set(totals)
    if missing:
        raise MeasurementError(
            f"TFLM report lacks the {', '.join(sorted(missing))} line(s):\n{tail(text)}"
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
        raise MeasurementError(f"TFLM report has no per-kind lines:\n{tail(text)}")
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
    shrunk allocation. The host's :attr:`~ArenaReport.shortfall` (what the memory planner's
    temporary data needs beyond the total) is added unchanged: those temporaries are no
    larger on 32-bit, and the tail they sit on has shrunk. The sum is rounded up to 16 and
    never exceeds the host's smallest working arena.

    Args:
        report: A parsed TFLM report.

    Returns:
        Arena bytes for a 32-bit target.

    Examples:
        Ten eval tensors shrink from 24 to 12 bytes in one allocation: 1000 - 120 + 15,
        rounded up to 16.

        >>> tensors = AllocationRecord("TfLiteEvalTensor data", 240, 240, 10, "allocations")
        >>> ram_32bit(ArenaReport(1000, 600, 400, (tensors,), 1, ""))
        896

        A planner that needed 1,200 bytes on the host needs those 200 bytes on top:

        >>> ram_32bit(ArenaReport(1000, 600, 400, (tensors,), 1, "", min_arena=1200))
        1104
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
    derived = align_up(report.head + report.tail - saved + slack + report.shortfall)
    return min(derived, report.total + report.shortfall)
