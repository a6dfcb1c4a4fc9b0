"""What ``actfusion_node`` holds between ``configure`` and ``cleanup``, and what it does with it (ROS-free).

:class:`NodePipeline` is everything the lifecycle transition ``configure`` builds from the validated
settings: the :class:`~actfusion_ros.stream.StreamingAnticipator` (model loaded), the frame queue, the
counters and the /diagnostics builder, the live picture; ``cleanup`` drops every reference to it. Its
:meth:`~NodePipeline.offer` is the image callback's work, its :meth:`~NodePipeline.tick` the tick's: it
forecasts and hands the result to the node that runs it (a :class:`TickHost`: its clock and publishers).
:class:`FeatureWorker` is the thread that feeds queued frames to the stream, started by ``activate`` and
stopped by ``deactivate``. :class:`LivePicture` decides when the tick draws the timeline picture, with which
camera frame. What each lifecycle state does is the node's (:mod:`actfusion_ros.node.actfusion_node`;
docs/node.md, "Lifecycle").
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from actfusion_ros.builder import build_anticipator
from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.frames import ImageConversionError, inspect_compressed, inspect_image
from actfusion_ros.node.diagnostics import MissedFrameEstimator, NodeDiagnostics, TickOverrunCounter, TickStats
from actfusion_ros.node_params import NodeSettings
from actfusion_ros.reporting import KindCounter, error_kind
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import EncodedFrame, Forecaster, ForecastResult
from actfusion_ros.time_ns import NS_PER_S, seconds_to_ns, stamp_to_ns
from actfusion_ros.timeline_image import RenderGate, TimelineConfig, TimelineImageError, TimelineRenderer, camera_rgb

__all__ = ["FeatureWorker", "LivePicture", "NodePipeline", "TickHost"]


class TickHost(Protocol):
    """What a tick needs from the node that runs it (:class:`~actfusion_ros.node.actfusion_node.ActFusionNode`
    is one): its clock, its publishers, whether it is shutting down."""

    def now_ns(self) -> int:
        """The node's clock now."""

    def publish_forecast(self, result: ForecastResult, frame_id: str) -> None:
        """Publish a tick's result (raises when it cannot)."""

    def picture_subscribers(self) -> int:
        """How many listen to the live picture (0 also when it has no publisher)."""

    def publish_picture(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        """Publish a live picture (raises when it cannot)."""

    def shutting_down(self) -> bool:
        """True once the node or its context is shutting down (a failing tick is then not counted)."""


@dataclass
class NodePipeline:
    """The configured node's parts: stream (model), queue, counters, tick statistics, diagnostics."""

    settings: NodeSettings
    stream: StreamingAnticipator
    queue: FrameQueue
    bad_images: KindCounter
    frame_errors: KindCounter
    tick_errors: KindCounter
    missed_frames: MissedFrameEstimator
    overruns: TickOverrunCounter
    ticks: TickStats
    diagnostics: NodeDiagnostics
    tick_period_ns: int
    inspect: Callable[[Any], Any]  # header check of an Image / CompressedImage (actfusion_ros.frames)
    picture: LivePicture | None = None  # the live picture (None: timeline_rate_hz 0)
    images_received: int = 0
    frame_id: str = ""  # frame id of the last frame handed to the stream

    @classmethod
    def build(cls, settings: NodeSettings, *, forecaster: Forecaster | None = None,
              class_names: Sequence[str] | None = None, info: Callable[[str], object],
              warning: Callable[[str], object], error: Callable[[str], object]) -> "NodePipeline":
        """Load the model and assemble the parts; :class:`~actfusion_ros.builder.StartupError` says why not.

        ``info`` / ``warning`` / ``error``: the node's log (progress lines, bad images and rejected frames
        once per kind, failed ticks once per kind)."""
        stream = build_anticipator(settings, forecaster=forecaster, class_names=class_names, log=info)
        queue = FrameQueue(settings.queue_size)
        bad_images = KindCounter("bad image skipped", warning)
        frame_errors = KindCounter("frame rejected by the stream", warning)
        tick_errors = KindCounter("tick failed", error)
        missed_frames = MissedFrameEstimator(seconds_to_ns(settings.stream.episode_gap_s))
        period_ns = int(round(NS_PER_S / settings.tick_rate_hz))
        overruns = TickOverrunCounter(period_ns)
        ticks = TickStats()
        picture = _live_picture(settings, stream.class_names, warning)
        pipeline: NodePipeline | None = None
        diagnostics = NodeDiagnostics(
            stream, queue=queue, missed_frames=missed_frames, bad_images=bad_images, frame_errors=frame_errors,
            tick_errors=tick_errors, ticks=ticks, overruns=overruns, picture=picture,
            images_received=lambda: pipeline.images_received if pipeline is not None else 0)
        inspect = functools.partial(inspect_compressed if settings.compressed else inspect_image,
                                    max_pixels=settings.max_image_pixels)
        pipeline = cls(settings, stream, queue, bad_images, frame_errors, tick_errors, missed_frames, overruns,
                       ticks, diagnostics, period_ns, inspect, picture)
        return pipeline

    def describe(self, image_topic: str, outputs: Sequence[str]) -> str:
        """The log line of an activation: input, model, extractor, rates, outputs."""
        s = self.settings
        return (f"listening on {image_topic} ({'CompressedImage' if s.compressed else 'Image'}, "
                f"{s.qos_reliability}, depth {s.qos_depth}); model {self.stream.forecaster!r}; extractor "
                f"{self.stream.extractor!r}; features {s.stream.feature_rate_hz:g} Hz, ticks {s.tick_rate_hz:g} Hz, "
                f"r={s.stream.ratio:g}, window {s.stream.max_window_s:g} s; publishing {' and '.join(outputs)}")

    def reset_episode(self) -> str:
        """The ``~/reset`` service: start a new episode; the reply's message. Frames still queued were taken
        before the reset: they belong to the old episode and are dropped (counted in ``frames_dropped``), so a
        feature worker that lags the camera cannot carry them into the new one."""
        dropped = self.queue.clear()
        self.stream.reset("service")
        old = f" ({dropped} queued frame(s) of the old episode dropped)" if dropped else ""
        return f"new episode {self.stream.episode}{old}"

    def offer(self, msg: Any, now_ns: int) -> None:
        """The image callback: count ``msg``, check its header (never decodes) and enqueue it. Frames stamped
        too far ahead of ``now_ns`` and bad images are counted (bad images per kind, logged once per kind).
        Every stamp is an arrival for the missed-frames estimate; a bad image's never teaches it the camera's
        interval."""
        self.images_received += 1
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp)
        except (ValueError, TypeError) as err:
            self.bad_images.record(error_kind(err), err)
            return
        try:
            if not self.stream.admit(stamp_ns, now_ns):
                self.missed_frames.observe(stamp_ns)
                return  # stamped too far ahead of the clock: counted, not decoded
            image = self.inspect(msg)  # decoded later, only if the sampler uses the frame
        except (ImageConversionError, ValueError, TypeError) as err:
            self.missed_frames.observe(stamp_ns, learn=False)  # it arrived: no gap, but no rhythm to learn
            self.bad_images.record(error_kind(err), err)
            return
        self.missed_frames.observe(stamp_ns)
        if self.picture is not None:
            self.picture.observe_frame(image)  # the latest camera frame, decoded only if a picture uses it
        self.queue.put((stamp_ns, image, msg.header.frame_id))

    def tick(self, expected_ns: int, host: TickHost) -> None:
        """Count and skip an overrun, else one :meth:`StreamingAnticipator.tick` and
        ``host.publish_forecast(result, frame_id)``; then the live picture of the published result (:meth:`draw`).

        ``expected_ns``: when this call was due (timer clock); ``host``: the node that runs the tick (its
        clock, its publishers). A due time that fell while the previous tick was still running is skipped and
        counted (:class:`~actfusion_ros.node.diagnostics.TickOverrunCounter`). A failing tick (forecaster,
        message building, publication) is counted and logged once per kind, unless ``host.shutting_down()``.
        """
        now_ns = host.now_ns()
        if not self.overruns.start(expected_ns, now_ns):
            return
        t0 = time.perf_counter()
        result = None
        try:
            result = self.stream.tick(now_ns)
            if result is not None:
                host.publish_forecast(result, self.frame_id)
                self.ticks.published()
        except Exception as err:  # noqa: BLE001 - a failing tick must not kill the node
            if result is not None:  # the stream gave a result: building or publishing it failed
                self.ticks.publish_failed()
            if host.shutting_down():
                return  # shutting down while a tick was running
            self.tick_errors.record(type(err).__name__, err)
            result = None
        elapsed = time.perf_counter() - t0
        if result is not None:
            self.draw(result, now_ns, host)
        self.overruns.finish(host.now_ns())
        self.ticks.finished(elapsed, result)

    def draw(self, result: ForecastResult, now_ns: int, host: TickHost) -> None:
        """The live picture of ``result`` handed to ``host.publish_picture`` when one is due (someone
        subscribes, the rate allows); after the forecast is published, not counted in the tick latency. Never
        raises: a picture that cannot be drawn or published is counted in ``picture.errors`` per kind."""
        if self.picture is None:
            return
        try:
            rgb = self.picture.picture(result, now_ns, host.picture_subscribers())
            if rgb is not None:
                host.publish_picture(rgb, result.stamp_ns, self.frame_id)
        except Exception as err:  # noqa: BLE001 - the picture never breaks a tick
            self.picture.errors.record("publish", err)


