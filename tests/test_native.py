"""Native code behind a process boundary: a TFLM or converter crash is an error, never a dead
caller, and a search goes on past it.

The crash is real: TFLM's own ``Interpreter.from_bytes`` with an arena size at which it writes
through a null pointer (found by scanning sizes of a 96-sample network), or a converting child
killed by SIGSEGV at a chosen request (``TINYTNAS_NATIVE_FAILPOINT``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from tinytnas_optuna import (
    MeasurementError,
    architecture,
    build_model,
    clear_profile_cache,
    profile_architecture,
)
from tinytnas_optuna._hardware import _native
from tinytnas_optuna._hardware._native import FAILPOINT_ENV, NativeCrash, NativeProcess
from tinytnas_optuna._hardware._tflm import tflm_arena
from tinytnas_optuna.cli import main


@pytest.fixture(scope="module")
def model96() -> bytes:
    """The issue's reproducer: (4, 3) on 96-sample series, 7 classes, int8."""
    from tinytnas_optuna import convert_int8

    model = build_model(4, 3, (96, 1), 7)
    rep = np.random.default_rng(0).normal(size=(50, 96, 1)).astype(np.float32)
    return convert_int8(model, rep)


def test_a_tflm_crash_is_an_error_for_one_call_and_the_next_call_works(model96: bytes) -> None:
    child = NativeProcess("tflm")
    try:
        crashed = None
        # Sizes between "too small for the head" and "enough": TFLM crashes at some of them.
        for size in range(3000, 7000, 16):
            try:
                child.call("allocates", model96, size, timeout=60, what=f"allocating {size} B")
            except NativeCrash as crash:
                crashed = (size, str(crash))
                break
        assert crashed is not None, "no arena size crashed TFLM: the reproducer no longer does"
        size, message = crashed
        assert "SIGSEGV" in message and f"allocating {size} B" in message
        assert "runtime.py" in message  # the faulthandler frame: it died inside TFLM
        assert child.crashes == 1
        # A new child answers the next call; the same size crashes again (not a fluke).
        assert child.call("allocates", model96, 1 << 20, timeout=60) is True
        with pytest.raises(NativeCrash):
            child.call("allocates", model96, size, timeout=60)
        assert child.crashes == 2
        assert child.call("echo", "alive", timeout=60) == "alive" and child.starts == 3
    finally:
        child.close()


def test_the_smallest_arena_is_found_past_crashing_sizes(model96: bytes) -> None:
    report = tflm_arena(model96)
    smallest = report.min_arena
    assert smallest is not None and smallest >= report.total
    child = NativeProcess("tflm")
    try:
        assert child.call("allocates", model96, smallest, timeout=60) is True
        try:
            below = child.call("allocates", model96, smallest - 16, timeout=60)
        except NativeCrash:
            below = False
        assert below is False
    finally:
        child.close()


# Full tier: the default tier's test_a_search_goes_on_past_a_crashed_measurement crashes a
# conversion too, and the search's next conversion works.
@pytest.mark.full
def test_a_converter_crash_is_an_error_and_the_next_conversion_works(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    converter = NativeProcess("convert")
    monkeypatch.setattr(_native, "CONVERTER", converter)
    monkeypatch.setenv(FAILPOINT_ENV, "convert:1")  # the first child dies at its first request
    arch = architecture(5, 1, (40, 2), 3)
    try:
        with pytest.raises(MeasurementError, match="SIGSEGV while converting"):
            profile_architecture(arch)
        assert converter.crashes == 1
        profile = profile_architecture(arch)  # the next child (started at once) converts it
        assert profile.ram > 0 and profile.flash > 0 and profile.macs > 0
        assert converter.starts == 2
    finally:
        converter.close()


def test_a_search_goes_on_past_a_crashed_measurement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The converting child dies of SIGSEGV at its first conversion (the first candidate's
    # figures): that candidate fails with the crash recorded, and the search goes on to train
    # others. One process and no cached figures, so that the first conversion is those figures.
    clear_profile_cache()
    converter = NativeProcess("convert")
    monkeypatch.setattr(_native, "CONVERTER", converter)
    monkeypatch.setenv(FAILPOINT_ENV, "convert:1")
    url = f"sqlite:///{tmp_path / 'c.db'}"
    try:
        code = main(["search", "--dataset", "gunpoint", "--ram", "20KB", "--flash", "64KB",
                     "--macs", "60K", "--steps", "300", "--trials", "2", "--storage", url,
                     "--study", "c", "--progress", "none", "--no-model", "--jobs", "1"])
    finally:
        converter.close()
    err = capsys.readouterr().err
    assert code == 0, err
    study = optuna.load_study(study_name="c", storage=url)
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert converter.crashes == 1 and failed, "no measurement crashed"
    assert all("SIGSEGV" in t.user_attrs["error"] for t in failed)
    trained = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert trained and max(t.number for t in trained) > min(t.number for t in failed)
    assert max(t.value for t in trained) > 0.7  # gunpoint's majority rate is 0.52
