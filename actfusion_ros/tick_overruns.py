"""Which due times of a periodic timer fell while the previous tick was still running (ROS-free).

The node's tick timer is due on a grid of period ``P`` (on the ROS clock). rcl calls a timer late, and
drops due times, when the previous callback is still running; those are *skipped ticks*. Due times
dropped for other reasons (a coarse ``/clock``, a busy machine) are not counted.
"""
from __future__ import annotations

import threading

__all__ = ["TickOverrunCounter"]


class TickOverrunCounter:
    """Counts the ticks skipped because the previous tick overran (thread-safe).

    Call :meth:`start` when a tick is called (its due time and the clock now), :meth:`finish` when it
    ends, and :meth:`clock_jumped` when the clock jumps (sim time start, bag loops, seeks).
    """

    def __init__(self, period_ns: int) -> None:
        if period_ns <= 0:
            raise ValueError(f"period_ns must be > 0, got {period_ns}")
        self.period_ns = int(period_ns)
        self._lock = threading.Lock()
        self._skipped = 0
        self._last_expected_ns: int | None = None
        self._start_ns = 0
        self._end_ns = 0

    @property
    def skipped(self) -> int:
        """Ticks skipped so far."""
        with self._lock:
            return self._skipped

    def start(self, expected_ns: int, now_ns: int) -> bool:
        """A tick due at ``expected_ns`` is called at ``now_ns``; True when it should run.

        Counts as skipped this call itself, if it was due while the previous tick was running (it must
        not run then: False), and the due times rcl dropped in between that lay inside the previous
        tick's run. A due time before the last one (time went backwards) starts counting afresh.
        """
        period = self.period_ns
        with self._lock:
            last = self._last_expected_ns
            if last is not None and expected_ns < last:
                last = None
                self._start_ns = self._end_ns = 0
            if last is not None:
                # grid points last + k*period (k >= 1) strictly before this one that fell inside the
                # previous tick's run [start, end]: rcl dropped them because that tick was running
                between = -(-(expected_ns - last) // period) - 1
                k_lo = max(1, (self._start_ns - last) // period + 1)
                k_hi = min(between, (self._end_ns - last) // period)
                self._skipped += max(0, k_hi - k_lo + 1)
            self._last_expected_ns = expected_ns
            if self._end_ns > expected_ns:
                self._skipped += 1  # this call was due while the previous tick was running
                return False
            self._start_ns = now_ns
            return True

    def finish(self, now_ns: int) -> None:
        """The tick started last ended at ``now_ns``."""
        with self._lock:
            self._end_ns = now_ns

    def clock_jumped(self) -> None:
        """Forget the grid: the next tick starts counting afresh."""
        with self._lock:
            self._last_expected_ns = None
            self._start_ns = self._end_ns = 0
