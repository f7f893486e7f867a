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
- ``_flatbuffer``: operators, MACs and input quantisation read from the bytes.
- ``_tflm``: TFLM run on this host (in the measuring process of ``_native``): the arena report,
  whose parsing and 32-bit derivation are :mod:`tinytnas_optuna._arena_report`, the smallest
  working arena, and a model's inferences.
- ``_estimate``: the analytic figures.
- ``_cache``: the per-process profile cache.
- ``_profile``: the entry points that combine them.

Fd 2 capture (TF and TFLM write from C++) is :mod:`tinytnas_optuna._quiet`.
"""

from tinytnas_optuna._arena_report import ArenaReport, ram_32bit
from tinytnas_optuna._hardware._cache import clear_profile_cache, profile_cache_info
from tinytnas_optuna._hardware._convert import convert_int8
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._flatbuffer import count_macs, input_quantization, read_graph
from tinytnas_optuna._hardware._profile import (
    convert_and_profile,
    profile_architecture,
    profile_file,
    profile_model,
    profile_tflite,
)
from tinytnas_optuna._hardware._tflm import tflm_arena, tflm_predict
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
    "input_quantization",
    "profile_architecture",
    "profile_cache_info",
    "profile_file",
    "profile_model",
    "profile_tflite",
    "ram_32bit",
    "read_graph",
    "tflm_arena",
    "tflm_predict",
]
