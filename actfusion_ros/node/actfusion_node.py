"""``actfusion_node``: the ROS 2 managed node around :class:`~actfusion_ros.stream.StreamingAnticipator`.

A ``rclpy.lifecycle`` node with the standard services (``ros2 lifecycle get/set``), written like the rclpy
examples and yolo_ros: every ROS entity is an attribute of the node, created by the lifecycle transition that
needs it and destroyed by the one that ends it, and every callback is a method of the node.

============  =============================================================================================
transition    what it creates (and its counterpart destroys)
============  =============================================================================================
constructor   the parameters (declared with descriptors; changed only while unconfigured), the /diagnostics
              publisher and its steady timer, the ``~/reset`` service; with ``autostart`` it configures and
              activates at once
configure     the ROS-free :class:`~actfusion_ros.node.pipeline.NodePipeline` (model, queue, counters, live
              picture) and the lifecycle publishers (forecast, current action, class map, optional marginals
              and timeline image); ``cleanup`` destroys them and frees the model
activate      the feature worker, the image subscription, the tick timer and the /clock jump callback, and
              publishes the class map; ``deactivate`` stops and destroys them (the model stays)
shutdown      stops and frees everything, then lets the process end (:attr:`ActFusionNode.on_finalized`)
============  =============================================================================================

The image callback only checks the header and enqueues (``NodePipeline.offer``); the feature worker decodes
and extracts; the tick (``NodePipeline.tick``) forecasts, publishes through this node, then draws the live
picture when someone subscribes to ``~/timeline_image``. No callback raises into rclpy: failures are counted
per kind. The rules, threads and callback groups: docs/node.md ("Lifecycle", "Behaviour"); what is published,
on which QoS: "Topics, service, QoS" and "Timeline image and class map" (names in :mod:`actfusion_ros.topics`).

No ``from __future__ import annotations`` here: rclpy passes ``TimerInfo`` to a timer callback only when the
parameter's annotation *is* the ``TimerInfo`` class, not a string.
"""
import gc
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import rclpy
from actfusion_msgs.msg import ActionForecast, ActionSegment, ForecastMarginals
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException, ParameterException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from actfusion_ros.builder import StartupError
from actfusion_ros.node.pipeline import FeatureWorker, NodePipeline
from actfusion_ros.node_params import (
    PARAMETERS,
    NodeSettings,
    ParameterError,
    ParamSpec,
    declaration_problem,
    parameter_change_refusal,
    validate_values,
)
from actfusion_ros.reporting import SafeLog
from actfusion_ros.ros_messages import (
    LABEL_INFO_QOS,
    OUTPUT_QOS,
    TIMELINE_IMAGE_QOS,
    diagnostic_array,
    forecast_to_msg,
    image_qos,
    label_info_type,
    make_label_info,
    marginals_to_msg,
    rgb_image_msg,
    segment_to_msg,
)
from actfusion_ros.stream_types import Forecaster, ForecastResult
from actfusion_ros.topics import (
    DIAGNOSTICS_TOPIC,
    NODE_CURRENT_TOPIC,
    NODE_FUTURE_TOPIC,
    NODE_LABEL_INFO_TOPIC,
    NODE_MARGINALS_TOPIC,
    NODE_NAME,
    NODE_TIMELINE_TOPIC,
    RESET_SERVICE,
)

try:  # rclpy >= Jazzy: timer callbacks may receive the expected call time
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - older rclpy
    TimerInfo = None  # type: ignore[assignment,misc]

__all__ = ["ActFusionNode", "lifecycle_status", "parameter_descriptor"]

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE

#: the lifecycle services that only read the state machine (``ros2 lifecycle get``, ``ros2 lifecycle list``)
_LIFECYCLE_QUERIES = ("_service_get_state", "_service_get_available_states",
                      "_service_get_available_transitions", "_service_get_transition_graph")

#: parameters rclpy or launch may pass that are not ours (not reported as unknown)
_FOREIGN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services",
                       "qos_overrides.")


