"""The node's counters and its /diagnostics status, in one place (ROS-free).

Every count the node reports on /diagnostics besides the stream's own (``StreamStats``) is kept here:

* :class:`TickStats` - what the ticks did (durations, publications, the last result);
* :class:`TickOverrunCounter` - ticks skipped because the previous tick was still running;
* :class:`MissedFrameEstimator` - camera frames lost before the image callback, estimated from stamp gaps;
* :class:`NodeDiagnostics` - the ``(level, message, values)`` status built from all of them (keys
  documented in docs/node.md);
* :data:`IDENTITIES` - the sums those values satisfy, and :func:`identity_violations` to check them.

Counts per kind (bad images, failed ticks) are :class:`actfusion_ros.reporting.KindCounter`'s, shared with
the replay.
"""
from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.reporting import KindCounter
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastResult

__all__ = ["IDENTITIES", "Identity", "MissedFrameEstimator", "NodeDiagnostics", "TickOverrunCounter", "TickSnapshot",
           "TickStats", "backend_values", "identity_violations"]

_MAX_DURATIONS = 100_000


@dataclass(frozen=True)
class TickSnapshot:
    """What :meth:`TickStats.take` hands over: durations since the previous take, and running totals."""

    durations_s: list[float]
    last_s: float
    last_result: ForecastResult | None
    published: int
    publish_errors: int


class TickStats:
    """Thread-safe record of the ticks: durations, publications, failed publications, the last result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._durations: deque[float] = deque(maxlen=_MAX_DURATIONS)
        self._last_s = 0.0
        self._last_result: ForecastResult | None = None
        self._published = 0  # ticks whose ActionForecast and ActionSegment were both published
        self._publish_errors = 0  # ticks whose result could not be turned into messages or published

    def published(self) -> None:
        """One tick's result was published."""
        with self._lock:
            self._published += 1

    def publish_failed(self) -> None:
        """One tick's result could not be turned into messages or published."""
        with self._lock:
            self._publish_errors += 1

    def finished(self, elapsed_s: float, result: ForecastResult | None) -> None:
        """A tick ran for ``elapsed_s``; ``result``: what it published (None: nothing)."""
        with self._lock:
            self._durations.append(elapsed_s)
            self._last_s = elapsed_s
            if result is not None:
                self._last_result = result

    def last_result(self) -> ForecastResult | None:
        """The last result published (None before the first)."""
        with self._lock:
            return self._last_result

    def take(self) -> TickSnapshot:
        """The statistics; the durations are handed over (the next take starts afresh)."""
        with self._lock:
            durations, self._durations = list(self._durations), deque(maxlen=_MAX_DURATIONS)
            return TickSnapshot(durations, self._last_s, self._last_result, self._published,
                                self._publish_errors)


# ---------------------------------------------------------------------- skipped ticks
class TickOverrunCounter:
    """Counts the ticks skipped because the previous tick overran (thread-safe).

    The node's tick timer is due on a grid of period ``P`` (on the ROS clock). rcl calls a timer late, and
    drops due times, when the previous callback is still running; those are *skipped ticks*. Due times
    dropped for other reasons (a coarse ``/clock``, a busy machine) are not counted.

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


# ---------------------------------------------------------------------- frames lost before the callback
class MissedFrameEstimator:
    """Frames missing between received stamps, judged against the median frame interval (thread-safe).

    With a keep-last-1 subscription (the default ``qos_depth``), a frame that arrives while the previous
    one is still waiting is overwritten inside the middleware: the node never sees it, so no counter can
    count it. What the node does see is the hole in the stamps. The estimator learns the camera's frame
    interval ``P`` as the **median** of the recent intervals between received stamps (robust to jitter and
    to occasional holes) and counts, for each new interval ``d``, ``max(0, round(d / P) - 1)`` frames as
    missing.

    Rules (``observe`` per received stamp, integer ns, in arrival order):

    * the first ``min_intervals`` intervals only train the median (nothing is estimated yet);
    * a stamp equal to or before the previous one (duplicate, out of order) is ignored; one more than
      ``max_gap_ns`` before it (a bag loop, a clock reset) restarts from that stamp;
    * an interval longer than ``max_gap_ns`` is a pause (the node starts a new episode there), not lost
      frames: it is neither counted nor learned;
    * an interval shorter than ``P / 2`` is **sub-period**: frames closer than the camera can take them (a
      burst of frames 1 ms apart, a driver flushing its buffer). It loses nothing and is not learned, so a
      burst, however many frames long, cannot pull the median down (it did: issue 18, thousands of frames
      "missed" after a burst). Only when sub-period intervals go on without a break for as long as the learned
      window lasts (``window * P``) has the camera really sped up: they then replace the learned intervals;
    * an arrival observed with ``learn=False`` (a malformed frame: it arrived, but its stamp is not trusted
      to teach the rhythm) closes the gap before it and is judged, but never learned;
    * otherwise the interval is judged against the median of the previous ``window`` learned intervals, then
      joins them.

    Limits: it is an estimate. Losses in more than half of the recent intervals (e.g. a steady 2:1
    drop) inflate the median itself and then go unseen; a camera that slows down is followed within
    ``window`` frames, one that speeds up within the time its window lasts. A burst of good frames before
    the interval is known trains it like a camera would.

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


