"""Measurements on an emulated Cortex-M target: TFLM + CMSIS-NN built for the core, run in QEMU.

- ``_build``: the runner ELF per core, built from the third-party sources into the user cache.
- ``_qemu``: one QEMU launch per model: arena report, smallest working arena, output.
- ``_cycles``: cycles of one inference from QEMU's block trace and a timing model.

Profiles use it through ``method="target"`` (:mod:`tinytnas_optuna._hardware._profile`); it
imports nothing of :mod:`tinytnas_optuna._hardware` (the report it parses and the error it
raises are :mod:`tinytnas_optuna._arena_report` and :mod:`tinytnas_optuna._errors`). Board
presets, which name a core and a clock, are budget data: :mod:`tinytnas_optuna._boards`.
"""

from tinytnas_optuna._target._build import TargetUnavailable, build_runner
from tinytnas_optuna._target._qemu import TargetRun, measure_cycles, run_on_target

__all__ = [
    "TargetRun",
    "TargetUnavailable",
    "build_runner",
    "measure_cycles",
    "run_on_target",
]
