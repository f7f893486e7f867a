"""Accuracy suite: the README flow (``tinytnas search`` then ``tinytnas retrain``) on 14 datasets.

One command runs, at the paper's budget (20 KB RAM / 64 KB flash / 60K MAC), for each dataset in
``DATASETS`` (``har`` and ``ecg5000`` with a 10-minute search bound, twelve UCR 2018 sets through
the ``ucr:`` loader with 3 minutes):

1. ``tinytnas search --dataset NAME ... --timeout T --no-model`` (the default training per
   candidate, the search using the whole bound), in its own process, with its own SQLite
   storage;
2. ``tinytnas retrain`` of the pick, which reports on the dataset's official test split
   (``<model>/report.json``: float and int8 accuracy, RAM/flash/MACs of the exported model);
3. the majority-class rate of the test split, computed here from the labels
   (``load_dataset``), and the Bake off redux CNN and InceptionTime figures for the same split
   (``bakeoff.py``, ``results/bakeoff_redux.csv``).

Exit code 3 of either command means "no better than chance" and is a result, not an error; 0
is success; any other exit code is recorded as that set's error and the suite goes on.

Runs:

    python benchmarks/accuracy_suite.py                       # all: 56 min of search + retraining
    python benchmarks/accuracy_suite.py --dry-run             # the commands, the Bake-off figures
    python benchmarks/accuracy_suite.py --datasets ucr:Coffee --timeout-scale 0.1   # smoke run
    python benchmarks/accuracy_suite.py --label before        # results of older code, beside
    python benchmarks/accuracy_suite.py --report-only         # rewrite the report from the cache

Everything of a label goes to ``results/accuracy-runs/<label>/``: ``<slug>.json`` (the set's
record, written after each step), ``<slug>.db`` (storage), ``<slug>-model/`` (retrained model),
``<slug>-{search,retrain}.log``. Started again, the command skips the sets whose record is
complete with the same settings (``--force`` reruns them), reuses a finished search whose
retraining failed or was interrupted, and starts an interrupted search afresh. The report,
``results/accuracy.md`` and ``results/accuracy.json``, covers every label in the cache.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bakeoff  # the helper beside this file

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RUNS = RESULTS / "accuracy-runs"
BUDGET = {"ram": "20KB", "flash": "64KB", "macs": "60K"}
UCR = ("Coffee", "CBF", "Car", "ECGFiveDays", "Ham", "GunPointAgeSpan", "Chinatown", "Fish",
       "Earthquakes", "Computers", "Crop", "ElectricDevices")
#: Dataset -> search bound in seconds, in the order they run.
DATASETS: dict[str, float] = {"har": 600.0, "ecg5000": 600.0, **{f"ucr:{n}": 180.0 for n in UCR}}
DEFAULT_BOUND = 180.0
OK_EXITS = (0, 3)  # 3: the result is no better than chance (a warning, not an error)
LABEL_ORDER = ("before", "after")
#: Target checks (percentage points, or % of test accuracy).
MAJORITY_MARGIN = 5.0
QUANT_GAP_POINTS, QUANT_GAP_SERIES = 1.5, 2
CNN_MARGIN = 3.0
STRETCH = {"har": 92.0, "ecg5000": 93.5}


# ------------------------------------------------------------------------------------------
# Names, paths, commands


def slug(name: str) -> str:
    return name.replace(":", "-").lower()


def resolve(names: str | None) -> dict[str, float]:
    """``--datasets a,b``: suite names (case-insensitive; ``Coffee`` means ``ucr:Coffee``);
    any other name (``gunpoint``) runs with the UCR bound."""
    if not names:
        return dict(DATASETS)
    by_key = {k.lower(): k for k in DATASETS} | {k[4:].lower(): k for k in DATASETS
                                                 if k.startswith("ucr:")}
    chosen = {}
    for raw in filter(None, (n.strip() for n in names.split(","))):
        name = by_key.get(raw.lower(), raw)
        chosen[name] = DATASETS.get(name, DEFAULT_BOUND)
    return chosen


def tinytnas_bin() -> Path:
    """The ``tinytnas`` script of the running Python's environment (the venv's)."""
    for candidate in (Path(sys.executable).parent / "tinytnas",
                      ROOT / ".venv" / "bin" / "tinytnas"):
        if candidate.exists():
            return candidate
    found = shutil.which("tinytnas")
    if found is None:
        raise SystemExit("no `tinytnas` command: run with the venv's python (.venv/bin/python)")
    return Path(found)


def rel(path: Path) -> str:
    """A path relative to the repository when inside it (commands run from there)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def set_paths(label: str, name: str) -> dict[str, Path]:
    base = RUNS / label
    s = slug(name)
    return {"dir": base, "record": base / f"{s}.json", "db": base / f"{s}.db",
            "artifacts": base / f"{s}-artifacts", "model": base / f"{s}-model",
            "search_log": base / f"{s}-search.log", "retrain_log": base / f"{s}-retrain.log"}


