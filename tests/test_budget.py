"""Budget parsing and fit checks."""

from __future__ import annotations

import pytest

from tinytnas_optuna import HardwareBudget
from tinytnas_optuna._budget import parse_bytes, parse_count, parse_seconds
from tinytnas_optuna._hardware import HardwareProfile


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20KB", 20480), ("20KiB", 20480), ("20kb", 20480), ("64 KB", 65536), ("1MB", 1048576),
     ("1MiB", 1048576), ("1.5KB", 1536), ("512", 512), ("512B", 512), (4096, 4096)],
)
def test_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("60K", 60_000), ("60k", 60_000), ("1.5M", 1_500_000), ("38509", 38_509), (60000, 60_000)],
)
def test_counts(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("90s", 90), ("10m", 600), ("1.5h", 5400),
                                                 (30, 30), ("45", 45)])
def test_seconds(text, expected):
    assert parse_seconds(text) == expected


@pytest.mark.parametrize("bad", ["20XB", "KB", "", "-5KB", "0", 0, -1, "abc", "1e999", True,
                                 "nan"])
def test_bad_values_raise_one_line_error(bad):
    with pytest.raises(ValueError) as info:
        HardwareBudget(ram=bad, flash="64KB", macs="60K")
    assert "RAM budget" in str(info.value) and "\n" not in str(info.value)


def test_bad_mac_unit_is_refused():
    with pytest.raises(ValueError, match="MAC budget"):
        HardwareBudget(ram="20KB", flash="64KB", macs="60KB")  # bytes are not a count


def test_budget_fields_fits_and_excess():
    budget = HardwareBudget(ram="20KB", flash="64KB", macs="60K")
    assert (budget.ram, budget.flash, budget.macs) == (20480, 65536, 60000)
    fits = HardwareProfile(ram=20480, flash=1000, macs=60000, method="measured", source="test",
                           ram_host=None, operators=())
    over = HardwareProfile(ram=30720, flash=1000, macs=90000, method="measured", source="test",
                           ram_host=None, operators=())
    assert budget.fits(fits) and not budget.fits(over)
    excess = budget.excess(over)
    assert excess["ram"] == pytest.approx(0.5) and excess["macs"] == pytest.approx(0.5)
    assert excess["flash"] < 0
    assert budget.excess(fits)["ram"] == 0.0


def _profile(macs: int, cycles: int | None) -> HardwareProfile:
    return HardwareProfile(ram=8000, flash=9000, macs=macs, method="measured", source="test",
                           cycles=cycles)


def test_board_budget_latency_fits_and_excess():
    budget = HardwareBudget.for_board("nano33ble", latency="10ms")
    # The preset's share of the nRF52840's 256 KB / 1 MB, MACs that 10 ms allows at 3 cycles each.
    assert (budget.ram, budget.flash, budget.macs) == (124 * 1024, 464 * 1024, 213_333)
    assert budget.limits == {"ram": 126976, "flash": 475136, "macs": 213333, "latency_ms": 10.0}
    assert budget.fits(_profile(50_000, 639_999)) and budget.latency_of(
        _profile(1, 640_000)) == pytest.approx(10.0)
    assert not budget.fits(_profile(50_000, 640_001))
    # A latency limit needs a measured latency: without cycles nothing fits it.
    assert not budget.fits(_profile(50_000, None))
    assert budget.over(_profile(50_000, 1_280_000)) == {"latency_ms": pytest.approx(20.0)}
    excess = budget.excess(_profile(50_000, 1_280_000))
    assert list(excess) == ["ram", "flash", "macs", "latency_ms"]
    assert excess["latency_ms"] == pytest.approx(1.0)
    # Unmeasured (rejected on another figure first): the MAC lower bound, 3 cycles per MAC.
    assert budget.excess(_profile(320_000, None))["latency_ms"] == pytest.approx(0.5)
    # Explicit figures override the preset; the dict round-trips (the study records it).
    custom = HardwareBudget.for_board("rp2350", ram="20KB", macs="60K")
    assert (custom.ram, custom.macs, custom.latency_ms, custom.board) == (20480, 60000, None,
                                                                          "rp2350")
    assert HardwareBudget(**budget.to_dict()) == budget
    assert str(budget).endswith("latency 10 ms (nano33ble)")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"latency": "20ms"}, ["needs a board"]),
        ({"latency": "fast", "board": "nano33ble"}, ["latency budget", "fast"]),
        ({"latency": "-3ms", "board": "nano33ble"}, ["latency budget"]),
        ({"board": "uno"}, ["unknown board", "nano33ble"]),
    ],
)
def test_bad_latency_or_board_is_refused(kwargs, words):
    with pytest.raises(ValueError) as info:
        HardwareBudget(ram="20KB", flash="64KB", macs="60K", **kwargs)
    assert "\n" not in str(info.value)
    assert all(word in str(info.value) for word in words)
