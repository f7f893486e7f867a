"""What the final training's time buys: its length and its restarts, on validation only.

For each dataset the network is the accuracy suite's pick; the final schedule
(``final_schedule``: 150 epochs within 3,000..15,000 steps) is run at ``--scales`` of its steps,
``--seeds`` times each, on the search's validation plan (3 folds of series or subjects below
300 series or with subjects, else the 15 % hold-out), as the final model would be trained
without the validated series. Recorded per training: validation accuracy at its last point
(what a cross-validated final model keeps) and at its best point (what a hold-out final model
keeps), its training loss (how restarts are chosen without a hold-out) and its seconds.

What restarts buy follows from the seeds: the accuracy of the restart that a choice rule would
keep among ``R`` of them (best validation, or lowest training loss), averaged over every subset
of ``R`` seeds, against one restart.

``--recipe final`` trains restart ``i`` (seed ``i``) with the recipe the final training gives it
(``final_recipes``: with a hold-out the final recipe and the candidates' in turn, under
cross-validation the final recipe from 300 series on, else the candidates'); ``plain`` (default,
the earlier runs) without batch normalisation or augmentation.

Run: ``python benchmarks/final_training.py [--datasets ...] [--scales 0.25 0.5 1]
[--seeds 4] [--recipe plain|final] [--store final_training]``; appends to
``benchmarks/results/<store>.json`` and rewrites ``<store>.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from recipe_levers import PICKS


def measure(dataset: str, scale: float, seed: int, recipe: str = "plain") -> dict[str, Any]:
    """One final training per fold at ``scale`` of the default steps: pooled validation."""
    import keras
    import numpy as np

    from tinytnas_optuna._retrain import _fit_loss
    from tinytnas_optuna._space import build_model
    from tinytnas_optuna._training import (
        DEFAULT_RECIPE,
        FINAL_RECIPE,
        Recipe,
        final_recipes,
        final_schedule,
        train,
    )
    from tinytnas_optuna._validation import prepare_data, score
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset(dataset)
    data = prepare_data((ds.x_train, ds.y_train), groups=ds.groups_train, seed=0)
    splits = data.splits()
    k, c = PICKS[dataset]
    chosen = Recipe()
    if recipe == "final":
        turns = final_recipes(FINAL_RECIPE, DEFAULT_RECIPE, holdout=data.folds is None,
                              n_train=len(data.y_train) + len(data.y_val))
        chosen = turns[seed % len(turns)]
    default = final_schedule(len(splits[0].y_train))
    schedule = final_schedule(len(splits[0].y_train),
                              steps=max(1, round(default.steps * scale)))
    start = time.monotonic()
    curves, losses = [], []
    for fold, split in enumerate(splits):
        keras.utils.set_random_seed(1000 * seed + fold)
        model = build_model(k, c, data.input_shape, data.num_classes,
                            batch_norm=chosen.batch_norm)
        result = train(model, split, schedule, seed=1000 * seed + fold, recipe=chosen)
        curves.append(result.predictions)
        losses.append(_fit_loss(model, split))
    y = np.concatenate([s.y_val for s in splits])
    points = min(len(p) for p in curves)
    curve = [score(y, np.concatenate([p[i] for p in curves]), "accuracy", data.num_classes)
             for i in range(points)]
    return {"last": curve[-1], "best": max(curve), "fit_loss": float(np.mean(losses)),
            "steps": schedule.steps, "seconds": time.monotonic() - start,
            "recipe": chosen.to_dict()}


def best_of(rows: list[dict], restarts: int, rule: str, key: str) -> float:
    """Mean over subsets of ``restarts`` seeds of the kept restart's ``key``."""
    kept = []
    for subset in itertools.combinations(rows, restarts):
        if rule == "validation":
            choice = max(subset, key=lambda r: r["best"])
        else:
            choice = min(subset, key=lambda r: r["fit_loss"])
        kept.append(choice[key])
    return statistics.mean(kept)


def table(rows: list[dict]) -> str:
    lines = [("| dataset | recipe | steps | seconds per restart | 1 restart: last | best | "
              "2 restarts, lowest loss: last | 2, best val: best | 3, lowest loss: last | "
              "3, best val: best | spread over seeds (last) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def key(r: dict) -> tuple:
        return r["dataset"], r.get("mode", "plain"), r["steps"]

    for dataset, mode, steps in sorted({key(r) for r in rows}):
        mine = [r for r in rows if key(r) == (dataset, mode, steps)]
        cells = [f"{100 * statistics.mean(r['last'] for r in mine):.1f}",
                 f"{100 * statistics.mean(r['best'] for r in mine):.1f}"]
        for n in (2, 3):
            if len(mine) >= n:
                cells += [f"{100 * best_of(mine, n, 'loss', 'last'):.1f}",
                          f"{100 * best_of(mine, n, 'validation', 'best'):.1f}"]
            else:
                cells += ["", ""]
        spread = max(r["last"] for r in mine) - min(r["last"] for r in mine)
        lines.append(f"| {dataset} | {mode} | {steps} | "
                     f"{statistics.mean(r['seconds'] for r in mine):.0f} | "
                     + " | ".join(cells) + f" | {100 * spread:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["har", "ecg5000", "ucr:CBF", "ucr:Ham"])
    parser.add_argument("--scales", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--recipe", choices=("plain", "final"), default="plain")
    parser.add_argument("--store", default="final_training")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / f"{args.store}.json"
    rows = json.loads(store.read_text()) if store.exists() else []
    for dataset in args.datasets:
        for scale in args.scales:
            for seed in range(args.seeds):
                if any(r["dataset"] == dataset and r["scale"] == scale and r["seed"] == seed
                       and r.get("mode", "plain") == args.recipe for r in rows):
                    continue
                result = measure(dataset, scale, seed, args.recipe)
                rows.append({"dataset": dataset, "scale": scale, "seed": seed,
                             "mode": args.recipe, **result})
                store.write_text(json.dumps(rows, indent=1))
                print(f"{dataset} x{scale} seed {seed}: last {100 * result['last']:.1f} best "
                      f"{100 * result['best']:.1f} ({result['seconds']:.0f} s)", flush=True)
    text = ("# What the final training's time buys\n\nCommand: `python benchmarks/"
            "final_training.py` (module docstring); validation accuracy (never the test "
            "split), %, of the suite's network per set; recipe: `--recipe`.\n\n"
            + table(rows) + "\n")
    (args.out / f"{args.store}.md").write_text(text)
    print(table(rows))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
