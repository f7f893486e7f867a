"""Cycles per MAC across the TinyTNAS family on each emulated core, and latency on the boards.

Run: ``python benchmarks/cycles_per_mac.py`` (needs the Arm toolchain, QEMU and
``TINYTNAS_TFLM_SRC``, as the target tests do; about 10 minutes). For the input shapes of HAR
(128 x 9, 6 classes), GunPoint (150 x 1, 2) and ECG5000 (140 x 1, 5), every ``c`` in 0..4 and
``k`` in 2..64 up to 3M MACs, the int8 model (float I/O, non-zero biases) is counted on the
Cortex-M4, M7 and M33 (:func:`tinytnas_optuna.measure_cycles`: QEMU block trace and timing
model, all-zero input). Writes ``benchmarks/results/cycles_per_mac.md`` (cycles per MAC by MAC
range, the fewest per core behind ``CYCLES_PER_MAC_FLOOR``, the networks of about 53K MACs on the
Nano 33 BLE) and ``cycles_per_mac.json`` (every network).
"""

from __future__ import annotations

import datetime
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = {"har": ((128, 9), 6), "gunpoint": ((150, 1), 2), "ecg5000": ((140, 1), 5)}
WIDTHS = (2, 4, 8, 12, 16, 24, 32, 48, 64)
CORES = ("cortex-m4", "cortex-m7", "cortex-m33")
MAX_MACS = 3_000_000
RANGES = [(0, 10e3), (10e3, 30e3), (30e3, 100e3), (100e3, 300e3), (300e3, 1e6), (1e6, 3e6)]


def measure() -> list[dict]:
    """Every network's MACs, flash and cycles per core."""
    from tinytnas_optuna import estimate_profile, measure_cycles
    from tinytnas_optuna._hardware._convert import _convert, _nonzero_biases
    from tinytnas_optuna._quiet import FD2_LOCK
    from tinytnas_optuna._space import architecture, build_model

    rows = []
    for name, (shape, classes) in SHAPES.items():
        for c in range(5):
            for k in WIDTHS:
                macs = estimate_profile(architecture(k, c, shape, classes)).macs
                if macs > MAX_MACS:
                    continue
                model = build_model(k, c, shape, classes)
                with FD2_LOCK, _nonzero_biases(model):
                    flatbuffer = _convert(model, None, False, True, samples=16)
                row = {"data": name, "k": k, "c": c, "macs": macs, "flash": len(flatbuffer)}
                for core in CORES:
                    row[core] = measure_cycles(flatbuffer, core=core)[1]
                rows.append(row)
                print(json.dumps(row), flush=True)
    return rows


def report(rows: list[dict]) -> str:
    """The Markdown results."""
    from tinytnas_optuna import BOARDS
    from tinytnas_optuna._boards import CYCLES_PER_MAC_FLOOR

    lines = [
        "# Cycles per MAC across the family", "",
        (f"`python benchmarks/cycles_per_mac.py`, {datetime.date.today()}: {len(rows)} networks "
         "(HAR, GunPoint, ECG5000 input shapes; c 0..4, k 2..64 up to 3M MACs), int8 with float "
         "I/O, cycles of one inference from QEMU's block trace and the Cortex-M timing model "
         "(estimates, zero wait states; docs/figures.md)."), "",
        "Cycles per MAC, min-max (median), by MAC range:", "",
        "| MACs | networks | " + " | ".join(CORES) + " |",
        "|---|---:|" + "---|" * len(CORES),
    ]
    for lo, hi in RANGES:
        group = [r for r in rows if lo <= r["macs"] < hi]
        if not group:
            continue
        cells = []
        for core in CORES:
            per_mac = [r[core] / r["macs"] for r in group]
            cells.append(f"{min(per_mac):.1f}-{max(per_mac):.1f} "
                         f"({statistics.median(per_mac):.1f})")
        lines.append(f"| {lo / 1e3:g}K-{hi / 1e3:g}K | {len(group)} | " + " | ".join(cells) + " |")
    lines += ["", "Fewest cycles per MAC (the floor `CYCLES_PER_MAC_FLOOR` stays below):", ""]
    for core in CORES:
        best = min(rows, key=lambda r: r[core] / r["macs"])
        lines.append(f"- {core}: {best[core] / best['macs']:.2f} ({best['data']} k={best['k']} "
                     f"c={best['c']}, {best['macs']:,} MACs); floor {CYCLES_PER_MAC_FLOOR[core]}")
    smallest = {core: min(r[core] for r in rows) for core in CORES}
    lines += ["", "Fewest cycles of any network (the fixed cost of one inference): "
              + ", ".join(f"{core} {v:,}" for core, v in smallest.items()) + ".", "",
              ("Networks of 40K-65K MACs on the Arduino Nano 33 BLE (64 MHz Cortex-M4; the paper "
               "reports 31 ms for its 53.1K-MAC UCI-HAR model):"), "",
              "| data | k | c | MACs | cycles | ms on nano33ble |",
              "|---|---:|---:|---:|---:|---:|"]
    nano = BOARDS["nano33ble"]
    for r in sorted((r for r in rows if 40e3 <= r["macs"] <= 65e3), key=lambda r: r["macs"]):
        lines.append(f"| {r['data']} | {r['k']} | {r['c']} | {r['macs']:,} | "
                     f"{r['cortex-m4']:,} | {nano.latency_ms(r['cortex-m4']):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    rows = measure()
    results = ROOT / "benchmarks" / "results"
    (results / "cycles_per_mac.json").write_text(json.dumps(rows, indent=1))
    (results / "cycles_per_mac.md").write_text(report(rows))
    print(report(rows))


if __name__ == "__main__":
    main()
