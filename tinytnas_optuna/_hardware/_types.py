"""The two types all of hardware profiling shares: the figures, and the failure to get them.

:class:`HardwareProfile` is what profiling returns, measured or analytic;
:class:`MeasurementError` is what it raises when the real tools give no figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from tinytnas_optuna._errors import MeasurementError

__all__ = ["HardwareProfile", "MeasurementError"]


@dataclass(frozen=True)
class HardwareProfile:
    """RAM, flash and MACs of one network, and how they were obtained.

    Attributes:
        ram: Bytes of TFLM tensor arena on a 32-bit microcontroller (``"target"``: the
            smallest arena with which ``AllocateTensors`` succeeds on the emulated core).
        flash: Bytes of the int8 ``.tflite`` flatbuffer.
        macs: Multiply-accumulates of one inference (conv, depthwise conv, fully connected).
        method: ``"measured"``, ``"analytic"`` or ``"target"``.
        source: One sentence saying how each figure was obtained.
        ram_host: TFLM's own arena total on this 64-bit host (None for analytic figures).
        operators: TFLite builtin operator names in the model, sorted (expected set if analytic).
        target: The emulated core of a ``"target"`` profile, e.g. ``"cortex-m4"``.
        arena_head: TFLM's reported head (planned buffers) on the target.
        arena_tail: TFLM's reported tail (persistent buffers) on the target.
        instructions: Instructions one inference executes on the target.
        cycles: Estimated cycles of one inference on the target (when asked for).
        ram_target: The target's smallest working arena, when a host profile was completed
            with a target run (for a latency budget); ``ram`` stays the host-derived figure.
    """

    ram: int
    flash: int
    macs: int
    method: str
    source: str
    ram_host: int | None = None
    operators: tuple[str, ...] = ()
    target: str | None = None
    arena_head: int | None = None
    arena_tail: int | None = None
    instructions: int | None = None
    cycles: int | None = None
    ram_target: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The profile as JSON-ready plain values (operators as a list).

        Returns:
            One key per attribute.

        Examples:
            >>> profile = HardwareProfile(4096, 9000, 38509, "analytic", "example",
            ...                           operators=("MEAN", "SOFTMAX"))
            >>> profile.to_dict()["operators"]
            ['MEAN', 'SOFTMAX']
        """
        data = asdict(self)
        data["operators"] = list(self.operators)
        return data

    def describe(self) -> str:
        """The figures in words, one line each (``tinytnas profile``): flash and MACs, the
        host-derived RAM, and the target's arena and cycles when it was run there."""
        lines = [f"flash {self.flash:,} B, {self.macs:,} MACs",
                 f"RAM, 32-bit derived from TFLM on this host: {self.ram:,} B"]
        if self.target and self.ram_target is not None:
            lines.append(f"RAM on {self.target} (smallest arena TFLM allocates with): "
                         f"{self.ram_target:,} B (TFLM reports head {self.arena_head:,} + tail "
                         f"{self.arena_tail:,})")
        if self.target and self.cycles is not None:
            lines.append(f"per inference on {self.target}: {self.instructions:,} "
                         f"instructions, about {self.cycles:,} cycles (timing model, zero "
                         "wait states)")
        return "\n".join(lines)

    def with_target(self, on_target: HardwareProfile) -> HardwareProfile:
        """This host profile completed with a run of the same model on an emulated core.

        Args:
            on_target: The ``method="target"`` profile of the same model.

        Returns:
            This profile (``ram`` stays the host-derived figure) with the target's core, its
            smallest working arena as ``ram_target``, TFLM's head and tail there, and its
            instructions and cycles.

        Examples:
            >>> host = HardwareProfile(7296, 11800, 38509, "measured", "host.")
            >>> core = HardwareProfile(6080, 11800, 38509, "target", "qemu.", target="cortex-m4",
            ...                        cycles=150000)
            >>> merged = host.with_target(core)
            >>> merged.ram, merged.ram_target, merged.cycles, merged.target
            (7296, 6080, 150000, 'cortex-m4')
        """
        return replace(
            self, target=on_target.target, ram_target=on_target.ram,
            arena_head=on_target.arena_head, arena_tail=on_target.arena_tail,
            instructions=on_target.instructions, cycles=on_target.cycles,
            source=f"{self.source} Latency and ram_target: {on_target.source}")
