"""What exists only while ``actfusion_node`` is active: :class:`NodeActivity`, and what all its
activations share: :class:`ActivityShared`.

One activation's image subscription, tick timer, /clock jump callback and feature worker. ``activate``
creates a :class:`NodeActivity` and :meth:`~NodeActivity.start` s it; ``deactivate`` (and a failed
``activate``) :meth:`~NodeActivity.stop` s it: no more images or ticks, then bounded waits for a running tick
and for the worker. The node's ``close`` calls :meth:`~NodeActivity.close` (ticks cancelled, no more images,
the worker given up on after a bound). The rules, threads and callback groups: docs/node.md ("Lifecycle",
"Behaviour"); the ROS-free work is :class:`~actfusion_ros.node_pipeline.NodePipeline`'s.

No ``from __future__ import annotations`` here: rclpy passes ``TimerInfo`` to a timer callback only
when the parameter's annotation *is* the ``TimerInfo`` class, not a string.
"""
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import rclpy
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from sensor_msgs.msg import CompressedImage, Image

from actfusion_ros.node_outputs import NodeOutputs
from actfusion_ros.node_pipeline import FeatureWorker, NodePipeline
from actfusion_ros.reporting import SafeLog
from actfusion_ros.ros_messages import image_qos

try:  # rclpy >= Jazzy: timer callbacks may receive the expected call time
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - older rclpy
    TimerInfo = None  # type: ignore[assignment,misc]

__all__ = ["ActivityShared", "NodeActivity"]


@dataclass(frozen=True)
class ActivityShared:
    """What every activation of one node shares (created once, with the node).

    ``on_image``: the subscription's callback; ``closing``: set by the node's ``close`` (no tick runs from
    then on); ``image_group`` / ``tick_group``: the callback groups of the subscription and the tick timer;
    ``tick_lock``: held by a running tick (a tick that outlived a deactivation's bounded wait still
    excludes the ticks of the next activation).
    """

    on_image: Callable[[Any], None]
    closing: threading.Event
    image_group: Any
    tick_group: Any
    tick_lock: threading.Lock = field(default_factory=threading.Lock)


