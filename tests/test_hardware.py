"""Hardware figures against the real TF converter and TFLM (no mocks)."""

from __future__ import annotations

import os
import random

import pytest

from tinytnas_optuna._arena_report import ArenaReport, parse_arena_report
from tinytnas_optuna._hardware._cache import clear_profile_cache, profile_cache_info
from tinytnas_optuna._hardware._convert import convert_int8
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._flatbuffer import count_macs, model_operators
from tinytnas_optuna._hardware._profile import (
    architecture_of,
    convert_and_profile,
    model_signature,
    profile_architecture,
    profile_model,
)
from tinytnas_optuna._hardware._tflm import tflm_arena
from tinytnas_optuna._hardware._types import MeasurementError
from tinytnas_optuna._space import architecture, build_model

# The worked example of docs/algorithm.md and docs/hardware.md.
EXAMPLE = {"k": 8, "c": 3, "input_shape": (187, 1), "num_classes": 5}
EXAMPLE_MACS = 38_509


@pytest.fixture(scope="module")
def example_model():
    return build_model(**EXAMPLE)


@pytest.fixture(scope="module")
def trained_like_model():
    """The example with non-zero biases, as after training (the converter keeps them)."""
    import numpy as np

    model = build_model(**EXAMPLE)
    rng = np.random.default_rng(1)
    for variable in model.weights:
        if str(variable.path).endswith("bias"):
            variable.assign(rng.normal(0, 0.05, variable.shape).astype("float32"))
    return model


@pytest.fixture(scope="module")
def example_bytes(trained_like_model) -> bytes:
    return convert_int8(trained_like_model)


def test_example_widths_from_architecture_and_model(example_model):
    arch = architecture(**EXAMPLE)
    assert arch.widths == (8, 12, 18, 27)
    assert arch.dense == 40
    separable = [l for l in example_model.layers if type(l).__name__ == "SeparableConv1D"]
    dense = [l for l in example_model.layers if type(l).__name__ == "Dense"]
    assert [l.filters for l in separable] == [8, 12, 18, 27]
    assert [l.units for l in dense] == [40, 5]
    assert architecture_of(example_model) == arch


def test_example_macs_measured_and_analytic(example_bytes):
    assert count_macs(example_bytes) == EXAMPLE_MACS
    assert estimate_profile(architecture(**EXAMPLE)).macs == EXAMPLE_MACS
    assert profile_architecture(architecture(**EXAMPLE)).macs == EXAMPLE_MACS


def test_flash_is_length_of_converted_bytes(trained_like_model, example_bytes):
    clear_profile_cache()
    profile = profile_model(trained_like_model)
    assert profile.flash == len(example_bytes)
    model_bytes, exported = convert_and_profile(trained_like_model, None)
    assert exported.flash == len(model_bytes) == len(example_bytes)
    assert exported.method == "measured"
    assert set(profile.operators) == {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "DEQUANTIZE",
        "FULLY_CONNECTED",
        "MAX_POOL_2D",
        "MEAN",
        "QUANTIZE",
        "RESHAPE",
        "SOFTMAX",
    }


def test_untrained_model_is_profiled_as_trained(example_model, trained_like_model):
    # Zero biases would be dropped by the converter; profiles must not depend on that.
    clear_profile_cache()
    untrained = profile_model(example_model, method="measured")
    clear_profile_cache()
    assert untrained == profile_model(trained_like_model)
    assert not any(
        v.numpy().any() for v in example_model.weights if str(v.path).endswith("bias")
    ), "biases must be restored after profiling"


