"""Benchmark of what one Cortex-M target measurement costs: the build once, then per model.

Run: ``python benchmarks/bench_target.py [--fresh]`` (needs the Arm toolchain, QEMU and
``TINYTNAS_TFLM_SRC``, as the target tests do). Per model, the median over several fresh
architectures of: the host measurement every search candidate already gets (TFLM on this host,
the baseline), the target run (smallest arena, report, output) and the cycle count, with their
ratios to the baseline measured in the same run. ``--fresh`` also times a first build of the
Cortex-M4 runner into an empty cache. Writes ``benchmarks/results/target.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS = 7
CORE = "cortex-m4"


def _models(count: int) -> tuple[list[bytes], float]:
    """int8 flatbuffers of distinct family members (random weights: the cost does not depend
    on them), and the median seconds of one conversion."""
    import numpy as np

    from tinytnas_optuna._hardware import convert_int8
    from tinytnas_optuna._space import build_model

    shapes = [(128, 6), (150, 1), (140, 1), (100, 6)]
    out, seconds = [], []
    for i in range(count):
        shape = shapes[i % len(shapes)]
        model = build_model(4 + 3 * i, i % 5, shape, 2 + i % 8)
        calib = np.random.default_rng(i).normal(size=(32, *shape)).astype("float32")
        start = time.perf_counter()
        out.append(convert_int8(model, calib))
        seconds.append(time.perf_counter() - start)
    return out, statistics.median(seconds[1:])  # the first pays TensorFlow's start-up


def _median_seconds(call, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true",
                        help="also time a first build into an empty cache (about 2 minutes)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tinytnas_optuna._hardware import profile_tflite
    from tinytnas_optuna._target import build_runner, measure_cycles, run_on_target

    first_build = None
    if args.fresh:
        with tempfile.TemporaryDirectory() as cache:
            previous = os.environ.get("XDG_CACHE_HOME")
            os.environ["XDG_CACHE_HOME"] = cache
            start = time.perf_counter()
            build_runner(CORE)
            first_build = time.perf_counter() - start
            if previous is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = previous
    build_runner(CORE)  # the cache this machine uses, built if needed
    cached = statistics.median(
        _time(lambda: build_runner(CORE)) for _ in range(MODELS))
    models, convert = _models(MODELS + 1)
    models = models[1:]
    host = _median_seconds(lambda m: profile_tflite(m, method="measured"), models)
    target = _median_seconds(lambda m: run_on_target(m, core=CORE), models)
    cycles = _median_seconds(lambda m: measure_cycles(m, core=CORE), models)

    rows = [
        ("host measurement (TFLM on this host; every candidate gets it)", host, 1.0),
        (f"target run on {CORE}: smallest arena, report, output", target, target / host),
        (f"cycle count on {CORE} (block trace)", cycles, cycles / host),
        ("cached runner build (per call)", cached, cached / host),
        ("for scale: int8 conversion of a candidate (every candidate gets it)", convert,
         convert / host),
    ]
    lines = [
        "# Cost of a Cortex-M target measurement",
        "",
        (f"Date {datetime.date.today()}, {os.cpu_count()} cores. Median of {MODELS} distinct "
         "family members (int8, float32 I/O) per row; ratios against the host measurement of "
         "the same run. Command: `python benchmarks/bench_target.py"
         + (" --fresh" if args.fresh else "") + "`."),
        "",
        "| step | median seconds | x host measurement |",
        "|---|---:|---:|",
        *(f"| {name} | {sec:.3f} | {ratio:.1f} |" for name, sec, ratio in rows),
    ]
    if first_build is not None:
        lines += ["", (f"First build of the {CORE} runner into an empty cache: "
                       f"{first_build:.0f} s (once per machine and core).")]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "target.md"
    out.write_text(text)
    print(f"Written: {out}")


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
