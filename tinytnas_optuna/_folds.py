"""One candidate's value over its validation splits: a hold-out, or folds pooled.

Pure functions of the splits and their training results: the pooled validation curve (the
candidate's value is its best point), the highest value the folds not yet trained could still
lift it to (so a candidate that cannot win stops early without changing the greedy's path), and
how many passes over the data a number of steps is.
"""

from __future__ import annotations

import numpy as np

from tinytnas_optuna._training import Schedule, TrainResult
from tinytnas_optuna._validation import PreparedData, score


def epochs_after(step: int, schedule: Schedule, split: PreparedData) -> int:
    """Passes over the training data after ``step`` steps (at least 1 once anything trained).

    Args:
        step: Steps trained.
        schedule: The training's schedule (its batch size and planned steps).
        split: The split trained on.

    Returns:
        Whole epochs, counted on the plan (the last compiled call may run a few steps past it).
    """
    if step <= 0:
        return 0
    return max(1, round(min(step, schedule.steps) * schedule.batch_size
                        / max(1, len(split.y_train))))


def pooled_curve(
    splits: list[PreparedData], results: list[TrainResult], metric: str, num_classes: int,
) -> list[tuple[int, float]]:
    """The validation curve over every validated series: one hold-out, or all folds pooled.

    Folds the time bound cut are left out when a complete fold exists; with none complete,
    the cut fold's completed points are the curve (as for a hold-out cut by the bound).

    Args:
        splits: The validation splits, in training order.
        results: The trainings done so far (one per split, in order).
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        num_classes: Number of classes.

    Returns:
        ``(step, value)`` per validation point (empty when nothing was validated).
    """
    pairs = [(s, r) for s, r in zip(splits, results, strict=False) if r.predictions]
    complete = [(s, r) for s, r in pairs if not r.cut]
    pairs = complete or pairs
    if not pairs:
        return []
    points = min(len(r.predictions) for _, r in pairs)
    y_true = np.concatenate([s.y_val for s, _ in pairs])
    return [
        (sum(r.eval_steps[i] for _, r in pairs) // len(pairs),
         score(y_true, np.concatenate([r.predictions[i] for _, r in pairs]), metric,
               num_classes))
        for i in range(points)
    ]


def upper_bound(splits: list[PreparedData], results: list[TrainResult], metric: str,
                num_classes: int) -> float:
    """The highest pooled value the training could still reach: the folds trained so far as
    they scored at each validation point, every series of the other folds right.

    Args:
        splits: The validation splits.
        results: The trainings of the first ``len(results)`` splits.
        metric: ``"accuracy"`` or ``"balanced_accuracy"``.
        num_classes: Number of classes.

    Returns:
        The bound (a value the finished training cannot exceed).

    Examples:
        Two folds of two series; the first fold got one right at its best point:

        >>> import types
        >>> fold = types.SimpleNamespace(y_val=np.array([0, 1]))
        >>> done = types.SimpleNamespace(predictions=[np.array([1, 0]), np.array([0, 0])])
        >>> upper_bound([fold, fold], [done], "accuracy", 2)
        0.75
    """
    done = len(results)
    rest = [s.y_val for s in splits[done:]]
    y_true = np.concatenate([s.y_val for s in splits])
    points = min(len(r.predictions) for r in results)
    return max(score(y_true, np.concatenate([*(r.predictions[i] for r in results), *rest]),
                     metric, num_classes) for i in range(points))
