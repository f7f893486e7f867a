"""The entry points: profile a Keras model or an architecture, measured or analytic.

Measured: convert (:mod:`._convert`), read the graph (:mod:`._flatbuffer`), run TFLM
(:mod:`._tflm`). Analytic: :mod:`._estimate`. :func:`profile_model` and
:func:`profile_architecture` go through the profile cache (:mod:`._cache`);
:func:`convert_and_profile`, for the network that gets deployed, never does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tinytnas_optuna._hardware._cache import PROFILE_CACHE
from tinytnas_optuna._hardware._convert import _convert, _input_shape, _nonzero_biases
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._flatbuffer import read_graph
from tinytnas_optuna._hardware._tflm import tflm_arena
from tinytnas_optuna._hardware._types import HardwareProfile, MeasurementError
from tinytnas_optuna._space import KERNEL_SIZE, Architecture, architecture

if TYPE_CHECKING:
    import keras
    import numpy as np

METHODS = ("measured", "analytic", "target")

#: The emulated core of ``method="target"`` unless another is named.
DEFAULT_TARGET = "cortex-m4"

# Figures only need sizes, so a few calibration samples suffice and keep conversion fast.
_PROFILE_SAMPLES = 8


def _tflm_version() -> str:
    """The installed ``tflite-micro`` version.

    Returns:
        The version string, or ``"unknown"`` without package metadata.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tflite-micro")
    except PackageNotFoundError:  # pragma: no cover - metadata missing in odd installs
        return "unknown"


def _measured_source(int8_io: bool) -> str:
    """The ``source`` sentence of a measured profile.

    Args:
        int8_io: int8 instead of float32 input/output.

    Returns:
        How each figure was measured, with tool versions.
    """
    import tensorflow as tf

    io = "int8" if int8_io else "float32"
    return (
        f"RAM: TFLM arena (tflite-micro {_tflm_version()}, reference kernels) reported on this "
        f"64-bit host and converted to 32-bit by shrinking TfLiteEvalTensor, "
        f"NodeAndRegistration and TfLiteTensor structs, plus what AllocateTensors needed here "
        f"beyond the report (memory planning, docs/figures.md); flash: length of the "
        f"TF {tf.__version__} converter's full-int8 output ({io} I/O) with tensor names "
        f"stripped; MACs: per-layer count of the converted graph."
    )


def _profile_bytes(model_bytes: bytes, int8_io: bool) -> HardwareProfile:
    """Measure a converted model.

    Args:
        model_bytes: The int8 ``.tflite`` flatbuffer.
        int8_io: Whether it has int8 input/output (for the source sentence).

    Returns:
        The measured :class:`HardwareProfile`.

    Raises:
        MeasurementError: When TFLM fails or the derived arena is implausible.
    """
    graph = read_graph(model_bytes)
    report = tflm_arena(model_bytes)
    ram = report.ram_32
    limit = report.total + report.shortfall
    if not 0 < ram <= limit:
        raise MeasurementError(f"derived 32-bit arena {ram} outside (0, {limit}]")
    return HardwareProfile(
        ram=ram,
        flash=len(model_bytes),
        macs=graph.macs,
        method="measured",
        source=_measured_source(int8_io),
        ram_host=report.total,
        operators=tuple(sorted(set(graph.operators))),
    )


def _target_source(core: str, int8_io: bool) -> str:
    """The ``source`` sentence of a target profile.

    Args:
        core: The emulated core.
        int8_io: int8 instead of float32 input/output.

    Returns:
        How each figure was obtained.
    """
    import os

    from tinytnas_optuna._target._build import SOURCES_ENV

    io = "int8" if int8_io else "float32"
    timing = ("one cycle per instruction plus load/store-multiple and divide costs (single-issue "
              "Cortex-M7 model)" if core == "cortex-m7" else "Cortex-M4 instruction timings")
    return (
        f"RAM: smallest tensor arena with which TFLM's AllocateTensors succeeds on an emulated "
        f"{core} (QEMU mps2; TFLM + CMSIS-NN from {os.environ.get(SOURCES_ENV)} built with "
        f"arm-none-eabi-gcc; bisection in the firmware), head/tail as TFLM reports them there; "
        f"instructions: one Invoke under QEMU -icount; cycles (if asked for): QEMU's block "
        f"trace weighted by {timing}, zero wait states (an estimate); flash: length of "
        f"the int8 flatbuffer ({io} I/O); MACs: per-layer count of the converted graph."
    )