def _derive_32bit(report: ArenaReport) -> int:
    """docs/figures.md, recomputed independently of ram_32bit()."""
    sizes = {  # kind: (64-bit bytes, 32-bit bytes, allocations per item or per subgraph)
        "TfLiteEvalTensor data": (24, 12, "subgraph"),
        "NodeAndRegistration struct": (64, 32, "subgraph"),
        "Persistent TfLiteTensor data": (64, 40, "item"),
    }
    tail = report.tail
    for record in report.records:
        if record.kind in sizes:
            s64, s32, per = sizes[record.kind]
            assert record.requested == record.count * s64, record
            tail -= record.count * (s64 - s32)
            tail += 15 * (report.subgraphs if per == "subgraph" else record.count)
    # What AllocateTensors needed on the host beyond the reported total (memory planning).
    shortfall = max(0, report.min_arena - report.total)
    derived = -(-(report.head + tail + shortfall) // 16) * 16
    return min(derived, report.total + shortfall)


@pytest.mark.parametrize("int8_io", [False, True])
def test_ram_derivation(trained_like_model, int8_io):
    model_bytes, profile = convert_and_profile(trained_like_model, None, int8_io=int8_io)
    report = tflm_arena(model_bytes)
    assert report.total == report.head + report.tail == profile.ram_host
    assert report.record("TfLiteEvalTensor data").count == 43 - 2 * int8_io
    assert report.record("NodeAndRegistration struct").count == 19 - 2 * int8_io
    assert profile.ram == report.ram_32 == _derive_32bit(report)
    assert report.head <= profile.ram <= max(profile.ram_host, report.min_arena)
    assert profile.ram % 16 == 0
    print(
        f"\nint8_io={int8_io}: host arena {report.total} B (head {report.head}, tail "
        f"{report.tail}) -> 32-bit {profile.ram} B; flash {profile.flash} B"
    )


def test_int8_io_input_type(trained_like_model):
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    for int8_io, dtype in [(False, np.float32), (True, np.int8)]:
        model_bytes = convert_int8(trained_like_model, int8_io=int8_io)
        interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=1 << 20)
        assert interpreter.get_input_details(0)["dtype"] == dtype
        assert interpreter.get_output_details(0)["dtype"] == dtype
    assert "QUANTIZE" not in model_operators(model_bytes)


def test_representative_data_is_used(trained_like_model):
    import numpy as np

    from tinytnas_optuna._hardware import input_quantization

    data = np.random.default_rng(3).normal(size=(20, 187, 1)).astype("float32")
    from_array = input_quantization(convert_int8(trained_like_model, data))
    from_pairs = input_quantization(convert_int8(trained_like_model, ((x, 0) for x in data)))
    wider = input_quantization(convert_int8(trained_like_model, 10 * data))
    # The input's int8 scale is calibrated on the data: the same data gives the same scale,
    # data ten times wider a scale about ten times larger.
    assert from_array == pytest.approx(from_pairs)
    assert 5 < wider[0] / from_array[0] < 20


