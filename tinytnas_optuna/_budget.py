"""Hardware budgets and the units users write them in ("20KB", "60K", "10m")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tinytnas_optuna._hardware import HardwareProfile

FIGURES = ("ram", "flash", "macs")

# Memory is binary, as microcontroller datasheets and the paper use it: 1 KB = 1024 bytes.
_BYTE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3,
}
# Operation counts are decimal: "60K" MACs = 60,000.
_COUNT_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_SECOND_UNITS = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def _parse(value: float | str, units: dict[str, int], what: str, examples: str) -> float:
    if isinstance(value, bool):  # one error type for every bad figure
        raise ValueError(  # noqa: TRY004
            f"{what}: expected a number or a string such as {examples}, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _NUMBER.match(str(value))
        unit = match.group(2).lower() if match else None
        if match is None or unit not in units:
            raise ValueError(f"{what}: cannot parse {value!r}; write it like {examples}")
        number = float(match.group(1)) * units[unit]
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return number


def parse_bytes(value: int | str, what: str = "size") -> int:
    """Parse a memory size; KB/KiB = 1024 bytes, MB/MiB = 1024**2.

    Args:
        value: An int (bytes) or a string such as ``"20KB"``, ``"64KiB"``, ``"1.5MB"``, ``"512"``.
        what: Name used in the error message.

    Returns:
        The number of bytes, rounded up to a whole byte.
    """
    return math.ceil(_parse(value, _BYTE_UNITS, what, '"20KB", "64KiB", "1MB" or 20480'))


def parse_count(value: int | str, what: str = "count") -> int:
    """Parse an operation count; K = 1,000, M = 1,000,000 (decimal).

    Args:
        value: An int or a string such as ``"60K"`` or ``"1.5M"``.
        what: Name used in the error message.

    Returns:
        The count, rounded up.
    """
    return math.ceil(_parse(value, _COUNT_UNITS, what, '"60K", "1.5M" or 60000'))


def parse_seconds(value: float | str, what: str = "duration") -> float:
    """Parse a duration: ``"90s"``, ``"10m"``, ``"1.5h"`` or a number of seconds.

    Args:
        value: Seconds as a number, or a string with unit s, m or h.
        what: Name used in the error message.

    Returns:
        Seconds as a float.
    """
    return _parse(value, _SECOND_UNITS, what, '"90s", "10m", "1h" or 600')


@dataclass(frozen=True, init=False)
class HardwareBudget:
    """What the target microcontroller offers: RAM and flash in bytes, MACs per inference.

    Args:
        ram: Tensor arena budget; int bytes or ``"20KB"`` (1 KB = 1024 bytes).
        flash: Model flatbuffer budget; int bytes or ``"64KB"``.
        macs: Multiply-accumulates per inference; int or ``"60K"`` (= 60,000).

    Example:
        >>> budget = HardwareBudget(ram="20KB", flash="64KiB", macs="60K")
        >>> (budget.ram, budget.flash, budget.macs)
        (20480, 65536, 60000)
    """

    ram: int
    flash: int
    macs: int

    def __init__(self, *, ram: int | str, flash: int | str, macs: int | str) -> None:
        object.__setattr__(self, "ram", parse_bytes(ram, "RAM budget"))
        object.__setattr__(self, "flash", parse_bytes(flash, "flash budget"))
        object.__setattr__(self, "macs", parse_count(macs, "MAC budget"))

    def excess(self, profile: HardwareProfile) -> dict[str, float]:
        """Relative excess of each figure: ``used / budget - 1`` (<= 0 means it fits).

        Args:
            profile: Measured or estimated figures.

        Returns:
            ``{"ram": ..., "flash": ..., "macs": ...}``.
        """
        return {name: getattr(profile, name) / getattr(self, name) - 1.0 for name in FIGURES}

    def fits(self, profile: HardwareProfile) -> bool:
        """Whether every figure is within the budget.

        Args:
            profile: Measured or estimated figures.

        Returns:
            True when RAM, flash and MACs are all <= their budget.
        """
        return all(getattr(profile, name) <= getattr(self, name) for name in FIGURES)

    def to_dict(self) -> dict[str, int]:
        """The budget as plain integers (bytes, bytes, MACs)."""
        return {name: getattr(self, name) for name in FIGURES}

    def __str__(self) -> str:
        return f"RAM {self.ram:,} B, flash {self.flash:,} B, {self.macs:,} MAC"