def commands(name: str, bound: float, paths: dict[str, Path]) -> dict[str, list[str]]:
    """The two CLI invocations of the README flow (run from the repository root)."""
    exe = rel(tinytnas_bin())
    storage = f"sqlite:///{rel(paths['db'])}"
    study = slug(name)
    return {
        "search": [exe, "search", "--dataset", name, "--ram", BUDGET["ram"], "--flash",
                   BUDGET["flash"], "--macs", BUDGET["macs"], "--timeout", f"{bound:g}",
                   "--storage", storage, "--study", study, "--progress", "plain",
                   # The two-step flow these results were made with: the search uses the whole
                   # bound, then `tinytnas retrain` (without a bound) makes the model.
                   "--no-model"],
        "retrain": [exe, "retrain", "--storage", storage, "--study", study, "--out",
                    rel(paths["model"])],
    }


# ------------------------------------------------------------------------------------------
# Running one set


def settings_for(bound: float) -> dict[str, Any]:
    """What a cached record must match to be reused."""
    return {"timeout": bound, "budget": BUDGET}


def run_step(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run a CLI command from the repository root, output to ``log``; exit code and wall s."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    start = time.monotonic()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env,
                              check=False)
    return {"command": shlex.join(cmd), "exit": proc.returncode,
            "seconds": round(time.monotonic() - start, 1), "log": rel(log)}


def log_tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    return "\n".join("    " + ln for ln in text[-lines:])


def step_ok(step: dict[str, Any] | None) -> bool:
    return step is not None and step["exit"] in OK_EXITS


def is_done(record: dict[str, Any]) -> bool:
    return (step_ok(record.get("search")) and step_ok(record.get("retrain"))
            and record.get("report") is not None)


def data_info(name: str) -> dict[str, Any]:
    """Sizes, classes and the test split's majority-class rate, from ``load_dataset``."""
    import numpy as np

    from tinytnas_optuna.datasets import load_dataset

    try:
        ds = load_dataset(name)
    except Exception as exc:  # noqa: BLE001  (any loader failure is reported, not fatal)
        return {"error": f"{type(exc).__name__}: {exc}"}
    counts = np.bincount(np.asarray(ds.y_test, dtype=np.int64))
    return {"train": len(ds.y_train), "test": len(ds.y_test),
            "classes": len(np.unique(np.concatenate([ds.y_train, ds.y_test]))),
            "majority_rate": float(counts.max() / counts.sum())}


def read_report(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / "report.json"
    return json.loads(path.read_text()) if path.exists() else None


def environment() -> dict[str, Any]:
    """Python, TensorFlow and Optuna versions, cores, and the code's git revision."""
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, Any] = {"python": platform.python_version(),
                           "nproc": len(os.sched_getaffinity(0))}
    for key, dists in (("tensorflow", ("tensorflow-cpu", "tensorflow")), ("optuna", ("optuna",))):
        for dist in dists:
            try:
                env[key] = version(dist)
                break
            except PackageNotFoundError:
                env[key] = None
    env["git"] = git_revision()
    return env


def git_revision() -> str | None:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD")
    if not rev:
        return None
    return rev + ("+dirty" if git("status", "--porcelain", "--", "tinytnas_optuna") else "")


