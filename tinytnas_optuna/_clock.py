"""The time bound of a search, in one process: when it ends, and when its search must stop.

The bound is the user's wall clock for the whole job (search, then the final model). The search
stops at the *deadline*: the end minus the time kept for the final model, re-estimated while the
search runs (the estimate improves as candidates are timed), or at once when a stop is asked for
(Ctrl-C, the main process ending a worker).
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds between re-estimates of the final model's reserve while a training runs.
REFRESH_SECONDS = 5.0


class SearchClock:
    """The time bound of one process of a search.

    Args:
        timeout: Seconds of the whole job (None: no bound).
        reserve_final: Whether the search leaves the final model its time.
        start: ``time.monotonic()`` from which ``timeout`` counts (None: the first trial).

    Example:
        >>> clock = SearchClock(60.0, reserve_final=True, start=None)
        >>> clock.begin(now=100.0)
        >>> clock.end, clock.deadline
        (160.0, 160.0)
        >>> clock.refresh(lambda: 15.0)
        >>> clock.deadline
        145.0
    """

    def __init__(self, timeout: float | None, *, reserve_final: bool,
                 start: float | None) -> None:
        self.timeout = timeout
        self.reserve_final = reserve_final
        self.start = start
        #: ``time.monotonic()`` at which the bound ends (None before :meth:`begin`).
        self.end: float | None = None
        #: ``time.monotonic()`` at which the search stops (the end minus the reserve).
        self.deadline: float | None = None
        #: Whether a stop was asked for (:meth:`request_stop`).
        self.stopped = False
        self._refreshed = 0.0

    def start_now(self) -> None:
        """Count the bound from now, unless it started already."""
        if self.start is None:
            self.start = time.monotonic()

    def begin(self, now: float) -> None:
        """Fix the end of the bound at the first trial (from ``start``, else from ``now``)."""
        if self.end is None and self.timeout is not None:
            self.end = (now if self.start is None else self.start) + self.timeout
            self.deadline = self.end

    def refresh(self, reserve: Callable[[], float]) -> None:
        """Set the deadline to the end minus ``reserve()`` seconds (with ``reserve_final``)."""
        if self.end is None or self.stopped:
            return
        self.deadline = self.end - (reserve() if self.reserve_final else 0.0)

    def out_of_time(self, reserve: Callable[[], float] | None = None) -> bool:
        """Whether the search's time is up (or a stop was asked for).

        Args:
            reserve: The final model's reserve, re-estimated every :data:`REFRESH_SECONDS`, so
                that a training in flight stops at the current deadline, not its start's.

        Returns:
            True once the deadline has passed.
        """
        if self.deadline is None:
            return False
        now = time.monotonic()
        if reserve is not None and now - self._refreshed >= REFRESH_SECONDS:
            self._refreshed = now
            self.refresh(reserve)
        return now >= self.deadline

    def request_stop(self) -> None:
        """End the search now, as if the deadline had passed."""
        self.deadline = time.monotonic()
        self.stopped = True

    def left(self) -> float | None:
        """Seconds until the end of the bound (None without a bound or before :meth:`begin`)."""
        return None if self.end is None else self.end - time.monotonic()
