"""TinyTNAS hardware-aware neural architecture search sampler, packaged for OptunaHub.

The sampler is implemented in the ``tinytnas-optuna`` package (named in ``requirements.txt``);
this package re-exports it, so ``optunahub.load_module("samplers/tinytnas").TinyTNASSampler`` is
the very class ``tinytnas_optuna.TinyTNASSampler``.
"""

from __future__ import annotations

try:
    from tinytnas_optuna import TinyTNASSampler
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    if exc.name != "tinytnas_optuna":
        raise
    raise ImportError(
        "samplers/tinytnas needs the tinytnas-optuna package: install the packages in this "
        "package's requirements.txt"
    ) from exc


__all__ = ["TinyTNASSampler"]