def _profile_on_target(
    model_bytes: bytes, core: str, cycles: bool = False
) -> HardwareProfile:
    """Measure a converted model on an emulated core.

    Args:
        model_bytes: The int8 ``.tflite`` flatbuffer.
        core: ``"cortex-m4"``, ``"cortex-m7"`` or ``"cortex-m33"``.
        cycles: Also estimate cycles (a second, traced run of about 0.5-1.5 s).

    Returns:
        The :class:`HardwareProfile` with ``method="target"``.

    Raises:
        MeasurementError: When the target run fails (``TargetUnavailable``, a subclass, when
            the toolchain, QEMU or the sources are missing).
    """
    from tinytnas_optuna._target._qemu import measure_cycles, run_on_target

    graph = read_graph(model_bytes)  # refuse garbage before it reaches the target
    run = run_on_target(model_bytes, core=core)
    estimate = measure_cycles(model_bytes, core=core)[1] if cycles else None
    return HardwareProfile(
        ram=run.min_arena,
        flash=len(model_bytes),
        macs=graph.macs,
        method="target",
        source=_target_source(core, graph.int8_input),
        operators=tuple(sorted(set(graph.operators))),
        target=core,
        arena_head=run.report.head,
        arena_tail=run.report.tail,
        instructions=run.instructions,
        cycles=estimate,
    )


def profile_tflite(
    model_bytes: bytes,
    *,
    method: str = "measured",
    target: str = DEFAULT_TARGET,
    cycles: bool = False,
) -> HardwareProfile:
    """Profile an int8 ``.tflite`` flatbuffer as it is; not cached.

    Args:
        model_bytes: The flatbuffer.
        method: ``"measured"`` (TFLM on this host, 32-bit figure derived) or ``"target"``.
        target: The emulated core of ``"target"``.
        cycles: With ``"target"``, also estimate the cycles of one inference (all-zero input;
            Cortex-M4 timing model, see ``docs/figures.md``).

    Returns:
        The :class:`HardwareProfile`.

    Raises:
        ValueError: For an unknown method or target, or ``"analytic"`` (needs an architecture).
        MeasurementError: When a measurement fails.
    """
    _check_method(method, target)
    if method == "analytic":
        raise ValueError("method 'analytic' needs an architecture, not .tflite bytes")
    graph = read_graph(model_bytes)
    if method == "target":
        return _profile_on_target(model_bytes, target, cycles)
    return _profile_bytes(model_bytes, graph.int8_input)


def profile_file(path: str | Path, *, target: str | None = None) -> HardwareProfile:
    """The figures of a ``.tflite`` file: measured on this host, and on an emulated core.

    Args:
        path: The file.
        target: Also run it on this emulated core (``"cortex-m4"``...; its smallest working
            arena, instructions and cycles: :meth:`HardwareProfile.with_target`), or None.

    Returns:
        The :class:`HardwareProfile` (``method="measured"``).

    Raises:
        ValueError: A file that cannot be read or is not a TFLite model, or an unknown core.
        MeasurementError: When a measurement fails.
    """
    try:
        model_bytes = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    try:
        read_graph(model_bytes)
    except MeasurementError as exc:
        raise ValueError(f"{path}: {exc}") from None
    host = profile_tflite(model_bytes)
    if target is None:
        return host
    return host.with_target(profile_tflite(model_bytes, method="target", target=target,
                                           cycles=True))


def convert_and_profile(
    model: keras.Model,
    representative_data: Iterable[Any] | np.ndarray | None,
    *,
    int8_io: bool = False,
    calibration_samples: int = 100,
) -> tuple[bytes, HardwareProfile]:
    """Convert a (trained) model and measure the very bytes returned; never cached.

    Args:
        model: The Keras model to export.
        representative_data: Calibration samples (see
            :func:`~tinytnas_optuna._hardware._convert.convert_int8`).
        int8_io: int8 instead of float32 input/output.
        calibration_samples: How many of them the converter calibrates on.

    Returns:
        ``(tflite_bytes, profile)`` with ``profile.flash == len(tflite_bytes)``.

    Raises:
        MeasurementError: When conversion or TFLM fails.
    """
    model_bytes = _convert(model, representative_data, int8_io, True, samples=calibration_samples)
    return model_bytes, _profile_bytes(model_bytes, int8_io)


