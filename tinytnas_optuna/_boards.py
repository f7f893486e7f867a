"""Board presets: the emulated core that stands for a board, its clock, memories, model's share.

Budget data beside :mod:`tinytnas_optuna._budget` (``HardwareBudget.for_board``). Latency on a
board is the cycle estimate of :mod:`tinytnas_optuna._target._cycles` divided by the board's
clock: an estimate with zero wait states (code in flash with wait states, or caches, make a
board slower). RAM and flash are the microcontroller's totals from its datasheet. What is left
to the model (``model_ram``, ``model_flash``) is our rule, not a measurement of any application:
the TFLM runtime takes :data:`RUNTIME_FLASH` (measured) and :data:`RUNTIME_RAM` (an allowance),
and half of the rest goes to the application (RTOS, radio stack, sensor buffers).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

#: Flash of the TFLM + CMSIS-NN runtime: ``arm-none-eabi-size`` of our Cortex-M4 runner
#: (text + data 94,256 B, TinyTNAS operators only, newlib's printf included), rounded up.
RUNTIME_FLASH = 96 * 1024
#: RAM of the runtime outside the arena (stack, interpreter, op resolver): an allowance, not
#: measured (the runner's static data is 1,404 B; its stack use is not measured).
RUNTIME_RAM = 8 * 1024
#: Cycles per MAC assumed as a floor on each core: 13 % below the fewest measured across the
#: family (135 networks of HAR, GunPoint and ECG5000 shapes; fewest 3.45 on the M4, 2.72 on the
#: M7, 3.47 on the M33, at 2.2-2.4M MACs; docs/figures.md). A MAC bound derived from a latency
#: with it rejects no network of that size range that meets the latency; far larger networks
#: might need fewer cycles per MAC: give an explicit MAC budget to search beyond.
CYCLES_PER_MAC_FLOOR = {"cortex-m4": 3.0, "cortex-m7": 2.4, "cortex-m33": 3.0}
#: The latency a board preset's MAC bound is derived from when no latency is given.
DEFAULT_LATENCY_MS = 20.0


def model_share(total: int, runtime: int) -> int:
    """Bytes left to the model: half of what the runtime leaves, in whole KB.

    Args:
        total: The chip's bytes.
        runtime: The runtime's bytes.

    Returns:
        The model's share.

    Example:
        >>> model_share(256 * 1024, RUNTIME_RAM) // 1024
        124
    """
    return (total - runtime) // 2 // 1024 * 1024


@dataclass(frozen=True)
class Board:
    """A development board as far as a model's figures go.

    Attributes:
        name: Preset name, e.g. ``"nano33ble"``.
        description: Board and microcontroller.
        core: The emulated core that stands for it (``"cortex-m4"``...).
        clock_hz: Core clock the latency is computed for.
        ram: Bytes of on-chip SRAM.
        flash: Bytes of flash holding the program and the model.
        source: Where RAM, flash and clock come from.
    """

    name: str
    description: str
    core: str
    clock_hz: int
    ram: int
    flash: int
    source: str

    @property
    def model_ram(self) -> int:
        """Bytes of tensor arena left to the model (:func:`model_share`)."""
        return model_share(self.ram, RUNTIME_RAM)

    @property
    def model_flash(self) -> int:
        """Bytes of flash left to the model's flatbuffer (:func:`model_share`)."""
        return model_share(self.flash, RUNTIME_FLASH)

    def to_dict(self) -> dict[str, Any]:
        """The preset as plain values, with what a ``--board`` budget takes from it.

        Returns:
            Every attribute, ``model_ram``, ``model_flash``, and ``default_macs`` (the MAC
            bound of :data:`DEFAULT_LATENCY_MS`).

        Example:
            >>> BOARDS["nano33ble"].to_dict()["default_macs"]
            426666
        """
        return {**asdict(self), "model_ram": self.model_ram, "model_flash": self.model_flash,
                "default_macs": self.macs_within(DEFAULT_LATENCY_MS)}

    def describe(self) -> str:
        """The preset in three lines: core, clock and memories; their source; the budget a
        ``--board`` search takes from it (``tinytnas boards``)."""
        return (f"{self.name:10} {self.core:10} {self.clock_hz / 1e6:5g} MHz  "
                f"{self.ram // 1024:4} KB RAM  {self.flash // 1024:5} KB flash  "
                f"{self.description}\n{'':10} source: {self.source}\n"
                f"{'':10} --board budget: RAM {self.model_ram // 1024} KB, flash "
                f"{self.model_flash // 1024} KB, {self.macs_within(DEFAULT_LATENCY_MS):,} MAC "
                "(or what --latency allows)")

    def macs_within(self, latency_ms: float) -> int:
        """The most MACs that can meet ``latency_ms`` at :data:`CYCLES_PER_MAC_FLOOR`.

        Args:
            latency_ms: The latency budget.

        Returns:
            A MAC bound no network meeting the latency exceeds.

        Example:
            >>> BOARDS["nano33ble"].macs_within(15.0)
            320000
        """
        return math.floor(latency_ms / 1000 * self.clock_hz / CYCLES_PER_MAC_FLOOR[self.core])

    def latency_floor_ms(self, macs: int) -> float:
        """A lower bound of one inference's latency from its MACs (not a measurement).

        Args:
            macs: The network's MACs.

        Returns:
            Milliseconds at :data:`CYCLES_PER_MAC_FLOOR`.
        """
        return self.latency_ms(round(macs * CYCLES_PER_MAC_FLOOR[self.core]))

    def latency_ms(self, cycles: int) -> float:
        """Milliseconds of ``cycles`` at the board's clock.

        Args:
            cycles: Cycles of one inference.

        Returns:
            The latency in ms.

        Examples:
            >>> BOARDS["nano33ble"].latency_ms(640_000)
            10.0
        """
        return cycles / self.clock_hz * 1000