def run_set(name: str, bound: float, label: str, *, force: bool, suite_command: str,
            say: Any) -> dict[str, Any]:
    """Search, retrain, read the report; the record is written after each step."""
    paths = set_paths(label, name)
    paths["dir"].mkdir(parents=True, exist_ok=True)
    settings = settings_for(bound)
    cached = json.loads(paths["record"].read_text()) if paths["record"].exists() else None
    same = cached is not None and not force and cached.get("settings") == settings
    if same and is_done(cached):
        say(f"{name}: cached ({rel(paths['record'])})")
        return cached
    cmds = commands(name, bound, paths)
    record: dict[str, Any] = {"dataset": name, "label": label, "settings": settings,
                              "suite_command": suite_command, "env": environment(),
                              "search": None, "retrain": None, "report": None}
    if same and step_ok(cached.get("search")):
        say(f"{name}: search cached (exit {cached['search']['exit']}), retraining")
        record["search"] = cached["search"]
    else:
        paths["db"].unlink(missing_ok=True)  # an interrupted time-bounded search starts afresh
        shutil.rmtree(paths["artifacts"], ignore_errors=True)
        say(f"{name}: search, {bound:g} s bound (log {rel(paths['search_log'])})")
        record["search"] = run_step(cmds["search"], paths["search_log"])
        write_json(paths["record"], record)
    say(f"  search exit {record['search']['exit']}, {record['search']['seconds']:.0f} s")
    if step_ok(record["search"]):
        (paths["model"] / "report.json").unlink(missing_ok=True)
        record["retrain"] = run_step(cmds["retrain"], paths["retrain_log"])
        record["report"] = read_report(paths["model"])
        say(f"  retrain exit {record['retrain']['exit']}, {record['retrain']['seconds']:.0f} s")
    for step in ("search", "retrain"):
        if record[step] is not None and not step_ok(record[step]):
            say(f"  {step} FAILED (exit {record[step]['exit']}):\n"
                + log_tail(paths[f"{step}_log"]))
    record["data"] = data_info(name)
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    write_json(paths["record"], record)
    return record


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1))


# ------------------------------------------------------------------------------------------
# Report


