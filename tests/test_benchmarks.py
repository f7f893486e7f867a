"""The benchmark commands run: ``compare_samplers.py --quick`` end to end, and the sampler
overhead micro-benchmark on a small synthetic storage.

The quick run trains real networks (GunPoint, 100 steps per candidate, four samplers, 30 s per
run with the final model, two runs at a time): about 1 minute on 2 free cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SAMPLERS = ("TinyTNAS", "TinyTNAS-paper", "TPE", "Random")


def _quick(out: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compare_samplers.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, time.monotonic() - start


@pytest.mark.full
@pytest.mark.timeout(900)
def test_quick_comparison_produces_the_table(tmp_path: Path) -> None:
    out = tmp_path / "results"
    _, seconds = _quick(out)
    # Four 30 s runs, two at a time, plus start-up: about 1 minute on 2 cores.
    assert seconds < 480, f"--quick took {seconds:.0f} s (must stay under 8 minutes)"

    md = (out / "samplers_quick.md").read_text()
    assert "python benchmarks/compare_samplers.py --quick" in md
    assert f"{len(os.sched_getaffinity(0))} cores" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    for name in SAMPLERS:
        assert any(line.startswith(f"| {name} |") for line in rows), name
    assert "## Verdict" in md and "vs TPE" in md
    # The anytime table: one row per sampler, best-so-far never decreasing over time.
    anytime = md.split("Anytime:")[1].split("![anytime")[0]
    for name in SAMPLERS:
        (row,) = [line for line in anytime.splitlines() if line.startswith(f"| {name} |")]
        cells = [float(c) for c in row.strip("| ").split(" | ")[1:] if c != "-"]
        assert cells == sorted(cells), row
    assert (out / "samplers_quick_anytime_gunpoint.png").stat().st_size > 5_000

    data = json.loads((out / "samplers_quick.json").read_text())
    runs = data["datasets"]["gunpoint"]["samplers"]
    assert set(runs) == {"tinytnas", "tinytnas-paper", "tpe", "random"}
    for sampler, per in runs.items():
        (run,) = per  # one seed
        assert run["infeasible_trained"] == 0, sampler
        assert run["trained"] >= 1 and run["pick"] is not None, sampler
        # The final model was trained, converted and scored in TFLM inside the bound.
        assert 0 <= run["test_int8"] <= 1 and run["final_seconds"] > 0, sampler
        assert run["total_seconds"] < 30 + 15, (sampler, run["total_seconds"])
        curve = run["curve"]
        assert [v for _, v in curve] == sorted(v for _, v in curve)

    # Everything is cached: the same command again only rebuilds the report.
    _, again = _quick(out)
    assert again < 60
    assert (out / "samplers_quick.md").read_text().count("| TinyTNAS |") == md.count(
        "| TinyTNAS |") == 2  # the results table and the anytime table, not duplicated


@pytest.mark.timeout(240)
def test_sampler_overhead_micro_benchmark() -> None:
    sys.path.insert(0, str(BENCH))
    import micro

    rows = micro.bench_sampler_overhead(60, 2, "in-memory", samplers=("tinytnas", "random"))
    assert [name for name, _, _ in rows] == ["tinytnas", "random"]
    assert all(0 < ask < 5 and 0 <= tell < 5 for _, ask, tell in rows)