def _check_method(method: str, target: str = DEFAULT_TARGET) -> None:
    """Refuse a method other than those of :data:`METHODS`, or, for ``"target"``, an unknown
    core (the other methods never read ``target``).

    Args:
        method: The method asked for.
        target: The emulated core asked for.

    Raises:
        ValueError: For an unknown method or target.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "target":
        from tinytnas_optuna._target._build import check_core

        check_core(target)


def _measure_model(
    model: keras.Model, int8_io: bool, target: str | None = None, cycles: bool = False
) -> HardwareProfile:
    """Convert (with non-zero biases, few calibration samples) and measure; not cached.

    Args:
        model: The Keras model; its weights are restored afterwards.
        int8_io: int8 instead of float32 input/output.
        target: Measure on this emulated core instead of this host.
        cycles: With ``target``, also estimate the cycles of one inference.

    Returns:
        The measured :class:`HardwareProfile`.

    Raises:
        MeasurementError: When conversion, TFLM or the target run fails.
    """
    with _nonzero_biases(model):
        model_bytes = _convert(model, None, int8_io, True, samples=_PROFILE_SAMPLES)
    return _measure_bytes(model_bytes, int8_io, target, cycles)


def _measure_bytes(
    model_bytes: bytes, int8_io: bool, target: str | None, cycles: bool
) -> HardwareProfile:
    """Measure converted bytes on this host or on an emulated core."""
    if target is None:
        return _profile_bytes(model_bytes, int8_io)
    return _profile_on_target(model_bytes, target, cycles)


def _measure_architecture(
    arch: Architecture, int8_io: bool, target: str | None = None, cycles: bool = False
) -> HardwareProfile:
    """Build, convert (in the converting process) and measure a family network; not cached.

    The network is built where it is converted, so profiling a candidate costs this process
    neither a model build nor a conversion.
    """
    from tinytnas_optuna._hardware._convert import convert_source

    source = ("arch", arch.widths[0], arch.cells, arch.input_shape, arch.num_classes)
    model_bytes, why = convert_source(source, None, int8_io, True, _PROFILE_SAMPLES)
    if model_bytes is None:  # the family's layers are built-in: never expected
        raise MeasurementError(f"the converting process could not build {arch}: {why}")
    return _measure_bytes(model_bytes, int8_io, target, cycles)


def profile_architecture(
    arch: Architecture,
    *,
    method: str = "measured",
    int8_io: bool = False,
    target: str = DEFAULT_TARGET,
    cycles: bool = False,
) -> HardwareProfile:
    """Profile the network an :class:`Architecture` describes; cached per process.

    Args:
        arch: The architecture (from :func:`~tinytnas_optuna._space.architecture`).
        method: ``"measured"`` (convert + TFLM on this host), ``"analytic"``
            (:func:`estimate_profile`) or ``"target"`` (convert + TFLM on an emulated core).
        int8_io: int8 instead of float32 input/output.
        target: The emulated core of ``"target"`` (``cortex-m4``, ``cortex-m7``,
            ``cortex-m33``).
        cycles: With ``"target"``, also estimate the cycles of one inference.

    Returns:
        The :class:`HardwareProfile`.

    Raises:
        ValueError: For an unknown method or target, or an architecture outside the family.
        MeasurementError: When a measurement fails.

    Examples:
        >>> arch = architecture(8, 3, (187, 1), 5)
        >>> profile_architecture(arch, method="analytic") == estimate_profile(arch)
        True
    """
    _check_method(method, target)
    _check_family(arch)
    if method == "analytic":
        return PROFILE_CACHE.get(
            (arch, method, int8_io), lambda: estimate_profile(arch, int8_io=int8_io)
        )

    on = target if method == "target" else None

    def measure() -> HardwareProfile:
        return _measure_architecture(arch, int8_io, on, cycles and on is not None)

    key = _cache_method(method, target) + (":cycles" if cycles and on else "")
    return PROFILE_CACHE.get((arch, key, int8_io), measure)


def _cache_method(method: str, target: str) -> str:
    """The method part of a cache key: a target profile is per core.

    Args:
        method: The method.
        target: The emulated core.

    Returns:
        ``method``, or ``"target:<core>"``.

    Examples:
        >>> _cache_method("target", "cortex-m7"), _cache_method("measured", "cortex-m7")
        ('target:cortex-m7', 'measured')
    """
    return f"target:{target}" if method == "target" else method


def _check_family(arch: Architecture) -> None:
    """Refuse an architecture that :func:`~tinytnas_optuna._space.architecture` cannot make.

    Args:
        arch: The architecture.

    Raises:
        ValueError: When it is not of the TinyTNAS family.
    """
    expected = architecture(arch.widths[0], arch.cells, arch.input_shape, arch.num_classes)
    if expected != arch:
        raise ValueError(f"{arch} is not a TinyTNAS-family architecture (expected {expected})")


def model_signature(model: keras.Model) -> str:
    """A structural signature of a Keras model, equal for two builds of the same network.

    Layer classes and configs (layer names canonicalised to positions, so connectivity is
    kept), weight shapes and input shape.

    Args:
        model: A Keras model.

    Returns:
        A JSON string.
    """
    layers = list(model.layers)
    aliases = {layer.name: f"#{i}" for i, layer in enumerate(layers)}
    aliases[model.name] = "#model"

    def canonical(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items() if k != "name"}
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        if isinstance(value, str):
            return aliases.get(value, value)
        return value

    try:
        config: Any = canonical(model.get_config())
    except (NotImplementedError, TypeError, ValueError):  # subclassed models may not serialise
        config = [canonical(layer.get_config()) for layer in layers]
    weights = [[list(w.shape) for w in layer.weights] for layer in layers]
    inputs = [list(t.shape) for t in getattr(model, "inputs", []) or []]
    return json.dumps(
        {
            "classes": [type(layer).__name__ for layer in layers],
            "config": config,
            "weights": weights,
            "inputs": inputs,
        },
        sort_keys=True,
        default=str,
    )


def profile_model(
    model: keras.Model,
    representative_data: Iterable[Any] | np.ndarray | None = None,
    *,
    method: str = "measured",
    int8_io: bool = False,
    target: str = DEFAULT_TARGET,
) -> HardwareProfile:
    """Profile a Keras model; cached by its structural signature.

    Args:
        model: The Keras model (its weights are briefly altered if a bias is all zeros, then
            restored; see :func:`~tinytnas_optuna._hardware._convert._nonzero_biases`).
        representative_data: Ignored for the figures (sizes do not depend on calibration
            values); accepted so callers can pass what they would pass to the converter.
        method: ``"measured"`` (this host), ``"analytic"`` (TinyTNAS-family models only) or
            ``"target"`` (an emulated core: RAM is the smallest arena that works there).
        int8_io: int8 instead of float32 input/output.
        target: The emulated core of ``"target"`` (``cortex-m4``, ``cortex-m7``,
            ``cortex-m33``).

    Returns:
        The :class:`HardwareProfile`.

    Raises:
        ValueError: For an unknown method or target, or ``"analytic"`` on a model outside the
            family.
        MeasurementError: When a measurement fails.
    """
    del representative_data  # figures depend on sizes only; see ProfileCache
    _check_method(method, target)
    if method == "analytic":
        arch = architecture_of(model)
        return PROFILE_CACHE.get(
            (arch, method, int8_io), lambda: estimate_profile(arch, int8_io=int8_io)
        )
    key = (model_signature(model), _cache_method(method, target), int8_io)
    on = target if method == "target" else None
    return PROFILE_CACHE.get(key, lambda: _measure_model(model, int8_io, on))


def architecture_of(model: keras.Model) -> Architecture:
    """Recover the :class:`Architecture` of a TinyTNAS-family Keras model.

    Args:
        model: A model built by :func:`~tinytnas_optuna._space.build_model` (or identical).

    Returns:
        Its architecture.

    Raises:
        ValueError: When the model is not of the family.
    """
    kinds = [
        type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer"
    ]
    separable = [layer for layer in model.layers if type(layer).__name__ == "SeparableConv1D"]
    dense = [layer for layer in model.layers if type(layer).__name__ == "Dense"]
    try:
        shape = _input_shape(model)
    except MeasurementError as error:
        raise ValueError(str(error)) from None
    if not separable or len(dense) != 2 or len(shape) != 2:
        raise ValueError(f"not a TinyTNAS-family model: layers {kinds}")
    k, cells = int(separable[0].filters), len(separable) - 1
    arch = architecture(k, cells, shape, int(dense[1].units))
    expected = (
        ["SeparableConv1D"]
        + ["MaxPooling1D", "SeparableConv1D"] * cells
        + ["GlobalAveragePooling1D", "Dense", "Dense"]
    )
    widths = tuple(int(layer.filters) for layer in separable)
    if (
        kinds != expected
        or widths != arch.widths
        or int(dense[0].units) != arch.dense
        or any(tuple(layer.kernel_size) != (KERNEL_SIZE,) for layer in separable)
    ):
        raise ValueError(f"not a TinyTNAS-family model: layers {kinds}, widths {widths}")
    return arch
