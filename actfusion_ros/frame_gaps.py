"""Estimate the camera frames lost before they reached the node, from gaps in the frame stamps.

With a keep-last-1 subscription (the default ``qos_depth``), a frame that arrives while the previous
one is still waiting is overwritten inside the middleware: the node never sees it, so no counter can
count it. What the node does see is the hole in the stamps. :class:`MissedFrameEstimator` learns the
camera's frame interval ``P`` as the **median** of the recent intervals between received stamps (robust to
jitter and to occasional holes) and counts, for each new interval ``d``, ``max(0, round(d / P) - 1)``
frames as missing.

Rules (``observe`` per received stamp, integer ns, in arrival order):

* the first ``min_intervals`` intervals only train the median (nothing is estimated yet);
* a stamp equal to or before the previous one (duplicate, out of order) is ignored; one more than
  ``max_gap_ns`` before it (a bag loop, a clock reset) restarts from that stamp;
* an interval longer than ``max_gap_ns`` is a pause (the node starts a new episode there), not lost
  frames: it is neither counted nor learned;
* an interval shorter than ``P / 2`` is **sub-period**: frames closer than the camera can take them (a burst
  of frames 1 ms apart, a driver flushing its buffer). It loses nothing and is not learned, so a burst,
  however many frames long, cannot pull the median down (it did: issue 18, thousands of frames "missed"
  after a burst). Only when sub-period intervals go on without a break for as long as the learned
  window lasts (``window * P``) has the camera really sped up: they then replace the learned intervals;
* an arrival observed with ``learn=False`` (a malformed frame: it arrived, but its stamp is not trusted
  to teach the rhythm) closes the gap before it and is judged, but never learned;
* otherwise the interval is judged against the median of the previous ``window`` learned intervals, then
  joins them.

Limits: it is an estimate. Losses in more than half of the recent intervals (e.g. a steady 2:1
drop) inflate the median itself and then go unseen; a camera that slows down is followed within
``window`` frames, one that speeds up within the time its window lasts. A burst of good frames before
the interval is known trains it like a camera would. ROS-free and thread-safe.
"""
from __future__ import annotations

import statistics
import threading
from collections import deque

__all__ = ["MissedFrameEstimator"]


class MissedFrameEstimator:
    """Frames missing between received stamps, judged against the median frame interval.

    ``max_gap_ns``: longer intervals are pauses, not losses (> 0). ``window``: intervals in the median
    (>= 1). ``min_intervals``: intervals needed before anything is estimated (1..window).
    """

    def __init__(self, max_gap_ns: int, *, window: int = 64, min_intervals: int = 8) -> None:
        if max_gap_ns <= 0:
            raise ValueError(f"max_gap_ns must be > 0, got {max_gap_ns}")
        if window < 1 or not 1 <= min_intervals <= window:
            raise ValueError(f"need window >= 1 and 1 <= min_intervals <= window, got {window}, {min_intervals}")
        self.max_gap_ns = int(max_gap_ns)
        self.min_intervals = int(min_intervals)
        self._intervals: deque[int] = deque(maxlen=int(window))
        self._sub_period: deque[int] = deque(maxlen=int(window))  # the current unbroken run of sub-period intervals
        self._sub_period_ns = 0  # how long that run has lasted
        self._previous: int | None = None
        self._missed = 0
        self._lock = threading.Lock()

    def observe(self, stamp_ns: int, *, learn: bool = True) -> int:
        """Account for one received stamp; return the frames estimated missing just before it.

        ``learn=False``: the frame arrived but must not teach the interval (a malformed frame)."""
        stamp = int(stamp_ns)
        with self._lock:
            previous, self._previous = self._previous, stamp
            if previous is None:
                return 0
            interval = stamp - previous
            if interval <= 0:
                if -interval <= self.max_gap_ns:
                    self._previous = previous  # duplicate / out of order: keep the newest stamp
                return 0
            if interval > self.max_gap_ns:
                self._end_sub_period_run()
                return 0
            period = self._period()
            if period is not None and interval < period / 2:
                if learn:
                    self._sub_period_interval(interval, period)
                return 0
            self._end_sub_period_run()
            missed = max(0, round(interval / period) - 1) if period is not None else 0
            if learn:
                self._intervals.append(interval)
            self._missed += missed
            return missed

    def _period(self) -> float | None:
        """The median learned interval (None until ``min_intervals`` were learned); lock held."""
        if len(self._intervals) < self.min_intervals:
            return None
        return float(statistics.median(self._intervals))

    def _sub_period_interval(self, interval: int, period: float) -> None:
        """One more interval of an unbroken sub-period run; a run that lasted as long as the learned window
        (``window * period``) is a faster camera: its intervals replace the learned ones. Lock held."""
        self._sub_period.append(interval)
        self._sub_period_ns += interval
        if self._sub_period_ns >= self._intervals.maxlen * period:
            self._intervals.clear()
            self._intervals.extend(self._sub_period)
            self._end_sub_period_run()

    def _end_sub_period_run(self) -> None:
        self._sub_period.clear()
        self._sub_period_ns = 0

    @property
    def missed(self) -> int:
        """Total frames estimated missing so far."""
        with self._lock:
            return self._missed

    @property
    def interval_ns(self) -> float | None:
        """Median of the recent frame intervals (``None`` until ``min_intervals`` were seen)."""
        with self._lock:
            return self._period()

    @property
    def rate_hz(self) -> float:
        """Camera rate from the median interval (0.0 while unknown)."""
        interval = self.interval_ns
        return 1e9 / interval if interval else 0.0
