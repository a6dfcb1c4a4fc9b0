"""The node's /diagnostics status: tick statistics and the ``(level, message, values)`` report (ROS-free).

:class:`TickStats` collects what the ticks did (durations, publications, the last result);
:class:`NodeDiagnostics` turns the stream's counters, the node's counters and the tick statistics into
the status the node publishes (keys documented in docs/node.md; sums in :mod:`actfusion_ros.counters`).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from actfusion_ros.frame_gaps import MissedFrameEstimator
from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.reporting import KindCounter
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastResult
from actfusion_ros.tick_overruns import TickOverrunCounter

__all__ = ["NodeDiagnostics", "TickSnapshot", "TickStats"]

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