def _live_picture(settings: NodeSettings, class_names: Sequence[str],
                  warning: Callable[[str], object]) -> LivePicture | None:
    """The node's :class:`LivePicture` from the ``timeline_*`` settings (None when ``timeline_rate_hz`` is 0)."""
    t = settings.timeline
    if not t.enabled:
        return None
    config = TimelineConfig(class_names=list(class_names), width=t.width, height=t.height, past_s=t.past_s,
                            future_s=t.future_s)
    return LivePicture(config, rate_hz=t.rate_hz, camera=t.camera, log=warning)


class FeatureWorker:
    """A thread feeding the queue's frames to the stream (decoding and the extractor run here).

    Each worker has its own stop flag, so one still busy with a slow frame after :meth:`stop` gave up on
    it never takes frames queued after a later activation. ``on_error(kind, err)`` counts a frame the
    stream refused (never called once stopping began: the node may be gone by then).
    """

    def __init__(self, pipeline: NodePipeline, on_error: Callable[[str, BaseException], object]) -> None:
        self._pipeline = pipeline
        self._on_error = on_error
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="actfusion_features", daemon=True)

    def start(self) -> "FeatureWorker":
        self._pipeline.queue.reopen()
        self.thread.start()
        return self

    def _run(self) -> None:
        p = self._pipeline
        while not self._stop.is_set():
            item = p.queue.get()
            if item is None or self._stop.is_set():
                continue
            stamp_ns, image, frame_id = item
            try:
                p.stream.push_encoded(stamp_ns, image)
            except Exception as err:  # noqa: BLE001 - counted and logged once per kind, never fatal
                if not self._stop.is_set():
                    self._on_error(type(err).__name__, err)
                continue
            p.frame_id = frame_id

    def signal_stop(self) -> None:
        """Take no more frames (the queue is closed, which wakes a waiting worker)."""
        self._stop.set()
        self._pipeline.queue.close()

    def stop(self, timeout_s: float) -> bool:
        """:meth:`signal_stop`, then wait at most ``timeout_s`` for the frame in progress; True when ended."""
        self.signal_stop()
        if self.thread is threading.current_thread() or not self.thread.is_alive():
            return True
        self.thread.join(timeout_s)
        return not self.thread.is_alive()


