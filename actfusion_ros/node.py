"""``actfusion_node``: the thin ROS 2 managed-node shell around :class:`~actfusion_ros.stream.StreamingAnticipator`.

A ``rclpy.lifecycle`` node with the standard services (``ros2 lifecycle get/set``). ``configure`` validates
the parameters and builds the ROS-free :class:`~actfusion_ros.node_pipeline.NodePipeline` (model, queue,
counters, live picture) and the lifecycle publishers; ``activate`` creates the image subscription, the feature
worker and the tick timer and publishes the class map; ``deactivate`` stops the three (model kept); ``cleanup``
drops the model; ``shutdown`` ends the process. ``autostart`` (default true) configures and activates in the
constructor. /diagnostics (:class:`~actfusion_ros.node_diagnostics_timer.DiagnosticsTimer`) and ``~/reset``
exist in every state. The rules, threads and callback groups: docs/node.md ("Lifecycle", "Behaviour"); what is
published, on which QoS: "Topics, service, QoS" and "Timeline image and class map" (names in
:mod:`actfusion_ros.topics`).

What exists only while active (subscription, tick timer, clock-jump callback, feature worker) is one
:class:`~actfusion_ros.node_activity.NodeActivity`, created by each ``activate``. The image callback only checks
the header and enqueues (``NodePipeline.offer``); the feature worker decodes and extracts; the tick
(``NodePipeline.tick``) forecasts, publishes, then draws the live picture when someone subscribes to
``~/timeline_image``. None of them raises into rclpy: failures are counted per kind.
"""
import sys

if __name__ == "__main__":  # python -m actfusion_ros.node: signal handling before the heavy imports below
    from actfusion_ros.node_entry import main as _entry_main

    sys.exit(_entry_main())

import threading
from typing import Any, Callable, Sequence

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from actfusion_ros.builder import StartupError
from actfusion_ros.node_activity import ActivityShared, NodeActivity
from actfusion_ros.node_diagnostics_timer import DiagnosticsTimer
from actfusion_ros.node_outputs import NodeOutputs
from actfusion_ros.node_pipeline import NodePipeline, lifecycle_status, release_device_memory, reset_reply
from actfusion_ros.reporting import SafeLog
from actfusion_ros.ros_params import NodeParameters
from actfusion_ros.stream_types import Forecaster, ForecastResult
from actfusion_ros.topics import NODE_NAME, RESET_SERVICE