#: The presets of ``tinytnas boards``.
BOARDS: dict[str, Board] = {
    board.name: board
    for board in (
        Board(
            "nano33ble", "Arduino Nano 33 BLE (Sense), nRF52840", "cortex-m4", 64_000_000,
            256 * 1024, 1024 * 1024,
            "Nordic nRF52840 Product Specification v1.7: 64 MHz Cortex-M4F, 256 KB RAM, 1 MB "
            "flash",
        ),
        Board(
            "stm32f746", "STM32F746G-DISCO, STM32F746NG", "cortex-m7", 216_000_000,
            320 * 1024, 1024 * 1024,
            "ST DS10916 (STM32F745xx/STM32F746xx datasheet): 216 MHz Cortex-M7, 320 KB SRAM "
            "(incl. 64 KB DTCM), 1 MB flash",
        ),
        Board(
            "rp2350", "Raspberry Pi Pico 2, RP2350", "cortex-m33", 150_000_000,
            520 * 1024, 4 * 1024 * 1024,
            "Raspberry Pi RP2350 datasheet: 150 MHz Cortex-M33, 520 KB SRAM; no on-chip flash, "
            "the Pico 2 carries 4 MB of QSPI flash (Pico 2 datasheet)",
        ),
    )
}


def check_board(name: str) -> Board:
    """The preset of a board.

    Args:
        name: A key of :data:`BOARDS`.

    Returns:
        The :class:`Board`.

    Raises:
        ValueError: For an unknown board.

    Examples:
        >>> check_board("rp2350").core
        'cortex-m33'
    """
    if name not in BOARDS:
        raise ValueError(f"unknown board {name!r}: one of {', '.join(BOARDS)} (see `tinytnas "
                         "boards`)")
    return BOARDS[name]


def budget_rule() -> str:
    """How a preset's budget is set, in words (``tinytnas boards`` prints it).

    Returns:
        One paragraph.
    """
    floors = ", ".join(f"{core} {value:g}" for core, value in CYCLES_PER_MAC_FLOOR.items())
    return (f"What a board leaves to the model is our rule, not a measurement: the TFLM runtime "
            f"takes {RUNTIME_FLASH // 1024} KB of flash (measured, arm-none-eabi-size) and "
            f"{RUNTIME_RAM // 1024} KB of RAM (an allowance), the application half of the "
            f"rest. MACs: the most that can meet --latency (default {DEFAULT_LATENCY_MS:g} ms) "
            f"at {floors} cycles per MAC, fewer than any network of the family measured "
            "(docs/figures.md).")
