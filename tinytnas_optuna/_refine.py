"""What to train after the paper's greedy has ended: pure logic, no Optuna, no TensorFlow.

Given every result so far (by candidate and fidelity level), :func:`next_refinement` picks one
training, in this order:

1. **re-rank** the ``top`` best candidates at level 1 (a longer training from other initial
   weights), so the pick rests on two trainings, not one short run;
2. **explore** the neighbourhood of the ``top`` candidates the greedy skipped: untrained
   candidates of the grid within distance 1 of one of them (distance ``|log2 k - log2 k'| +
   |c - c'|``: widths between visited widths, neighbouring depths), the most promising first
   (promise ``max over those candidates v of estimate(v) - slope * distance``); as better
   networks are found the neighbourhood moves with them;
3. re-rank the ``top`` candidates at every level up to ``levels``;
4. explore the neighbourhood of every trained candidate (most promising first), which grows
   until it covers the grid;
5. re-rank every trained candidate at every level.

Nothing returned means every feasible candidate of the grid was trained at every level. The
grid is ``k`` on quarter octaves (2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19, 23, 27, 32, ...) plus
every width already visited, times every ``c``. A candidate is never proposed when a narrower
one of the same ``c`` is infeasible (every figure grows with the width), when it was already
tried at that level, or while another trial trains it at that level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import NamedTuple

Candidate = tuple[int, int]

#: Accuracy (0..1) a candidate's promise loses per unit of distance (one octave of width, or one
#: cell) from a trained candidate.
SLOPE = 0.03
#: Candidates re-ranked first, and fidelity levels above the search's own (level 0).
TOP = 3
LEVELS = 2


class Pick(NamedTuple):
    """One training to run: the candidate, its fidelity level, and the phase it belongs to."""

    candidate: Candidate
    level: int
    phase: str


def estimates(runs: Mapping[Candidate, Mapping[int, float]]) -> dict[Candidate, float]:
    """Each trained candidate's estimate: the mean of its trainings' values.

    Args:
        runs: Values by candidate and level (level 0 present for every trained candidate).

    Returns:
        ``{candidate: mean value}``.
    """
    return {cand: sum(v.values()) / len(v) for cand, v in runs.items() if v}


def grid_widths(k_range: tuple[int, int], extra: AbstractSet[int] = frozenset()) -> list[int]:
    """Widths the refinement considers: quarter octaves within ``k_range``, plus ``extra``.

    Args:
        k_range: Inclusive range of ``k``.
        extra: Widths already visited.

    Returns:
        Sorted distinct widths.

    Example:
        >>> grid_widths((2, 20))
        [2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 16, 19]
    """
    lo, hi = k_range
    top = math.ceil(4 * math.log2(hi)) + 1
    widths = {round(2 ** (j / 4)) for j in range(top)} | set(extra)
    return sorted(k for k in widths if lo <= k <= hi)


def _distance(a: Candidate, b: Candidate) -> float:
    return abs(math.log2(a[0]) - math.log2(b[0])) + abs(a[1] - b[1])


def next_refinement(
    runs: Mapping[Candidate, Mapping[int, float]],
    infeasible: AbstractSet[Candidate],
    *,
    tried: AbstractSet[tuple[Candidate, int]] = frozenset(),
    busy: AbstractSet[tuple[Candidate, int]] = frozenset(),
    k_range: tuple[int, int],
    c_range: tuple[int, int],
    top: int = TOP,
    levels: int = LEVELS,
    slope: float = SLOPE,
) -> Pick | None:
    """The next training of the refinement, or None when there is nothing left.

    Args:
        runs: Values by candidate and level (0 = the search's training).
        infeasible: Candidates over budget.
        tried: ``(candidate, level)`` pairs not to propose again (e.g. failed too often).
        busy: ``(candidate, level)`` pairs other trials are training now.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        top: How many of the best candidates are re-ranked first.
        levels: Highest fidelity level.
        slope: Accuracy a candidate's promise loses per unit of distance.

    Returns:
        A :class:`Pick`, or None.

    Example:
        >>> runs = {(4, 3): {0: 0.80}, (8, 3): {0: 0.90}, (16, 3): {0: 0.85}}
        >>> next_refinement(runs, set(), k_range=(2, 64), c_range=(0, 4))
        Pick(candidate=(8, 3), level=1, phase='rerank')
    """
    est = estimates(runs)
    if not est:
        return None
    ranked = sorted(est, key=lambda cand: (-est[cand], cand))
    done = set(tried) | {(cand, level) for cand, v in runs.items() for level in v}
    blocked = done | set(busy)

    def rerank(cands: list[Candidate], max_level: int) -> Pick | None:
        for cand in cands:
            for level in range(1, max_level + 1):
                if (cand, level) not in blocked:
                    return Pick(cand, level, "rerank")
        return None

    def explore(anchors: list[Candidate]) -> Pick | None:
        widths = grid_widths(k_range, {k for k, _ in [*runs, *infeasible]})
        first_infeasible = {c: min((k for k, c2 in infeasible if c2 == c), default=math.inf)
                            for c in range(c_range[0], c_range[1] + 1)}
        best: tuple[float, int, int] | None = None
        for c in range(c_range[0], c_range[1] + 1):
            for k in widths:
                cand = (k, c)
                if k >= first_infeasible[c] or cand in infeasible or (cand, 0) in blocked:
                    continue
                near = [v for v in anchors if _distance(cand, v) <= 1]
                if not near:
                    continue
                promise = max(est[v] - slope * _distance(cand, v) for v in near)
                # The most promising first; on a tie the smaller (cheaper) network.
                if best is None or (promise, -k, -c) > best:
                    best = (promise, -k, -c)
        return None if best is None else Pick((-best[1], -best[2]), 0, "refine")

    return (rerank(ranked[:top], 1) or explore(ranked[:top])
            or rerank(ranked[:top], levels) or explore(ranked) or rerank(ranked, levels))
