"""Board presets moved to :mod:`tinytnas_optuna._boards` (budget data beside ``_budget``).

Only ``benchmarks/cycles_per_mac.py`` still imports this path; delete this module when it
imports ``tinytnas_optuna._boards``.
"""

from tinytnas_optuna._boards import CYCLES_PER_MAC_FLOOR

__all__ = ["CYCLES_PER_MAC_FLOOR"]