class NodeActivity:
    """One activation of ``node`` (an ``rclpy.lifecycle.LifecycleNode``): its subscription, ticks and worker.

    ``pipeline`` / ``outputs``: what ``configure`` built; ``shared``: what the node's activations share;
    ``log``: the node's log.
    """

    def __init__(self, node: Any, pipeline: NodePipeline, outputs: NodeOutputs, shared: ActivityShared,
                 log: SafeLog) -> None:
        self._node = node
        self._pipeline: NodePipeline | None = pipeline
        self._outputs: NodeOutputs | None = outputs
        self._shared = shared
        self._log = log
        self._ticking = False  # ticks do something only between start and stop
        self.worker: FeatureWorker | None = None
        self.image_sub: Any = None
        self.tick_timer: Any = None
        self._jump_handle: Any = None

    def start(self) -> None:
        """Start the feature worker, subscribe, start the ticks and follow /clock jumps. Raises what rclpy
        raises (e.g. for an invalid topic name); :meth:`stop` then stops the part already started."""
        p, node = self._configured(), self._node
        s = p.settings
        p.overruns.clock_jumped()             # the time spent inactive is no overrun
        p.queue.clear()                       # a frame an image callback queued while deactivating: old
        self.worker = FeatureWorker(p, p.frame_errors.record).start()
        self._ticking = True
        self.image_sub = node.create_subscription(
            CompressedImage if s.compressed else Image, s.image_topic, self._shared.on_image,
            image_qos(s.qos_reliability, s.qos_depth),
            callback_group=self._shared.image_group)
        tick_cb = self._on_tick_info if TimerInfo is not None else self._on_tick_plain
        self.tick_timer = node.create_timer(1.0 / s.tick_rate_hz, tick_cb, callback_group=self._shared.tick_group)
        # /clock jumps (sim time start, bag loops, seeks) must not count as skipped ticks
        self._jump_handle = node.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=max(10**9, 10 * p.tick_period_ns)),
                          min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self._on_clock_jump)

    def stop(self, tick_wait_s: float, worker_wait_s: float) -> None:
        """No more images taken or ticks run, the running tick finished (waited for at most ``tick_wait_s``),
        the worker stopped (at most ``worker_wait_s``; one still busy then is given up on, with a warning)."""
        self._ticking = False  # a tick starting from now does nothing
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        node = self._node
        for entity, destroy in ((self.tick_timer, node.destroy_timer), (self.image_sub, node.destroy_subscription)):
            if entity is not None:
                destroy(entity)
        self.tick_timer = self.image_sub = None
        if self._shared.tick_lock.acquire(timeout=tick_wait_s):  # a tick in progress ends
            self._shared.tick_lock.release()
        worker, self.worker = self.worker, None
        self._stop_worker(worker, worker_wait_s, "deactivation began; going on")

    def close(self, timeout_s: float) -> bool:
        """The active part of the node's ``close`` (idempotent): the tick timer cancelled, no more images
        from DDS (the subscription destroyed, the queue closed), the worker signalled and waited for at most
        ``timeout_s``. True when it ended; one still busy is a daemon thread that touches nothing of the node
        any more (it ends after its current frame, or with the process)."""
        if self.tick_timer is not None:
            try:
                self.tick_timer.cancel()
            except Exception:  # noqa: BLE001 - a timer of a shut-down context is stopped anyway
                pass
        sub = self.image_sub
        if sub is not None and sub in self._node.subscriptions:
            try:
                self._node.destroy_subscription(sub)  # no more images from DDS
            except Exception:  # noqa: BLE001 - destroyed with the node at the latest
                pass
        if self._pipeline is not None:
            self._pipeline.queue.close()  # the worker takes no more frames; get() wakes it
        return self._stop_worker(self.worker, timeout_s, "shutdown began; shutting down")

    def release(self) -> None:
        """Forget the pipeline, outputs and worker (the node dropped its model): callbacks rclpy still holds
        (a cancelled timer, the jump callback) then find nothing to do and keep nothing alive."""
        self._ticking = False
        self._pipeline = self._outputs = self.worker = None

    def _stop_worker(self, worker: FeatureWorker | None, timeout_s: float, after: str) -> bool:
        """Stop ``worker`` (None: none), waiting at most ``timeout_s``; warn when it is still busy then."""
        if worker is None or worker.stop(timeout_s):
            return True
        self._log.warning(f"the feature worker is still busy {timeout_s:g} s after {after} without it")
        return False

    def _configured(self) -> NodePipeline:
        if self._pipeline is None:
            raise RuntimeError("this activation was released: nothing configured")
        return self._pipeline

    # ------------------------------------------------------------------ callbacks
    def _on_tick_info(self, info: TimerInfo) -> None:  # type: ignore[valid-type]
        self._tick(int(info.expected_call_time.nanoseconds))

    def _on_tick_plain(self) -> None:  # pragma: no cover - rclpy without TimerInfo
        self._tick(self._now_ns())

    def _tick(self, expected_ns: int) -> None:
        """One tick (NodePipeline.tick: overruns counted and skipped, the forecast published), only while
        started; :meth:`stop` waits for a running tick."""
        lock = self._shared.tick_lock
        if self._shared.closing.is_set() or not lock.acquire(blocking=False):
            return
        try:
            p, out = self._pipeline, self._outputs
            if self._ticking and p is not None and out is not None:
                p.tick(expected_ns, self._now_ns, out.publish_forecast, self._shutting_down, out.picture_output)
        finally:
            lock.release()

    def _shutting_down(self) -> bool:
        return self._shared.closing.is_set() or not rclpy.ok(context=self._node.context)

    def _on_clock_jump(self, jump: Any) -> None:
        p = self._pipeline
        if p is not None:
            p.overruns.clock_jumped()

    def _now_ns(self) -> int:
        return self._node.get_clock().now().nanoseconds
