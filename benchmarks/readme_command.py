"""The README's main command, as a user runs it, with several seeds: what the model scores.

Each run is the quick start's ``tinytnas search --dataset har --ram 20KB --flash 64KB --macs 60K
--timeout 10m --storage sqlite:///tinytnas.db --study har --out best/`` in a fresh folder (a new
study), with ``--seed S`` added; the machine is otherwise idle. Read from ``best/report.json``:
the int8 model's accuracy on the official test split scored in TFLite Micro, its float accuracy,
the pick and its figures; and the wall time of the command.

    python benchmarks/readme_command.py                        # HAR, seeds 0 1 2 (~32 min)
    python benchmarks/readme_command.py --dataset ecg5000 --seeds 0 1

Writes ``results/readme_command_<dataset>.md`` (+ ``.json``): each run, the median and the spread
(max - min) of the int8 test accuracy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINYTNAS = Path(sys.executable).with_name("tinytnas")


def command(dataset: str, timeout: str, seed: int) -> list[str]:
    """The README's command on ``dataset`` with a seed (relative paths: run in a fresh folder)."""
    return [str(TINYTNAS), "search", "--dataset", dataset, "--ram", "20KB", "--flash", "64KB",
            "--macs", "60K", "--timeout", timeout, "--storage", "sqlite:///tinytnas.db",
            "--study", dataset, "--out", "best/", "--seed", str(seed)]


def run(dataset: str, timeout: str, seed: int) -> dict:
    """One run in a temporary folder; the report's figures and the command's wall time."""
    with tempfile.TemporaryDirectory(prefix="tinytnas-readme-") as tmp:
        start = time.monotonic()
        proc = subprocess.run(command(dataset, timeout, seed), cwd=tmp, capture_output=True,
                              text=True, check=False)
        wall = time.monotonic() - start
        report_path = Path(tmp) / "best" / "report.json"
        out = {"seed": seed, "exit": proc.returncode, "wall_seconds": round(wall, 1),
               "tail": proc.stdout.splitlines()[-12:] + proc.stderr.splitlines()[-5:]}
        if report_path.exists():
            report = json.loads(report_path.read_text())
            out.update({key: report.get(key) for key in (
                "k", "c", "int8_accuracy", "float_accuracy", "evaluated_on", "ram", "flash",
                "macs", "steps", "restarts_run", "model_source", "seconds")})
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="har")
    parser.add_argument("--timeout", default="10m")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if shutil.which(str(TINYTNAS)) is None:
        raise SystemExit(f"{TINYTNAS} not found: install the package (pip install -e .)")
    runs = []
    for seed in args.seeds:
        result = run(args.dataset, args.timeout, seed)
        print(json.dumps({k: v for k, v in result.items() if k != "tail"}), flush=True)
        runs.append(result)
    accs = [r["int8_accuracy"] for r in runs if r.get("int8_accuracy") is not None]
    shown = " ".join(command(args.dataset, args.timeout, 0)[1:-2]).replace(str(TINYTNAS), "")
    lines = [
        f"# The README command on {args.dataset}, {len(runs)} seeds",
        "",
        (f"- {datetime.date.today().isoformat()}, `python benchmarks/readme_command.py "
         f"--dataset {args.dataset} --timeout {args.timeout} --seeds "
        f"{' '.join(map(str, args.seeds))}`; {platform.machine()}, nproc "
        f"{len(os.sched_getaffinity(0))}, Python {platform.python_version()}; the "
        "machine otherwise idle."),
        f"- Each run: `tinytnas {shown} --seed S` in a fresh folder (new study, default jobs).",
        ("- Accuracies on the official test split, %: int8 scored in TFLite Micro (the "
         "deliverable) and the float model. RAM: tensor arena measured in TFLM's allocator; "
         "flash: the .tflite's bytes; MACs counted on the converted graph (report.json)."),
        "",
        ("| seed | exit | (k,c) | int8 test % | float test % | RAM B | flash B | MACs | "
         "final steps x restarts | model | wall s |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        def pct(v: float | None) -> str:
            return "-" if v is None else f"{100 * v:.1f}"
        lines.append(
            f"| {r['seed']} | {r['exit']} | ({r.get('k')},{r.get('c')}) "
            f"| {pct(r.get('int8_accuracy'))} | {pct(r.get('float_accuracy'))} "
            f"| {r.get('ram', '-'):,} | {r.get('flash', '-'):,} | {r.get('macs', '-'):,} "
            f"| {r.get('steps')} x {r.get('restarts_run')} | {r.get('model_source')} "
            f"| {r['wall_seconds']:.0f} |")
    if accs:
        lines += ["", (f"int8 test accuracy: median {100 * statistics.median(accs):.1f} %, spread "
                      f"(max - min) {100 * (max(accs) - min(accs)):.1f} points over {len(accs)} "
                      "runs.")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"readme_command_{args.dataset}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"readme_command_{args.dataset}.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
