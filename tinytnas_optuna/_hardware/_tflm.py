"""TFLM on this host: a model's arena report, its smallest working arena, its inferences.

TensorFlow Lite for Microcontrollers (``tflite-micro`` on PyPI) runs in the measuring process
of :mod:`._native` (the ``*_in_process`` functions below are what that process runs): it prints
its allocations to fd 2, which :mod:`tinytnas_optuna._arena_report` parses and derives for a
32-bit microcontroller.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tinytnas_optuna._arena_report import (
    ARENA_ALIGNMENT,
    ArenaReport,
    align_up,
    parse_arena_report,
)
from tinytnas_optuna._errors import MeasurementError
from tinytnas_optuna._hardware._flatbuffer import read_graph
from tinytnas_optuna._quiet import FD2_LOCK, capture_fd2, tail


def tflm_arena(model_bytes: bytes) -> ArenaReport:
    """Run TFLM on the model and read its arena report (``print_allocations``).

    TFLM runs in the measuring process (:mod:`._native`): a crash there is a
    :class:`MeasurementError` for this model, never a dead caller. The interpreter gets an arena
    of 1 MiB or 10x the model; when TFLM reports memory missing, the arena is quadrupled (up to
    256 MiB) before giving up. Then the smallest arena with which it allocates is searched
    (:attr:`ArenaReport.min_arena`, :func:`_host_min_arena`). The bytes are checked to be a
    readable TFLite flatbuffer first, so garbage never reaches TFLM's C++.

    Args:
        model_bytes: An int8 ``.tflite`` flatbuffer.

    Returns:
        The parsed :class:`ArenaReport` with ``min_arena``; ``report.ram_32`` is the derived
        32-bit figure.

    Raises:
        MeasurementError: When TFLM fails, crashes, or its report cannot be parsed.
    """
    from tinytnas_optuna._hardware._native import TFLM

    graph = read_graph(model_bytes)  # refuse garbage before it reaches C++
    data = bytes(model_bytes)
    text, arena = TFLM.call("report", data, timeout=_CALL_SECONDS,
                            what="reporting the arena of a model")
    report = parse_arena_report(text, subgraphs=graph.subgraphs)
    return replace(report, min_arena=_host_min_arena(data, report.total, arena))


#: Seconds one TFLM call in the measuring process may take before it counts as hung.
_CALL_SECONDS = 120.0


def _report_in_process(data: bytes) -> tuple[str, int]:
    """TFLM's allocation report, in this process (the measuring process runs it).

    Args:
        data: The model.

    Returns:
        ``(captured report text, arena size it was made with)``.

    Raises:
        MeasurementError: When TFLM fails with every arena up to 256 MiB, or for another reason.
    """
    from tflite_micro.python.tflite_micro import runtime

    arena = max(1 << 20, 10 * len(data))
    with FD2_LOCK:
        while True:
            text = ""
            try:
                with capture_fd2() as read:
                    try:
                        interpreter = runtime.Interpreter.from_bytes(data, arena_size=arena)
                        interpreter.print_allocations()
                    finally:
                        text = read()
                return text, arena
            except Exception as error:
                # An arena too small for head or tail makes TFLM print "... Requested: R,
                # available A, missing: M"; offer more before giving up. Other failures (e.g. an
                # operator TFLM lacks) are final.
                if "missing:" in text and arena < (1 << 28):
                    arena *= 4
                    continue
                raise MeasurementError(
                    f"TFLM failed: {type(error).__name__}: {error}\n{tail(text)}"
                ) from error


def _allocates_in_process(data: bytes, size: int) -> bool:
    """Whether TFLM's ``AllocateTensors`` succeeds with an arena of ``size`` bytes, here.

    Args:
        data: The model.
        size: Arena bytes.

    Returns:
        True when the interpreter could be made.
    """
    from tflite_micro.python.tflite_micro import runtime

    with capture_fd2():
        try:
            runtime.Interpreter.from_bytes(data, arena_size=size)
        except Exception:  # noqa: BLE001 - TFLM reports every allocation failure so
            return False
    return True


def _host_min_arena(data: bytes, total: int, works: int) -> int:
    """The smallest arena (16-byte steps above ``total``) with which TFLM allocates here.

    TFLM's reported total is not always enough: while planning, it holds temporary data
    (allocation info per tensor, planner scratch per buffer) on the head side, freed before it
    reports, and with a small planned head that peak exceeds the total. Each size is tried in
    the measuring process; a size at which TFLM crashes (it does not check every allocation:
    seen only with arenas too small) counts as one that does not allocate, which can only
    raise the figure, never lower it.

    Args:
        data: The model.
        total: TFLM's reported arena total.
        works: An arena size known to work.

    Returns:
        ``total`` when it works (one interpreter made), else the smallest multiple of 16
        above it that works (bisection, about 10 interpreters).
    """
    from tinytnas_optuna._hardware._native import TFLM, NativeCrash

    def allocates(size: int) -> bool:
        try:
            return bool(TFLM.call("allocates", data, size, timeout=_CALL_SECONDS,
                                  what=f"allocating a {size} B arena"))
        except NativeCrash:
            return False

    if allocates(total):
        return total
    low, high = total, works
    if allocates(2 * total):
        high = 2 * total
    while high - low > ARENA_ALIGNMENT:
        middle = align_up((low + high) // 2)
        if middle >= high:
            break
        if allocates(middle):
            high = middle
        else:
            low = middle
    return high


def tflm_predict(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Run every sample through TensorFlow Lite Micro (the runtime on the board).

    TFLM runs in the measuring process (:mod:`tinytnas_optuna._hardware._native`): a crash
    there raises a ``MeasurementError`` here.

    Args:
        model_bytes: An int8 ``.tflite`` flatbuffer (float32 or int8 input/output).
        features: ``(N, L, C)`` float32 features, already standardised.

    Returns:
        ``(N, K)`` float32 class scores (dequantised when the output is int8).

    Raises:
        MeasurementError: When TFLM fails or crashes.
    """
    from tinytnas_optuna._hardware._native import TFLM

    features = np.asarray(features, dtype=np.float32)
    # About 0.3 ms per HAR window here; a generous allowance before the call counts as hung.
    timeout = 120.0 + 0.05 * len(features)
    return TFLM.call("predict", bytes(model_bytes), features, timeout=timeout,
                     what=f"running {len(features)} series through TFLM")


def _predict_in_process(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """:func:`tflm_predict`'s work, in this process (the measuring process runs it)."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(bytes(model_bytes))
    inp = interpreter.get_input_details(0)
    out = interpreter.get_output_details(0)
    in_scale, in_zero = _quant(inp)
    out_scale, out_zero = _quant(out)
    results = []
    for sample in features:
        x = sample[None, ...]
        if inp["dtype"] == np.int8:
            x = np.clip(np.round(x / in_scale + in_zero), -128, 127).astype(np.int8)
        interpreter.set_input(x.reshape(inp["shape"]), 0)
        interpreter.invoke()
        y = np.asarray(interpreter.get_output(0)).reshape(-1)
        if out["dtype"] == np.int8:
            y = (y.astype(np.float32) - out_zero) * out_scale
        results.append(y.astype(np.float32))
    return np.stack(results)


def _quant(details: dict[str, Any]) -> tuple[float, int]:
    params = details.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    return (float(scales[0]) if len(scales) else 1.0, int(zeros[0]) if len(zeros) else 0)