class LivePicture:
    """The node's live picture: when to draw, with which camera frame, and failures counted (thread-safe:
    :meth:`observe_frame` from the image callback, :meth:`picture` from the tick).

    It holds a :class:`~actfusion_ros.timeline_image.TimelineRenderer`, a
    :class:`~actfusion_ros.timeline_image.RenderGate` (a rate limit; nothing while no one subscribes) and the
    latest camera frame, still encoded (the image callback hands it over with :meth:`observe_frame`; it is
    decoded only when a picture is drawn with it). After a tick, :meth:`picture` gives the image to publish or
    ``None``; a frame or result it cannot draw is counted per kind in ``errors`` (the first of each kind
    logged) and skipped, never raised into the tick. ``camera``: draw the latest camera frame above the
    timeline.
    """

    def __init__(self, config: TimelineConfig, *, rate_hz: float, camera: bool = True,
                 log: Callable[[str], Any] | None = None) -> None:
        self.renderer = TimelineRenderer(config)
        self.gate = RenderGate(rate_hz)
        self.camera = bool(camera)
        self.errors = KindCounter("timeline image skipped", log)
        self.drawn = 0
        self._frame: np.ndarray | EncodedFrame | None = None
        self._lock = threading.Lock()

    def observe_frame(self, frame: np.ndarray | EncodedFrame | Any) -> None:
        """Keep ``frame`` (an RGB array or an encoded frame with ``decode()``) as the latest camera frame."""
        if self.camera:
            with self._lock:
                self._frame = frame

    def picture(self, result: ForecastResult | None, now_ns: int, subscribers: int) -> np.ndarray | None:
        """The picture of ``result`` when one is due (someone subscribes, the rate allows), else ``None``.

        A result that cannot be drawn is counted (``errors``, kind ``result``) and gives ``None``; a camera
        frame that does not decode is counted (kind ``camera_frame``), dropped, and the picture drawn without it.
        """
        if result is None or not self.gate.due(int(now_ns), int(subscribers)):
            return None
        with self._lock:
            frame = self._frame
        rgb = None
        if frame is not None:
            try:
                rgb = camera_rgb(frame)
            except TimelineImageError as err:
                self.errors.record("camera_frame", err)
                with self._lock:
                    if self._frame is frame:
                        self._frame = None   # not tried again
        try:
            image = self.renderer.render_result(result, camera_frame=rgb)
        except TimelineImageError as err:
            self.errors.record("result", err)
            return None
        self.drawn += 1
        return image

