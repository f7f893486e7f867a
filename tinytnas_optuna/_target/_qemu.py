"""Run a model on an emulated Cortex-M core (QEMU ``mps2-*`` boards) and read what TFLM reports.

One QEMU launch (about 0.1 s) per model: the host writes a "blob" (64-byte header, the
``.tflite``, the input tensor's bytes) into the emulated RAM before reset; the runner
(``fw/runner.cc``) finds the smallest arena with which ``AllocateTensors`` succeeds (bisection
inside the firmware), prints TFLM's allocation report for a 512 KiB arena, runs ``Invoke`` and
prints the output tensor, then exits through semihosting with its status. With ``-icount
shift=0`` QEMU advances virtual time by 1 ns per instruction, so the SysTick ticks of ``Invoke``
count instructions (one tick per 40 on an386/an500, 50 on an505).
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from tinytnas_optuna._arena_report import ArenaReport, parse_arena_report
from tinytnas_optuna._errors import MeasurementError
from tinytnas_optuna._target._build import TargetUnavailable, build_runner, check_core
from tinytnas_optuna._target._cycles import count_cycles

#: QEMU board per core, the blob's address on it, and instructions per SysTick tick under
#: ``-icount shift=0`` (SysTick's reference clock: 25 MHz on an386/an500, 20 MHz on an505).
BOARDS: dict[str, tuple[str, int, int]] = {
    "m4": ("mps2-an386", 0x20200000, 40),
    "m7": ("mps2-an500", 0x20200000, 40),
    "m33": ("mps2-an505", 0x38200000, 50),
}

_MAGIC = 0x424E5454  # 'TTNB'
_FLAG_MIN_ARENA = 2

#: Seconds a run may take before it counts as hung (a run is about 0.1 s).
TIMEOUT = 60.0


@dataclass(frozen=True)
class TargetRun:
    """What one run of the runner on an emulated core reported.

    Attributes:
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.
        min_arena: Smallest arena bytes with which ``AllocateTensors`` succeeds.
        report: TFLM's allocation report on the target (512 KiB arena offered).
        output: The raw bytes of the output tensor after ``Invoke``.
        output_type: TfLiteType of the output tensor (1 float32, 9 int8).
        instructions: Instructions of one ``Invoke`` (to one SysTick tick, 40 or 50).
        seconds: Wall seconds of the QEMU launch.
        text: The runner's printed lines.
    """

    core: str
    min_arena: int
    report: ArenaReport
    output: bytes
    output_type: int
    instructions: int
    seconds: float
    text: str = field(repr=False)


def make_blob(
    model: bytes, inputs: bytes = b"", arena_size: int = 0, min_arena: bool = True
) -> bytes:
    """The bytes the runner reads at its blob address.

    Args:
        model: The ``.tflite`` flatbuffer.
        inputs: The input tensor's raw bytes (empty: all zeros).
        arena_size: Arena bytes to offer (0: the runner's 512 KiB).
        min_arena: Let the runner search the smallest working arena.

    Returns:
        Header (magic, lengths, arena size, 1 invoke, flags), model padded to 16, input.

    Examples:
        >>> blob = make_blob(b"abc", b"xy")
        >>> len(blob), blob[:4], blob[64:67], blob[80:]
        (82, b'TTNB', b'abc', b'xy')
    """
    header = struct.pack(
        "<6I", _MAGIC, len(model), len(inputs), arena_size, 1, _FLAG_MIN_ARENA if min_arena else 0
    ).ljust(64, b"\0")
    return header + model + b"\0" * (-len(model) % 16) + inputs


def _field(pattern: str, text: str) -> re.Match[str]:
    """The match of a runner line, or a :class:`MeasurementError` quoting the output.

    Args:
        pattern: Regular expression of the line.
        text: The runner's output.

    Returns:
        The match.

    Raises:
        MeasurementError: When the line is missing.
    """
    match = re.search(pattern, text)
    if match is None:
        raise MeasurementError(f"target runner printed no {pattern!r} line:\n{text[-2000:]}")
    return match


def parse_run(text: str, core: str, seconds: float) -> TargetRun:
    """Parse the runner's output.

    Args:
        text: Everything the runner printed.
        core: The core it ran on.
        seconds: Wall seconds of the launch.

    Returns:
        The :class:`TargetRun`.

    Raises:
        MeasurementError: When a line is missing or the smallest arena was not found.
    """
    min_arena = int(_field(r"TT_MIN_ARENA (\d+)", text).group(1))
    if min_arena <= 0:
        raise MeasurementError(f"no arena up to 512 KiB lets TFLM allocate on {core}")
    output = _field(r"TT_OUTPUT type=(\d+) bytes=(\d+) hex=([0-9a-f]*)", text)
    ticks = _field(r"TT_SYSTICK invokes=\d+ ticks_hi=(\d+) ticks_lo=(\d+)", text)
    per_tick = BOARDS[check_core(core)][2]
    return TargetRun(
        core=core,
        min_arena=min_arena,
        report=parse_arena_report(text),
        output=bytes.fromhex(output.group(3)),
        output_type=int(output.group(1)),
        instructions=(int(ticks.group(1)) << 32 | int(ticks.group(2))) * per_tick,
        seconds=seconds,
        text=text,
    )


def run_on_target(
    model: bytes,
    inputs: bytes = b"",
    *,
    core: str = "cortex-m4",
    arena_size: int = 0,
    timeout: float = TIMEOUT,
) -> TargetRun:
    """Run a model once on an emulated core: smallest arena, allocation report, output.

    Args:
        model: An int8 ``.tflite`` flatbuffer (the TinyTNAS operator set).
        inputs: The input tensor's raw bytes (float32 or int8, as the model's input); empty
            for all zeros.
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.
        arena_size: Arena bytes to offer (0: 512 KiB); a run whose arena is too small fails.
        timeout: Seconds before the run counts as hung.

    Returns:
        The :class:`TargetRun`.

    Raises:
        ValueError: For an unknown core.
        TargetUnavailable: When QEMU, the toolchain or the sources are missing.
        MeasurementError: When the run fails, hangs or prints no complete report.
    """
    start = time.perf_counter()
    text, _ = _launch(make_blob(bytes(model), bytes(inputs), arena_size), core, timeout,
                      ["-icount", "shift=0,align=off,sleep=off"])
    return parse_run(text, core, time.perf_counter() - start)


def _launch(blob: bytes, core: str, timeout: float, options: list[str],
            trace: bool = False) -> tuple[str, str]:
    """Run the runner once in QEMU on a blob.

    Args:
        blob: See :func:`make_blob`.
        core: The emulated core.
        timeout: Seconds before the run counts as hung.
        options: More QEMU options.
        trace: Also log translated and executed blocks (``-d in_asm,exec,nochain``).

    Returns:
        ``(what the runner printed, the QEMU log or "")``.

    Raises:
        ValueError: For an unknown core.
        TargetUnavailable: When QEMU, the toolchain or the sources are missing.
        MeasurementError: When the run fails or hangs.
    """
    short = check_core(core)
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise TargetUnavailable("qemu-system-arm not found (apt-get install qemu-system-arm)")
    elf = build_runner(core)
    machine, address, _ = BOARDS[short]
    with tempfile.TemporaryDirectory(prefix="tinytnas-target-") as tmp:
        path = os.path.join(tmp, "blob.bin")
        with open(path, "wb") as f:
            f.write(blob)
        log = os.path.join(tmp, "qemu.log")
        command = [
            qemu, "-M", machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf),
            "-device", f"loader,file={path},addr={address:#x},force-raw=on", *options,
        ]
        if trace:
            command += ["-d", "in_asm,exec,nochain", "-D", log]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            raise MeasurementError(f"target run on {core} hung for {timeout:g} s") from error
        text = proc.stdout + proc.stderr
        if proc.returncode or "TT_DONE" not in text:
            reason = re.search(r"TT_ERROR (.*)", text)
            detail = reason.group(1) if reason else f"exit status {proc.returncode}"
            raise MeasurementError(f"target run on {core} failed: {detail}\n{text[-2000:]}")
        if not trace:
            return text, ""
        with open(log, encoding="utf-8", errors="replace") as f:
            return text, f.read()


def measure_cycles(
    model: bytes, inputs: bytes = b"", *, core: str = "cortex-m4", timeout: float = TIMEOUT
) -> tuple[int, int]:
    """Instructions and estimated cycles of one ``Invoke`` on an emulated core.

    One QEMU launch with block tracing (about 0.5-2 s); the timing model is in
    :mod:`._cycles`.

    Args:
        model: An int8 ``.tflite`` flatbuffer.
        inputs: The input tensor's raw bytes (empty: all zeros).
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.
        timeout: Seconds before the run counts as hung.

    Returns:
        ``(instructions, cycles)``.

    Raises:
        ValueError: For an unknown core.
        TargetUnavailable: When QEMU, the toolchain or the sources are missing.
        MeasurementError: When the run fails or its trace cannot be read.
    """
    blob = make_blob(bytes(model), bytes(inputs), min_arena=False)
    _, log = _launch(blob, core, timeout, [], trace=True)
    try:
        return count_cycles(log, core)
    except ValueError as error:
        raise MeasurementError(f"cycle count on {core}: {error}") from error