def load_records() -> dict[str, dict[str, dict[str, Any]]]:
    """Every cached record: ``{label: {dataset: record}}``, labels before/after first."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(RUNS.glob("*/*.json")):
        rec = json.loads(path.read_text())
        if isinstance(rec, dict) and "dataset" in rec and "settings" in rec:
            found.setdefault(path.parent.name, {})[rec["dataset"]] = rec
    order = [lb for lb in LABEL_ORDER if lb in found] + sorted(set(found) - set(LABEL_ORDER))
    return {lb: dict(sorted(found[lb].items(), key=lambda kv: dataset_order(kv[0])))
            for lb in order}


def dataset_order(name: str) -> tuple[int, str]:
    names = list(DATASETS)
    return (names.index(name), name) if name in names else (len(names), name)


def pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def summarize_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The figures of one set, in % and points (None where missing)."""
    rep = rec.get("report") or {}
    data = rec.get("data") or {}
    pub = bakeoff.published(rec["dataset"]) or {}
    row: dict[str, Any] = {
        "dataset": rec["dataset"], "train": data.get("train"), "test": data.get("test"),
        "classes": data.get("classes"), "majority": pct(data.get("majority_rate")),
        "data_error": data.get("error"),
        "k": rep.get("k"), "c": rep.get("c"), "ram": rep.get("ram"), "flash": rep.get("flash"),
        "macs": rep.get("macs"), "evaluated_on": rep.get("evaluated_on"),
        "float": pct(rep.get("float_accuracy")), "int8": pct(rep.get("int8_accuracy")),
        "float_balanced": pct(rep.get("float_balanced_accuracy")),
        "int8_balanced": pct(rep.get("int8_balanced_accuracy")),
        "report_majority": pct(rep.get("majority_rate")),
        "val_float": pct(rep.get("val_float_accuracy")),
        "val_int8": pct(rep.get("val_int8_accuracy")),
        "quantization": rep.get("quantization"),
        "cnn": pub.get("CNN"), "inception": pub.get("InceptionTime"),
    }
    row["quant_gap"] = diff(row["int8"], row["float"])
    row["gap_cnn"] = diff(row["int8"], row["cnn"])
    row["gap_inception"] = diff(row["int8"], row["inception"])
    for step in ("search", "retrain"):
        st = rec.get(step)
        row[f"{step}_seconds"] = None if st is None else st["seconds"]
        row[f"{step}_exit"] = None if st is None else st["exit"]
    row["bound"] = rec["settings"]["timeout"]
    return row


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def fmt(value: Any, spec: str = ".1f", signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, ("+" if signed else "") + spec)
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = ("| dataset | train/test | classes | majority % | (k,c) | RAM B | flash B | MACs "
            "| float % | int8 % | int8-float | CNN % | InceptionTime % | int8-CNN "
            "| int8-InceptionTime | search s (bound) | retrain s | exit s/r |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        on = "" if r["evaluated_on"] in (None, "test") else f" ({r['evaluated_on']})"
        kc = "-" if r["k"] is None else f"({r['k']},{r['c']})"
        sizes = "-" if r["train"] is None else f"{r['train']:,}/{r['test']:,}"
        exits = f"{fmt(r['search_exit'])}/{fmt(r['retrain_exit'])}"
        lines.append(
            f"| {r['dataset']} | {sizes} | {fmt(r['classes'])} | {fmt(r['majority'])} | {kc} "
            f"| {fmt(r['ram'])} | {fmt(r['flash'])} | {fmt(r['macs'])} "
            f"| {fmt(r['float'])}{on} | {fmt(r['int8'])}{on} | {fmt(r['quant_gap'], signed=True)} "
            f"| {fmt(r['cnn'])} | {fmt(r['inception'])} | {fmt(r['gap_cnn'], signed=True)} "
            f"| {fmt(r['gap_inception'], signed=True)} | {fmt(r['search_seconds'], '.0f')} "
            f"({r['bound']:g}) "
            f"| {fmt(r['retrain_seconds'], '.0f')} | {exits} |")
    return lines


def verdict(failures: list[str], missing: list[str]) -> str:
    if failures:
        return "MISS"
    return "INCOMPLETE" if missing else "PASS"


def check_line(tag: str, what: str, figures: list[str], failures: list[str],
               missing: list[str]) -> str:
    parts = [f"- **{verdict(failures, missing)}** ({tag}) {what}"]
    if failures:
        parts.append("misses: " + "; ".join(failures))
    if missing:
        parts.append("no result: " + ", ".join(missing))
    if figures:
        parts.append("figures: " + "; ".join(figures))
    return ". ".join(parts) + "."


def check_majority(rows: list[dict[str, Any]]) -> str:
    fails, missing, figs = [], [], []
    for r in rows:
        if r["int8"] is None or r["majority"] is None:
            missing.append(r["dataset"])
            continue
        margin = r["int8"] - r["majority"]
        figs.append(f"{r['dataset']} {margin:+.1f}")
        if margin <= MAJORITY_MARGIN:
            fails.append(f"{r['dataset']} int8 {r['int8']:.1f} vs majority {r['majority']:.1f}")
    return check_line("a", f"int8 test accuracy > majority-class rate + {MAJORITY_MARGIN:g} "
                      "points on every set (int8 - majority, points)", figs, fails, missing)


def check_quantization(rows: list[dict[str, Any]]) -> str:
    fails, missing, figs = [], [], []
    for r in rows:
        if r["quant_gap"] is None or not r["test"]:
            missing.append(r["dataset"])
            continue
        allowed = max(QUANT_GAP_POINTS, 100.0 * QUANT_GAP_SERIES / r["test"])
        figs.append(f"{r['dataset']} {r['quant_gap']:+.1f} (allowed {allowed:.1f})")
        if abs(r["quant_gap"]) > allowed:
            fails.append(f"{r['dataset']} int8 {r['int8']:.1f} vs float {r['float']:.1f}")
    return check_line("b", f"int8 within max({QUANT_GAP_POINTS:g} points, {QUANT_GAP_SERIES} "
                      "test series) of float on every set (int8 - float, points)",
                      figs, fails, missing)


def ucr_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The UCR archive sets: those the Bake-off has figures for (ecg5000 and the ucr: sets)."""
    return [r for r in rows if r["cnn"] is not None]


def check_cnn(rows: list[dict[str, Any]]) -> str:
    fails, missing, figs = [], [], []
    for r in ucr_rows(rows):
        if r["gap_cnn"] is None:
            missing.append(r["dataset"])
            continue
        figs.append(f"{r['dataset']} {r['gap_cnn']:+.1f}")
        if r["gap_cnn"] < -CNN_MARGIN:
            fails.append(f"{r['dataset']} int8 {r['int8']:.1f} vs CNN {r['cnn']:.1f}")
    return check_line("c", f"int8 >= Bake-off CNN - {CNN_MARGIN:g} points on every UCR set "
                      "(int8 - CNN, points)", figs, fails, missing)


def check_inception(rows: list[dict[str, Any]]) -> str:
    gaps = [r["gap_inception"] for r in ucr_rows(rows) if r["gap_inception"] is not None]
    missing = [r["dataset"] for r in ucr_rows(rows) if r["gap_inception"] is None]
    if not gaps:
        return "- **INFO** (d) mean gap to InceptionTime over the UCR sets: no result."
    worst = min((r for r in ucr_rows(rows) if r["gap_inception"] is not None),
                key=lambda r: r["gap_inception"])
    return (f"- **INFO** (d) mean gap to InceptionTime over {len(gaps)} UCR sets (int8 - "
            f"InceptionTime): {statistics.mean(gaps):+.1f} points (median "
            f"{statistics.median(gaps):+.1f}, worst {worst['dataset']} "
            f"{worst['gap_inception']:+.1f})" + (f"; no result: {', '.join(missing)}"
                                                 if missing else "") + ".")


def check_stretch(rows: list[dict[str, Any]]) -> list[str]:
    by_name = {r["dataset"]: r for r in rows}
    lines = []
    for name, target in STRETCH.items():
        r = by_name.get(name)
        if r is None:
            continue
        got = r["int8"]
        fails = [] if got is None or got >= target else [f"int8 {got:.1f}"]
        lines.append(check_line("e", f"stretch: {name} int8 >= {target:g} %",
                                [] if got is None else [f"int8 {got:.1f}"], fails,
                                [name] if got is None else []))
    return lines


def checks(rows: list[dict[str, Any]]) -> list[str]:
    return [check_majority(rows), check_quantization(rows), check_cnn(rows),
            check_inception(rows), *check_stretch(rows)]


def side_by_side(labelled: dict[str, list[dict[str, Any]]]) -> list[str]:
    """int8 test accuracy per dataset, one column per label (when there are several)."""
    labels = list(labelled)
    names = sorted({r["dataset"] for rows in labelled.values() for r in rows}, key=dataset_order)
    by = {lb: {r["dataset"]: r for r in rows} for lb, rows in labelled.items()}
    lines = ["## int8 test accuracy (%) by label", "",
             "| dataset | " + " | ".join(labels) + " | change |",
             "|---|" + "---|" * (len(labels) + 1)]
    for name in names:
        vals = [by[lb].get(name, {}).get("int8") for lb in labels]
        lines.append(f"| {name} | " + " | ".join(fmt(v) for v in vals)
                     + f" | {fmt(diff(vals[-1], vals[0]), signed=True)} |")
    return lines + [""]


def notes_for(rows: list[dict[str, Any]]) -> list[str]:
    """Data errors, reports not on the test split, and the report's own majority rate when it
    disagrees with the one computed here."""
    out = []
    for r in rows:
        if r["data_error"]:
            out.append(f"- {r['dataset']}: data not loaded ({r['data_error']})")
        if r["evaluated_on"] not in (None, "test"):
            out.append(f"- {r['dataset']}: the report is on `{r['evaluated_on']}`, not the test "
                       "split")
        if r["report_majority"] is not None and r["majority"] is not None \
                and abs(r["report_majority"] - r["majority"]) > 0.05:
            out.append(f"- {r['dataset']}: report.json majority_rate {r['report_majority']:.1f} "
                       f"vs {r['majority']:.1f} computed here")
    return out


def label_section(label: str, records: dict[str, dict[str, Any]],
                  rows: list[dict[str, Any]]) -> list[str]:
    envs = sorted({json.dumps(r.get("env", {}), sort_keys=True) for r in records.values()})
    cmds = sorted({r.get("suite_command", "?") for r in records.values()})
    lines = [f"## {label}", ""]
    lines += ["- Suite command(s): " + ", ".join(f"`{c}`" for c in cmds)]
    for env in map(json.loads, envs):
        lines.append(f"- Run with: git {env.get('git')}, Python {env.get('python')}, TensorFlow "
                     f"{env.get('tensorflow')}, Optuna {env.get('optuna')}, nproc "
                     f"{env.get('nproc')}")
    finished = sorted(r["finished"] for r in records.values() if r.get("finished"))
    if finished:
        lines.append(f"- Sets finished between {finished[0]} and {finished[-1]}")
    lines += ["", *table(rows), "", "Target checks:", "", *checks(rows), ""]
    notes = notes_for(rows)
    return lines + (["Notes:", "", *notes, ""] if notes else [])


def write_report(command: str) -> Path:
    """``results/accuracy.md`` and ``results/accuracy.json`` from every cached record."""
    records = load_records()
    env = environment()
    labelled = {lb: [summarize_record(r) for r in recs.values()] for lb, recs in records.items()}
    lines = [
        "# Accuracy suite: the README flow on 14 datasets",
        "",
        (f"- Written {datetime.date.today().isoformat()} by `{command}`; machine: nproc "
         f"{env['nproc']}, Python {env['python']}, TensorFlow {env['tensorflow']}, Optuna "
         f"{env['optuna']}, git {env['git']}."),
        ("- Full run: `python benchmarks/accuracy_suite.py` (search bounds: har and ecg5000 "
         "600 s, the ucr: sets 180 s; default epochs). Budget RAM 20 KB / flash 64 KB / 60K "
         "MAC."),
        ("- Per set: `tinytnas search` then `tinytnas retrain` (commands in accuracy.json). "
         "Accuracies on the official test split, %; gaps in points (int8 minus the other). "
         "Majority % = share of the test split's most frequent class (from the labels). "
         "CNN and InceptionTime: Bake off redux (Middlehurst, Schäfer, Bagnall, DMKD 2024), "
         "official split (resample 0), `results/bakeoff_redux.csv`. RAM/flash/MACs: the exported "
         "int8 model. Exit codes search/retrain: 0 ok, 3 no better than chance, other = "
         "error. Checks (c) and (d) cover the UCR sets: every set with a Bake-off figure "
         "(ecg5000 and the ucr: sets)."),
        "",
    ]
    if len(labelled) > 1:
        lines += side_by_side(labelled)
    for label, rows in labelled.items():
        lines += label_section(label, records[label], rows)
    if not labelled:
        lines += ["No results yet (run without --report-only).", ""]
    md = RESULTS / "accuracy.md"
    md.write_text("\n".join(lines))
    write_json(RESULTS / "accuracy.json", {
        "command": command, "date": datetime.date.today().isoformat(), "environment": env,
        "labels": {lb: {"records": records[lb], "rows": labelled[lb]} for lb in labelled}})
    return md


# ------------------------------------------------------------------------------------------
# Command line


def dry_run(chosen: dict[str, float], label: str, force: bool) -> None:
    """Print what would run (and what is cached), with the Bake-off figures."""
    for name, bound in chosen.items():
        paths = set_paths(label, name)
        cached = json.loads(paths["record"].read_text()) if paths["record"].exists() else None
        state = ("cached, skipped" if cached and not force and is_done(cached)
                 and cached.get("settings") == settings_for(bound) else "runs")
        pub = bakeoff.published(name)
        figs = ("no Bake-off figure" if pub is None
                else f"Bake-off CNN {pub['CNN']:.2f} %, "
                     f"InceptionTime {pub['InceptionTime']:.2f} %")
        print(f"# {name}: {bound:g} s bound, {figs}; {state}")
        for cmd in commands(name, bound, paths).values():
            print("  " + shlex.join(cmd))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", metavar="A,B,C",
                        help="a subset, comma-separated (default: all 14, in order)")
    parser.add_argument("--timeout-scale", type=float, default=1.0, metavar="F",
                        help="multiply the search bounds (e.g. 0.05 for a smoke run)")
    parser.add_argument("--label", default="after",
                        help="results stored under this label (before/after; default after)")
    parser.add_argument("--force", action="store_true", help="rerun sets already done")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="print the commands and the Bake-off figures; run nothing")
    mode.add_argument("--report-only", action="store_true",
                      help="rewrite accuracy.md/json from the cached records; run nothing")
    args = parser.parse_args(argv)
    if args.timeout_scale <= 0:
        parser.error("--timeout-scale must be > 0")
    if not args.label or "/" in args.label or args.label.startswith("."):
        parser.error("--label must be a plain name")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python benchmarks/accuracy_suite.py " + shlex.join(
        sys.argv[1:] if argv is None else argv)
    chosen = {n: b * args.timeout_scale for n, b in resolve(args.datasets).items()}
    if args.dry_run:
        dry_run(chosen, args.label, args.force)
        return 0
    if not args.report_only:
        started = time.monotonic()

        def say(msg: str) -> None:
            print(f"[{time.monotonic() - started:7.1f} s] {msg}", flush=True)

        for name, bound in chosen.items():
            run_set(name, bound, args.label, force=args.force, suite_command=command.strip(),
                    say=say)
    md = write_report(command.strip())
    print(md.read_text())
    print(f"wrote {rel(md)} and {rel(RESULTS / 'accuracy.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