class ActFusionNode(LifecycleNode):
    """Streaming action segmentation + anticipation, a managed node (see the module docstring).

    ``forecaster``: use this instead of building one from the parameters (tests, benchmarks);
    ``class_names`` then defaults to ``forecaster.class_names``. Other keyword arguments go to
    :class:`rclpy.lifecycle.LifecycleNode`. With ``autostart`` (the default) the constructor configures
    and activates the node and raises :class:`actfusion_ros.builder.StartupError` with a readable message
    when the parameters, model or files are unusable; otherwise it is left unconfigured.

    While configured, :attr:`pipeline` is what configure built (model, queue, counters); while active,
    :attr:`image_sub`, :attr:`tick_timer` and :attr:`feature_worker` exist (None otherwise).
    """

    #: how long :meth:`close` (and a deactivation) waits for the feature worker to finish its frame
    worker_join_timeout_s = 5.0
    #: how long a deactivation waits for a running tick (inference) to finish
    tick_wait_timeout_s = 60.0

    def __init__(self, *, forecaster: Forecaster | None = None, class_names: Sequence[str] | None = None,
                 node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        # set first: rclpy may destroy a node whose __init__ failed (context shutdown)
        self._closing = threading.Event()          # set by close(): no tick, diagnostics or frame from then on
        self._tick_lock = threading.Lock()         # held by a running tick, across activations
        self._pipeline: NodePipeline | None = None
        self._state = "unconfigured"               # the primary state, as `ros2 lifecycle get` names it
        self._configure_error: str | None = None   # why the last configure failed
        self._activate_error: str | None = None    # why the last activate failed
        self._autostarting = False
        self._injected = (forecaster, class_names)
        self._declaration_problems: dict[str, str] = {}
        #: called once the shutdown transition has released everything (the process stops spinning)
        self.on_finalized: Callable[[], object] | None = None
        # configured: the lifecycle publishers
        self.future_pub: Any = None
        self.current_pub: Any = None
        self.label_info_pub: Any = None
        self.marginals_pub: Any = None   # with publish_marginals
        self.timeline_pub: Any = None    # with the live picture (timeline_rate_hz > 0)
        # active: the input, the ticks and the feature worker
        self.image_sub: Any = None
        self.tick_timer: Any = None
        self.feature_worker: FeatureWorker | None = None
        self._jump_handle: Any = None
        self._ticking = False  # ticks do something only between the start and the stop of processing
        # every state: diagnostics and reset
        self.diagnostics_pub: Any = None
        self.diagnostics_timer: Any = None
        self._diagnostics_period_s = 0.0
        # overrides auto-declared: get_parameters_by_prefix (public) sees them all (ours are re-declared)
        super().__init__(node_name, **{**node_kwargs, "automatically_declare_parameters_from_overrides": True})
        self._log = SafeLog(self.get_logger())  # fixed severity per call site; never raises
        _answer_lifecycle_queries_during_transitions(self)
        self._declare_parameters()
        self._image_group = MutuallyExclusiveCallbackGroup()
        self._tick_group = MutuallyExclusiveCallbackGroup()
        self._misc_group = MutuallyExclusiveCallbackGroup()  # diagnostics and reset
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS)
        self._start_diagnostics(self.get_parameter("diagnostics_period_s").value)
        self.reset_service = self.create_service(Trigger, RESET_SERVICE, self.reset_callback,
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
        """Validate the parameters, load the model and create the publishers; a failure leaves the node
        unconfigured."""
        self._configure_error = None
        forecaster, class_names = self._injected
        try:
            settings = self._settings()
            pipeline = NodePipeline.build(settings, forecaster=forecaster, class_names=class_names,
                                          info=self._log.info, warning=self._log.warning, error=self._log.error)
        except Exception as err:  # noqa: BLE001 - any failure: stay unconfigured, say why once
            return self._configure_failed(str(err) if isinstance(err, StartupError)
                                          else f"{type(err).__name__}: {err}")
        self._pipeline = pipeline
        self._create_publishers(picture=pipeline.picture is not None, marginals=settings.publish_marginals)
        self._start_diagnostics(settings.diagnostics_period_s)
        self._state = "inactive"
        self._log.info(f"configured: model {pipeline.stream.forecaster!r}; extractor {pipeline.stream.extractor!r}")
        return super().on_configure(state)

    def _configure_failed(self, message: str) -> TransitionCallbackReturn:
        """Remember and (unless autostarting) log why configure failed; the node stays unconfigured."""
        self._configure_error = message
        if not self._autostarting:  # autostart: the process reports it ("cannot start: ...") and exits 2
            self._log.error(f"configure failed, the node stays unconfigured (fix the parameters, e.g. with "
                            f"'ros2 param set', and configure again): {message}")
        _release_device_memory()
        return FAILURE

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start the feature worker, subscribe and start the ticks; the publishers are enabled. A failure (e.g.
        an invalid topic name) is logged and leaves the node inactive."""
        p = self.pipeline
        result = super().on_activate(state)  # enables the lifecycle publishers
        self._state = "active"
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
        self.label_info_pub.publish(make_label_info(p.stream.class_names, self.now_ns()))
        self._log.info(p.describe(self.image_sub.topic_name, [pub.topic_name for pub in self._lifecycle_publishers()]))
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the subscription, the ticks and the worker; drop the queued frames (counted in
        ``frames_dropped``) and end the episode (``resets.deactivate``). The model stays loaded."""
        self._stop_processing()
        p = self.pipeline
        p.queue.clear()
        p.stream.reset("deactivate")
        self._log.info("deactivated: no images taken, no forecasts; the model stays loaded")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Destroy the publishers and drop the model (and the CUDA cache): back to unconfigured."""
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

    @property
    def lifecycle_state(self) -> str:
        """The primary lifecycle state: unconfigured, inactive, active or finalized."""
        return self._state

    @property
    def pipeline(self) -> NodePipeline:
        """What configure built: settings, stream (model), queue, counters. RuntimeError while unconfigured."""
        if self._pipeline is None:
            raise RuntimeError(f"the node is {self._state}: nothing configured")
        return self._pipeline

    # ------------------------------------------------------------------ configured: publishers
    def _create_publishers(self, *, picture: bool, marginals: bool) -> None:
        """The lifecycle publishers (disabled until activate); ``picture``: ``~/timeline_image`` too,
        ``marginals``: ``actfusion/future_marginals`` too."""
        make = self.create_lifecycle_publisher
        self.future_pub = make(ActionForecast, NODE_FUTURE_TOPIC, OUTPUT_QOS)
        self.current_pub = make(ActionSegment, NODE_CURRENT_TOPIC, OUTPUT_QOS)
        self.label_info_pub = make(label_info_type(), NODE_LABEL_INFO_TOPIC, LABEL_INFO_QOS)
        self.marginals_pub = make(ForecastMarginals, NODE_MARGINALS_TOPIC, OUTPUT_QOS) if marginals else None
        self.timeline_pub = make(Image, NODE_TIMELINE_TOPIC, TIMELINE_IMAGE_QOS) if picture else None

    def _lifecycle_publishers(self) -> list[Any]:
        return [p for p in (self.future_pub, self.current_pub, self.marginals_pub, self.label_info_pub,
                            self.timeline_pub) if p is not None]

    def _destroy_publishers(self) -> None:
        for pub in self._lifecycle_publishers():
            self.destroy_lifecycle_publisher(pub)
        self.future_pub = self.current_pub = self.label_info_pub = self.marginals_pub = self.timeline_pub = None

    # what a tick needs from the node (actfusion_ros.node.pipeline.TickHost)
    def publish_forecast(self, result: ForecastResult, frame_id: str) -> None:
        """A tick's result: the forecast, the current action and (``publish_marginals``) the per-frame
        distribution."""
        self.future_pub.publish(forecast_to_msg(result, frame_id))
        self.current_pub.publish(segment_to_msg(result.current))
        if self.marginals_pub is not None:
            self.marginals_pub.publish(marginals_to_msg(result, frame_id))

    def picture_subscribers(self) -> int:
        """How many listen to ``~/timeline_image`` (0 without the live picture)."""
        return self.timeline_pub.get_subscription_count() if self.timeline_pub is not None else 0

    def publish_picture(self, rgb: np.ndarray, stamp_ns: int, frame_id: str) -> None:
        self.timeline_pub.publish(rgb_image_msg(rgb, stamp_ns, frame_id))

    def shutting_down(self) -> bool:
        """True once :meth:`close` began or the context is shutting down."""
        return self._closing.is_set() or not rclpy.ok(context=self.context)

    def now_ns(self) -> int:
        """The node's clock (ROS time: ``/clock`` with ``use_sim_time``), in nanoseconds."""
        return self.get_clock().now().nanoseconds

    # ------------------------------------------------------------------ active: input, ticks, worker
    def _start_processing(self, p: NodePipeline) -> None:
        """Start the feature worker, subscribe, start the ticks and follow /clock jumps. Raises what rclpy
        raises (e.g. for an invalid topic name); :meth:`_stop_processing` then stops the part started."""
        s = p.settings
        p.overruns.clock_jumped()             # the time spent inactive is no overrun
        p.queue.clear()                       # a frame an image callback queued while deactivating: old
        self.feature_worker = FeatureWorker(p, p.frame_errors.record).start()
        self._ticking = True
        self.image_sub = self.create_subscription(
            CompressedImage if s.compressed else Image, s.image_topic, self.image_callback,
            image_qos(s.qos_reliability, s.qos_depth), callback_group=self._image_group)
        tick_callback = self.tick_callback if TimerInfo is not None else self._tick_callback_without_info
        self.tick_timer = self.create_timer(1.0 / s.tick_rate_hz, tick_callback, callback_group=self._tick_group)
        # /clock jumps (sim time start, bag loops, seeks) must not count as skipped ticks
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=max(10**9, 10 * p.tick_period_ns)),
                          min_backward=Duration(nanoseconds=-1), on_clock_change=True),
            post_callback=self.clock_jump_callback)

    def _stop_processing(self) -> None:
        """No more images taken or ticks run, the running tick finished (waited for at most
        :attr:`tick_wait_timeout_s`), the worker stopped (at most :attr:`worker_join_timeout_s`; one still
        busy then is given up on, with a warning)."""
        self._state = "inactive"
        self._ticking = False  # a tick starting from now does nothing
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None
        for entity, destroy in ((self.tick_timer, self.destroy_timer), (self.image_sub, self.destroy_subscription)):
            if entity is not None:
                destroy(entity)
        self.tick_timer = self.image_sub = None
        if self._tick_lock.acquire(timeout=self.tick_wait_timeout_s):  # a tick in progress ends
            self._tick_lock.release()
        worker, self.feature_worker = self.feature_worker, None
        self._stop_worker(worker, self.worker_join_timeout_s, "deactivation began; going on")

    def _stop_worker(self, worker: FeatureWorker | None, timeout_s: float, after: str) -> bool:
        """Stop ``worker`` (None: none), waiting at most ``timeout_s``; warn when it is still busy then."""
        if worker is None or worker.stop(timeout_s):
            return True
        self._log.warning(f"the feature worker is still busy {timeout_s:g} s after {after} without it")
        return False

    def _drop_pipeline(self) -> None:
        """Forget the configured parts (publishers, stream, model) and free their memory. Callbacks rclpy may
        still hold (a cancelled tick timer, the clock-jump callback) then find nothing to do."""
        self._destroy_publishers()
        self._ticking = False
        self.feature_worker = self.tick_timer = self.image_sub = None  # shut down while active: close() stopped them
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            pipeline.queue.close()
            del pipeline
            _release_device_memory()
        self._state = "unconfigured"

    # ------------------------------------------------------------------ callbacks
    def image_callback(self, msg: Image | CompressedImage) -> None:
        """Check the header and enqueue (``NodePipeline.offer``); never decodes, never waits for features or
        inference."""
        p = self._pipeline
        if p is not None:
            p.offer(msg, self.now_ns())

    def tick_callback(self, info: TimerInfo) -> None:  # type: ignore[valid-type]
        self._tick(int(info.expected_call_time.nanoseconds))

    def _tick_callback_without_info(self) -> None:  # pragma: no cover - rclpy without TimerInfo
        self._tick(self.now_ns())

    def _tick(self, expected_ns: int) -> None:
        """One tick (``NodePipeline.tick``: overruns counted and skipped, the forecast published), only while
        processing; a deactivation waits for a running tick."""
        if self._closing.is_set() or not self._tick_lock.acquire(blocking=False):
            return
        try:
            p = self._pipeline
            if self._ticking and p is not None:
                p.tick(expected_ns, self)
        finally:
            self._tick_lock.release()

    def clock_jump_callback(self, jump: Any) -> None:
        """The ROS clock jumped: the next tick starts counting overruns afresh."""
        p = self._pipeline
        if p is not None:
            p.overruns.clock_jumped()

    def reset_callback(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        """``~/reset``: a new episode (``NodePipeline.reset_episode``), or, with nothing configured, why not."""
        p = self._pipeline
        if p is None:
            response.success, response.message = False, f"the node is {self._state}: no episode to reset"
            return response
        response.success, response.message = True, p.reset_episode()
        self._log.info(f"reset requested: {response.message}")
        return response

    def diagnostics_callback(self) -> None:
        """Publish the /diagnostics status now (nothing once the node is closing)."""
        if self._closing.is_set():
            return
        level, message, values = self.diagnostics_values()
        self.diagnostics_pub.publish(diagnostic_array(self.get_clock().now().to_msg(),
                                                      name=f"{self.get_fully_qualified_name()}: stream",
                                                      level=level, message=message, values=values))

    def set_parameters_callback(self, params: list) -> SetParametersResult:
        """Our parameters change only while unconfigured (they are read by the next configure)."""
        refusal = parameter_change_refusal([p.name for p in params], self._state)
        return SetParametersResult(successful=refusal is None, reason=refusal or "")

    def parameters_set_callback(self, params: list) -> None:
        for p in params:  # a value set again replaces one rclpy refused at start-up
            self._declaration_problems.pop(p.name, None)

    # ------------------------------------------------------------------ diagnostics
    def _start_diagnostics(self, period_s: float) -> None:
        """(Re)start the /diagnostics timer (steady clock) with ``period_s``; one of that period is kept."""
        if self.diagnostics_timer is not None and period_s == self._diagnostics_period_s:
            return
        if self.diagnostics_timer is not None:
            self.destroy_timer(self.diagnostics_timer)
        self._diagnostics_period_s = period_s
        self.diagnostics_timer = self.create_timer(period_s, self.diagnostics_callback,
                                                   callback_group=self._misc_group,
                                                   clock=Clock(clock_type=ClockType.STEADY_TIME))

    @property
    def last_result(self) -> ForecastResult | None:
        """The last result published (None before the first)."""
        p = self._pipeline
        return p.ticks.last_result() if p is not None else None

    def diagnostics_values(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the /diagnostics status (built by the pipeline's
        :class:`~actfusion_ros.node.diagnostics.NodeDiagnostics`, in lifecycle terms by :func:`lifecycle_status`)."""
        p = self._pipeline
        return lifecycle_status(self._state, p.diagnostics.values() if p is not None else None,
                                self._configure_error)

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> None:
        """Declare every parameter of :data:`~actfusion_ros.node_params.PARAMETERS` (with its descriptor) and
        guard their changes. A value rclpy refuses (params file, ``-p``) is declared with the default instead
        and its problem stands until the parameter is set again (:attr:`_declaration_problems`); unknown
        parameters given are warned about. The node is built with
        ``automatically_declare_parameters_from_overrides=True``, so every override is visible through the
        public ``get_parameters_by_prefix``; ours are re-declared here with their descriptors."""
        given = {name: param.value for name, param in self.get_parameters_by_prefix("").items()}
        for p in PARAMETERS:
            if self.has_parameter(p.name):
                self.undeclare_parameter(p.name)  # auto-declared from its override, without a descriptor
            try:
                self.declare_parameter(p.name, p.default, parameter_descriptor(p))
            except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException) as err:
                self._declaration_problems[p.name] = declaration_problem(
                    p, given.get(p.name), err, wrong_type=isinstance(err, InvalidParameterTypeException),
                    out_of_range=isinstance(err, InvalidParameterValueException))
                self.declare_parameter(p.name, p.default, parameter_descriptor(p), ignore_override=True)
        names = {p.name for p in PARAMETERS}
        unknown = sorted(n for n in given if n not in names and not n.startswith(_FOREIGN_PARAMETERS))
        if unknown:
            self._log.warning(f"ignoring unknown parameter(s) {unknown} (typo?); known: {sorted(names)}")
        self.add_on_set_parameters_callback(self.set_parameters_callback)
        self.add_post_set_parameters_callback(self.parameters_set_callback)

    def _settings(self) -> NodeSettings:
        """The current parameter values, validated (each configure); :class:`StartupError` lists every
        problem, those rclpy refused at start-up (not set again since) first."""
        return node_settings({p.name: self.get_parameter(p.name).value for p in PARAMETERS},
                             self._declaration_problems)

    # ------------------------------------------------------------------ shutdown
    def close(self, timeout_s: float | None = None) -> bool:
        """Ordered, bounded stop (idempotent); call before ``destroy_node``. True when the worker ended.

        Stops the timers (no new ticks or diagnostics), stops accepting frames (the image subscription
        is destroyed; the queue closed, so frames still arriving are never processed), signals the feature
        worker and waits at most ``timeout_s`` (default :attr:`worker_join_timeout_s`) for it to finish
        the extraction it is in. A worker still busy after that is a daemon thread that touches nothing
        of the node any more (it ends after its current frame, or with the process).
        """
        self._closing.set()
        for timer in (self.diagnostics_timer, self.tick_timer):
            if timer is not None:
                try:
                    timer.cancel()
                except Exception:  # noqa: BLE001 - a timer of a shut-down context is stopped anyway
                    pass
        sub = self.image_sub
        if sub is not None and sub in self.subscriptions:
            try:
                self.destroy_subscription(sub)  # no more images from DDS
            except Exception:  # noqa: BLE001 - destroyed with the node at the latest
                pass
        if self._pipeline is not None:
            self._pipeline.queue.close()  # the worker takes no more frames; get() wakes it
        timeout = self.worker_join_timeout_s if timeout_s is None else timeout_s
        return self._stop_worker(self.feature_worker, timeout, "shutdown began; shutting down")

    def destroy_node(self) -> None:
        """:meth:`close` first (the worker stopped or given up on), only then the ROS entities."""
        self.close()
        super().destroy_node()


def lifecycle_status(state: str, values: tuple[str, str, dict[str, Any]] | None,
                     configure_error: str | None) -> tuple[str, str, dict[str, Any]]:
    """The node's /diagnostics ``(level, message, values)`` in lifecycle ``state``.

    ``values``: the configured pipeline's status (None when unconfigured); ``configure_error``: why the
    last configure failed (None if it did not). Unconfigured: ERROR after a failed configure, else WARN;
    inactive: OK (model loaded, not processing); active: the pipeline's own status. Every status has the
    key ``lifecycle_state``."""
    if values is None:
        if configure_error:
            why = " ".join(configure_error.split())
            return "error", f"unconfigured: configure failed: {why}", {"lifecycle_state": state}
        return "warn", f"{state}: no model loaded", {"lifecycle_state": state}
    level, message, pipeline_values = values
    pipeline_values = {"lifecycle_state": state, **pipeline_values}
    if state != "active":
        return "ok", f"{state}: model loaded, not processing images", pipeline_values
    return level, message, pipeline_values


def parameter_descriptor(p: ParamSpec) -> ParameterDescriptor:
    """The rclpy descriptor of ``p``: description, constraints, numeric range. Writable: the node itself
    refuses changes outside the unconfigured state (they apply at the next ``configure``)."""
    desc = ParameterDescriptor(description=p.description, additional_constraints=p.constraints)
    if p.type is int and p.minimum is not None:
        desc.integer_range = [IntegerRange(from_value=int(p.minimum), to_value=int(p.maximum), step=1)]
    elif p.type is float and p.minimum is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.minimum),
                                                        to_value=float(p.maximum), step=0.0)]
    return desc


def node_settings(values: Mapping[str, Any], declaration_problems: Mapping[str, str]) -> NodeSettings:
    """Validate the node's parameter ``values``; :class:`StartupError` lists every problem, those of
    ``declaration_problems`` (values rclpy refused, not set again since) first."""
    problems = list(declaration_problems.values())
    settings = None
    try:
        settings = validate_values({k: v for k, v in values.items() if k not in declaration_problems})
    except ParameterError as err:
        problems.extend(err.problems)
    if problems:
        raise StartupError(str(ParameterError(problems)))
    assert settings is not None
    return settings


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


def _release_device_memory() -> None:
    """Collect garbage and, when torch is loaded and CUDA available, empty its cache (never imports torch)."""
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory is best effort, never a failed transition
        pass
