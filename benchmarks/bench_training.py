"""How much faster a search candidate trains than the original's plain ``fit(batch_size=32)``.

For a few TinyTNAS architectures on the real HAR set (validation split by subject), both
recipes train from the same initial weights; we record the wall time of every epoch and the
validation accuracy after it. Reported, as medians over seeds:

- the speed-up: baseline seconds per epoch / our seconds per epoch (steady state and with the
  first epoch's tracing included);
- accuracy for the same time: the best validation accuracy each recipe reached within the time
  the baseline needed for ``--epochs`` epochs.

Run: ``python benchmarks/bench_training.py [--epochs 5] [--seeds 3] [--quick]``. Writes
``benchmarks/results/training.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import time
from pathlib import Path

import numpy as np

ARCHS = [(8, 3), (16, 2), (32, 1)]


def run(recipe: str, k: int, c: int, data, epochs: int, seed: int) -> list[tuple[float, float]]:
    """Train one candidate; return (elapsed seconds, val accuracy) after each epoch."""
    import keras

    from tinytnas_optuna._space import build_model
    from tinytnas_optuna._training import search_schedule, train
    from tinytnas_optuna._validation import score

    keras.utils.set_random_seed(seed)
    model = build_model(k, c, data.input_shape, data.num_classes)
    points: list[tuple[float, float]] = []
    start = time.perf_counter()
    if recipe == "baseline":
        # The original: compile + fit(batch_size=32), Adam 1e-3, validation after each epoch.
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")

        class Clock(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                probs = self.model.predict(data.x_val, verbose=0)
                acc = score(data.y_val, probs.argmax(1), "accuracy", data.num_classes)
                points.append((time.perf_counter() - start, acc))

        model.fit(data.x_train, data.y_train, batch_size=32, epochs=epochs, verbose=0,
                  callbacks=[Clock()])
    else:
        # Enough epochs to fill the baseline's time (its ratio must not be capped by this),
        # validated once an epoch like the baseline.
        schedule = search_schedule(len(data.y_train), epochs=epochs * 6)
        schedule = dataclasses.replace(schedule, evaluations=epochs * 6)

        def on_evaluation(step: int, pred: np.ndarray) -> bool:
            points.append((time.perf_counter() - start,
                           score(data.y_val, pred, "accuracy", data.num_classes)))
            return False

        train(model, data, schedule, seed=seed, on_evaluation=on_evaluation)
    return points


def best_within(points: list[tuple[float, float]], seconds: float) -> float:
    """Best accuracy reached by ``seconds`` (0 if no epoch ended by then)."""
    return max((acc for t, acc in points if t <= seconds), default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one architecture, 2 epochs, 1 seed")
    args = parser.parse_args()
    archs = ARCHS[:1] if args.quick else ARCHS
    epochs, seeds = (2, 1) if args.quick else (args.epochs, args.seeds)

    from tinytnas_optuna._training import search_schedule
    from tinytnas_optuna._validation import prepare_data
    from tinytnas_optuna.datasets import load_dataset

    har = load_dataset("har")
    # One subject fold as a hold-out: train on two thirds of the subjects, validate on the rest.
    data = prepare_data((har.x_train, har.y_train), groups=har.groups_train, seed=0).splits()[0]
    schedule = search_schedule(len(data.y_train))
    batch, lr = schedule.batch_size, schedule.learning_rate
    rows = []
    for k, c in archs:
        speedups, speedups_all, acc_base, acc_ours = [], [], [], []
        for seed in range(seeds):
            base = run("baseline", k, c, data, epochs, seed)
            ours = run("ours", k, c, data, epochs, seed)
            steady = lambda p: statistics.median(b[0] - a[0] for a, b in zip(p, p[1:]))  # noqa
            speedups.append(steady(base) / steady(ours))
            budget = base[-1][0]  # the baseline's time for `epochs` epochs
            n_ours = sum(1 for t, _ in ours if t <= budget)
            speedups_all.append(n_ours / len(base))
            acc_base.append(best_within(base, budget))
            acc_ours.append(best_within(ours, budget))
        rows.append((k, c, statistics.median(speedups), statistics.median(speedups_all),
                     statistics.median(acc_base), statistics.median(acc_ours)))
        print(rows[-1], flush=True)

    lines = [
        "# Training speed: search recipe vs plain fit(batch_size=32)",
        "",
        (f"Date {datetime.date.today()}, {os.cpu_count()} cores, HAR (HAPT-based, "
         f"{len(data.y_train)} train / {len(data.y_val)} val windows, split by subject), "
         f"{epochs} baseline epochs, median of {seeds} seed(s). Our recipe: batch {batch}, "
         f"Adam lr {lr:.4g}, 8 steps per execution."),
        "Command: `python benchmarks/bench_training.py" + (" --quick" if args.quick else "") + "`",
        "",
        ("| k | c | speed-up per epoch (steady) | epochs in baseline's time / baseline epochs "
         "| best val acc, baseline | best val acc, ours (same time) |"),
        "|---|---|---|---|---|---|",
    ]
    for k, c, s, s_all, ab, ao in rows:
        lines.append(f"| {k} | {c} | {s:.2f}x | {s_all:.2f}x | {ab:.4f} | {ao:.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        out = Path(__file__).parent / "results" / "training.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
