"""Measurements on an emulated Cortex-M target: TFLM + CMSIS-NN built for the core, run in QEMU.

- ``_build``: the runner ELF per core, built from the third-party sources into the user cache.
- ``_qemu``: one QEMU launch per model: arena report, smallest working arena, output.
"""
