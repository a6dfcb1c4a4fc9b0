"""``actfusion_node``: the thin ROS 2 managed-node shell around :class:`~actfusion_ros.stream.StreamingAnticipator`.

A ``rclpy.lifecycle`` node with the standard services (``ros2 lifecycle get/set``). ``configure`` validates
the parameters and builds the ROS-free :class:`~actfusion_ros.node_pipeline.NodePipeline` (model, queue,
counters, live picture) and the lifecycle publishers; ``activate`` creates the image subscription, the feature
worker and the tick timer and publishes the class map; ``deactivate`` stops the three (model kept); ``cleanup``
drops the model; ``shutdown`` ends the process. ``autostart`` (default true) configures and activates in the
constructor. /diagnostics and ``~/reset`` exist in every state. The rules, threads and callback groups:
docs/node.md ("Lifecycle", "Behaviour"); what is published, on which QoS: "Topics, service, QoS" and
"Timeline image and class map" (names in :mod:`actfusion_ros.topics`).

The image callback only checks the header and enqueues (``NodePipeline.offer``); the feature worker decodes
and extracts; the tick (``NodePipeline.tick``) forecasts, publishes, then draws the live picture when someone
subscribes to ``~/timeline_image``. None of them raises into rclpy: failures are counted per kind.

No ``from __future__ import annotations`` here: rclpy passes ``TimerInfo`` to a timer callback only
when the parameter's annotation *is* the ``TimerInfo`` class, not a string.
"""
import sys

if __name__ == "__main__":  # python -m actfusion_ros.node: signal handling before the heavy imports below
    from actfusion_ros.node_entry import main as _entry_main

    sys.exit(_entry_main())

import threading
from typing import Any, Callable, Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from actfusion_ros.builder import StartupError
from actfusion_ros.node_outputs import NodeOutputs
from actfusion_ros.node_pipeline import (FeatureWorker, NodePipeline, lifecycle_status, parameter_change_refusal,
                                         release_device_memory)
from actfusion_ros.reporting import SafeLog
from actfusion_ros.ros_messages import OUTPUT_QOS, diagnostic_array, image_qos
from actfusion_ros.ros_params import declare_node_parameters, node_settings
from actfusion_ros.stream_types import Forecaster, ForecastResult
from actfusion_ros.topics import DIAGNOSTICS_TOPIC, NODE_NAME, RESET_SERVICE

try:  # rclpy >= Jazzy: timer callbacks may receive the expected call time
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - older rclpy
    TimerInfo = None  # type: ignore[assignment,misc]