__all__ = ["ActFusionNode", "NODE_NAME"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


#: the lifecycle services that only read the state machine (``ros2 lifecycle get``, ``ros2 lifecycle list``)
_LIFECYCLE_QUERIES = ("_service_get_state", "_service_get_available_states",
                      "_service_get_available_transitions", "_service_get_transition_graph")


def _answer_lifecycle_queries_during_transitions(node: LifecycleNode) -> list[Any]:
    """Move the read-only lifecycle services of ``node`` into a reentrant callback group of their own;
    returns the services moved.

    rclpy's ``LifecycleNode`` creates all five lifecycle services in the node's default (mutually exclusive)
    callback group, and a transition runs inside the ``change_state`` callback, so during a long configure
    (a model load, a TensorRT engine build of minutes) ``ros2 lifecycle get`` would wait for it to end.
    Moved, a query answers at once (e.g. ``configuring``); ``change_state`` stays in the default group, with
    rclpy's parameter services, so transitions still run one at a time and never beside a parameter change.
    """
    queries = ReentrantCallbackGroup()
    moved = []
    for attr in _LIFECYCLE_QUERIES:
        service = getattr(node, attr, None)  # absent with enable_communication_interface=False
        if service is not None:
            service.callback_group = queries
            queries.add_entity(service)
            moved.append(service)
    return moved


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
        self._activity: NodeActivity | None = None       # while active: subscription, ticks, feature worker
        self._diagnostics: DiagnosticsTimer | None = None
        self._outputs: NodeOutputs | None = None
        self._state = "unconfigured"            # the primary state, as `ros2 lifecycle get` names it
        self._configure_error: str | None = None  # why the last configure failed
        self._activate_error: str | None = None   # why the last activate failed
        self._autostarting = False
        self._injected = (forecaster, class_names)
        #: called once the shutdown transition has released everything (node_process: stop spinning)
        self.on_finalized: Callable[[], object] | None = None
        # overrides auto-declared: get_parameters_by_prefix (public) sees them all (ros_params re-declares ours)
        super().__init__(node_name, **{**node_kwargs, "automatically_declare_parameters_from_overrides": True})
        self._log = SafeLog(self.get_logger())  # fixed severity per call site; never raises
        _answer_lifecycle_queries_during_transitions(self)
        self._params = NodeParameters(self, lambda: self._state, self._log.warning)
        self._shared = ActivityShared(self._on_image, self._closing, image_group=MutuallyExclusiveCallbackGroup(),
                                      tick_group=MutuallyExclusiveCallbackGroup())
        self._misc_group = MutuallyExclusiveCallbackGroup()
        period_s = self.get_parameter("diagnostics_period_s").value
        self._diagnostics = DiagnosticsTimer(self, self.diagnostics_values, period_s, closing=self._closing,
                                             callback_group=self._misc_group)
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset,
                                              callback_group=self._misc_group)
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
            settings = self._params.settings()
            pipeline = NodePipeline.build(settings, forecaster=forecaster, class_names=class_names,
                                          info=self._log.info, warning=self._log.warning, error=self._log.error)
        except Exception as err:  # noqa: BLE001 - any failure: stay unconfigured, say why once
            return self._configure_failed(str(err) if isinstance(err, StartupError)
                                          else f"{type(err).__name__}: {err}")
        self._pipeline = pipeline
        self._outputs = NodeOutputs(self, picture=pipeline.picture is not None,
                                    marginals=settings.publish_marginals)
        self._diagnostics.start(settings.diagnostics_period_s)
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
        self._activity = NodeActivity(self, p, self._outputs, self._shared, self._log)
        self._state = "active"
        try:
            self._activity.start()
        except Exception as err:  # noqa: BLE001 - stay inactive, say why
            self._activate_error = f"{type(err).__name__}: {err}"
            if not self._autostarting:
                self._log.error(f"activate failed, the node stays inactive: {self._activate_error}")
            self._stop_processing()
            super().on_deactivate(state)
            return FAILURE
        # the class map, once per activation; transient local: a late subscriber gets it too
        self._outputs.publish_class_map(p.stream.class_names, self._now_ns())
        self._log.info(p.describe(self._activity.image_sub.topic_name, self._outputs.topic_names))
        return result

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
        self._state = "inactive"
        activity, self._activity = self._activity, None
        if activity is not None:
            activity.stop(self.tick_wait_timeout_s, self.worker_join_timeout_s)

    def _drop_pipeline(self) -> None:
        """Forget the configured parts (publishers, stream, model) and free their memory."""
        if self._outputs is not None:
            self._outputs.destroy()
        self._outputs = None
        activity, self._activity = self._activity, None
        if activity is not None:  # shut down while active: close() stopped it; forget the model there too
            activity.release()
        pipeline, self._pipeline = self._pipeline, None
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

    # ------------------------------------------------------------------ configured parts (RuntimeError while
    # unconfigured; tests and benchmarks read them)
    settings = property(lambda self: self._configured().settings, doc="The validated parameters (NodeSettings).")
    stream = property(lambda self: self._configured().stream, doc="The StreamingAnticipator (model loaded).")
    _queue = property(lambda self: self._configured().queue)
    _bad_images = property(lambda self: self._configured().bad_images)
    _frame_errors = property(lambda self: self._configured().frame_errors)
    _tick_errors = property(lambda self: self._configured().tick_errors)
    # ------------------------------------------------------------------ the active parts (None while inactive)
    _worker = property(lambda self: self._activity.worker.thread if self._activity and self._activity.worker else None)
    _image_sub = property(lambda self: self._activity.image_sub if self._activity is not None else None)
    _tick_timer = property(lambda self: self._activity.tick_timer if self._activity is not None else None)
    _diag_timer = property(lambda self: self._diagnostics.timer if self._diagnostics is not None else None)

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Check the header and enqueue (NodePipeline.offer); never decodes, never waits for features or inference."""
        p = self._pipeline
        if p is not None:
            p.offer(msg, self._now_ns())

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------ services and diagnostics
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = reset_reply(self._pipeline, self._state)
        if response.success:
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
        if self._diagnostics is not None:
            self._diagnostics.cancel()
        timeout = self.worker_join_timeout_s if timeout_s is None else timeout_s
        if self._activity is not None:  # active (or shut down while active): ticks, subscription, worker
            return self._activity.close(timeout)
        if self._pipeline is not None:
            self._pipeline.queue.close()  # inactive: no worker to stop; none takes these frames
        return True

    def destroy_node(self) -> None:
        """:meth:`close` first (the worker stopped or given up on), only then the ROS entities."""
        self.close()
        super().destroy_node()
