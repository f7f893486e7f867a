"""Trainings per minute: a search on every core (the default) against one process (``jobs=1``).

Each run is a search of ``--seconds`` (no final model) on a real dataset at the paper's budget,
from a fresh study; the modes alternate so that both see the same machine. Counted from the
study afterwards:

- candidates fully trained: COMPLETE trials that trained every fold (not reused, not cut);
- fold trainings: the search's trainings of one network on one fold at its fidelity (a
  candidate's 3 folds count 3; a fold cut by the bound counts its share of steps), the machine's
  throughput whatever the fold bound stops.

Run: ``python benchmarks/bench_parallel.py [--datasets har gunpoint] [--seconds 120]
[--runs 3] [--out benchmarks/results]``; writes ``<out>/parallel.md``. Median of the runs,
ratios against ``jobs=1`` of the same runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def run(dataset: str, jobs: int, seconds: float, seed: int) -> dict[str, float]:
    """One search of ``seconds`` with ``jobs`` processes; what it trained."""
    import optuna

    import tinytnas_optuna as tt
    from tinytnas_optuna._trial import PARAMS, REUSED_FROM
    from tinytnas_optuna.datasets import load_dataset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ds = load_dataset(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.monotonic()
        objective = tt.TinyTNASObjective(
            (ds.x_train, ds.y_train), groups=ds.groups_train, seed=seed, timeout=seconds,
            reserve_final=False, clock_start=start,
            budget=tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K"))
        study = optuna.create_study(direction="maximize", sampler=tt.TinyTNASSampler(seed=seed),
                                    pruner=optuna.pruners.NopPruner(),
                                    storage=f"sqlite:///{tmp}/s.db")
        tt.optimize(study, objective, jobs=jobs, timeout=seconds)
        elapsed = time.monotonic() - start
        full = folds = 0.0
        for t in study.trials:
            attrs = t.user_attrs
            if not attrs.get("steps") or REUSED_FROM in attrs:
                continue
            planned = attrs[PARAMS]["steps"]
            folds += attrs["steps"] / planned
            full += (t.state == optuna.trial.TrialState.COMPLETE
                     and not attrs.get("interrupted") and "folds_trained" not in attrs)
    return {"full": full * 60 / elapsed, "folds": folds * 60 / elapsed, "seconds": elapsed}


def run_fresh(dataset: str, jobs: int, seconds: float, seed: int) -> dict[str, float]:
    """:func:`run` in a new Python process, as a user's search runs.

    A process that already ran TensorFlow keeps its thread pools (two threads here): its
    ``jobs=2`` search would then share the cores with its worker, which a fresh ``tinytnas
    search`` never does. Each run starts clean.
    """
    out = subprocess.run([sys.executable, __file__, "--one", dataset, str(jobs), str(seconds),
                          str(seed)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--one"]:
        dataset, jobs, seconds, seed = argv[1], int(argv[2]), float(argv[3]), int(argv[4])
        print(json.dumps(run(dataset, jobs, seconds, seed)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["har", "gunpoint"])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    from tinytnas_optuna._parallel import usable_cores

    cores = usable_cores()
    rows = []
    for dataset in args.datasets:
        results: dict[int, list[dict[str, float]]] = {1: [], cores: []}
        for seed in range(args.runs):
            for jobs in (cores, 1) if seed % 2 else (1, cores):
                result = run_fresh(dataset, jobs, args.seconds, seed)
                results[jobs].append(result)
                print(f"{dataset} jobs={jobs} seed={seed}: {result['full']:.1f} candidates, "
                      f"{result['folds']:.1f} fold trainings per minute", flush=True)
        one = {key: statistics.median(r[key] for r in results[1]) for key in ("full", "folds")}
        many = {key: statistics.median(r[key] for r in results[cores]) for key in ("full",
                                                                                  "folds")}
        rows.append((dataset, one, many))
    lines = [
        (f"# Parallel trainings ({datetime.date.today().isoformat()}, {cores} cores, Python "
        f"{platform.python_version()})"),
        "",
        (f"Command: `python benchmarks/bench_parallel.py --datasets {' '.join(args.datasets)} "
        f"--seconds {args.seconds:g} --runs {args.runs}`"),
        "",
        (f"A search of {args.seconds:g} s (paper's budget, no final model) from a fresh SQLite "
        f"study in a fresh process, `jobs=1` against the default `jobs={cores}`, alternating, "
        f"{args.runs} runs each; medians per minute of wall time."),
        "",
        ("| dataset | candidates fully trained, jobs=1 | default | ratio | fold trainings, "
        "jobs=1 | default | ratio |"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, one, many in rows:
        lines.append(
            f"| {dataset} | {one['full']:.1f} | {many['full']:.1f} | "
            f"{many['full'] / max(one['full'], 1e-9):.2f}x | {one['folds']:.1f} | "
            f"{many['folds']:.1f} | {many['folds'] / max(one['folds'], 1e-9):.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel.md").write_text(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
