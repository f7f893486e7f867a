"""Hardware budgets and the units users write them in ("20KB", "60K", "10m")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinytnas_optuna._boards import DEFAULT_LATENCY_MS, Board, check_board

if TYPE_CHECKING:
    from tinytnas_optuna._hardware import HardwareProfile

FIGURES = ("ram", "flash", "macs")
#: The fourth figure, constrained only when a budget names a latency (and a board).
LATENCY = "latency_ms"

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
_MILLISECOND_UNITS = {"": 1, "ms": 1, "s": 1000, "us": 0.001}
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


def seconds_text(seconds: float | None) -> str:
    """A time bound as the command line prints it.

    Example:
        >>> seconds_text(30), seconds_text(600), seconds_text(None)
        ('30 s', '10 min', 'none')
    """
    if seconds is None:
        return "none"
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def parse_milliseconds(value: float | str, what: str = "latency") -> float:
    """Parse a latency: ``"20ms"``, ``"0.5s"``, ``"800us"`` or a number of milliseconds.

    Args:
        value: Milliseconds as a number, or a string with unit ms, s or us.
        what: Name used in the error message.

    Returns:
        Milliseconds as a float.

    Example:
        >>> parse_milliseconds("20ms"), parse_milliseconds("0.5s")
        (20.0, 500.0)
    """
    return _parse(value, _MILLISECOND_UNITS, what, '"20ms", "0.5s" or 20')


def figure_text(value: float | None) -> str:
    """A figure as the views print it: bytes and MACs with separators, milliseconds as is.

    Example:
        >>> figure_text(1048576), figure_text(12.5), figure_text(None)
        ('1,048,576', '12.5', '?')
    """
    if value is None:
        return "?"
    return f"{value:,}" if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True, init=False)
class HardwareBudget:
    """What the target microcontroller offers: RAM and flash in bytes, MACs, optionally latency.

    Args:
        ram: Tensor arena budget; int bytes or ``"20KB"`` (1 KB = 1024 bytes).
        flash: Model flatbuffer budget; int bytes or ``"64KB"``.
        macs: Multiply-accumulates per inference; int or ``"60K"`` (= 60,000).
        latency: One inference's latency budget on ``board``; milliseconds or ``"20ms"``.
            Measured on the emulated core for candidates that fit the other three figures
            (needs the Arm toolchain, QEMU and the TFLM sources: ``docs/figures.md``).
        board: A preset of ``tinytnas boards`` (its core and clock turn cycles into time);
            needed with ``latency``. :meth:`for_board` also takes RAM and flash from it.

    Example:
        >>> budget = HardwareBudget(ram="20KB", flash="64KiB", macs="60K")
        >>> (budget.ram, budget.flash, budget.macs)
        (20480, 65536, 60000)
    """

    ram: int
    flash: int
    macs: int
    latency_ms: float | None
    board: str | None

    def __init__(
        self, *, ram: int | str, flash: int | str, macs: int | str,
        latency: float | str | None = None, board: str | None = None,
    ) -> None:
        object.__setattr__(self, "ram", parse_bytes(ram, "RAM budget"))
        object.__setattr__(self, "flash", parse_bytes(flash, "flash budget"))
        object.__setattr__(self, "macs", parse_count(macs, "MAC budget"))
        if board is not None:
            check_board(board)
        if latency is not None and board is None:
            raise ValueError("a latency budget needs a board, whose core and clock turn cycles "
                             "into time (e.g. board='nano33ble'; see `tinytnas boards`)")
        object.__setattr__(self, "latency_ms", None if latency is None
                           else parse_milliseconds(latency, "latency budget"))
        object.__setattr__(self, "board", board)

    @classmethod
    def for_board(
        cls, board: str, *, latency: float | str | None = None, ram: int | str | None = None,
        flash: int | str | None = None, macs: int | str | None = None,
    ) -> HardwareBudget:
        """The budget of a board preset; each figure given here overrides the preset's.

        RAM and flash are what the preset leaves to the model; MACs, unless given, are the
        most that can meet the latency (``latency``, else 20 ms) at the family's
        fewest cycles per MAC on the board's core. The latency itself is constrained (and
        measured) only when ``latency`` is given.

        Args:
            board: A preset name (``tinytnas boards``).
            latency: Latency budget in ms or ``"20ms"``.
            ram: Override of the preset's RAM for the model.
            flash: Override of the preset's flash for the model.
            macs: Override of the latency-derived MAC bound.

        Returns:
            The :class:`HardwareBudget`.

        Example:
            >>> budget = HardwareBudget.for_board("nano33ble", latency="20ms")
            >>> budget.ram, budget.latency_ms, budget.board
            (126976, 20.0, 'nano33ble')
        """
        preset = check_board(board)
        limit = DEFAULT_LATENCY_MS if latency is None else parse_milliseconds(
            latency, "latency budget")
        return cls(ram=preset.model_ram if ram is None else ram,
                   flash=preset.model_flash if flash is None else flash,
                   macs=preset.macs_within(limit) if macs is None else macs,
                   latency=latency, board=board)

    @property
    def limits(self) -> dict[str, float]:
        """Each constrained figure's limit: ram, flash, macs, and latency_ms when set."""
        limits: dict[str, float] = {name: getattr(self, name) for name in FIGURES}
        if self.latency_ms is not None:
            limits[LATENCY] = self.latency_ms
        return limits

    def values(self, profile: HardwareProfile) -> dict[str, float | None]:
        """The profile's figure for each limit; latency None when it was not measured.

        Args:
            profile: Measured or estimated figures.

        Returns:
            ``{"ram": ..., "flash": ..., "macs": ...}`` (and ``"latency_ms"``).
        """
        values: dict[str, float | None] = {name: getattr(profile, name) for name in FIGURES}
        if self.latency_ms is not None:
            values[LATENCY] = self.latency_of(profile)
        return values

    def latency_of(self, profile: HardwareProfile) -> float | None:
        """Milliseconds of one inference on the budget's board, from the profile's cycles.

        Args:
            profile: A profile with ``cycles`` (measured on the board's core), or without.

        Returns:
            The latency, or None without a board or cycles.
        """
        if self.board is None or profile.cycles is None:
            return None
        return self._preset().latency_ms(profile.cycles)

    def _preset(self) -> Board:
        """The :class:`~tinytnas_optuna._boards.Board` of ``board`` (set whenever a latency is)."""
        return check_board(str(self.board))

    def excess(self, profile: HardwareProfile) -> dict[str, float]:
        """Relative excess of each figure: ``used / budget - 1`` (<= 0 means it fits).

        A latency not measured (the candidate was rejected on another figure first) counts
        with its lower bound from the MACs
        (:meth:`~tinytnas_optuna._boards.Board.latency_floor_ms`).

        Args:
            profile: Measured or estimated figures.

        Returns:
            ``{"ram": ..., "flash": ..., "macs": ...}`` (and ``"latency_ms"``).
        """
        excess = {}
        for name, value in self.values(profile).items():
            if value is None:  # an unmeasured latency
                value = self._preset().latency_floor_ms(profile.macs)
            excess[name] = value / self.limits[name] - 1.0
        return excess

    def over(self, profile: HardwareProfile) -> dict[str, float]:
        """The figures over their limit, with their value.

        Args:
            profile: Measured or estimated figures.

        Returns:
            ``{name: value}`` of each figure above its limit (empty when it fits).
        """
        return {name: value for name, value in self.values(profile).items()
                if value is not None and value > self.limits[name]}

    def fits(self, profile: HardwareProfile) -> bool:
        """Whether every figure is within the budget (a latency limit needs a measured latency).

        Args:
            profile: Measured or estimated figures.

        Returns:
            True when RAM, flash, MACs (and latency) are all <= their budget.
        """
        values = self.values(profile)
        return all(values[name] is not None and values[name] <= limit  # type: ignore[operator]
                   for name, limit in self.limits.items())

    def to_dict(self) -> dict[str, int | float | str]:
        """The budget as plain values; ``latency`` (ms) and ``board`` only when set.

        Example:
            >>> HardwareBudget(**HardwareBudget.for_board("rp2350").to_dict()).board
            'rp2350'
        """
        data: dict[str, int | float | str] = {name: getattr(self, name) for name in FIGURES}
        if self.latency_ms is not None:
            data["latency"] = self.latency_ms
        if self.board is not None:
            data["board"] = self.board
        return data

    def __str__(self) -> str:
        text = f"RAM {self.ram:,} B, flash {self.flash:,} B, {self.macs:,} MAC"
        if self.latency_ms is not None:
            text += f", latency {self.latency_ms:g} ms"
        return text + (f" ({self.board})" if self.board else "")
