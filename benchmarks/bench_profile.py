"""Benchmark of hardware profiling: measured profile, analytic estimate, package import.

Run: ``python benchmarks/bench_profile.py``. Prints a Markdown table and writes it to
``benchmarks/results/profile.md`` with the date and ``nproc``.
"""

from __future__ import annotations

import datetime
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinytnas_optuna._hardware._cache import clear_profile_cache, profile_cache_info
from tinytnas_optuna._hardware._estimate import estimate_profile
from tinytnas_optuna._hardware._profile import profile_architecture
from tinytnas_optuna._space import architecture

RUNS = 7
TARGETS = {"measured": 1.5, "analytic": 0.005, "import": 3.0}


def _fresh_architectures(count: int) -> list:
    """Distinct architectures no earlier run has profiled (so nothing is cached)."""
    shapes = [(187, 1), (128, 6), (140, 1), (100, 6)]
    return [architecture(8 + 5 * i, i % 5, shapes[i % 4], 2 + i % 11) for i in range(count)]


def bench_measured() -> tuple[float, float]:
    """Median seconds of a measured profile of an uncached architecture, and the first call
    (which pays for importing TensorFlow and tflite_micro)."""
    clear_profile_cache()
    archs = _fresh_architectures(RUNS + 1)
    start = time.perf_counter()
    profile_architecture(archs[0])
    first = time.perf_counter() - start
    times = []
    for arch in archs[1:]:
        start = time.perf_counter()
        profile_architecture(arch)
        times.append(time.perf_counter() - start)
    assert profile_cache_info()["conversions"] >= RUNS + 1
    return statistics.median(times), first


def bench_analytic() -> float:
    """Median seconds of one analytic estimate (over RUNS batches of 200)."""
    arch = architecture(64, 4, (128, 6), 12)
    medians = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(200):
            estimate_profile(arch)
        medians.append((time.perf_counter() - start) / 200)
    return statistics.median(medians)


def bench_import() -> float:
    """Median seconds of ``import tinytnas_optuna`` in a fresh interpreter."""
    code = (
        "import time; t = time.perf_counter(); import tinytnas_optuna; "
        "print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main() -> None:
    measured, first = bench_measured()
    analytic = bench_analytic()
    imported = bench_import()
    rows = [
        ("measured profile, uncached architecture (median)", measured, TARGETS["measured"]),
        ("first measured profile in a process (incl. TF import)", first, None),
        ("analytic estimate (median)", analytic, TARGETS["analytic"]),
        ("`import tinytnas_optuna`, fresh subprocess (median)", imported, TARGETS["import"]),
    ]
    header = (
        f"# Profiling benchmark ({datetime.date.today().isoformat()}, "
        f"nproc {len(os.sched_getaffinity(0))}, Python {sys.version.split()[0]})"
    )
    lines = [
        header,
        "",
        "| what | time | target | ok |",
        "|---|---|---|---|",
    ]
    for name, seconds, target in rows:
        shown = f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds:.3f} s"
        if target is None:
            lines.append(f"| {name} | {shown} | - | - |")
        else:
            goal = f"<= {target * 1000:g} ms" if target < 0.1 else f"<= {target:g} s"
            lines.append(f"| {name} | {shown} | {goal} | {'yes' if seconds <= target else 'NO'} |")
    table = "\n".join(lines) + "\n"
    print(table)
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "profile.md").write_text(table)


if __name__ == "__main__":
    main()
