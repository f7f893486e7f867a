"""Board presets: which emulated core stands for a board, its clock, and its memories.

Latency on a board is the cycle estimate of :mod:`._cycles` divided by the board's clock: an
estimate with zero wait states (code in flash with wait states, or caches, make a board slower).
RAM and flash are the microcontroller's totals from its datasheet; the firmware (TFLM +
CMSIS-NN, about 70 KB of code, its stack and buffers) uses part of them, the rest is left to the
model: compare a profile's ``ram`` and ``flash`` with what your firmware leaves.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def board(name: str) -> Board:
    """The preset of a board.

    Args:
        name: A key of :data:`BOARDS`.

    Returns:
        The :class:`Board`.

    Raises:
        ValueError: For an unknown board.

    Examples:
        >>> board("rp2350").core
        'cortex-m33'
    """
    if name not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, got {name!r}")
    return BOARDS[name]
