"""The deployed model is the int8 one: convert a trained model, score it in TFLM, fix a loss.

:func:`quantise` converts each trained model (the final training's restarts, or the search's own
network), scores the int8 flatbuffer in TensorFlow Lite Micro against its float model, keeps the
best, and recalibrates it when int8 loses more than :data:`INT8_TOLERANCE`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from tinytnas_optuna._training import predict_labels
from tinytnas_optuna._validation import PreparedData, score

if TYPE_CHECKING:
    from tinytnas_optuna._hardware import HardwareProfile

#: int8 may lose at most this much (accuracy, 0..1) to float on validation before it is fixed.
INT8_TOLERANCE = 0.01
#: Calibration series of the first conversion, and of the recalibration when int8 loses.
CALIBRATION = (200, 2000)
#: Recalibration on inputs clipped at these percentiles of their magnitude, tried in order.
CLIP_PERCENTILES = (99.9, 99.0, 98.0)
#: What :func:`quantise` gives: the Keras model, its int8 flatbuffer, its profile, the record
#: of the int8 check.
Quantised = tuple[Any, bytes, "HardwareProfile", dict[str, Any]]


def quantise(
    runs: list[dict[str, Any]], data: PreparedData, *, metric: str, seed: int, int8_io: bool,
    deadline: float | None,
) -> Quantised:
    """Convert each restart to int8, score it in TFLM, keep the best; fix a lossy int8.

    The check runs on validation, or on the training series under cross-validation (the only
    data there is). When the kept model's int8 loses more than :data:`INT8_TOLERANCE` to its
    float model, it is converted again on up to 2,000 calibration series, then on those series
    clipped at :data:`CLIP_PERCENTILES` of their magnitude, until the loss is within tolerance;
    the best int8 model on the check data is kept.

    Args:
        runs: Trained models (``model``, and ``fit_loss`` under cross-validation), e.g. the
            restarts of the final training.
        data: The prepared data: validation, or the training series to check on.
        metric: The metric compared.
        seed: Seed of the calibration series' order.
        int8_io: int8 instead of float32 input/output.
        deadline: ``time.monotonic()`` after which no further restart is converted.

    Returns:
        ``(keras model, tflite bytes, profile, quantization record)``.
    """
    from tinytnas_optuna._hardware import convert_and_profile

    n = data.num_classes
    holdout = len(data.y_val) > 0
    x_chk, y_chk = (data.x_val, data.y_val) if holdout else (data.x_train, data.y_train)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.x_train))

    def convert(model: Any, samples: int) -> tuple[bytes, HardwareProfile, float]:
        calib = data.x_train[order[:samples]]
        model_bytes, profile = convert_and_profile(model, calib, int8_io=int8_io,
                                                   calibration_samples=len(calib))
        return model_bytes, profile, score(y_chk, int8_labels(model_bytes, x_chk), metric, n)

    best: dict[str, Any] | None = None
    if not holdout:  # no validation: the restart that fitted its training data best
        runs_to_check = [min(range(len(runs)), key=lambda i: runs[i]["fit_loss"])]
    else:
        runs_to_check = list(range(len(runs)))
    for i in runs_to_check:
        run = runs[i]
        if best is not None and deadline is not None and time.monotonic() >= deadline:
            break
        model_bytes, profile, int8_value = convert(run["model"], CALIBRATION[0])
        float_value = score(y_chk, predict_labels(run["model"], x_chk), metric, n)
        # The deployed model is the int8 one: restarts are chosen on its validation figure.
        key = (int8_value, float_value)
        if best is None or key > best["key"]:
            best = {"key": key, "restart": i, "bytes": model_bytes, "profile": profile,
                    "float": float_value, "int8": int8_value}
    assert best is not None
    record: dict[str, Any] = {
        "checked_on": "val" if holdout else "train",
        "metric": metric,
        "float": best["float"],
        "int8_first": best["int8"],
        "calibration_series": min(CALIBRATION[0], len(order)),
        "restart": best["restart"],
        "restart_chosen_on": "int8 validation" if holdout else "training loss",
        "action": "none needed",
    }
    model = runs[best["restart"]]["model"]
    if best["float"] - best["int8"] > INT8_TOLERANCE:
        # Better calibration data: more series, then inputs clipped at a high percentile of
        # their magnitude. Spiky series (Computers) stretch the input and activation ranges
        # so that typical values get few int8 levels; clipped calibration narrows the ranges,
        # and the rare spikes saturate at run time. The best int8 model on the check data wins.
        calib = data.x_train[order[:CALIBRATION[1]]]
        tried = []
        for name, clip in (("", None), *((f" clipped at the {q}th percentile", q)
                                          for q in CLIP_PERCENTILES)):
            x = calib if clip is None else np.clip(
                calib, -(bound := float(np.percentile(np.abs(calib), clip))), bound)
            model_bytes, profile = convert_and_profile(model, x, int8_io=int8_io,
                                                       calibration_samples=len(x))
            value = score(y_chk, int8_labels(model_bytes, x_chk), metric, n)
            tried.append(f"{len(x)} series{name}: {value:.4f}")
            if value > best["int8"]:
                best.update(bytes=model_bytes, profile=profile, int8=value)
                record["calibration_series"] = len(x)
                record["calibration_clip_percentile"] = clip
            if best["float"] - best["int8"] <= INT8_TOLERANCE:
                break
        record["action"] = (f"int8 lost {100 * (best['float'] - record['int8_first']):.1f} "
                            f"points; recalibrated on {'; '.join(tried)}; kept "
                            f"{best['int8']:.4f}")
    record["int8"] = best["int8"]
    record["loss_points"] = round(100 * (best["float"] - best["int8"]), 2)
    return model, best["bytes"], best["profile"], record


def int8_labels(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """The class each series gets from the int8 model run in TFLM (standardised series)."""
    from tinytnas_optuna._hardware import tflm_predict

    if len(x) == 0:
        return np.empty(0, np.int64)
    return tflm_predict(model_bytes, x).argmax(axis=1)
