"""Live progress of a search, read from the study's storage.

A background thread looks at the storage once a second, so it sees what every worker records
(figures, epochs, results) without hooks into the objective. On a terminal it redraws a small
block in place; otherwise it prints one plain line per event (a candidate measured, an epoch
ended, a candidate finished).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self, TextIO

from optuna.trial import TrialState

from tinytnas_optuna._trial import CandidateRecord, best_candidate, trial_record

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Snapshot:
    """The search at one moment."""

    trained: int = 0
    rejected: int = 0
    reused: int = 0
    failed: int = 0
    pruned: int = 0
    running: list[CandidateRecord] = field(default_factory=list)
    best: CandidateRecord | None = None
    finished: list[tuple[CandidateRecord, str]] = field(default_factory=list)
    phases: dict[str, int] = field(default_factory=dict)


def _dup_stderr() -> TextIO | None:
    """A stream on a copy of file descriptor 2, or None when stderr has no descriptor.

    The measurement redirects fd 2 for a moment to read TFLM's allocator report; the display
    writes through its own copy so that its lines are never caught in that capture.
    """
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # e.g. a test's in-memory capture
    return open(fd, "w", buffering=1, encoding="utf-8", errors="replace")


def snapshot(study: optuna.Study, *, since: int = 0) -> Snapshot:
    """Read the search's state from the storage.

    Args:
        study: The study.
        since: Trials numbered below this are counted but not listed in ``finished``.

    Returns:
        The :class:`Snapshot`.
    """
    trials = study._storage.get_all_trials(study._study_id, deepcopy=False)
    counts = {"trained": 0, "infeasible": 0, "reused": 0, "failed": 0, "pruned": 0}
    running, finished, records = [], [], []
    phases: dict[str, int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        cand = trial_record(t)
        if cand.phase is not None:
            phases[cand.phase] = phases.get(cand.phase, 0) + 1
        if t.state == TrialState.RUNNING:
            running.append(cand)
            continue
        if not t.state.is_finished():
            continue
        records.append(cand)
        if cand.state in counts:
            counts[cand.state] += 1
        if t.number >= since:
            finished.append((cand, cand.state))
    best = best_candidate(records)  # the same best as `summarize`
    return Snapshot(counts["trained"], counts["infeasible"], counts["reused"], counts["failed"],
                    counts["pruned"], running, best, finished, phases)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class SearchProgress:
    """Show a running search: elapsed / time bound, counts, current candidate, best so far.

    Use as a context manager around ``study.optimize``.

    Args:
        study: The study being optimised.
        timeout: The time bound in seconds (None: none).
        metric: Name of the metric.
        stream: Where to write (default ``sys.stderr``).
        live: Redraw in place (default: when ``stream`` is a terminal).
        interval: Seconds between looks at the storage.
        started: ``time.monotonic()`` from which ``timeout`` counts (default: entering the
            ``with`` block).
    """

    def __init__(
        self,
        study: optuna.Study,
        *,
        timeout: float | None,
        metric: str = "accuracy",
        stream: TextIO | None = None,
        live: bool | None = None,
        interval: float = 1.0,
        started: float | None = None,
    ) -> None:
        self.study = study
        self._started = started
        self.timeout = timeout
        self.metric = metric
        self._own_stream = _dup_stderr() if stream is None else None
        self.stream: TextIO = stream or self._own_stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._drawn = 0
        self._first_trial = len(study._storage.get_all_trials(study._study_id, deepcopy=False))
        self._seen_finished: set[int] = set()
        self._seen_epoch: dict[int, int] = {}

    def __enter__(self) -> Self:
        self._start = time.monotonic() if self._started is None else self._started
        self._thread = threading.Thread(target=self._run, name="tinytnas-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the thread and show the final state once more."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.update()
        if self.live and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        if self._own_stream is not None:
            self._own_stream.close()
            self._own_stream = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.update()
            except Exception:  # noqa: BLE001, S112 - a busy storage never stops the display
                continue

    def update(self) -> None:
        """Read the storage and draw (live) or log (plain) what changed."""
        snap = snapshot(self.study, since=self._first_trial)
        if self.live:
            self._draw(self.render(snap))
        else:
            for line in self._events(snap):
                self.stream.write(line + "\n")
            self.stream.flush()

    def _elapsed(self) -> str:
        elapsed = time.monotonic() - self._start
        bound = f" / {_clock(self.timeout)}" if self.timeout else ""
        return f"{_clock(elapsed)}{bound}"

    def render(self, snap: Snapshot) -> list[str]:
        """The live block's lines.

        Args:
            snap: The state to show.

        Returns:
            Lines without newlines.
        """
        elapsed = time.monotonic() - self._start
        bar = ""
        if self.timeout:
            done = min(1.0, elapsed / self.timeout)
            bar = " [" + "#" * int(done * 20) + "." * (20 - int(done * 20)) + "]"
        lines = [
            f"tinytnas search '{self.study.study_name}'  elapsed {self._elapsed()}{bar}",
            f"  trained {snap.trained}  rejected (over budget) {snap.rejected}"
            + (f"  pruned {snap.pruned}" if snap.pruned else "")
            + (f"  reused {snap.reused}" if snap.reused else "")
            + (f"  failed {snap.failed}" if snap.failed else ""),
        ]
        if snap.phases:
            lines.append("  trials by phase: " + ", ".join(f"{name} {n}"
                                                          for name, n in snap.phases.items()))
        for cand in snap.running[:3]:
            if cand.feasible is None:
                state = "measuring"
            elif not cand.feasible:
                state = "over budget"
            else:
                state = f"epoch {cand.epochs}" if cand.epochs else "training"
                if cand.value is not None:
                    state += f"  best {self.metric} {cand.value:.4f}"
            lines.append(f"  now:  {cand.describe()}  {state}")
        if not snap.running:
            lines.append("  now:  -")
        if snap.best is not None:
            lines.append(f"  best: {snap.best.describe()}  {self.metric} {snap.best.value:.4f}")
        else:
            lines.append("  best: none yet")
        return lines

    def _draw(self, lines: list[str]) -> None:
        out = []
        if self._drawn:
            out.append(f"\x1b[{self._drawn}F")  # back to the block's first line
        out.append("\x1b[J")  # clear to the end of the screen
        # A wrapped line would throw off the cursor arithmetic: cut lines to the terminal width.
        width = max(20, shutil.get_terminal_size().columns - 1)
        out.append("\n".join(line[:width] for line in lines))
        self.stream.write("".join(out) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _events(self, snap: Snapshot) -> list[str]:
        lines = []
        stamp = f"[{self._elapsed()}]"
        for cand in snap.running:
            epoch = self._seen_epoch.get(cand.trial)
            if epoch is None and cand.feasible:
                lines.append(f"{stamp} {cand.describe()}  training")
                self._seen_epoch[cand.trial] = cand.epochs
            elif epoch is not None and cand.epochs > epoch:
                value = f"  best {self.metric} {cand.value:.4f}" if cand.value is not None else ""
                lines.append(f"{stamp} trial {cand.trial} epoch {cand.epochs}{value}")
                self._seen_epoch[cand.trial] = cand.epochs
        for cand, outcome in snap.finished:
            if cand.trial in self._seen_finished:
                continue
            self._seen_finished.add(cand.trial)
            if outcome == "infeasible":
                text = "rejected: over budget, not trained"
            elif cand.value is not None and outcome in ("trained", "pruned", "reused"):
                text = f"{outcome}: {self.metric} {cand.value:.4f}"
            else:
                text = outcome
            best = (f"  (best: trial {snap.best.trial} {snap.best.value:.4f})"
                    if snap.best is not None else "")
            lines.append(f"{stamp} {cand.describe()}  {text}{best}")
        return lines
