"""RAM, flash and MAC figures of a candidate: measured (TF converter + TFLM) or analytic.

Measured figures come from the real tools: TensorFlow's converter makes a fully int8 ``.tflite``
(flash is its length), the flatbuffer graph gives the MACs, and TensorFlow Lite for
Microcontrollers (``tflite-micro`` on PyPI, run in-process) reports its tensor arena, from which
the arena of a 32-bit microcontroller is derived (see ``docs/figures.md``). Analytic figures are
computed from the :class:`~tinytnas_optuna._space.Architecture` alone in pure Python; they are
calibrated against measurements and tested to stay within 5 %.

TensorFlow and ``tflite_micro`` are imported inside the functions that need them, so importing
this package stays fast. The modules, in the order a measurement uses them:

- ``_types``: :class:`HardwareProfile` and :class:`MeasurementError`, shared by all.
- ``_convert``: Keras model to int8 ``.tflite`` bytes, and the conversion count.
- ``_flatbuffer``: operators and MACs read from the bytes.
- ``_arena``: TFLM's arena report and its 32-bit derivation.
- ``_estimate``: the analytic figures.
- ``_cache``: the per-process profile cache.
- ``_profile``: the entry points that combine them.

Fd 2 capture (TF and TFLM write from C++) is :mod:`tinytnas_optuna._quiet`.
"""

from tinytnas_optuna._hardware._arena import ArenaReport, ram_32bit, tflm_arena
from tinytnas_optuna._hardware._cache import clear_profile_cache, profile_cache_info
from tinytnas_optuna._hardware._convert import convert_int8
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._flatbuffer import _schema as _schema  # for _export
from tinytnas_optuna._hardware._flatbuffer import count_macs
from tinytnas_optuna._hardware._profile import (
    convert_and_profile,
    profile_architecture,
    profile_model,
    profile_tflite,
)
from tinytnas_optuna._hardware._types import HardwareProfile, MeasurementError

__all__ = [
    "ArenaReport",
    "HardwareProfile",
    "MeasurementError",
    "clear_profile_cache",
    "convert_and_profile",
    "convert_int8",
    "count_macs",
    "estimate_profile",
    "profile_architecture",
    "profile_cache_info",
    "profile_model",
    "profile_tflite",
    "ram_32bit",
    "tflm_arena",
]
