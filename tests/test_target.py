"""Measurements on an emulated Cortex-M core (TFLM + CMSIS-NN in QEMU) against the host's.

Tests that run the target need ``arm-none-eabi-gcc``, ``qemu-system-arm``, ``make`` and
``TINYTNAS_TFLM_SRC`` (the third-party sources); without them they skip, except under
``CI=true`` where they must run. The first use on a machine builds the runner (about 2 minutes
per core, cached in ``~/.cache/tinytnas/tflm-build``); afterwards a run costs about 0.1-0.3 s.
"""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from conftest import require_service

from tinytnas_optuna import cli
from tinytnas_optuna._arena_report import STRUCT_SIZES
from tinytnas_optuna._hardware import MeasurementError, profile_architecture, profile_tflite
from tinytnas_optuna._hardware._convert import _convert, _nonzero_biases
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._tflm import tflm_arena
from tinytnas_optuna._space import architecture, build_model
from tinytnas_optuna._target._build import SOURCES_ENV, build_keys, build_runner, resolve_sources
from tinytnas_optuna._target._qemu import measure_cycles, run_on_target


def _require_target() -> None:
    """Skip (fail under CI=true) without the toolchain, its libraries, QEMU or the sources:
    what ``tinytnas doctor`` checks, with its fixes as the reason."""
    from tinytnas_optuna._doctor import (
        check_cxx_library,
        check_newlib,
        check_qemu,
        check_toolchain,
    )

    for check in (check_toolchain(), check_newlib(), check_cxx_library(), check_qemu()):
        if not check.ok:
            require_service(check.name, f"{check.detail} ({check.fix})")
    if not os.environ.get(SOURCES_ENV):
        require_service("TFLM sources", f"set {SOURCES_ENV} to tflm-sources.tar.xz (.ci/run "
                        "does when ../shared/third_party has it)")


@pytest.fixture(scope="module")
def target() -> str:
    """The Cortex-M4 runner, built (or found in the cache)."""
    _require_target()
    build_runner("cortex-m4")
    return "cortex-m4"


def _model_bytes(k: int, cells: int, shape: tuple[int, int], classes: int, int8_io: bool,
                 seed: int = 1) -> bytes:
    """An int8 .tflite of a family network with random (trained-like) weights."""
    model = build_model(k, cells, shape, classes)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype("float32"))
    data = rng.normal(size=(16, *shape)).astype("float32")
    return _convert(model, data, int8_io, True, samples=16)


def _host_output(model: bytes, inputs: np.ndarray) -> bytes:
    """Raw output tensor bytes of the host's TFLM (PyPI tflite-micro) for one input."""
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    details = interpreter.get_input_details(0)
    interpreter.set_input(inputs.reshape(details["shape"]).astype(details["dtype"]), 0)
    interpreter.invoke()
    return np.asarray(interpreter.get_output(0)).tobytes()


@pytest.mark.full
@pytest.mark.parametrize("int8_io", [True, False])
def test_target_output_equals_host_tflm(target, int8_io):
    model = _model_bytes(8, 3, (187, 1), 5, int8_io)
    rng = np.random.default_rng(123)
    if int8_io:
        inputs = rng.integers(-128, 128, size=(187, 1)).astype(np.int8)
    else:
        inputs = rng.normal(size=(187, 1)).astype(np.float32)
    run = run_on_target(model, inputs.tobytes(), core=target)
    assert run.output_type == (9 if int8_io else 1)  # kTfLiteInt8 / kTfLiteFloat32
    assert run.output == _host_output(model, inputs)
    assert run.report.head + run.report.tail == run.report.total
    assert 0 < run.min_arena and run.instructions > 0


@pytest.mark.full
def test_profile_architecture_on_target_is_cached(target):
    arch = architecture(4, 3, (150, 1), 2)  # the gunpoint search's best: a small head
    profile = profile_architecture(arch, method="target", target=target)
    assert profile_architecture(arch, method="target", target=target) is profile
    assert profile.method == "target" and profile.target == target
    # TFLM's report is not enough there: planning needs more than head + tail.
    assert profile.ram > profile.arena_head + profile.arena_tail
    assert profile_architecture(arch).ram >= profile.ram  # derived on the host


def _sample(seed: int, count: int) -> list:
    """Seeded family architectures (as tests/test_hardware.py draws them), some small-headed."""
    rng = random.Random(seed)
    shapes = [(128, 6), (187, 1), (140, 1), (100, 6), (150, 1), (60, 3)]
    return [
        (
            architecture(
                rng.choice([rng.randint(2, 16), rng.randint(2, 128)]), rng.randint(0, 4),
                rng.choice(shapes), rng.randint(2, 12),
            ),
            rng.random() < 0.25,
        )
        for _ in range(count)
    ]


def _convert_arch(arch, int8_io: bool) -> bytes:
    """The bytes profile_architecture measures (non-zero biases, few calibration samples)."""
    model = build_model(arch.widths[0], arch.cells, arch.input_shape, arch.num_classes)
    with _nonzero_biases(model):
        return _convert(model, None, int8_io, True, samples=8)


