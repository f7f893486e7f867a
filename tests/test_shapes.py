"""Shapes nobody picked: 100 seeded architectures over series lengths 16..2,000, 1..9 channels
and 2..60 classes are measured (not trained) without a crash of this process, every figure a
number, and the host-derived RAM never below what TFLM + CMSIS-NN needs on an emulated
Cortex-M4.
"""

from __future__ import annotations

import math
import random

import pytest
from test_target import _require_target

from tinytnas_optuna import (
    architecture,
    estimate_profile,
    profile_architecture,
)
from tinytnas_optuna._hardware._native import TFLM

COUNT = 100


def _shapes(seed: int = 20261206, count: int = COUNT) -> list:
    """Seeded family architectures; the extremes of every range are among them."""
    rng = random.Random(seed)
    edges = [((16, 1), 2), ((2000, 9), 60), ((16, 9), 60), ((2000, 1), 2)]
    archs = []
    for i in range(count):
        if i < len(edges):
            shape, classes = edges[i]
        else:
            length = round(math.exp(rng.uniform(math.log(16), math.log(2000))))
            shape, classes = (length, rng.randint(1, 9)), rng.randint(2, 60)
        k = round(math.exp(rng.uniform(math.log(2), math.log(48))))
        archs.append(architecture(k, rng.randint(0, 4), shape, classes))
    return archs


@pytest.fixture(scope="module")
def measured() -> list:
    """Every architecture measured on this host (conversion and TFLM in child processes)."""
    crashes = TFLM.crashes
    profiles = [(arch, profile_architecture(arch)) for arch in _shapes()]
    print(f"\nTFLM child crashes contained while measuring {COUNT} shapes: "
          f"{TFLM.crashes - crashes}")
    return profiles


@pytest.mark.full
def test_every_shape_is_measured_with_numbers(measured: list) -> None:
    assert len(measured) == COUNT
    lengths = {arch.input_shape[0] for arch, _ in measured}
    assert min(lengths) == 16 and max(lengths) == 2000
    for arch, profile in measured:
        for figure in (profile.ram, profile.flash, profile.macs):
            assert isinstance(figure, int) and figure > 0, (arch, profile)
        assert profile.method == "measured"
        # MACs are counted on the converted graph; the analytic count is exact.
        assert profile.macs == estimate_profile(arch).macs, arch
        assert profile.ram_host is not None


@pytest.mark.full
def test_derived_ram_is_never_below_the_target_on_every_shape(measured: list) -> None:
    _require_target()
    below = []
    for arch, host in measured:
        target = profile_architecture(arch, method="target", target="cortex-m4")
        assert target.ram > 0 and target.flash == host.flash
        if host.ram < target.ram:
            below.append((arch, host.ram, target.ram))
    assert not below, below
