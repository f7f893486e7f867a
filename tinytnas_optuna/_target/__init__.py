"""Measurements on an emulated Cortex-M target: TFLM + CMSIS-NN built for the core, run in QEMU.

- ``_build``: the runner ELF per core, built from the third-party sources into the user cache.
- ``_qemu``: one QEMU launch per model: arena report, smallest working arena, output.
- ``_cycles``: cycles of one inference from QEMU's block trace and a timing model.
- ``_boards``: board presets (core, clock, memories) for latency.

Profiles use it through ``method="target"`` (:mod:`tinytnas_optuna._hardware._profile`).
"""

from tinytnas_optuna._target._boards import BOARDS, Board, check_board
from tinytnas_optuna._target._build import TargetUnavailable, build_runner
from tinytnas_optuna._target._qemu import TargetRun, measure_cycles, run_on_target

__all__ = [
    "BOARDS",
    "Board",
    "TargetRun",
    "TargetUnavailable",
    "build_runner",
    "check_board",
    "measure_cycles",
    "run_on_target",
]
