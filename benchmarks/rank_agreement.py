"""Does a short search training rank networks as their final training does?

For each dataset, a fixed set of feasible networks of the family (paper budget) is trained
twice: as the search trains a candidate (``TinyTNASObjective`` with ``steps`` S, its value the
best validation point, cross-validated on small sets) for several S, and as the final model
(``final_schedule`` on the whole training split, one seed, the converged end of the schedule
scored on the official test split, which nothing is selected on). The Spearman correlation of
the two rankings, and the test accuracy lost by picking the search's best instead of the truly
best network, say which S is enough.

    python benchmarks/rank_agreement.py            # ~15 min on 2 cores
    python benchmarks/rank_agreement.py --quick    # one small set, two step counts

Results: ``benchmarks/results/rank_agreement.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DATASETS = ["ucr:Ham", "ecg5000", "ucr:Computers"]
STEPS = [400, 800, 1600]
MAX_ARCHS = 7
# HAR's full final schedule (14,670 steps) x 7 networks is too long for this benchmark.
FINAL_STEPS_CAP = 5000


def _ranks(values: list[float]) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    # Average ranks of ties.
    vals = np.asarray(values)
    for v in np.unique(vals):
        ranks[vals == v] = ranks[vals == v].mean()
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation (ties averaged)."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def feasible_archs(ds: Any, budget: Any) -> list[tuple[int, int]]:
    """Up to :data:`MAX_ARCHS` networks that fit the budget, spread evenly over their MACs.

    Feasibility by the analytic estimate (MACs exact, RAM and flash within 1 %).
    """
    from tinytnas_optuna._hardware import estimate_profile
    from tinytnas_optuna._space import architecture

    fits = []
    seen = set()
    for k in range(2, 65):
        for c in range(5):
            arch = architecture(k, c, ds.input_shape, ds.num_classes)
            key = (arch.widths, arch.dense)
            profile = estimate_profile(arch)
            if key not in seen and budget.fits(profile):
                seen.add(key)
                fits.append((profile.macs, k, c))
    fits.sort()
    pick = np.unique(np.linspace(0, len(fits) - 1, min(MAX_ARCHS, len(fits))).round().astype(int))
    return [(fits[i][1], fits[i][2]) for i in pick]


def search_value(ds: Any, budget: Any, k: int, c: int, steps: int) -> tuple[float, float]:
    """The objective's value of ``(k, c)`` at ``steps`` steps, and its training seconds."""
    import optuna

    import tinytnas_optuna as tt

    objective = tt.TinyTNASObjective((ds.x_train, ds.y_train), groups=ds.groups_train,
                                     budget=budget, steps=steps, seed=0)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.enqueue_trial({"k": k, "c": c})
    study.optimize(objective, n_trials=1)
    from tinytnas_optuna._trial import trial_record

    rec = trial_record(study.trials[0])
    return float(rec.value), rec.seconds  # type: ignore[arg-type]


def final_test(ds: Any, k: int, c: int) -> tuple[float, float]:
    """Test accuracy of ``(k, c)`` after the final schedule on the whole training split."""
    import keras

    from tinytnas_optuna._space import build_model
    from tinytnas_optuna._training import final_schedule, train
    from tinytnas_optuna._validation import prepare_data, score

    data = prepare_data((ds.x_train, ds.y_train), (ds.x_test, ds.y_test))
    schedule = final_schedule(len(data.y_train))
    if schedule.steps > FINAL_STEPS_CAP:
        schedule = final_schedule(len(data.y_train), steps=FINAL_STEPS_CAP)
    keras.utils.set_random_seed(0)
    model = build_model(k, c, data.input_shape, data.num_classes)
    result = train(model, data, schedule, seed=0)
    # The end of the schedule, not the best point: nothing is chosen on test.
    return score(data.y_val, result.predictions[-1], "accuracy", data.num_classes), result.seconds


def run(datasets: list[str], steps: list[int]) -> dict[str, Any]:
    """Measure every dataset; returns the JSON-able results."""
    import optuna

    import tinytnas_optuna as tt
    from tinytnas_optuna.datasets import load_dataset

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = tt.HardwareBudget(ram="20KB", flash="64KB", macs="60K")
    out: dict[str, Any] = {}
    for name in datasets:
        ds = load_dataset(name)
        archs = feasible_archs(ds, budget)
        rows = []
        for k, c in archs:
            final, final_s = final_test(ds, k, c)
            row: dict[str, Any] = {"k": k, "c": c, "final_test": final, "final_seconds": final_s}
            for s in steps:
                row[f"val_{s}"], row[f"seconds_{s}"] = search_value(ds, budget, k, c, s)
            rows.append(row)
            print(name, row, flush=True)
        finals = [r["final_test"] for r in rows]
        summary = {}
        for s in steps:
            vals = [r[f"val_{s}"] for r in rows]
            pick = max(range(len(rows)), key=lambda i: (vals[i], -i))
            summary[s] = {"spearman": spearman(vals, finals),
                          "regret_points": 100 * (max(finals) - finals[pick]),
                          "pick": [rows[pick]["k"], rows[pick]["c"]],
                          "median_seconds": float(np.median([r[f"seconds_{s}"] for r in rows]))}
        out[name] = {"n_train": len(ds.y_train), "rows": rows, "summary": summary}
    return out


def write(results: dict[str, Any], steps: list[int], command: str) -> Path:
    """Write the markdown table and the JSON."""
    import tensorflow as tf

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "rank_agreement.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Rank agreement: search training vs final training",
        "",
        (f"Date {time.strftime('%Y-%m-%d')}, {platform.machine()}, Python "
         f"{platform.python_version()}, TensorFlow {tf.__version__}. Command: `{command}`."),
        ("Each network: the search's value (best validation point; 3-fold CV below 300 series) "
         "at S steps, vs the test accuracy after the final schedule (whole training split, one "
         f"seed, end of schedule; capped at {FINAL_STEPS_CAP} steps). Spearman over the "
         "networks; regret = best final test - final test of the search's pick (points)."),
        "",
        "| dataset | train | networks | " + " | ".join(
            f"S={s}: Spearman / regret / s per candidate" for s in steps) + " |",
        "|---|---|---|" + "---|" * len(steps),
    ]
    for name, res in results.items():
        cells = [f"{res['summary'][s]['spearman']:.2f} / {res['summary'][s]['regret_points']:.1f}"
                 f" / {res['summary'][s]['median_seconds']:.1f}" for s in steps]
        lines.append(f"| {name} | {res['n_train']} | {len(res['rows'])} | " + " | ".join(cells)
                     + " |")
    lines += ["", "Per network (final test accuracy, search values at each S):", ""]
    for name, res in results.items():
        lines.append(f"- {name}: " + "; ".join(
            f"({r['k']},{r['c']}) final {r['final_test']:.3f}, "
            + ", ".join(f"{s}: {r[f'val_{s}']:.3f}" for s in steps) for r in res["rows"]))
    path = RESULTS / "rank_agreement.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small set, two step counts")
    parser.add_argument("--datasets", help="comma-separated (default: Ham, ECG5000, Computers)")
    args = parser.parse_args()
    datasets = args.datasets.split(",") if args.datasets else (
        ["ucr:Coffee"] if args.quick else DATASETS)
    steps = [100, 400] if args.quick else STEPS
    results = run(datasets, steps)
    print(write(results, steps, "python benchmarks/rank_agreement.py"
                + (" --quick" if args.quick else "")))


if __name__ == "__main__":
    main()
