"""Searching the input too: the best model over sampling rates and windows against today's
full-rate search, at equal time, at the paper's budget and at a tight one.

Each run is ``tinytnas search`` as a user runs it (a fresh folder and study, default jobs,
final model included) on a built-in dataset; the input-space runs add ``--rates``/``--windows``
(HAR, recorded at 50 Hz in 2.56 s windows) or ``--decimate`` (ECG5000). Read from the run's
``report.json``: int8 test accuracy (TFLite Micro, official test split), RAM (TFLM arena), flash,
MACs and the input; then ``tinytnas profile --target cortex-m4 --board nano33ble`` of the
exported model gives its latency on the Nano 33 BLE's core (emulated in QEMU; cycles estimated,
see docs/cortex-m.md).

    python benchmarks/input_space.py                          # HAR and ECG5000 (~70 min)
    python benchmarks/input_space.py --datasets ecg5000 --timeout 3m

Writes ``results/input_space.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TINYTNAS = Path(sys.executable).with_name("tinytnas")

BUDGETS = {"paper": ("20KB", "64KB", "60K"), "tight": ("8KB", "16KB", "10K")}
#: The input settings searched per dataset (the full-rate run uses none).
SPACES = {
    "har": ["--rates", "50,25,12.5", "--rate-hz", "50", "--windows", "2.56s,1.92s,1.28s"],
    "ecg5000": ["--decimate", "1,2,4"],
}
TIMEOUTS = {"har": "10m", "ecg5000": "5m"}


def run(dataset: str, budget: str, mode: str, timeout: str, seed: int) -> dict:
    """One ``tinytnas search`` in a fresh folder; what its model scores and costs."""
    ram, flash, macs = BUDGETS[budget]
    args = [str(TINYTNAS), "search", "--dataset", dataset, "--ram", ram, "--flash", flash,
            "--macs", macs, "--timeout", timeout, "--storage", "sqlite:///s.db", "--study", "s",
            "--out", "best", "--seed", str(seed), "--progress", "none"]
    if mode == "input space":
        args += SPACES[dataset]
    with tempfile.TemporaryDirectory(prefix="tinytnas-input-") as tmp:
        start = time.monotonic()
        proc = subprocess.run(args, cwd=tmp, capture_output=True, text=True, check=False)
        out = {"dataset": dataset, "budget": budget, "mode": mode, "seed": seed,
               "exit": proc.returncode, "wall_seconds": round(time.monotonic() - start, 1),
               "command": " ".join(args[1:]), "stderr": proc.stderr.splitlines()[-5:]}
        out["settings"] = _settings_reached(Path(tmp) / "s.db")
        report_path = Path(tmp) / "best" / "report.json"
        if not report_path.exists():
            return out
        report = json.loads(report_path.read_text())
        out.update({key: report.get(key) for key in (
            "k", "c", "int8_accuracy", "float_accuracy", "ram", "flash", "macs", "input")})
        prof = subprocess.run([str(TINYTNAS), "profile", str(Path(tmp) / "best" / "model.tflite"),
                               "--target", "cortex-m4", "--board", "nano33ble", "--json"],
                              capture_output=True, text=True, check=False)
        if prof.returncode == 0:
            figures = json.loads(prof.stdout)
            out.update(latency_ms=figures.get("latency_ms"), cycles=figures.get("cycles"),
                       profile_macs=figures.get("macs"), profile_ram=figures.get("ram"))
        else:
            out["profile_error"] = prof.stderr.strip().splitlines()[-1:]
    return out


def _settings_reached(db: Path) -> dict[str, dict]:
    """Per input setting of a finished search: its trained candidates and best value."""
    import optuna

    if not db.exists():
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    reached: dict[str, dict] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        key = f"{t.params.get('decimate', 1)},{t.params.get('window', '-')}"
        entry = reached.setdefault(key, {"trained": 0, "best": 0.0})
        entry["trained"] += 1
        entry["best"] = max(entry["best"], round(float(t.value), 4))
    return reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["har", "ecg5000"])
    parser.add_argument("--budgets", nargs="+", default=list(BUDGETS))
    parser.add_argument("--timeout", help="one bound for every run (default: per dataset)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    runs = []
    for dataset in args.datasets:
        for budget in args.budgets:
            for mode in ("full rate", "input space"):
                result = run(dataset, budget, mode, args.timeout or TIMEOUTS[dataset], args.seed)
                print(json.dumps({k: v for k, v in result.items() if k != "stderr"}), flush=True)
                runs.append(result)

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.2f}"

    lines = [
        "# Searching the input too, against the full-rate search at equal time", "",
        (f"- {datetime.date.today().isoformat()}, `python benchmarks/input_space.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}`; {platform.machine()}, Python "
        f"{platform.python_version()}, seed {args.seed}, the machine otherwise idle."),
        "- Budgets: paper 20 KB RAM / 64 KB flash / 60K MAC; tight 8 KB / 16 KB / 10K MAC. "
        "Input spaces: " + "; ".join(f"{d}: `{' '.join(v)}`" for d, v in SPACES.items()) + ".",
        ("- int8 test accuracy scored in TFLite Micro on the official test split; RAM = TFLM "
        "arena (host allocator), flash = .tflite bytes, MACs counted on the converted graph "
        "(report.json); latency on the Nano 33 BLE (Cortex-M4 at 64 MHz, emulated in QEMU, "
        "cycles estimated: docs/cortex-m.md)."),
        "",
        ("| dataset | budget | search | exit | input (decimate, window -> length) | (k,c) "
        "| int8 test % | RAM B | flash B | MACs | Nano 33 BLE ms | wall s "
        "| settings reached: trained, best validation |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        shown = "-"
        if r.get("input"):
            i = r["input"]
            shown = f"{i['decimate']}, {i['window']} -> {i['length']}"
        lines.append(
            f"| {r['dataset']} | {r['budget']} | {r['mode']} | {r['exit']} | {shown} "
            f"| ({r.get('k')},{r.get('c')}) | {pct(r.get('int8_accuracy'))} "
            f"| {num(r.get('ram'))} | {num(r.get('flash'))} | {num(r.get('macs'))} "
            f"| {num(r.get('latency_ms'))} | {r['wall_seconds']:.0f} | "
            + "; ".join(f"({key}): {v['trained']}, {pct(v['best'])}"
                        for key, v in r.get("settings", {}).items()) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "input_space.md").write_text("\n".join(lines) + "\n")
    (args.out / "input_space.json").write_text(json.dumps(runs, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
