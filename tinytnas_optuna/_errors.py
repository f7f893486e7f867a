"""The failure to measure, shared by the host's measurements and the emulated target's.

It sits below both (:mod:`tinytnas_optuna._hardware` and :mod:`tinytnas_optuna._target`), so
that neither imports the other for it.
"""

from __future__ import annotations


class MeasurementError(RuntimeError):
    """Conversion to TFLite, running TFLM or reading its report failed; no figure exists."""
