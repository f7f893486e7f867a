"""The default TinyTNASSampler against the paper's greedy and Optuna's samplers, at equal time.

Every run is what a user gets from ``tinytnas search --timeout T``: a fresh process and SQLite
storage, the same :class:`TinyTNASObjective` (default training, objective seed 0, so a network is
trained identically in every search), the sampler under test, and then the final model
(``objective.retrain_best``: restarts, int8 conversion, TFLite Micro) inside the same bound ``T``.
The figure that matters is the int8 model's accuracy on the official test split, scored in TFLM.

Runs:

    python benchmarks/compare_samplers.py                 # the full run (see FULL; ~65 min)
    python benchmarks/compare_samplers.py --quick         # smoke run (~1 min), to a temp dir

The exhaustive reference (``--exhaustive DATASET ...``; in the full run ECG5000 and Ham) trains
every candidate of the family that fits the budget once at the search's fidelity, without a time
bound: the family's best value, so that each sampler's pick has a regret (points of validation
value below the best) and a rank among all the feasible networks.

GP and NSGA-II can be added with ``--samplers`` (GP needs PyTorch).

Each run is cached as JSON under ``--work-dir`` (default ``<out>/runs-<label>``): an interrupted
comparison started again with the same command continues. ``--parallel 2`` runs two searches at
a time, each pinned to its own core (every sampler gets the same one core).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("tinytnas", "tinytnas-paper", "tpe", "random", "gp", "nsga2")
SAMPLER_NAMES = {"tinytnas": "TinyTNAS", "tinytnas-paper": "TinyTNAS-paper", "random": "Random",
                 "tpe": "TPE", "gp": "GP", "nsga2": "NSGA-II"}
BUDGET = {"ram": "20KB", "flash": "64KB", "macs": "60K"}
#: The objective's seed (validation split or folds, each network's initial weights) is the same
#: in every search; the seeds of the comparison are the samplers' seeds.
OBJECTIVE_SEED = 0

#: ECG5000 (500 series: a hold-out), Ham (109: 3-fold CV, noisy) and ElectricDevices (8,926, the
#: dataset on which the paper's greedy stopped early off the best region), 3 sampler seeds, 4
#: samplers, two runs at a time on one core each. Bounds (final model included): 150 s on the
#: small sets; 300 s on ElectricDevices, whose final training alone (3 x 15,000 steps) needs
#: about 2 minutes on one core. About (24 x 150 + 12 x 300) / 2 s = 60 min plus start-up. GP and
#: NSGA-II are left out of the full run (time): the previous comparison had them well behind
#: TPE and Random.
FULL = {"datasets": ["ecg5000", "ucr:Ham", "ucr:ElectricDevices"], "seeds": 3,
        "time_bound": {"ecg5000": 150.0, "ucr:Ham": 150.0, "ucr:ElectricDevices": 300.0},
        "samplers": ["tinytnas", "tinytnas-paper", "tpe", "random"], "steps": None,
        "parallel": 2, "exhaustive": ["ecg5000", "ucr:Ham"]}
QUICK = {"datasets": ["gunpoint"], "seeds": 1, "time_bound": 30.0,
         "samplers": ["tinytnas", "tinytnas-paper", "tpe", "random"], "steps": 100,
         "parallel": 2, "exhaustive": []}
#: The exhaustive reference's runs, keyed like the samplers' (one seed: it samples nothing).
EXHAUSTIVE = "exhaustive"


# ------------------------------------------------------------------------------------------
# Data and samplers


def load(name: str) -> Any:
    """A built-in dataset, or ``ucr:<Name>`` (``load_dataset``).

    Args:
        name: ``har``, ``ecg5000``, ``gunpoint``, ``basicmotions`` or ``ucr:<UCR 2018 name>``.

    Returns:
        An object with ``x_train, y_train, x_test, y_test, groups_train``.
    """
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset(name)
    return SimpleNamespace(x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test,
                           y_test=ds.y_test, groups_train=getattr(ds, "groups_train", None))


def make_sampler(name: str, seed: int) -> Any:
    """Each sampler with its defaults and a seed. Constraints need no argument in Optuna 5:
    TPE, GP and NSGA-II read the ``trial.set_constraint`` values the objective records."""
    import optuna

    from tinytnas_optuna import TinyTNASSampler

    factories = {
        "tinytnas": lambda: TinyTNASSampler(seed=seed),
        "tinytnas-paper": lambda: TinyTNASSampler(seed=seed, refine=False),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
    }
    if name not in factories:
        raise ValueError(f"unknown sampler {name!r}; choose from {SAMPLERS}")
    return factories[name]()


def trial_records(study: Any, t0: datetime.datetime) -> list[dict[str, Any]]:
    """One dict per trial: candidate, phase, outcome, figures, seconds from the start."""
    from tinytnas_optuna._trial import trial_record

    rows = []
    for t in study.get_trials(deepcopy=False):
        rec = trial_record(t)
        if rec.candidate is None or t.datetime_start is None:
            continue
        end = t.datetime_complete or t.datetime_start
        rows.append({
            "number": t.number, "k": rec.k, "c": rec.c, "phase": rec.phase,
            "fidelity": rec.fidelity, "state": rec.state, "value": rec.value,
            "feasible": rec.feasible, "ram": rec.ram, "flash": rec.flash,
            "macs": rec.macs, "train_seconds": rec.seconds,
            "start": (t.datetime_start - t0).total_seconds(), "end": (end - t0).total_seconds(),
        })
    return rows


# ------------------------------------------------------------------------------------------
# One run (a fresh process)


def ended_before_bound(study: Any) -> bool:
    """Whether the search stopped by itself: no trial was cut or refused by the time bound."""
    from tinytnas_optuna._trial import INTERRUPTED

    return not any(t.user_attrs.get(INTERRUPTED) for t in study.get_trials(deepcopy=False))


def feasible_by_macs(budget: Any, input_shape: tuple[int, ...], num_classes: int) -> list[Any]:
    """Every ``(k, c)`` of the family whose MACs (exact, analytic) are within the budget; the
    objective then measures RAM and flash and prunes what does not fit, untrained."""
    from tinytnas_optuna._hardware._estimate import estimate_profile
    from tinytnas_optuna._space import C_RANGE, K_RANGE, architecture

    out = []
    for c in range(C_RANGE[0], C_RANGE[1] + 1):
        for k in range(K_RANGE[0], K_RANGE[1] + 1):  # MACs grow with k: stop at the first over
            if estimate_profile(architecture(k, c, input_shape, num_classes)).macs > budget.macs:
                break
            out.append((k, c))
    return out


def job_exhaustive(spec: dict[str, Any]) -> None:
    """Train every feasible candidate once at the search's fidelity (no time bound, no model)."""
    import logging

    import optuna

    from tinytnas_optuna import HardwareBudget, TinyTNASObjective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    ds = load(spec["dataset"])
    budget = HardwareBudget(**BUDGET)
    start = time.monotonic()
    objective = TinyTNASObjective((ds.x_train, ds.y_train), groups=ds.groups_train, budget=budget,
                                  steps=spec["steps"], seed=OBJECTIVE_SEED)
    path = Path(spec["storage"])
    if path.exists():
        path.unlink()
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{path}",
                                pruner=optuna.pruners.NopPruner(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    data = objective.data
    todo = feasible_by_macs(budget, data.input_shape, data.num_classes)
    for k, c in todo:
        study.enqueue_trial({"k": k, "c": c})
    t0 = datetime.datetime.now()
    study.optimize(objective, n_trials=len(todo))
    out = {"dataset": spec["dataset"], "sampler": EXHAUSTIVE, "seed": 0,
           "settings": spec["settings"], "search_seconds": round(time.monotonic() - start, 2),
           "train_samples": len(ds.y_train), "validation": data.validation,
           "fidelity": objective.fidelity(0), "trials": trial_records(study, t0)}
    Path(spec["out"]).write_text(json.dumps(out, indent=1))


def job_run(spec: dict[str, Any]) -> None:
    """Search with one sampler and seed, then the final model, all within the time bound."""
    import logging

    import optuna

    from tinytnas_optuna import HardwareBudget, TinyTNASObjective, summarize

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)
    ds = load(spec["dataset"])
    bound = spec["time_bound"]
    start = time.monotonic()
    objective = TinyTNASObjective(
        (ds.x_train, ds.y_train), groups=ds.groups_train, budget=HardwareBudget(**BUDGET),
        steps=spec["steps"], seed=OBJECTIVE_SEED, timeout=bound)
    path = Path(spec["storage"])
    if path.exists():
        path.unlink()  # an unfinished earlier attempt: a time-bounded run starts afresh
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{path}",
                                pruner=optuna.pruners.NopPruner(),
                                sampler=make_sampler(spec["sampler"], spec["seed"]))
    t0 = datetime.datetime.now()
    study.optimize(objective, timeout=bound)
    search_seconds = time.monotonic() - start
    ended_by_itself = ended_before_bound(study)
    summary = summarize(study)
    best = summary.best
    final = None
    if best is not None:
        with tempfile.TemporaryDirectory() as tmp:
            report = objective.retrain_best(study, out_dir=tmp, test=(ds.x_test, ds.y_test))
        final = {"k": report.k, "c": report.c, "test_int8": report.int8_accuracy,
                 "test_float": report.float_accuracy, "ram": report.ram, "flash": report.flash,
                 "macs": report.macs, "seconds": report.seconds, "steps": report.steps,
                 "restarts": report.restarts_run}
    out = {
        "dataset": spec["dataset"], "sampler": spec["sampler"], "seed": spec["seed"],
        "settings": spec["settings"], "search_seconds": round(search_seconds, 2),
        "total_seconds": round(time.monotonic() - start, 2),
        "ended_by_itself": ended_by_itself,
        "pick": None if best is None else {"k": best.k, "c": best.c, "value": best.value,
                                           "runs": best.runs},
        "final": final, "phases": summary.phases,
        "train_samples": len(ds.y_train), "validation": objective.data.validation,
        "trials": trial_records(study, t0),
    }
    Path(spec["out"]).write_text(json.dumps(out, indent=1))


