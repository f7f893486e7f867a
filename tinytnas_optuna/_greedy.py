"""The TinyTNAS greedy expansion as a pure replay: no Optuna, no TensorFlow.

Given what is known about candidates so far (an accuracy, or infeasible), :func:`replay` runs the
search of ``docs/search.md`` from the start and stops at the first candidate whose result is
unknown. Replaying from scratch on every call is what makes the sampler correct across restarts and
processes: the storage is the only state.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Candidate = tuple[int, int]

#: A known result: an accuracy, or :data:`INFEASIBLE` (over budget; never trained).
INFEASIBLE = "infeasible"
Result = float | Literal["infeasible"]

START: Candidate = (4, 3)


@dataclass(frozen=True)
class Visit:
    """One candidate on the search path, in first-visit order.

    Attributes:
        candidate: ``(k, c)``.
        result: Its accuracy, or ``"infeasible"``.
        accepted: Whether the search accepted it (it became the best so far).
        out_of_range: True when outside the configured ranges (infeasible without being built).
    """

    candidate: Candidate
    result: Result
    accepted: bool = False
    out_of_range: bool = False


@dataclass
class Replay:
    """Where the search stands given the known results.

    Attributes:
        path: Visited candidates in first-visit order (revisits are not repeated).
        best: The accepted candidate with the best accuracy, or None.
        best_accuracy: Its accuracy (-1 when none).
        needed: The first candidate whose result is unknown, or None when finished.
    """

    path: list[Visit] = field(default_factory=list)
    best: Candidate | None = None
    best_accuracy: float = -1.0
    needed: Candidate | None = None

    @property
    def finished(self) -> bool:
        """True when the greedy search has nothing left to evaluate."""
        return self.needed is None

    @property
    def accepted(self) -> list[Candidate]:
        """The accepted candidates in order: the search path of the original."""
        return [v.candidate for v in self.path if v.accepted]


class _Unknown(Exception):
    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate


def replay(
    results: Mapping[Candidate, Result],
    *,
    k_range: tuple[int, int] = (2, 1024),
    c_range: tuple[int, int] = (0, 4),
    start: Candidate = START,
) -> Replay:
    """Run the greedy expansion over known results until it needs an unknown one.

    Args:
        results: Known results by ``(k, c)``: accuracy (float) or ``"infeasible"``.
        k_range: Inclusive range of ``k``; candidates outside are infeasible without a trial.
        c_range: Inclusive range of ``c``.
        start: The first candidate (the paper's ``(4, 3)``).

    Returns:
        The :class:`Replay`: path so far, best so far, and the next candidate needed (or None).
    """
    state = Replay()
    order: dict[Candidate, int] = {}

    def evaluate(cand: Candidate) -> Result:
        k, c = cand
        in_range = k_range[0] <= k <= k_range[1] and c_range[0] <= c <= c_range[1]
        if not in_range:
            result: Result = INFEASIBLE
        elif cand in results:
            result = results[cand]
        else:
            raise _Unknown(cand)
        if cand not in order:  # a revisit keeps its first place on the path
            order[cand] = len(state.path)
            state.path.append(Visit(cand, result, out_of_range=not in_range))
        return result

    def accept(cand: Candidate, acc: float) -> tuple[int, list[Candidate]]:
        i = order[cand]
        state.path[i] = Visit(cand, acc, accepted=True)
        state.best, state.best_accuracy = cand, acc
        k, c = cand
        incr = k // 4
        pending = [(k + i * incr, c) for i in range(4)] if incr >= 1 else []
        return 2 * k, pending

    k, c = start
    pending: list[Candidate] = []
    try:
        while True:
            result = evaluate((k, c))
            if result != INFEASIBLE and float(result) > state.best_accuracy:
                k, pending = accept((k, c), float(result))
                continue
            best_c2, best_acc2 = None, -math.inf
            for c2 in range(c_range[0], c_range[1] + 1):
                if c2 == c:
                    continue
                r2 = evaluate((k, c2))
                if r2 == INFEASIBLE:
                    break
                if float(r2) > best_acc2:  # strict: the first c2 wins ties
                    best_c2, best_acc2 = c2, float(r2)
            if best_c2 is not None and best_acc2 > state.best_accuracy:
                c = best_c2
                k, pending = accept((k, c), best_acc2)
                continue
            if pending:
                k, c = pending.pop()
                continue
            return state
    except _Unknown as unknown:
        state.needed = unknown.candidate
        return state


# Hypothetical outcomes used to look ahead past candidates other workers are still training.
_HYPOTHESES: tuple[Result, ...] = (math.inf, -math.inf, INFEASIBLE)


def frontier(
    results: Mapping[Candidate, Result],
    running: set[Candidate],
    *,
    k_range: tuple[int, int] = (2, 1024),
    c_range: tuple[int, int] = (0, 4),
    start: Candidate = START,
    limit: int = 64,
) -> list[Candidate]:
    """Candidates the search may need next, most certainly needed first.

    The first element is :func:`replay`'s ``needed``. When that candidate is running elsewhere, the
    search's continuation depends on its outcome (better, worse, or infeasible); each outcome is
    assumed in turn to find the candidates needed after it. Speculating never changes the answer:
    the replay only ever reads the results the one-worker search would read.

    Args:
        results: Known results.
        running: Candidates being evaluated by other trials right now.
        k_range: Inclusive range of ``k``.
        c_range: Inclusive range of ``c``.
        start: The first candidate.
        limit: At most this many hypothetical replays (bounds the cost).

    Returns:
        Distinct unknown candidates in priority order (empty when the search is finished).
    """
    out: list[Candidate] = []
    queue: list[dict[Candidate, Result]] = [{}]
    replays = 0
    while queue and replays < limit:
        hypothesis = queue.pop(0)
        replays += 1
        state = replay({**results, **hypothesis}, k_range=k_range, c_range=c_range, start=start)
        needed = state.needed
        if needed is None:
            continue
        if needed not in out:
            out.append(needed)
        if needed in running:
            queue.extend({**hypothesis, needed: h} for h in _HYPOTHESES)
    return out