@pytest.mark.full
def test_derived_ram_never_below_target_on_30_architectures(target):
    rows = []
    for arch, int8_io in _sample(20261301, 30):
        model = _convert_arch(arch, int8_io)
        derived = profile_tflite(model)
        on_target = profile_tflite(model, method="target", target=target)
        analytic = estimate_profile(arch, int8_io=int8_io)
        assert on_target.method == "target" and on_target.target == target
        assert on_target.flash == derived.flash and on_target.macs == derived.macs
        assert "AllocateTensors" in on_target.source and target in on_target.source
        rows.append((derived.ram - on_target.ram, arch, int8_io, derived, on_target, analytic))
    rows.sort(key=lambda r: r[0])
    print("\n| widths | input | classes | int8 I/O | target head | target reported | "
          "target smallest | derived | derived - target | analytic |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for margin, arch, int8_io, derived, on_target, analytic in rows[:8] + rows[-3:]:
        print(f"| {arch.widths} | {arch.input_shape} | {arch.num_classes} | {int8_io} | "
              f"{on_target.arena_head} | {on_target.arena_head + on_target.arena_tail} | "
              f"{on_target.ram} | {derived.ram} | {margin:+d} | {analytic.ram} |")
    assert all(derived.ram >= on_target.ram for _, _, _, derived, on_target, _ in rows)
    assert all(analytic.ram >= on_target.ram for *_, on_target, analytic in rows)
    # The old derivation (reported total only) was below the target on small heads.
    assert any(on_target.ram > on_target.arena_head + on_target.arena_tail
               for *_, on_target, _ in rows)


def _exact_host_min_arena(model: bytes) -> int:
    """Smallest arena the host TFLM allocates with, to the byte (independent of the package's
    search; in a child process, since TFLM crashes at some sizes)."""
    from tinytnas_optuna._hardware._native import NativeCrash, NativeProcess

    child = NativeProcess("tflm")

    def allocates(size: int) -> bool:
        try:
            return bool(child.call("allocates", model, size, timeout=60))
        except NativeCrash:
            return False

    low, high = 256, 1 << 20
    try:
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if allocates(middle) else (middle, high)
    finally:
        child.close()
    return high


def test_derived_ram_covers_host_min_arena_without_toolchain():
    """Host only: the 32-bit figure >= the host's smallest working arena minus the shrink of
    the structs already in the tail while TFLM plans memory (TfLiteEvalTensor and
    NodeAndRegistration, allocated before planning). The planner's temporaries (allocation info
    with pointers and size_t, planner scratch of ints) are no larger on 32-bit, so the 32-bit
    peak is at most that."""
    for arch, int8_io in _sample(20261302, 8) + [(architecture(4, 3, (150, 1), 2), False)]:
        model = _convert_arch(arch, int8_io)
        report = tflm_arena(model)
        host_min = _exact_host_min_arena(model)
        shrink = 0
        for kind in ("TfLiteEvalTensor data", "NodeAndRegistration struct"):
            size64, size32 = STRUCT_SIZES[kind]
            shrink += report.record(kind).count * (size64 - size32)
        assert report.ram_32 >= host_min - shrink, (arch, int8_io, report.ram_32, host_min)
        assert report.min_arena >= host_min  # the package's search is a 16-byte upper bound
    # the gunpoint-like network (k=4, 3 cells) is one whose planning needs more than the total
    assert report.shortfall > 0


@pytest.mark.full
def test_failed_target_runs_raise(target):
    model = _model_bytes(8, 1, (128, 6), 6, False)
    with pytest.raises(MeasurementError, match="AllocateTensors failed"):
        run_on_target(model, core=target, arena_size=1024)
    with pytest.raises(MeasurementError, match="failed"):
        run_on_target(model[: len(model) // 2], core=target)  # corrupt: truncated
    with pytest.raises(MeasurementError, match="input bytes"):
        run_on_target(model, b"\0" * 7, core=target)
    with pytest.raises(MeasurementError, match="not a TFLite flatbuffer"):
        profile_tflite(b"garbage" * 10, method="target", target=target)


@pytest.mark.full
def test_build_is_keyed_by_its_inputs(target):
    elf = build_runner(target)
    assert build_runner(target) == elf and elf.exists()  # cached
    sources = resolve_sources()
    assert build_keys(sources) != build_keys(sources.parent)
    lib_key, elf_key = build_keys(sources)
    assert elf.parent.name == f"app-{elf_key}" and elf.parent.parent.name.endswith(lib_key)


def test_unknown_target_is_refused():
    with pytest.raises(ValueError, match="target must be one of"):
        profile_tflite(b"", method="target", target="cortex-m0")


@pytest.mark.full
def test_cycles_follow_the_instruction_count(target):
    model = _model_bytes(8, 3, (187, 1), 5, False)
    instructions, cycles = measure_cycles(model, core=target)
    counted = run_on_target(model, core=target).instructions  # QEMU -icount, to 40
    assert abs(instructions - counted) <= 40
    # Cortex-M4 timings: loads, multiples and branches cost more than one cycle.
    assert 1.1 * instructions < cycles < 2.5 * instructions
    assert measure_cycles(model, core=target) == (instructions, cycles)  # deterministic


@pytest.mark.full
def test_cli_profile_json(target, tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_bytes(4, 3, (150, 1), 2, False))
    assert cli.main(["profile", str(path), "--target", target, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in ("flash", "macs", "ram", "ram_target", "cycles", "latency_ms"):
        assert key in figures
    assert figures["flash"] == path.stat().st_size
    assert figures["ram"] >= figures["ram_target"] > 0
    assert figures["cycles"] > figures["instructions"] > 0
    assert figures["latency_ms"] is None  # a core has no clock; a board has
    assert cli.main(["profile", str(path), "--board", "nano33ble", "--json"]) == 0
    on_board = json.loads(capsys.readouterr().out)
    assert on_board["target"] == "cortex-m4" and on_board["cycles"] == figures["cycles"]
    assert on_board["latency_ms"] == pytest.approx(figures["cycles"] / 64e3, abs=1e-3)


def test_cli_boards(capsys):
    assert cli.main(["boards", "--json"]) == 0
    presets = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert (presets["nano33ble"]["core"], presets["nano33ble"]["clock_hz"]) == (
        "cortex-m4", 64_000_000)
    assert presets["stm32f746"]["core"] == "cortex-m7"
    assert presets["rp2350"]["core"] == "cortex-m33"
    assert all(b["ram"] > 0 and b["flash"] > 0 and b["source"] for b in presets.values())
    assert cli.main(["profile", "x.tflite", "--board", "uno"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uno" in err


def test_cli_profile_without_target_and_bad_input(tmp_path, capsys):
    path = tmp_path / "model.tflite"
    path.write_bytes(_model_bytes(4, 0, (128, 6), 3, True))
    assert cli.main(["profile", str(path), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["ram"] > 0 and figures["ram_target"] is None
    assert cli.main(["profile", str(path), "--target", "cortex-m9"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cortex-m9" in err
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    assert cli.main(["profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a TFLite flatbuffer" in err
    assert cli.main(["profile", str(tmp_path / "missing.tflite")]) == 2


@pytest.mark.full
def test_search_with_a_latency_budget(target, tmp_path, capsys):
    """--board/--latency: a fourth constraint, measured on the target, recorded like the others."""
    import optuna

    from tinytnas_optuna._dashboard import summary_note
    from tinytnas_optuna._plots import plot_accuracy_vs_figures

    url = f"sqlite:///{tmp_path / 'lat.db'}"
    code = cli.main(["search", "--dataset", "gunpoint", "--board", "nano33ble", "--latency",
                     "6ms", "--steps", "300", "--trials", "3", "--storage", url, "--study",
                     "lat", "--progress", "none", "--no-model"])
    assert code == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="lat", storage=url)
    budget = study.user_attrs["budget"]
    assert (budget["board"], budget["latency"], budget["ram"]) == ("nano33ble", 6.0, 124 * 1024)
    measured = [t for t in study.trials if t.user_attrs.get("latency_ms") is not None]
    assert measured
    for t in measured:
        ua = t.user_attrs
        assert len(t.system_attrs["constraints"]) == 4
        assert ua["latency_ms"] == pytest.approx(ua["cycles"] / 64e3, abs=1e-3)
        assert ua["ram_target"] <= ua["ram"]  # the derived figure covers the target's arena
        assert ua["feasible"] == (ua["latency_ms"] <= 6.0)
        assert (t.system_attrs["constraints"][3] <= 0) == ua["feasible"]
    # The greedy's second candidate, (8, 3), fits RAM, flash and MACs but not 6 ms.
    assert any(not t.user_attrs["feasible"] and t.user_attrs["macs"] <= budget["macs"]
               for t in measured)
    assert all(t.user_attrs["feasible"] for t in study.trials if t.state.name == "COMPLETE")

    out = tmp_path / "best"
    code = cli.main(["retrain", "--storage", url, "--study", "lat", "--steps", "1500", "--out",
                     str(out)])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["int8_accuracy"] >= 0.75, report
    best = next(t for t in study.trials if (t.params.get("k"), t.params.get("c")) == (
        report["k"], report["c"]) and t.user_attrs.get("latency_ms") is not None)
    assert report["target"]["board"] == "nano33ble"
    assert report["target"]["latency_ms"] == pytest.approx(best.user_attrs["latency_ms"], rel=0.02)
    assert report["arena_bytes"] >= report["target"]["ram_target"]

    assert len(plot_accuracy_vs_figures(study).axes) == 4
    assert "| latency (ms, emulated core) |" in summary_note(study)