__all__ = ["ActFusionNode", "NODE_NAME"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class ActFusionNode(LifecycleNode):
    """Streaming action segmentation + anticipation, a managed node (see the module docstring).

    ``forecaster``: use this instead of building one from the parameters (tests, benchmarks);
    ``class_names`` then defaults to ``forecaster.class_names``. Other keyword arguments go to
    :class:`rclpy.lifecycle.LifecycleNode`. With ``autostart`` (the default) the constructor configures
    and activates the node and raises :class:`actfusion_ros.builder.StartupError` with a readable message
    when the parameters, model or files are unusable; otherwise it is left unconfigured.
    """

    def __init__(self, *, forecaster: Forecaster | None = None, class_names: Sequence[str] | None = None,
                 node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        # set first: rclpy may destroy a node whose __init__ failed (context shutdown)
        self._closing = threading.Event()
        self._pipeline: NodePipeline | None = None
        self._feature_worker: FeatureWorker | None = None
        self._image_sub: Any = None
        self._tick_timer: Any = None
        self._diag_timer: Any = None
        self._diag_period_s = 0.0
        self._jump_handle: Any = None
        self._outputs: NodeOutputs | None = None
        self._state = "unconfigured"            # the primary state, as `ros2 lifecycle get` names it
        self._configure_error: str | None = None  # why the last configure failed
        self._activate_error: str | None = None   # why the last activate failed
        self._autostarting = False
        self._tick_lock = threading.Lock()       # held by a running tick; deactivate waits for it
        self._injected = (forecaster, class_names)
        #: called once the shutdown transition has released everything (node_process: stop spinning)
        self.on_finalized: Callable[[], object] | None = None
        # overrides auto-declared: get_parameters_by_prefix (public) sees them all (ros_params re-declares ours)
        super().__init__(node_name, **{**node_kwargs, "automatically_declare_parameters_from_overrides": True})
        self._log = SafeLog(self.get_logger())  # fixed severity per call site; never raises
        self._declaration_problems = declare_node_parameters(self, self._log.warning)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._tick_group = MutuallyExclusiveCallbackGroup()
        self._misc_group = MutuallyExclusiveCallbackGroup()
        self._diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS)
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset,
                                              callback_group=self._misc_group)
        self._start_diagnostics(self.get_parameter("diagnostics_period_s").value)
        if self.get_parameter("autostart").value:
            self._autostart()
        else:
            self._log.info(f"unconfigured (autostart: false); configure with "
                           f"'ros2 lifecycle set {self.get_fully_qualified_name()} configure'")

    def _autostart(self) -> None:
        """configure + activate now; a failure destroys the node and raises StartupError (exit 2)."""
        self._autostarting = True
        try:
            if self.trigger_configure() != SUCCESS:
                error = self._configure_error or "configure failed (see the log)"
            elif self.trigger_activate() != SUCCESS:
                error = f"activate failed: {self._activate_error}"
            else:
                return
        finally:
            self._autostarting = False
        self.destroy_node()
        raise StartupError(error)

    # ------------------------------------------------------------------ lifecycle transitions
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate the parameters and load the model; a failure leaves the node unconfigured."""
        self._configure_error = None
        forecaster, class_names = self._injected
        try:
            settings = node_settings(self, self._declaration_problems)
            pipeline = NodePipeline.build(settings, forecaster=forecaster, class_names=class_names,
                                          info=self._log.info, warning=self._log.warning, error=self._log.error)
        except Exception as err:  # noqa: BLE001 - any failure: stay unconfigured, say why once
            return self._configure_failed(str(err) if isinstance(err, StartupError)
                                          else f"{type(err).__name__}: {err}")
        s = settings
        self._pipeline = pipeline
        self._outputs = NodeOutputs(self, picture=pipeline.picture is not None)
        self._start_diagnostics(s.diagnostics_period_s)
        self._state = "inactive"
        self._log.info(f"configured: model {pipeline.stream.forecaster!r}; extractor {pipeline.stream.extractor!r}")
        return super().on_configure(state)

    def _configure_failed(self, message: str) -> TransitionCallbackReturn:
        """Remember and (unless autostarting) log why configure failed; the node stays unconfigured."""
        self._configure_error = message
        if not self._autostarting:  # autostart: the process reports it ("cannot start: ...") and exits 2
            self._log.error(f"configure failed, the node stays unconfigured (fix the parameters, e.g. with "
                            f"'ros2 param set', and configure again): {message}")
        release_device_memory()
        return FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe, start the feature worker and the tick timer; the forecast publishers are enabled.
        A failure (e.g. an invalid topic name) is logged and leaves the node inactive."""
        p = self._configured()
        result = super().on_activate(state)  # enables the lifecycle publishers
        try:
            self._start_processing(p)
        except Exception as err:  # noqa: BLE001 - stay inactive, say why
            self._activate_error = f"{type(err).__name__}: {err}"
            if not self._autostarting:
                self._log.error(f"activate failed, the node stays inactive: {self._activate_error}")
            self._stop_processing()
            super().on_deactivate(state)
            return FAILURE
        # the class map, once per activation; transient local: a late subscriber gets it too
        self._outputs.publish_class_map(p.stream.class_names, self._now_ns())
        self._log.info(p.describe(self._image_sub.topic_name, [o.topic_name for o in self._outputs.publishers]))
        return result

    def _start_processing(self, p: NodePipeline) -> None:
        s = p.settings
        p.overruns.clock_jumped()             # the time spent inactive is no overrun
        p.queue.clear()                       # a frame an image callback queued while deactivating: old
        self._feature_worker = FeatureWorker(p, p.frame_errors.record).start()
        self._state = "active"
        self._image_sub = self.create_subscription(
            CompressedImage if s.compressed else Image, s.image_topic, self._on_image,
            image_qos(s.qos_reliability, s.qos_depth),
            callback_group=self._image_group)
        tick_cb = self._on_tick_info if TimerInfo is not None else self._on_tick_plain
        self._tick_timer = self.create_timer(1.0 / s.tick_rate_hz, tick_cb, callback_group=self._tick_group)
        # /clock jumps (sim time start, bag loops, seeks) must not count as skipped ticks
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=max(10**9, 10 * p.tick_period_ns)),
                          min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self._on_clock_jump)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the subscription, the ticks and the worker; drop the queued frames (counted in
        ``frames_dropped``) and end the episode (``resets.deactivate``). The model stays loaded."""
        self._stop_processing()
        p = self._configured()
        p.queue.clear()
        p.stream.reset("deactivate")
        self._log.info("deactivated: no images taken, no forecasts; the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the model (and the CUDA cache): back to unconfigured."""
        result = super().on_cleanup(state)
        self._drop_pipeline()
        self._log.info("cleaned up: model released")
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything (:meth:`close`), drop the model, then let the process end (:attr:`on_finalized`)."""
        self.close()
        self._drop_pipeline()
        self._state = "finalized"
        self._log.info("shut down (lifecycle transition)")
        if self.on_finalized is not None:
            self.on_finalized()
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: stop and drop everything, back to unconfigured."""
        self._log.error(f"a lifecycle transition from {state.label!r} failed; back to unconfigured")
        self._stop_processing()
        self._drop_pipeline()
        return SUCCESS

    def _stop_processing(self) -> None:
        """No more images taken or ticks run, the running tick finished, the worker stopped (bounded)."""
        self._state = "inactive"  # a tick starting from now does nothing
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        for entity, destroy in ((self._tick_timer, self.destroy_timer), (self._image_sub, self.destroy_subscription)):
            if entity is not None:
                destroy(entity)
        self._tick_timer = self._image_sub = None
        if self._tick_lock.acquire(timeout=self.tick_wait_timeout_s):  # a tick in progress ends
            self._tick_lock.release()
        worker, self._feature_worker = self._feature_worker, None
        if worker is not None and not worker.stop(self.worker_join_timeout_s):
            self._log.warning(f"the feature worker is still busy {self.worker_join_timeout_s:g} s after "
                              f"deactivation began; going on without it")

    def _drop_pipeline(self) -> None:
        """Forget the configured parts (publishers, stream, model) and free their memory."""
        if self._outputs is not None:
            self._outputs.destroy()
        self._outputs = None
        pipeline, self._pipeline, self._feature_worker = self._pipeline, None, None
        if pipeline is not None:
            pipeline.queue.close()
            del pipeline
            release_device_memory()
        self._state = "unconfigured"

    def _configured(self) -> NodePipeline:
        if self._pipeline is None:
            raise RuntimeError(f"the node is {self._state}: nothing configured")
        return self._pipeline

    @property
    def lifecycle_state(self) -> str:
        """The primary lifecycle state: unconfigured, inactive, active or finalized."""
        return self._state

    # ------------------------------------------------------------------ parameters
    def _on_set_parameters(self, params: list) -> SetParametersResult:
        """Our parameters change only while unconfigured (they are read by the next configure)."""
        refusal = parameter_change_refusal([p.name for p in params], self._state)
        return SetParametersResult(successful=refusal is None, reason=refusal or "")

    def _on_parameters_set(self, params: list) -> None:
        for p in params:  # a value set again replaces one rclpy refused at start-up
            self._declaration_problems.pop(p.name, None)

    # ------------------------------------------------------------------ configured parts (RuntimeError while
    # unconfigured; tests and benchmarks read them)
    settings = property(lambda self: self._configured().settings, doc="The validated parameters (NodeSettings).")
    stream = property(lambda self: self._configured().stream, doc="The StreamingAnticipator (model loaded).")
    _queue = property(lambda self: self._configured().queue)
    _bad_images = property(lambda self: self._configured().bad_images)
    _frame_errors = property(lambda self: self._configured().frame_errors)
    _tick_errors = property(lambda self: self._configured().tick_errors)
    _worker = property(lambda self: self._feature_worker.thread if self._feature_worker is not None else None)

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Check the header and enqueue (NodePipeline.offer); never decodes, never waits for features or inference."""
        p = self._pipeline
        if p is not None:
            p.offer(msg, self._now_ns())

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------ ticks
    def _on_tick_info(self, info: TimerInfo) -> None:  # type: ignore[valid-type]
        self._tick(int(info.expected_call_time.nanoseconds))

    def _on_tick_plain(self) -> None:  # pragma: no cover - rclpy without TimerInfo
        self._tick(self.get_clock().now().nanoseconds)

    def _tick(self, expected_ns: int) -> None:
        """One tick (NodePipeline.tick: overruns counted and skipped, the forecast published), only while
        active; a deactivation waits for a running tick."""
        if self._closing.is_set() or not self._tick_lock.acquire(blocking=False):
            return
        try:
            p, out = self._pipeline, self._outputs
            if self._state == "active" and p is not None and out is not None:
                p.tick(expected_ns, self._now_ns, out.publish_forecast,
                       lambda: self._closing.is_set() or not rclpy.ok(context=self.context), out.picture_output)
        finally:
            self._tick_lock.release()

    def _on_clock_jump(self, jump: Any) -> None:
        p = self._pipeline
        if p is not None:
            p.overruns.clock_jumped()

    # ------------------------------------------------------------------ services and diagnostics
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        p = self._pipeline
        if p is None:
            response.success, response.message = False, f"the node is {self._state}: no episode to reset"
            return response
        response.success, response.message = True, p.reset_episode()
        self._log.info(f"reset requested: {response.message}")
        return response

    @property
    def last_result(self) -> ForecastResult | None:
        """The last result published (None before the first)."""
        p = self._pipeline
        return p.ticks.last_result() if p is not None else None

    def diagnostics_values(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the /diagnostics status (:mod:`actfusion_ros.node_diagnostics`,
        in lifecycle terms by :func:`actfusion_ros.node_pipeline.lifecycle_status`)."""
        p = self._pipeline
        return lifecycle_status(self._state, p.diagnostics.values() if p is not None else None,
                                self._configure_error)

    def _start_diagnostics(self, period_s: float) -> None:
        """(Re)start the /diagnostics timer (steady clock) with ``period_s``."""
        if self._diag_timer is not None and period_s == self._diag_period_s:
            return
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
        self._diag_period_s = period_s
        self._diag_timer = self.create_timer(period_s, self._publish_diagnostics, callback_group=self._misc_group,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _publish_diagnostics(self) -> None:
        if self._closing.is_set():
            return
        level, message, values = self.diagnostics_values()
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(),
                                                name=f"{self.get_fully_qualified_name()}: stream",
                                                level=level, message=message, values=values))

    # ------------------------------------------------------------------ shutdown
    #: how long :meth:`close` (and a deactivation) waits for the feature worker to finish its frame
    worker_join_timeout_s = 5.0
    #: how long a deactivation waits for a running tick (inference) to finish
    tick_wait_timeout_s = 60.0

    def close(self, timeout_s: float | None = None) -> bool:
        """Ordered, bounded stop (idempotent); call before ``destroy_node``. True when the worker ended.

        Stops the timers (no new ticks or diagnostics), stops accepting frames (the image subscription
        is destroyed; the queue closed, so frames still arriving are never processed), signals the feature
        worker and waits at most ``timeout_s`` (default :attr:`worker_join_timeout_s`) for it to finish
        the extraction it is in. A worker still busy after that is a daemon thread that touches nothing
        of the node any more (it ends after its current frame, or with the process).
        """
        self._closing.set()
        for timer in (self._tick_timer, self._diag_timer):
            if timer is not None:
                try:
                    timer.cancel()
                except Exception:  # noqa: BLE001 - a timer of a shut-down context is stopped anyway
                    pass
        sub = self._image_sub
        if sub is not None and sub in self.subscriptions:
            try:
                self.destroy_subscription(sub)  # no more images from DDS
            except Exception:  # noqa: BLE001 - destroyed with the node at the latest
                pass
        if self._pipeline is not None:
            self._pipeline.queue.close()  # the worker takes no more frames; get() wakes it
        worker = self._feature_worker
        timeout = self.worker_join_timeout_s if timeout_s is None else timeout_s
        if worker is None or worker.stop(timeout):
            return True
        self._log.warning(f"the feature worker is still busy {timeout:g} s after shutdown began; "
                          f"shutting down without it")
        return False

    def destroy_node(self) -> None:
        """:meth:`close` first (the worker stopped or given up on), only then the ROS entities."""
        self.close()
        super().destroy_node()