# ---------------------------------------------------------------------- the status
class NodeDiagnostics:
    """Builds the node's /diagnostics status from the parts that count (see :meth:`values`)."""

    def __init__(self, stream: StreamingAnticipator, *, queue: FrameQueue, missed_frames: MissedFrameEstimator,
                 bad_images: KindCounter, frame_errors: KindCounter, tick_errors: KindCounter,
                 ticks: TickStats, overruns: TickOverrunCounter, images_received: Callable[[], int],
                 picture: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.queue = queue
        self.missed_frames = missed_frames
        self.bad_images = bad_images
        self.frame_errors = frame_errors
        self.tick_errors = tick_errors
        self.ticks = ticks
        self.overruns = overruns
        self.images_received = images_received
        self.picture = picture  # a LivePicture (timeline_drawn, timeline_errors.<kind>) or None
        self._clock = clock
        self._prev: tuple[float, int] | None = None  # (clock, frames_accepted) at the previous call
        self._prev_future = 0
        self._backend = backend_values(stream.forecaster)  # the forecaster is fixed until cleanup

    def values(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the current status; each call starts a new measuring period
        (tick durations, measured feature rate, newly rejected future frames)."""
        st = self.stream.stats
        now = self._clock()
        t = self.ticks.take()
        result = t.last_result
        measured_rate = 0.0
        if self._prev is not None and now > self._prev[0]:
            measured_rate = (st.frames_accepted - self._prev[1]) / (now - self._prev[0])
        self._prev = (now, st.frames_accepted)
        bad = self.bad_images.counts
        values: dict[str, Any] = {
            "tick_latency_ms": 1e3 * t.last_s,
            "tick_latency_ms_mean": 1e3 * float(np.mean(t.durations_s)) if t.durations_s else 0.0,
            "tick_latency_ms_max": 1e3 * max(t.durations_s) if t.durations_s else 0.0,
            "inference_ms": 1e3 * result.inference_s if result else 0.0,
            "data_latency_ms": 1e3 * result.latency_s if result else 0.0,
            "feature_rate_hz": measured_rate,
            "feature_rate_hz_effective": st.feature_rate_hz,
            "buffer_length": st.buffer_length,
            "window_capacity": self.stream.config.window_capacity,
            "episode": st.episode,
            "images_received": self.images_received(),
            "frames_missed_estimate": self.missed_frames.missed,
            "camera_rate_hz": self.missed_frames.rate_hz,
            "frames_dropped": self.queue.dropped,
            "queue_length": len(self.queue),
            "bad_images": sum(bad.values()),
            "frames_received": st.frames_received,
            "frames_accepted": st.frames_accepted,
            "frames_not_due": st.frames_not_due,
            "frames_rejected": self.frame_errors.total,
            "invalid_frames": st.invalid_frames,
            "extract_errors": st.extract_errors,
            "future_frames": st.future_frames,
            "duplicates": st.duplicates,
            "out_of_order": st.out_of_order,
            "ticks": st.ticks,
            "published": t.published,
            "publish_errors": t.publish_errors,
            "skipped_ticks": self.overruns.skipped,
            "tick_errors": self.tick_errors.total,
            "resets": st.resets,
            "dropped_features": st.dropped_features,
            "last_stamp_ns": result.stamp_ns if result else 0,
            **self._backend,
        }
        values.update({f"bad_images.{k}": n for k, n in sorted(bad.items())})
        values.update({f"stream_skips.{k}": n for k, n in sorted(st.skip_reasons.items())})
        values.update({f"resets.{k}": n for k, n in sorted(st.reset_reasons.items())})
        if self.picture is not None:
            values["timeline_drawn"] = self.picture.drawn
            values["timeline_errors"] = self.picture.errors.total
            values.update({f"timeline_errors.{k}": n for k, n in sorted(self.picture.errors.counts.items())})
        level, message = self._level(st, result)
        return level, message, values

    def _level(self, st: Any, result: ForecastResult | None) -> tuple[str, str]:
        reason = self.stream.last_skip_reason
        new_future, self._prev_future = st.future_frames - self._prev_future, st.future_frames
        if self.tick_errors.total and reason == "forecast_error":
            return "error", "forecasting fails (see the node's log)"
        if new_future > 0:
            return "warn", (f"{new_future} frame(s) stamped more than max_future_s = "
                            f"{self.stream.config.max_future_s:g} s ahead of the node's clock "
                            f"rejected (camera clock not synchronised?)")
        if st.buffer_length == 0:
            return "warn", "waiting for images"
        if reason == "stale":
            return "warn", "no recent images: camera stalled"
        if reason == "warming_up" or (result is not None and result.partial):
            return "ok", f"warming up ({st.buffer_length} features)"
        return "ok", f"forecasting (episode {st.episode}, {st.buffer_length} features)"


def backend_values(forecaster: Any) -> dict[str, str]:
    """The /diagnostics values naming what runs the forecasts: ``backend`` (torch, onnxruntime, tensorrt),
    ``backend_device``, and with backend ``auto`` ``backend_auto``: what it chose and why (the reason it
    logged at configure). A forecaster that names no backend (a test's stand-in) gives none."""
    out: dict[str, str] = {}
    backend = getattr(forecaster, "backend", None)
    if isinstance(backend, str):
        out["backend"] = backend
        device = getattr(forecaster, "device", None)
        if device is not None:
            out["backend_device"] = str(device)
    choice = getattr(forecaster, "auto_choice", None)
    reason = getattr(choice, "reason", None)
    if isinstance(reason, str):
        out["backend_auto"] = reason
    return out


# ---------------------------------------------------------------------- the sums the values satisfy
# Every image the node receives and every tick it runs ends in exactly one counter, so the counters add up.
# They hold whenever the node is quiet: the feature worker has handled every queued frame (``queue_length`` 0
# and no frame inside ``push_frame``) and no tick is running; in between, a frame or tick in flight may be
# counted on one side only.
@dataclass(frozen=True)
class Identity:
    """``left == sum(terms) + sum of every value whose key starts with one of prefixes``."""

    left: str
    terms: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    meaning: str = ""

    def __str__(self) -> str:
        parts = [*self.terms, *(f"sum({p}*)" for p in self.prefixes)]
        return f"{self.left} == {' + '.join(parts)}"

    def sides(self, values: Mapping[str, Any]) -> tuple[int, int]:
        """``(left, right)`` evaluated on ``values`` (missing terms count 0)."""
        right = sum(int(values.get(k, 0)) for k in self.terms)
        right += sum(int(v) for k, v in values.items() if k.startswith(self.prefixes)) if self.prefixes else 0
        return int(values.get(self.left, 0)), right


#: The sums (documented in ``docs/node.md``); :func:`identity_violations` checks a ``/diagnostics`` value
#: mapping against them (tests, soak runs, a user's monitoring).
IDENTITIES: tuple[Identity, ...] = (
    Identity("images_received", ("bad_images", "frames_dropped", "queue_length", "frames_received"),
             meaning="each received image is refused by the converter, dropped from the full queue, "
                     "waiting in the queue, or handed to the stream"),
    Identity("bad_images", (), ("bad_images.",), meaning="refused images, per kind"),
    Identity("frames_received", ("frames_accepted", "frames_not_due", "duplicates", "out_of_order",
                                 "invalid_frames", "extract_errors", "future_frames"),
             meaning="each frame handed to the stream becomes a feature or is set aside for one reason"),
    Identity("ticks", ("published", "publish_errors"), ("stream_skips.",),
             meaning="each tick run publishes, fails to publish its result, or gives no result "
                     "(stream_skips.forecast_error: the forecaster failed)"),
    Identity("tick_errors", ("stream_skips.forecast_error", "publish_errors"),
             meaning="failed ticks: the forecast failed, or its messages could not be built or published"),
)


def identity_violations(values: Mapping[str, Any]) -> list[str]:
    """``'identity: left != right'`` for each of :data:`IDENTITIES` that ``values`` break (empty: all hold)."""
    out = []
    for identity in IDENTITIES:
        left, right = identity.sides(values)
        if left != right:
            out.append(f"{identity}: {left} != {right}")
    return out
