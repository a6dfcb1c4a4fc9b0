"""``actfusion_node``: the thin ROS 2 shell around :class:`~actfusion_ros.stream.StreamingAnticipator`.

Threads and callback groups (a ``MultiThreadedExecutor`` with one thread per group, plus one worker)::

    image subscription  [group "image", mutually exclusive]  check the header (actfusion_ros.frames) + enqueue
    feature worker      [a Python thread]                    queue -> StreamingAnticipator.push_encoded
    tick timer          [group "tick", mutually exclusive]   StreamingAnticipator.tick -> publish
    diagnostics, reset  [group "misc", mutually exclusive]   /diagnostics, ~/reset

The image callback never waits for features or inference: it checks the message's header (stamp,
size, encoding, data length) and puts the still encoded image in a bounded queue that drops its oldest
frame when full (counted). The feature worker hands it to the stream, whose sampler decides by stamp;
only the frames it uses (taken ones, and the extractor's context frames) are decoded, and the extractor
runs for the taken ones. A tick that falls due while the previous tick is still
running is skipped and counted (``skipped_ticks``). Bad images are counted per kind and logged once
per kind; images over ``max_image_pixels`` are refused from their header and frames stamped more than
``max_future_s`` ahead of the clock are rejected, both before decoding. The counters obey the sums of
:mod:`actfusion_ros.counters` (docs/node.md).

Topics (relative names, so a namespace applies; the defaults resolve as shown):

* in  ``image`` (parameter ``image_topic``): ``sensor_msgs/Image`` or, with ``compressed``,
  ``sensor_msgs/CompressedImage``.
* out ``/actfusion/future_actions``: ``actfusion_msgs/ActionForecast``, ``header.stamp`` = camera stamp
  of the last frame used.
* out ``/actfusion/current_action``: ``actfusion_msgs/ActionSegment``, the action in progress (the
  same segment as ``ActionForecast.current``).
* out ``/diagnostics``: ``diagnostic_msgs/DiagnosticArray``.
* service ``~/reset``: ``std_srvs/Trigger``, starts a new episode.

No ``from __future__ import annotations`` here: rclpy passes ``TimerInfo`` to a timer callback only
when the parameter's annotation *is* the ``TimerInfo`` class, not a string.
"""
import functools
import sys

if __name__ == "__main__":  # python -m actfusion_ros.node: signal handling before the heavy imports below
    from actfusion_ros.node_entry import main as _entry_main

    sys.exit(_entry_main())

import threading
import time
from typing import Any, Sequence

import rclpy
from actfusion_msgs.msg import ActionForecast, ActionSegment
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from actfusion_ros.builder import build_anticipator
from actfusion_ros.frame_gaps import MissedFrameEstimator
from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.frames import ImageConversionError, inspect_compressed, inspect_image
from actfusion_ros.node_diagnostics import NodeDiagnostics, TickStats
from actfusion_ros.node_params import NodeSettings
from actfusion_ros.reporting import KindCounter, SafeLog, error_kind
from actfusion_ros.ros_messages import diagnostic_array, forecast_to_msg, segment_to_msg
from actfusion_ros.ros_params import declare_node_parameters
from actfusion_ros.stream_types import Forecaster, ForecastResult
from actfusion_ros.tick_overruns import TickOverrunCounter
from actfusion_ros.time_ns import NS_PER_S, seconds_to_ns, stamp_to_ns

try:  # rclpy >= Jazzy: timer callbacks may receive the expected call time
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - older rclpy
    TimerInfo = None  # type: ignore[assignment,misc]

__all__ = ["ActFusionNode", "NODE_NAME"]

NODE_NAME = "actfusion_node"
FUTURE_TOPIC = "actfusion/future_actions"
CURRENT_TOPIC = "actfusion/current_action"
DIAGNOSTICS_TOPIC = "/diagnostics"
RESET_SERVICE = "~/reset"