def test_failures_raise_and_never_return_numbers():
    import keras

    fd_before = os.fstat(2)
    with pytest.raises(MeasurementError):
        tflm_arena(b"this is not a flatbuffer at all")
    with pytest.raises(MeasurementError):
        tflm_arena(b"\x00\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    with pytest.raises(MeasurementError):
        count_macs(b"garbage")
    with pytest.raises(MeasurementError):
        parse_arena_report("[RecordingMicroAllocator] Arena allocation total 10 bytes")

    inputs = keras.Input((16, 1))
    unconvertible = keras.Model(inputs, keras.layers.Lambda(keras.ops.erfinv)(inputs))
    with pytest.raises(MeasurementError, match="conversion failed"):
        convert_int8(unconvertible)
    with pytest.raises(MeasurementError):
        profile_model(unconvertible)

    # Converts, but TFLM has no TOPK_V2 kernel: TFLM itself fails.
    inputs = keras.Input((16, 1))
    sorting = keras.Model(inputs, keras.layers.Lambda(lambda x: keras.ops.sort(x, 1))(inputs))
    with pytest.raises(MeasurementError, match="TFLM failed"):
        tflm_arena(convert_int8(sorting))

    dynamic_inputs = keras.Input((None, 1))
    dynamic = keras.Model(dynamic_inputs, keras.layers.Dense(2)(dynamic_inputs))
    with pytest.raises(MeasurementError, match="not static"):
        convert_int8(dynamic)

    fd_after = os.fstat(2)  # stderr was restored after every failure
    assert (fd_before.st_dev, fd_before.st_ino) == (fd_after.st_dev, fd_after.st_ino)


def test_invalid_method():
    with pytest.raises(ValueError):
        profile_architecture(architecture(**EXAMPLE), method="guess")
    with pytest.raises(ValueError):
        profile_model(build_model(**EXAMPLE), method="guess")


def test_cache_never_converts_twice():
    clear_profile_cache()
    arch = architecture(7, 2, (100, 6), 4)
    before = profile_cache_info()["conversions"]
    first = profile_architecture(arch)
    second = profile_architecture(arch)
    info = profile_cache_info()
    assert first is second
    assert info["conversions"] == before + 1
    assert (info["hits"], info["misses"]) == (1, 1)
    # Two separate builds of one network share a structural signature (names differ).
    model_a, model_b = build_model(7, 2, (100, 6), 4), build_model(7, 2, (100, 6), 4)
    assert model_signature(model_a) == model_signature(model_b)
    profile_model(model_a)
    profile_model(model_b)
    assert profile_cache_info()["conversions"] == before + 2
    assert model_signature(build_model(7, 2, (100, 6), 5)) != model_signature(model_a)


def test_analytic_from_model_and_to_dict():
    arch = architecture(**EXAMPLE)
    model = build_model(**EXAMPLE)
    from_model = profile_model(model, method="analytic")
    # The architecture read back from the Keras model gives the same figures as the one it
    # was built from, and its MACs are those counted on the converted int8 graph.
    assert from_model == estimate_profile(arch)
    assert from_model.macs == profile_model(model).macs
    assert from_model.method == "analytic" and from_model.ram_host is None
    data = from_model.to_dict()
    assert data["macs"] == EXAMPLE_MACS and isinstance(data["operators"], list)
    with pytest.raises(ValueError):
        import keras

        inputs = keras.Input((10, 1))
        profile_model(keras.Model(inputs, keras.layers.Dense(3)(inputs)), method="analytic")


def _sample(seed: int, count: int) -> list:
    rng = random.Random(seed)
    shapes = [(128, 6), (187, 1), (140, 1), (100, 6)]
    return [
        architecture(
            rng.randint(2, 128), rng.randint(0, 4), rng.choice(shapes), rng.randint(2, 12)
        )
        for _ in range(count)
    ]


@pytest.mark.full
def test_analytic_vs_measured_error_table():
    """Seeded random sample (not the calibration seeds): RAM and flash within 5 %, MACs exact."""
    cases = [(arch, False) for arch in _sample(20260101, 36)]
    cases += [(arch, True) for arch in _sample(20260102, 6)]
    rows = []
    for arch, int8_io in cases:
        measured = profile_architecture(arch, int8_io=int8_io)
        analytic = estimate_profile(arch, int8_io=int8_io)
        assert analytic.macs == measured.macs, arch
        assert analytic.operators == measured.operators, arch
        rows.append(
            (
                analytic.ram / measured.ram - 1,
                analytic.flash / measured.flash - 1,
                arch,
                int8_io,
                measured,
                analytic,
            )
        )
    worst_ram = max(abs(r[0]) for r in rows)
    worst_flash = max(abs(r[1]) for r in rows)
    rows.sort(key=lambda r: -max(abs(r[0]), abs(r[1])))
    print(
        f"\nanalytic vs measured, {len(rows)} architectures "
        f"(max |error| RAM {worst_ram:.2%}, flash {worst_flash:.2%}, MACs exact)"
    )
    print(
        "| widths | input | classes | int8 I/O | RAM meas. | RAM err | flash meas. | flash err |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ram_err, flash_err, arch, int8_io, measured, _ in rows[:10]:
        print(
            f"| {arch.widths} | {arch.input_shape} | {arch.num_classes} | {int8_io} | "
            f"{measured.ram} | {ram_err:+.2%} | {measured.flash} | {flash_err:+.2%} |"
        )
    assert worst_ram < 0.05
    assert worst_flash < 0.05