# ------------------------------------------------------------------------------------------
# Orchestration


def bound_of(cfg: dict[str, Any], name: str) -> float:
    """The time bound of a dataset's runs (one number for all, or a dict by dataset)."""
    bound = cfg["time_bound"]
    return float(bound[name] if isinstance(bound, dict) else bound)


def slug(name: str) -> str:
    return name.replace(":", "-").lower()


def run_job(spec: dict[str, Any], log: Path, core: int | None) -> float:
    """Run one search in a fresh Python process (optionally pinned to one core)."""
    start = time.monotonic()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    pin = None if core is None else (lambda: os.sched_setaffinity(0, {core}))
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--job",
                               json.dumps(spec)], stdout=fh, stderr=subprocess.STDOUT, env=env,
                              check=False, preexec_fn=pin)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"run failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.monotonic() - start


def anytime(trials: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """``(seconds, best feasible validation value so far)`` at each improvement."""
    points, best = [], -math.inf
    for r in sorted(trials, key=lambda r: r["end"]):
        if r["state"] in ("trained", "pruned") and r["value"] is not None and r["value"] > best:
            best = r["value"]
            points.append((r["end"], best))
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: gunpoint, 1 seed, 20 s, 100 steps per candidate; "
                             "writes to a temp dir unless --out is given")
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS)
    parser.add_argument("--seeds", type=int, help="sampler seeds 0..N-1")
    parser.add_argument("--time-bound", type=float, help="seconds per run, final model included")
    parser.add_argument("--steps", type=int, help="steps per candidate (default: the library's)")
    parser.add_argument("--exhaustive", nargs="*", metavar="DATASET",
                        help="datasets of the exhaustive reference (every feasible candidate "
                             "trained once; default: ecg5000 ucr:Ham in the full run)")
    parser.add_argument("--parallel", type=int,
                        help="runs at a time, each pinned to one core (default 2; 1: one run at "
                             "a time on all cores)")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--work-dir", type=Path, help="storages, logs, per-run JSON "
                                                      "(default <out>/runs-<label>)")
    parser.add_argument("--label", help="name of the result files (default full, or quick)")
    parser.add_argument("--note", default="", help="a line added under the title")
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        spec = json.loads(args.job)
        (job_exhaustive if spec["sampler"] == EXHAUSTIVE else job_run)(spec)
        return 0

    cfg = dict(QUICK if args.quick else FULL)
    for key in ("datasets", "samplers", "seeds", "time_bound", "steps", "parallel", "exhaustive"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    label = args.label or ("quick" if args.quick else "full")
    out = args.out or (Path(tempfile.mkdtemp(prefix="tinytnas-bench-")) if args.quick
                       else ROOT / "benchmarks" / "results")
    work = args.work_dir or out / f"runs-{label}"
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/compare_samplers.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    cores = sorted(os.sched_getaffinity(0))
    parallel = max(1, min(cfg["parallel"], len(cores)))
    settings = {"objective_seed": OBJECTIVE_SEED, "budget": BUDGET, "steps": cfg["steps"],
                "pinned": parallel > 1}
    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {msg}", flush=True)

    specs = []
    for name in cfg["exhaustive"]:  # first: the longest runs, and the report needs them
        base = work / f"{slug(name)}_{EXHAUSTIVE}"
        specs.append({"dataset": name, "sampler": EXHAUSTIVE, "seed": 0, "steps": cfg["steps"],
                      "time_bound": None, "settings": settings,
                      "storage": str(base.with_suffix(".db")),
                      "out": str(base.with_suffix(".json")), "log": str(base.with_suffix(".log"))})
    for seed in range(cfg["seeds"]):
        for name in cfg["datasets"]:
            for sampler in cfg["samplers"]:
                base = work / f"{slug(name)}_{sampler}_s{seed}"
                specs.append({"dataset": name, "sampler": sampler, "seed": seed,
                              "steps": cfg["steps"], "time_bound": bound_of(cfg, name),
                              "settings": {**settings, "time_bound": bound_of(cfg, name)},
                              "storage": str(base.with_suffix(".db")),
                              "out": str(base.with_suffix(".json")),
                              "log": str(base.with_suffix(".log"))})
    todo = [s for s in specs if not (Path(s["out"]).exists() and json.loads(
        Path(s["out"]).read_text())["settings"] == s["settings"])]
    say(f"{len(specs) - len(todo)} run(s) cached, {len(todo)} to do, {parallel} at a time")
    free = list(cores[:parallel])

    def execute(spec: dict[str, Any]) -> None:
        core = free.pop() if parallel > 1 else None
        try:
            bound = "no bound" if spec["time_bound"] is None else f"{spec['time_bound']:g} s"
            say(f"{spec['dataset']} {spec['sampler']} seed {spec['seed']}: {bound}"
                + (f" on core {core}" if core is not None else ""))
            secs = run_job(spec, Path(spec["log"]), core)
            data = json.loads(Path(spec["out"]).read_text())
            data["job_seconds"] = round(secs, 1)
            Path(spec["out"]).write_text(json.dumps(data, indent=1))
        finally:
            if core is not None:
                free.append(core)

    with ThreadPoolExecutor(parallel) as pool:
        for future in [pool.submit(execute, s) for s in todo]:
            future.result()
    runs = {(s["dataset"], s["sampler"], s["seed"]): json.loads(Path(s["out"]).read_text())
            for s in specs}
    report = build_report(cfg, runs, label=label, command=command, note=args.note,
                          parallel=parallel)
    (out / f"samplers_{label}.json").write_text(json.dumps(report["data"], indent=1))
    (out / f"samplers_{label}.md").write_text(report["markdown"])
    plots = write_plots(report["data"], out, label)
    say(f"wrote {out / f'samplers_{label}.md'}, {out / f'samplers_{label}.json'}, "
        f"{len(plots)} plot(s); this invocation {time.monotonic() - started:.0f} s")
    print(report["markdown"])
    return 0


# ------------------------------------------------------------------------------------------
# Report


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _span(values: list[float | None], fmt: Any = _pct) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"


def _best_by(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """The best value an anytime curve had reached at ``seconds`` (None before its first)."""
    return max((v for t, v in curve if t <= seconds), default=None)


def build_report(cfg: dict[str, Any], runs: dict[tuple[str, str, int], dict[str, Any]], *,
                 label: str, command: str, note: str, parallel: int) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in ("optuna", "tensorflow-cpu", "torch"):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    compute = sum(r.get("job_seconds", 0.0) for r in runs.values())
    data: dict[str, Any] = {"label": label, "command": command, "config": cfg,
                            "date": datetime.date.today().isoformat(),
                            "cores": len(os.sched_getaffinity(0)), "parallel": parallel,
                            "cpu": platform.processor() or platform.machine(),
                            "python": platform.python_version(), "versions": versions,
                            "compute_seconds": round(compute), "datasets": {}}
    samplers = cfg["samplers"]
    lines = [f"# Samplers compared at equal time, final model included ({label})", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
        f"- Command: `{command}`",
        f"- Date {data['date']}, {data['cores']} cores ({data['cpu']}), Python "
        f"{data['python']}, " + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; {compute / 60:.0f} min of compute (sum of the runs), "
        + (f"{parallel} runs at a time, each pinned to one core."
           if parallel > 1 else "one run at a time on all cores."),
        ("- Each run = `tinytnas search --timeout T` in Python (T per dataset below): a fresh "
         "process and SQLite storage, the same `TinyTNASObjective` (budget RAM 20 KB / flash "
         "64 KB / 60K MAC, "
         + (f"{cfg['steps']} steps" if cfg["steps"] else "the default 800 steps")
         + f" per candidate, objective seed {OBJECTIVE_SEED}, default validation), "
         "`optimize(timeout=)`, then `objective.retrain_best(...)` (restarts, int8 conversion, "
         "TFLite Micro) inside the same bound; sampler seeds "
         f"0..{cfg['seeds'] - 1}, Optuna's defaults for its samplers."),
        ("- *test int8*: the final model's int8 accuracy on the official test split, run in "
         "TFLite Micro (the deliverable). *val*: the search's estimate of its pick (mean of its "
         "trainings for TinyTNAS after re-ranking). Accuracies in %, medians over seeds "
         "[min-max]."),
        "",
    ]
    verdicts: list[str] = []
    for name in cfg["datasets"]:
        per_sampler: dict[str, list[dict[str, Any]]] = {}
        first = next(r for (n, _, _), r in runs.items() if n == name)
        reference = Reference.of(runs.get((name, EXHAUSTIVE, 0)))
        lines += [f"## {name}", "",
                  (f"{first['train_samples']} training series, validation "
                   f"{first['validation']}; T = {bound_of(cfg, name):g} s."),
                  "", *reference.describe([r for (n, smp, _), r in runs.items()
                                           if n == name and smp != EXHAUSTIVE]),
                  ("| sampler | test int8 | test float | val | pick(s) (k,c) | regret (rank) "
                   "| trained | search ended (s) | final model (s) | total (s) | ended by itself "
                   "| trials by phase |"),
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for sampler in samplers:
            per = [runs[(name, sampler, s)] for s in range(cfg["seeds"])
                   if (name, sampler, s) in runs]
            stats = []
            for run in per:
                finals = run["final"] or {}
                stats.append({
                    "seed": run["seed"], "test_int8": finals.get("test_int8"),
                    "test_float": finals.get("test_float"),
                    "val": run["pick"]["value"] if run["pick"] else None,
                    "pick": (run["pick"]["k"], run["pick"]["c"]) if run["pick"] else None,
                    "regret": reference.regret(run),
                    "trained": sum(r["state"] == "trained" for r in run["trials"]),
                    "search_seconds": run["search_seconds"],
                    "final_seconds": finals.get("seconds"),
                    "total_seconds": run["total_seconds"],
                    "ended_by_itself": run["ended_by_itself"], "phases": run["phases"],
                    "curve": anytime(run["trials"]),
                    "infeasible_trained": sum(r["feasible"] is False and r["train_seconds"] > 0
                                              for r in run["trials"]),
                })
            per_sampler[sampler] = stats
            phases = {}
            for st in stats:
                for ph, p in st["phases"].items():
                    phases.setdefault(ph, []).append(p["trials"])
            picks = " ".join(sorted({f"({k},{c})"
                                     for k, c in (s["pick"] for s in stats if s["pick"])}))
            lines.append(
                f"| {SAMPLER_NAMES[sampler]} | {_span([s['test_int8'] for s in stats])} "
                f"| {_span([s['test_float'] for s in stats])} "
                f"| {_span([s['val'] for s in stats])} "
                f"| {picks or '-'} "
                f"| {reference.cell([s['regret'] for s in stats])} "
                f"| {_span([s['trained'] for s in stats], lambda v: f'{v:g}')} "
                f"| {_span([s['search_seconds'] for s in stats], lambda v: f'{v:.0f}')} "
                f"| {_span([s['final_seconds'] for s in stats], lambda v: f'{v:.0f}')} "
                f"| {_span([s['total_seconds'] for s in stats], lambda v: f'{v:.0f}')} "
                f"| {sum(s['ended_by_itself'] for s in stats)}/{len(stats)} "
                f"| {', '.join(f'{ph} {statistics.median(v):g}' for ph, v in phases.items())} |")
        lines += ["", *_anytime_table(per_sampler, bound_of(cfg, name)), "",
                  f"![anytime {name}](samplers_{label}_anytime_{slug(name)}.png)", ""]
        verdicts += _verdicts(name, per_sampler)
        data["datasets"][name] = {"samplers": per_sampler}
    lines += [("## Verdict: the default against TPE (target: at least TPE - 0.5) and the "
               "paper's greedy"), "", *verdicts, ""]
    return {"markdown": "\n".join(lines), "data": data}


class Reference:
    """The exhaustive run of one dataset: every feasible candidate's value at the search's
    fidelity, and what a sampler's pick loses against the family's best."""

    def __init__(self, run: dict[str, Any] | None) -> None:
        self.run = run
        self.values: dict[tuple[int, int], float] = {}
        if run is not None:
            for r in run["trials"]:
                if r["state"] == "trained" and r["value"] is not None:
                    self.values[(r["k"], r["c"])] = r["value"]
        self.best = max(self.values.values(), default=None)

    @classmethod
    def of(cls, run: dict[str, Any] | None) -> Reference:
        return cls(run)

    def differences(self, runs: list[dict[str, Any]]) -> list[float]:
        """Points between a candidate's value in a search and in the reference (same network,
        seed and fidelity: what one training's outcome varies by across processes)."""
        out = []
        for run in runs:
            for r in run["trials"]:
                value = self.values.get((r["k"], r["c"]))
                if (value is not None and r["state"] == "trained" and r["value"] is not None
                        and r["fidelity"] == self.run["fidelity"]):
                    out.append(abs(100 * (r["value"] - value)))
        return out

    def describe(self, runs: list[dict[str, Any]]) -> list[str]:
        """Lines under the dataset's title (none without an exhaustive run)."""
        if self.run is None or self.best is None:
            return []
        diffs = self.differences(runs)
        spread = "" if not diffs else (
            f" The same candidate trained at that fidelity in a search's process and in the "
            f"reference's differs by {statistics.median(diffs):.1f} points (median; max "
            f"{max(diffs):.1f}, {len(diffs)} pairs): TensorFlow on CPU is not bit-reproducible "
            "across processes, so a regret below that is within one training's noise.")
        trials = self.run["trials"]
        feasible = [r for r in trials if r["state"] != "infeasible"]
        cut = sum(r["state"] == "pruned" for r in feasible)
        top = sorted(self.values.items(), key=lambda kv: -kv[1])[:5]
        return [(f"Exhaustive reference: {len(trials)} candidates within the MACs, "
                 f"{len(feasible)} fit RAM and flash; each trained once at the search's "
                 f"fidelity ({self.run['fidelity']}) in {self.run['search_seconds'] / 60:.0f} min "
                 f"on one core; {cut} stopped early because their remaining folds could not lift "
                 "them to the best so far (their value is below it). The family's best: "
                 + ", ".join(f"({k},{c}) {_pct(v)}" for (k, c), v in top) + ". *regret*: "
                 "points of validation value below the family's best of the pick's training at "
                 "that fidelity; *rank*: its place among the feasible candidates." + spread), ""]

    def regret(self, run: dict[str, Any]) -> tuple[float, int] | None:
        """``(points below the best, rank)`` of a run's pick, or None without a reference."""
        if self.best is None or not run.get("pick"):
            return None
        cand = (run["pick"]["k"], run["pick"]["c"])
        value = self.values.get(cand)
        if value is None:  # not fully trained in the reference: the run's own training of it
            value = next((r["value"] for r in run["trials"]
                          if (r["k"], r["c"]) == cand and r["state"] == "trained"
                          and r["fidelity"] == self.run["fidelity"]), None)
        if value is None:
            return None
        rank = 1 + sum(v > value for v in self.values.values())
        return round(100 * (self.best - value), 1), rank

    def cell(self, regrets: list[tuple[float, int] | None]) -> str:
        known = [r for r in regrets if r is not None]
        if not known:
            return "-"
        return (f"{statistics.median(r[0] for r in known):.1f} "
                f"({', '.join(str(r[1]) for r in known)})")


def _anytime_table(per_sampler: dict[str, list[dict[str, Any]]], bound: float) -> list[str]:
    """Median best feasible validation value found by fixed times (the search part only)."""
    marks = [t for t in (10, 20, 30, 45, 60, 90, 120, 150, 240, 300, 450) if t < bound]
    rows = [("Anytime: median (over seeds) best single-training validation value (%) found by "
             "each time (s) of the run; - = nothing feasible trained yet."), "",
            "| sampler | " + " | ".join(f"{t:g} s" for t in marks) + " |",
            "|---|" + "---|" * len(marks)]
    for sampler, per in per_sampler.items():
        cells = []
        for t in marks:
            at = [_best_by(p["curve"], t) for p in per]
            cells.append(_pct(_med([v for v in at if v is not None]))
                         if sum(v is not None for v in at) * 2 > len(at) else "-")
        rows.append(f"| {SAMPLER_NAMES[sampler]} | " + " | ".join(cells) + " |")
    return rows


def _verdicts(name: str, per_sampler: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per comparison of the default's median int8 test accuracy."""
    if "tinytnas" not in per_sampler:
        return []
    ours = _med([s["test_int8"] for s in per_sampler["tinytnas"]])
    out = []
    for other, margin in (("tpe", 0.005), ("tinytnas-paper", 0.0), ("random", 0.0)):
        if other not in per_sampler or ours is None:
            continue
        theirs = _med([s["test_int8"] for s in per_sampler[other]])
        if theirs is None:
            continue
        ok = ours >= theirs - margin
        out.append(f"- **{name}** vs {SAMPLER_NAMES[other]}: {_pct(ours)} vs {_pct(theirs)} "
                   f"({'met' if ok else 'MISSED'}"
                   + (", target at least theirs - 0.5" if margin else "") + ")")
    return out


def write_plots(data: dict[str, Any], out: Path, label: str) -> list[Path]:
    """One PNG per dataset: best validation value against elapsed time, per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {"tinytnas": "C3", "tinytnas-paper": "C5", "random": "C0", "tpe": "C1",
              "gp": "C2", "nsga2": "C4"}
    paths = []
    for name, ds in data["datasets"].items():
        bound = bound_of(data["config"], name)
        grid = np.linspace(0, bound, 400)
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        for sampler, per in ds["samplers"].items():
            curves = []
            for p in per:
                ys = np.full(grid.shape, np.nan)
                for t, v in p["curve"]:
                    ys[grid >= t] = v * 100
                curves.append(ys)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(np.array(curves), axis=0)
            ax.step(grid, med, where="post", color=colors[sampler],
                    label=f"{SAMPLER_NAMES[sampler]} (median of {len(per)})")
            for p in per:  # where each run's search ended and its final model began
                ax.axvline(p["search_seconds"], color=colors[sampler], lw=0.5, ls=":")
        ax.set_xlim(0, bound)
        ax.set_xlabel("seconds of the run (dotted: search ended, final model training)")
        ax.set_ylabel("best validation value (%)")
        ax.set_title(f"{name}: anytime best within {bound:g} s")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"samplers_{label}_anytime_{slug(name)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


if __name__ == "__main__":
    sys.exit(main())