class ActFusionNode(Node):
    """Streaming action segmentation + anticipation node (see the module docstring).

    ``forecaster``: use this instead of building one from the parameters (tests, benchmarks);
    ``class_names`` then defaults to ``forecaster.class_names``. Other keyword arguments go to
    :class:`rclpy.node.Node`. Raises :class:`actfusion_ros.builder.StartupError` with a readable
    message when the parameters, model or files are unusable.
    """

    def __init__(self, *, forecaster: Forecaster | None = None, class_names: Sequence[str] | None = None,
                 node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        # set first: rclpy may destroy a node whose __init__ failed (context shutdown)
        self._closing = threading.Event()
        self._queue: FrameQueue | None = None
        self._worker: threading.Thread | None = None
        # overrides auto-declared: get_parameters_by_prefix (public) sees them all (ros_params re-declares ours)
        super().__init__(node_name, **{**node_kwargs, "automatically_declare_parameters_from_overrides": True})
        self._log = SafeLog(self.get_logger())  # fixed severity per call site; never raises
        self.settings: NodeSettings = declare_node_parameters(self, self._log.warning)
        s = self.settings
        self.stream = build_anticipator(s, forecaster=forecaster, class_names=class_names, log=self._log.info)
        self._queue = FrameQueue(s.queue_size)
        self._bad_images = KindCounter("bad image skipped", self._log.warning)
        self._frame_errors = KindCounter("frame rejected by the stream", self._log.warning)
        self._tick_errors = KindCounter("tick failed", self._log.error)
        self._missed_frames = MissedFrameEstimator(seconds_to_ns(s.stream.episode_gap_s))
        self._images_received = 0
        self._tick_period_ns = int(round(NS_PER_S / s.tick_rate_hz))
        self._overruns = TickOverrunCounter(self._tick_period_ns)
        self._ticks = TickStats()
        self._diagnostics = NodeDiagnostics(
            self.stream, queue=self._queue, missed_frames=self._missed_frames, bad_images=self._bad_images,
            frame_errors=self._frame_errors, tick_errors=self._tick_errors, ticks=self._ticks,
            overruns=self._overruns, images_received=lambda: self._images_received)
        self._frame_id = ""

        self._image_group = MutuallyExclusiveCallbackGroup()
        self._tick_group = MutuallyExclusiveCallbackGroup()
        self._misc_group = MutuallyExclusiveCallbackGroup()
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._future_pub = self.create_publisher(ActionForecast, FUTURE_TOPIC, out_qos)
        self._current_pub = self.create_publisher(ActionSegment, CURRENT_TOPIC, out_qos)
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, out_qos)
        in_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=s.qos_depth, durability=DurabilityPolicy.VOLATILE,
            reliability=(ReliabilityPolicy.BEST_EFFORT if s.qos_reliability == "best_effort"
                         else ReliabilityPolicy.RELIABLE))
        self._inspect = functools.partial(inspect_compressed if s.compressed else inspect_image,
                                          max_pixels=s.max_image_pixels)
        self._image_sub = self.create_subscription(
            CompressedImage if s.compressed else Image, s.image_topic, self._on_image, in_qos,
            callback_group=self._image_group)
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset,
                                              callback_group=self._misc_group)
        tick_cb = self._on_tick_info if TimerInfo is not None else self._on_tick_plain
        self._tick_timer = self.create_timer(1.0 / s.tick_rate_hz, tick_cb, callback_group=self._tick_group)
        # /clock jumps (sim time start, bag loops, seeks) must not count as skipped ticks
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=max(10**9, 10 * self._tick_period_ns)),
                          min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self._on_clock_jump)
        self._diag_timer = self.create_timer(s.diagnostics_period_s, self._publish_diagnostics,
                                             callback_group=self._misc_group,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._worker = threading.Thread(target=self._feature_worker, name="actfusion_features", daemon=True)
        self._worker.start()
        self._log.info(
            f"listening on {self._image_sub.topic_name} "
            f"({'CompressedImage' if s.compressed else 'Image'}, {s.qos_reliability}, depth {s.qos_depth}); "
            f"model {self.stream.forecaster!r}; extractor {self.stream.extractor!r}; "
            f"features {s.stream.feature_rate_hz:g} Hz, ticks {s.tick_rate_hz:g} Hz, r={s.stream.ratio:g}, "
            f"window {s.stream.max_window_s:g} s; publishing {self._future_pub.topic_name} and "
            f"{self._current_pub.topic_name}")

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Check the header and enqueue; nothing else (never decodes, never waits for features or inference)."""
        self._images_received += 1
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp)
            self._missed_frames.observe(stamp_ns)
            if not self.stream.admit(stamp_ns, self.get_clock().now().nanoseconds):
                return  # stamped too far ahead of our clock: counted, not decoded
            image = self._inspect(msg)  # decoded later, only if the sampler uses the frame
        except (ImageConversionError, ValueError, TypeError) as err:
            self._bad_images.record(error_kind(err), err)
            return
        self._queue.put((stamp_ns, image, msg.header.frame_id))

    def _feature_worker(self) -> None:
        """Feed queued frames to the stream (decoding and the extractor run here, for the frames the
        sampler uses)."""
        while not self._closing.is_set():
            item = self._queue.get()
            if item is None:
                continue
            stamp_ns, image, frame_id = item
            try:
                self.stream.push_encoded(stamp_ns, image)
            except Exception as err:  # noqa: BLE001 - counted and logged once per kind, never fatal
                if not self._closing.is_set():  # after close() the node may be destroyed: touch nothing
                    self._frame_errors.record(type(err).__name__, err)
                continue
            self._frame_id = frame_id

    # ------------------------------------------------------------------ ticks
    def _on_tick_info(self, info: TimerInfo) -> None:  # type: ignore[valid-type]
        self._tick(int(info.expected_call_time.nanoseconds))

    def _on_tick_plain(self) -> None:  # pragma: no cover - rclpy without TimerInfo
        self._tick(self.get_clock().now().nanoseconds)

    def _tick(self, expected_ns: int) -> None:
        """Count and skip overruns, else one StreamingAnticipator.tick and its publication.

        ``expected_ns``: when this call was due (timer clock). A due time that fell while the previous
        tick was still running is skipped and counted: this call itself if it is such a late call, and
        the due times rcl dropped in between that lay inside the previous tick's run. Due times dropped
        for other reasons (a coarse /clock, a busy machine) are not counted as skipped ticks.
        """
        if self._closing.is_set():
            return
        now_ns = self.get_clock().now().nanoseconds
        if not self._overruns.start(expected_ns, now_ns):
            return
        t0 = time.perf_counter()
        result = None
        try:
            result = self.stream.tick(now_ns)
            if result is not None:
                self._future_pub.publish(forecast_to_msg(result, self._frame_id))
                self._current_pub.publish(segment_to_msg(result.current))
                self._ticks.published()
        except Exception as err:  # noqa: BLE001 - a failing tick must not kill the node
            if result is not None:  # the stream gave a result: building or publishing it failed
                self._ticks.publish_failed()
            if self._closing.is_set() or not rclpy.ok(context=self.context):
                return  # shutting down while a tick was running
            self._tick_errors.record(type(err).__name__, err)
            result = None
        elapsed = time.perf_counter() - t0
        self._overruns.finish(self.get_clock().now().nanoseconds)
        self._ticks.finished(elapsed, result)

    def _on_clock_jump(self, jump: Any) -> None:
        self._overruns.clock_jumped()

    # ------------------------------------------------------------------ services and diagnostics
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.stream.reset("service")
        response.success = True
        response.message = f"new episode {self.stream.episode}"
        self._log.info(f"reset requested: {response.message}")
        return response

    @property
    def last_result(self) -> ForecastResult | None:
        """The last result published (None before the first)."""
        return self._ticks.last_result()

    def diagnostics_values(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the /diagnostics status (:mod:`actfusion_ros.node_diagnostics`)."""
        return self._diagnostics.values()

    def _publish_diagnostics(self) -> None:
        if self._closing.is_set():
            return
        level, message, values = self.diagnostics_values()
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(),
                                                name=f"{self.get_fully_qualified_name()}: stream",
                                                level=level, message=message, values=values))

    # ------------------------------------------------------------------ shutdown
    #: how long :meth:`close` waits for the feature worker to finish the frame it is extracting
    worker_join_timeout_s = 5.0

    def close(self, timeout_s: float | None = None) -> bool:
        """Ordered, bounded stop (idempotent); call before ``destroy_node``. True when the worker ended.

        Stops the timers (no new ticks or diagnostics), stops accepting frames (the image subscription
        is destroyed; the queue closed, so frames still arriving are never processed), signals the feature
        worker and waits at most ``timeout_s`` (default :attr:`worker_join_timeout_s`) for it to finish
        the extraction it is in. A worker still busy after that is a daemon thread that touches nothing
        of the node any more (it ends after its current frame, or with the process).
        """
        self._closing.set()
        for timer in (getattr(self, "_tick_timer", None), getattr(self, "_diag_timer", None)):
            if timer is not None:
                try:
                    timer.cancel()
                except Exception:  # noqa: BLE001 - a timer of a shut-down context is stopped anyway
                    pass
        sub = getattr(self, "_image_sub", None)
        if sub is not None and sub in self.subscriptions:
            try:
                self.destroy_subscription(sub)  # no more images from DDS
            except Exception:  # noqa: BLE001 - destroyed with the node at the latest
                pass
        if self._queue is not None:
            self._queue.close()  # the worker takes no more frames; get() wakes it
        worker = self._worker
        if worker is None or worker is threading.current_thread() or not worker.is_alive():
            return True
        timeout = self.worker_join_timeout_s if timeout_s is None else timeout_s
        worker.join(timeout)
        if worker.is_alive():
            self._log.warning(f"the feature worker is still busy {timeout:g} s after shutdown began; "
                              f"shutting down without it")
            return False
        return True

    def destroy_node(self) -> None:
        """:meth:`close` first (the worker stopped or given up on), only then the ROS entities."""
        self.close()
        super().destroy_node()
