"""What each training lever buys, on validation only: batch normalisation (folded at export),
jitter and scaling augmentation, label smoothing, at the search's and at the final fidelity.

For each dataset the network is the one the accuracy suite picked (``benchmarks/results/
accuracy.md``); it is trained as the search validates it (3 stratified folds below 300 series,
3 folds of subjects for HAR, else the 15 % hold-out) and scored on the validated series only:
the test split is never read. A lever is judged by the pooled validation accuracy at the best
of the training's validation points (the search's value) and at its last point (what a final
model without a hold-out keeps), the mean over ``--seeds`` initialisations.

Run: ``python benchmarks/recipe_levers.py [--datasets ...] [--seeds 2] [--fidelity search]
[--networks 8,3 16,1] [--store recipe_levers] [--out benchmarks/results]``; appends to
``<out>/<store>.json`` and rewrites ``<out>/<store>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: The suite's picks (k, c) at the paper's budget; HAR and the held-aside set from searches.
PICKS = {
    "har": (16, 1), "ecg5000": (10, 3), "ucr:Coffee": (8, 3), "ucr:CBF": (4, 3),
    "ucr:Car": (8, 1), "ucr:ECGFiveDays": (8, 4), "ucr:Ham": (4, 3),
    "ucr:GunPointAgeSpan": (14, 2), "ucr:Chinatown": (16, 3), "ucr:Fish": (10, 0),
    "ucr:Earthquakes": (4, 3), "ucr:Computers": (5, 2), "ucr:Crop": (20, 3),
    "ucr:ElectricDevices": (16, 2), "ucr:ChlorineConcentration": (6, 2),
}

LEVERS = {
    "base": {},
    "bn": {"batch_norm": True},
    "bn+aug": {"batch_norm": True, "jitter": 0.03, "scaling": 0.1},
    "bn+ls": {"batch_norm": True, "label_smoothing": 0.1},
    "aug": {"jitter": 0.03, "scaling": 0.1},
}


def measure(dataset: str, lever: str, fidelity: str, seed: int,
            network: tuple[int, int] | None = None) -> dict[str, float]:
    """Pooled validation accuracy (best point, last point) and seconds of one training of
    ``network`` (default: the suite's pick, :data:`PICKS`)."""
    import keras
    import numpy as np

    from tinytnas_optuna._space import build_model
    from tinytnas_optuna._training import Recipe, final_schedule, search_schedule, train
    from tinytnas_optuna._validation import prepare_data, score
    from tinytnas_optuna.datasets import load_dataset

    ds = load_dataset(dataset)
    data = prepare_data((ds.x_train, ds.y_train), groups=ds.groups_train, seed=0)
    splits = data.splits()
    k, c = network or PICKS[dataset]
    recipe = Recipe(**LEVERS[lever])
    size = len(splits[0].y_train)
    schedule = search_schedule(size) if fidelity == "search" else final_schedule(size)
    start = time.monotonic()
    predictions = []
    for fold, split in enumerate(splits):
        keras.utils.set_random_seed(1000 * seed + fold)
        model = build_model(k, c, data.input_shape, data.num_classes,
                            batch_norm=recipe.batch_norm)
        result = train(model, split, schedule, seed=1000 * seed + fold, recipe=recipe)
        predictions.append(result.predictions)
    y = np.concatenate([s.y_val for s in splits])
    points = min(len(p) for p in predictions)
    curve = [score(y, np.concatenate([p[i] for p in predictions]), "accuracy",
                   data.num_classes) for i in range(points)]
    return {"best": max(curve), "last": curve[-1], "seconds": time.monotonic() - start}


def table(rows: list[dict]) -> str:
    """Markdown: per dataset and fidelity, each lever's mean best/last and its gain on base."""
    lines = [("| dataset | fidelity | lever | best (mean) | last (mean) | best - base | "
             "last - base | seconds |"), "|---|---|---|---:|---:|---:|---:|---:|"]
    def key(r: dict) -> tuple:
        return r["dataset"], r["fidelity"], tuple(r.get("network") or PICKS[r["dataset"]])

    lines[0] = lines[0].replace("| fidelity |", "| fidelity | (k,c) |")
    lines[1] = "|---" + lines[1]
    for dataset, fidelity, network in sorted({key(r) for r in rows}):
        mine = [r for r in rows if key(r) == (dataset, fidelity, network)]

        def mean(lever: str, key: str, mine: list[dict] = mine) -> float | None:
            values = [r[key] for r in mine if r["lever"] == lever]
            return statistics.mean(values) if values else None

        for lever in LEVERS:
            best, last = mean(lever, "best"), mean(lever, "last")
            if best is None:
                continue
            base_best, base_last = mean("base", "best"), mean("base", "last")
            gain = ("" if base_best is None else f"{100 * (best - base_best):+.1f}")
            gain_last = ("" if base_last is None else f"{100 * (last - base_last):+.1f}")
            lines.append(f"| {dataset} | {fidelity} | {network} | {lever} | {100 * best:.1f} | "
                         f"{100 * last:.1f} | {gain} | {gain_last} | "
                         f"{mean(lever, 'seconds'):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(PICKS))
    parser.add_argument("--levers", nargs="+", default=list(LEVERS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--fidelity", choices=("search", "final"), default="search")
    parser.add_argument("--networks", nargs="+", default=None, metavar="K,C",
                        help="networks to train on every set (default: each set's pick)")
    parser.add_argument("--store", default="recipe_levers",
                        help="name of the .json/.md pair written in --out")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / f"{args.store}.json"
    networks = ([tuple(int(v) for v in n.split(",")) for n in args.networks]
                if args.networks else [None])
    rows = json.loads(store.read_text()) if store.exists() else []
    for dataset, network in ((d, n) for d in args.datasets for n in networks):
        pair = list(network or PICKS[dataset])
        for seed in range(args.seeds):
            for lever in args.levers:
                if any(r["dataset"] == dataset and r["lever"] == lever and r["seed"] == seed
                       and r["fidelity"] == args.fidelity
                       and list(r.get("network") or PICKS[dataset]) == pair for r in rows):
                    continue
                result = measure(dataset, lever, args.fidelity, seed, network)
                rows.append({"dataset": dataset, "lever": lever, "seed": seed,
                             "fidelity": args.fidelity, "network": pair, **result})
                store.write_text(json.dumps(rows, indent=1))
                print(f"{dataset} {pair} {args.fidelity} {lever} seed {seed}: best "
                      f"{100 * result['best']:.1f} last {100 * result['last']:.1f} "
                      f"({result['seconds']:.0f} s)", flush=True)
    text = ("# Training levers on validation\n\nCommand: `python benchmarks/recipe_levers.py "
            "...` (see the module docstring); (k,c): the network trained (default: the "
            "accuracy suite's pick); accuracies on the validated series only (never the test "
            "split), %, mean over seeds.\n\n" + table(rows) + "\n")
    (args.out / f"{args.store}.md").write_text(text)
    print(table(rows))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
