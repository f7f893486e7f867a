"""Micro-benchmarks: one measured profile, what running TFLM and the converter in child
processes costs per candidate, one analytic estimate, one training epoch against plain
``fit(batch_size=32)``, and each sampler's overhead per trial with 1,000 finished trials in the
storage.

Run: ``python benchmarks/micro.py [--trials 1000] [--repeats 5] [--out benchmarks/results]``.
Writes ``<out>/micro.md``. Profiling and training reuse ``bench_profile.py`` and
``bench_training.py`` (their functions, not their ``main``, so their own result files are left
alone).
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

SAMPLERS = ("tinytnas", "random", "tpe", "gp", "nsga2")


def bench_profiles() -> list[tuple[str, float]]:
    import bench_profile

    measured, first = bench_profile.bench_measured()
    analytic = bench_profile.bench_analytic()
    return [(("measured profile (convert to int8 + TFLM), uncached, median of "
             f"{bench_profile.RUNS}"), measured),
            ("first measured profile in a process (incl. TF/TFLM start-up)", first),
            ("analytic estimate, median", analytic)]


class _InProcess:
    """Stands in for a child of ``_native`` and runs its handlers in this process (the
    baseline of :func:`bench_isolation`: the same code without the process boundary)."""

    def __init__(self, kind: str) -> None:
        from tinytnas_optuna._hardware._native import _HANDLERS, handler

        self.handlers = {method: handler(kind, method) for method in _HANDLERS[kind]}

    def call(self, method: str, *args: object, timeout: float, what: str = "") -> object:
        return self.handlers[method](*args)


def bench_isolation(runs: int = 9) -> list[tuple[str, float]]:
    """Per candidate: a measured profile with TFLM and the converter in child processes against
    the same code in this process, alternating on the same fresh architectures (median)."""
    import bench_profile

    from tinytnas_optuna._hardware import _native
    from tinytnas_optuna._hardware._profile import _measure_architecture
    from tinytnas_optuna._quiet import import_keras_quietly

    import_keras_quietly()
    archs = bench_profile._fresh_architectures(2 * runs + 1)
    children = (_native.TFLM, _native.CONVERTER)
    _measure_architecture(archs[-1], False)  # children started and warm
    local = (_InProcess("tflm"), _InProcess("convert"))
    _native.TFLM, _native.CONVERTER = local
    _measure_architecture(archs[-1], False)  # this process's TensorFlow warm too
    contained, in_process = [], []
    try:
        for i, arch in enumerate(archs[:-1]):
            use_children = i % 2 == 0
            _native.TFLM, _native.CONVERTER = children if use_children else local
            start = time.perf_counter()
            _measure_architecture(arch, False)
            (contained if use_children else in_process).append(time.perf_counter() - start)
    finally:
        _native.TFLM, _native.CONVERTER = children
    inside, outside = statistics.median(in_process), statistics.median(contained)
    return [(("measured profile, TFLM and converter in this process (baseline), median of "
              f"{len(in_process)}"), inside),
            (("measured profile, TFLM and converter in child processes (default), median of "
              f"{len(contained)}"), outside),
            ("cost of the process boundary per candidate", outside - inside)]


def bench_epoch(k: int = 8, c: int = 3) -> list[tuple[str, float]]:
    """One HAR epoch: the search's recipe against the original's ``fit(batch_size=32)``."""
    import bench_training

    from tinytnas_optuna._training import search_schedule
    from tinytnas_optuna._validation import prepare_data
    from tinytnas_optuna.datasets import load_dataset

    har = load_dataset("har")
    # One subject fold as a hold-out (the search cross-validates over three).
    data = prepare_data((har.x_train, har.y_train), groups=har.groups_train, seed=0).splits()[0]
    batch = search_schedule(len(data.y_train)).batch_size
    base = bench_training.run("baseline", k, c, data, 2, 0)  # 2 epochs
    ours = bench_training.run("ours", k, c, data, 1, 0)  # 3 epochs
    step = lambda p: statistics.median(b[0] - a[0] for a, b in itertools.pairwise(p))
    return [
        ((f"HAR epoch, plain `fit(batch_size=32)`, k={k} c={c} (steady; {len(data.y_train)} "
         "windows, validation scored each epoch)"), step(base)),
        (f"HAR epoch, search recipe (batch {batch}, 8 steps/execution), same network", step(ours)),
        ("first epoch incl. tracing, plain fit", base[0][0]),
        ("first epoch incl. tracing, search recipe", ours[0][0]),
    ]


def synthetic_trials(n: int, seed: int = 0) -> list:
    """``n`` finished trials as TinyTNASObjective records them on HAR: random ``(k, c)``,
    analytic figures, constraints, feasible ones COMPLETE with a smooth synthetic accuracy,
    infeasible ones PRUNED."""
    import numpy as np
    import optuna
    from optuna.distributions import IntDistribution
    from optuna.trial import TrialState

    from tinytnas_optuna import HardwareBudget
    from tinytnas_optuna._hardware import estimate_profile
    from tinytnas_optuna._space import architecture

    budget = HardwareBudget(ram="20KB", flash="64KB", macs="60K")
    rng = np.random.default_rng(seed)
    dists = {"k": IntDistribution(2, 1024, log=True), "c": IntDistribution(0, 4)}
    trials = []
    for _ in range(n):
        k = round(math.exp(rng.uniform(math.log(2), math.log(1024))))
        c = int(rng.integers(0, 5))
        arch = architecture(k, c, (128, 6), 6)
        prof = estimate_profile(arch)
        excess = budget.excess(prof)
        feasible = budget.fits(prof)
        attrs = {"ram": prof.ram, "flash": prof.flash, "macs": prof.macs, "feasible": feasible,
                 "figures_method": "analytic", "widths": list(arch.widths) + [arch.dense],
                 "epochs_trained": 5 if feasible else 0}
        acc = 0.6 + 0.3 * (1 - math.exp(-k / 16)) + 0.02 * c + float(rng.normal(0, 0.01))
        trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE if feasible else TrialState.PRUNED,
            value=acc if feasible else None, params={"k": k, "c": c}, distributions=dists,
            user_attrs=attrs, constraints=excess,
            intermediate_values={e: acc - 0.01 * (4 - e) for e in range(5)} if feasible else {},
        ))
    return trials


def bench_sampler_overhead(n_trials: int, repeats: int, storage_kind: str,
                           samplers: tuple[str, ...] = SAMPLERS) -> list[tuple[str, float, float]]:
    """Median seconds of ask (+ suggest k, c) and of tell for one new trial, per sampler."""
    import optuna

    sys.path.insert(0, str(HERE))
    from compare_samplers import make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = synthetic_trials(n_trials)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in samplers:
            storage = None if storage_kind == "in-memory" else f"sqlite:///{tmp}/{name}.db"
            study = optuna.create_study(direction="maximize", storage=storage,
                                        sampler=make_sampler(name, 0))
            study.add_trials(trials)
            asks, tells = [], []
            for _ in range(repeats if name != "gp" else max(2, repeats // 2)):
                start = time.perf_counter()
                trial = study.ask()
                k = trial.suggest_int("k", 2, 1024, log=True)
                c = trial.suggest_int("c", 0, 4)
                asks.append(time.perf_counter() - start)
                for key in ("ram", "flash", "macs"):  # as the objective records them
                    trial.set_constraint(key, -0.5)
                start = time.perf_counter()
                study.tell(trial, 0.8 + 0.001 * math.log(k) + 0.001 * c)
                tells.append(time.perf_counter() - start)
            rows.append((name, statistics.median(asks), statistics.median(tells)))
            print(f"  {storage_kind} {name}: ask {rows[-1][1] * 1000:.1f} ms, "
                  f"tell {rows[-1][2] * 1000:.1f} ms", flush=True)
    return rows


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="finished trials in the storage")
    parser.add_argument("--repeats", type=int, default=5, help="new trials timed per sampler")
    parser.add_argument("--skip-training", action="store_true", help="no HAR epoch timing")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    print("profiling ...", flush=True)
    profiles = bench_profiles() + bench_isolation()
    epochs = [] if args.skip_training else (print("training ...", flush=True) or bench_epoch())
    print(f"sampler overhead with {args.trials} finished trials ...", flush=True)
    overhead = {kind: bench_sampler_overhead(args.trials, args.repeats, kind)
                for kind in ("in-memory", "sqlite")}

    lines = [
        (f"# Micro-benchmarks ({datetime.date.today().isoformat()}, "
        f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()})"),
        "",
        "Command: `python benchmarks/micro.py" + ("" if argv is None and len(sys.argv) == 1
                                                   else " " + " ".join(argv or sys.argv[1:]))
        + "`",
        "",
        "| what | time |",
        "|---|---|",
    ]
    lines += [f"| {name} | {_fmt(sec)} |" for name, sec in profiles + epochs]
    if epochs:
        lines.append(f"| speed-up per steady epoch | {epochs[0][1] / epochs[1][1]:.2f}x |")
    lines += [
        "",
        f"## Sampler overhead per trial, {args.trials} finished trials in the storage",
        "",
        ("A synthetic study: random (k, c) recorded as `TinyTNASObjective` records them on HAR "
        "(analytic figures, constraints; feasible ones COMPLETE with a smooth synthetic accuracy, "
        "infeasible ones PRUNED). Timed: `study.ask()` + `suggest_int('k')` + `suggest_int('c')`"
        f" (the sampler's proposal, storage reads included) and `study.tell()` (`after_trial`); "
        f"median of {args.repeats} new trials ({max(2, args.repeats // 2)} for GP)."),
        "",
        "| sampler | ask, in-memory | tell, in-memory | ask, SQLite | tell, SQLite |",
        "|---|---|---|---|---|",
    ]
    mem = {n: (a, t) for n, a, t in overhead["in-memory"]}
    sql = {n: (a, t) for n, a, t in overhead["sqlite"]}
    names = {"tinytnas": "TinyTNAS", "random": "Random", "tpe": "TPE", "gp": "GP",
             "nsga2": "NSGA-II"}
    for n in SAMPLERS:
        lines.append(f"| {names[n]} | {_fmt(mem[n][0])} | {_fmt(mem[n][1])} | {_fmt(sql[n][0])} "
                     f"| {_fmt(sql[n][1])} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "micro.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
