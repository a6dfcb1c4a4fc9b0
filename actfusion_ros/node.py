"""``actfusion_node``: the thin ROS 2 shell around :class:`~actfusion_ros.stream.StreamingAnticipator`.

Threads and callback groups (a ``MultiThreadedExecutor`` with one thread per group, plus one worker)::

    image subscription  [group "image", mutually exclusive]  convert (actfusion_ros.frames) + enqueue
    feature worker      [a Python thread]                    queue -> StreamingAnticipator.push_frame
    tick timer          [group "tick", mutually exclusive]   StreamingAnticipator.tick -> publish
    diagnostics, reset  [group "misc", mutually exclusive]   /diagnostics, ~/reset

The image callback never waits for features or inference: it converts the message and puts the frame
in a bounded queue that drops its oldest frame when full (counted). The feature worker runs the
extractor for the frames the stream samples. A tick that falls due while the previous tick is still
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
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rclpy
from actfusion_msgs.msg import ActionForecast, ActionSegment
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from actfusion_ros.frame_gaps import MissedFrameEstimator
from actfusion_ros.frames import ImageConversionError, compressed_to_rgb, image_to_rgb, stamp_to_ns
from actfusion_ros.node_params import PARAMETERS, NodeSettings, ParameterError, ParamSpec, validate_values
from actfusion_ros.reporting import KindCounter, SafeLog
from actfusion_ros.signals import ShutdownRequest, ShutdownSignal
from actfusion_ros.ros_messages import diagnostic_array, forecast_to_msg, segment_to_msg
from actfusion_ros.stream import Forecaster, ForecastResult, StreamingAnticipator

try:  # rclpy >= Jazzy: timer callbacks may receive the expected call time
    from rclpy.timer import TimerInfo
except ImportError:  # pragma: no cover - older rclpy
    TimerInfo = None  # type: ignore[assignment,misc]

__all__ = ["ActFusionNode", "FrameQueue", "KindCounter", "NODE_NAME", "StartupError", "error_kind",
           "load_class_names", "main"]

NODE_NAME = "actfusion_node"
FUTURE_TOPIC = "actfusion/future_actions"
CURRENT_TOPIC = "actfusion/current_action"
DIAGNOSTICS_TOPIC = "/diagnostics"
RESET_SERVICE = "~/reset"
# Parameters rclpy or launch may pass that are not ours (not reported as unknown).
_FOREIGN_PARAMETERS = ("use_sim_time", "start_type_description_service", "start_parameter_services",
                       "qos_overrides.")


class StartupError(RuntimeError):
    """The node cannot start (invalid parameters, model or files); the message says why."""


# ---------------------------------------------------------------------- small ROS-free helpers
class FrameQueue:
    """Bounded FIFO between the image callback and the feature worker.

    :meth:`put` never blocks: when full, the oldest item is dropped and counted in ``dropped``.
    :meth:`get` blocks until an item arrives or :meth:`close` is called (then returns ``None``).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items: deque[Any] = deque()
        self._maxsize = int(maxsize)
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any) -> bool:
        """Enqueue ``item``; True when the oldest item had to be dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self._maxsize
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """Oldest item, or ``None`` when closed (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._closed:
                return None
            return self._items.popleft()

    def close(self) -> None:
        """Wake and release every waiting :meth:`get`; later ``get`` calls return ``None``."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


_KIND_WORDS = (("encoding", "encoding"), ("too short", "truncated"), ("truncated", "truncated"),
               ("step", "step"), ("non-empty", "empty"), ("has no data", "empty"),
               ("compresseddepth", "format"), ("compression format", "format"),
               ("cannot decode", "corrupt"), ("is not a", "corrupt"), ("no '", "fields"))


def error_kind(err: BaseException) -> str:
    """A short, stable name for the kind of a conversion/stamp error (diagnostics key)."""
    if isinstance(err, ImageConversionError):
        if err.kind:
            return err.kind
        text = str(err).lower()
        for word, kind in _KIND_WORDS:
            if word in text:
                return kind
        return "other"
    return type(err).__name__


def load_class_names(path: str | Path) -> list[str]:
    """Class names from an MS-TCN ``mapping.txt`` (``<id> <name>``) or a one-name-per-line file."""
    from model.labels import ClassMapping

    path = Path(path).expanduser()
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: no class names")
    if all(len(ln.split(maxsplit=1)) == 2 and ln.split()[0].isdigit() for ln in lines):
        return list(ClassMapping.from_file(path).names)
    if len(set(lines)) != len(lines):
        raise ValueError(f"{path}: duplicate class names")
    return lines


def _descriptor(p: ParamSpec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=p.description, additional_constraints=p.constraints,
                               read_only=True)
    if p.type is int and p.minimum is not None:
        desc.integer_range = [IntegerRange(from_value=int(p.minimum), to_value=int(p.maximum), step=1)]
    elif p.type is float and p.minimum is not None:
        desc.floating_point_range = [FloatingPointRange(from_value=float(p.minimum),
                                                        to_value=float(p.maximum), step=0.0)]
    return desc


# ---------------------------------------------------------------------- the node
class ActFusionNode(Node):
    """Streaming action segmentation + anticipation node (see the module docstring).

    ``forecaster``: use this instead of building one from the parameters (tests, benchmarks);
    ``class_names`` then defaults to ``forecaster.class_names``. Other keyword arguments go to
    :class:`rclpy.node.Node`. Raises :class:`StartupError` with a readable message when the
    parameters, model or files are unusable.
    """

    def __init__(self, *, forecaster: Forecaster | None = None, class_names: Sequence[str] | None = None,
                 node_name: str = NODE_NAME, **node_kwargs: Any) -> None:
        # set first: rclpy may destroy a node whose __init__ failed (context shutdown)
        self._closing = threading.Event()
        self._queue: FrameQueue | None = None
        self._worker: threading.Thread | None = None
        super().__init__(node_name, **node_kwargs)
        self._log = SafeLog(self.get_logger())  # fixed severity per call site; never raises
        self.settings: NodeSettings = self._declare_parameters()
        s = self.settings
        self.stream = self._build_stream(s, forecaster, class_names)
        self._queue = FrameQueue(s.queue_size)
        self._bad_images = KindCounter("bad image skipped", self._log.warning)
        self._frame_errors = KindCounter("frame rejected by the stream", self._log.warning)
        self._tick_errors = KindCounter("tick failed", self._log.error)
        self._missed_frames = MissedFrameEstimator(int(round(s.stream.episode_gap_s * 1e9)))
        self._lock = threading.Lock()  # guards the tick statistics below
        self._images_received = 0
        self._skipped_ticks = 0
        self._published = 0  # ticks whose ActionForecast and ActionSegment were both published
        self._publish_errors = 0  # ticks whose result could not be turned into messages or published
        self._diag_prev_future = 0
        self._tick_s: deque[float] = deque(maxlen=100_000)  # tick durations since the last diagnostics
        self._last_tick_s = 0.0
        self._last_result: ForecastResult | None = None
        self._last_expected_ns: int | None = None
        self._last_tick_start_ns = 0
        self._last_tick_end_ns = 0
        self._frame_id = ""
        self._diag_prev: tuple[float, int] | None = None

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
        self._convert = functools.partial(compressed_to_rgb if s.compressed else image_to_rgb,
                                          max_pixels=s.max_image_pixels)
        self._image_sub = self.create_subscription(
            CompressedImage if s.compressed else Image, s.image_topic, self._on_image, in_qos,
            callback_group=self._image_group)
        self._reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset,
                                              callback_group=self._misc_group)
        tick_cb = self._on_tick_info if TimerInfo is not None else self._on_tick_plain
        self._tick_period_ns = int(round(1e9 / s.tick_rate_hz))
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

    # ------------------------------------------------------------------ start-up
    def _declare_parameters(self) -> NodeSettings:
        problems: list[str] = []
        values: dict[str, Any] = {}
        overrides = getattr(self, "_parameter_overrides", {}) or {}
        for p in PARAMETERS:
            try:
                values[p.name] = self.declare_parameter(p.name, p.default, _descriptor(p)).value
            except (InvalidParameterTypeException, InvalidParameterValueException, ParameterException) as err:
                given = getattr(overrides.get(p.name), "value", None)
                if isinstance(err, InvalidParameterTypeException):
                    hint = " (write e.g. 2.0 for a double)" if p.type is float and isinstance(given, int) else ""
                    problems.append(f"{p.name}: expected {p.type_name}, got {type(given).__name__} "
                                    f"{given!r}{hint}")
                elif isinstance(err, InvalidParameterValueException) and p.constraints:
                    problems.append(f"{p.name}: {given!r} is outside the allowed {p.constraints}")
                else:
                    problems.append(f"{p.name}: {err}")
        names = {p.name for p in PARAMETERS}
        unknown = sorted(n for n in overrides if n not in names and not n.startswith(_FOREIGN_PARAMETERS))
        if unknown:
            self._log.warning(f"ignoring unknown parameter(s) {unknown} (typo?); known: {sorted(names)}")
        try:
            settings = validate_values(values)
        except ParameterError as err:
            problems.extend(err.problems)
            settings = None
        if problems:
            raise StartupError(str(ParameterError(problems)))
        assert settings is not None
        return settings

    def _build_stream(self, s: NodeSettings, forecaster: Forecaster | None,
                      class_names: Sequence[str] | None) -> StreamingAnticipator:
        from model.features import build_extractor
        from model.features.pipeline import FeaturePipeline, PipelineMismatch, check_pipeline

        try:
            extractor = build_extractor(s.extractor, **s.extractor_kwargs)
        except (TypeError, ValueError) as err:
            raise StartupError(f"extractor {s.extractor!r} with {s.extractor_kwargs}: {err}") from None
        names = class_names
        if names is None and s.class_names_file:
            try:
                names = load_class_names(s.class_names_file)
            except (OSError, ValueError) as err:
                raise StartupError(f"class_names_file: {err}") from None
        if forecaster is None:
            self._log.info("loading the model")
            forecaster = self._build_forecaster(s, extractor.dim, names)
        if names is None:
            names = list(getattr(forecaster, "class_names"))
        try:
            check_pipeline(getattr(forecaster, "pipeline", None),
                           FeaturePipeline.of(s.extractor, s.stream.feature_rate_hz, s.extractor_kwargs),
                           what=f"checkpoint {s.checkpoint!r}")
        except PipelineMismatch as err:
            raise StartupError(str(err)) from None
        model_dim = getattr(forecaster, "input_dim", extractor.dim)
        if model_dim != extractor.dim:
            raise StartupError(f"the model expects {model_dim}-dimensional features but extractor "
                               f"{extractor!r} gives {extractor.dim}; choose the extractor (and "
                               f"extractor_kwargs) the checkpoint was trained with")
        if len(names) != forecaster.num_classes:
            raise StartupError(f"{len(names)} class names (class_names_file={s.class_names_file!r}) for "
                               f"a model with {forecaster.num_classes} classes")
        try:
            return StreamingAnticipator(s.stream, extractor, forecaster, names)
        except (TypeError, ValueError) as err:
            raise StartupError(str(err)) from None

    @staticmethod
    def _build_forecaster(s: NodeSettings, input_dim: int, names: Sequence[str] | None) -> Forecaster:
        from actfusion_ros.forecaster import DEFAULT_RANDOM_CLASSES, ForecasterError, ModelForecaster
        from model.checkpoint import CheckpointError

        if s.num_threads:
            import torch
            torch.set_num_threads(s.num_threads)
        try:
            if s.random_weights:
                return ModelForecaster.random_weights(
                    input_dim=input_dim, class_names=names or DEFAULT_RANDOM_CLASSES, steps=s.ddim_steps,
                    seed=s.seed, device=s.device)
            if s.backend == "torch":
                return ModelForecaster.from_checkpoint(s.checkpoint, device=s.device, steps=s.ddim_steps,
                                                       seed=s.seed, class_names=names, num_samples=s.num_samples)
            return ModelForecaster.from_export(s.onnx_dir, backend=s.backend, device=s.device,
                                               steps=s.ddim_steps, seed=s.seed, class_names=names,
                                               engine_dir=s.engine_dir or None, threads=s.num_threads or None,
                                               num_samples=s.num_samples)
        except (CheckpointError, ForecasterError, ValueError, RuntimeError) as err:
            raise StartupError(f"cannot load the model: {err}") from None

    # ------------------------------------------------------------------ input
    def _on_image(self, msg: Image | CompressedImage) -> None:
        """Convert and enqueue; nothing else (never waits for features or inference)."""
        self._images_received += 1
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp)
            self._missed_frames.observe(stamp_ns)
            if not self.stream.admit(stamp_ns, self.get_clock().now().nanoseconds):
                return  # stamped too far ahead of our clock: counted, not decoded
            rgb = self._convert(msg)
        except (ImageConversionError, ValueError, TypeError) as err:
            self._bad_images.record(error_kind(err), err)
            return
        self._queue.put((stamp_ns, rgb, msg.header.frame_id))

    def _feature_worker(self) -> None:
        """Feed queued frames to the stream (the extractor runs here: context for every frame, features
        for the sampled ones)."""
        while not self._closing.is_set():
            item = self._queue.get()
            if item is None:
                continue
            stamp_ns, rgb, frame_id = item
            try:
                self.stream.push_frame(stamp_ns, rgb)
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
        period = self._tick_period_ns
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            last = self._last_expected_ns
            if last is not None and expected_ns < last:  # time went backwards: start counting afresh
                last = None
                self._last_tick_start_ns = self._last_tick_end_ns = 0
            if last is not None:
                # grid points last + k*period (k >= 1) strictly before this one that fell inside the
                # previous tick's run [start, end]: rcl dropped them because that tick was running
                between = -(-(expected_ns - last) // period) - 1
                k_lo = max(1, (self._last_tick_start_ns - last) // period + 1)
                k_hi = min(between, (self._last_tick_end_ns - last) // period)
                self._skipped_ticks += max(0, k_hi - k_lo + 1)
            self._last_expected_ns = expected_ns
            if self._last_tick_end_ns > expected_ns:
                self._skipped_ticks += 1  # this call was due while the previous tick was running
                return
            self._last_tick_start_ns = now_ns
        t0 = time.perf_counter()
        result = None
        try:
            result = self.stream.tick(now_ns)
            if result is not None:
                msg = forecast_to_msg(result, self._frame_id)
                self._future_pub.publish(msg)
                self._current_pub.publish(segment_to_msg(result.current))
                with self._lock:
                    self._published += 1
        except Exception as err:  # noqa: BLE001 - a failing tick must not kill the node
            if result is not None:  # the stream gave a result: building or publishing it failed
                with self._lock:
                    self._publish_errors += 1
            if self._closing.is_set() or not rclpy.ok(context=self.context):
                return  # shutting down while a tick was running
            self._tick_errors.record(type(err).__name__, err)
            result = None
        elapsed = time.perf_counter() - t0
        with self._lock:
            self._last_tick_end_ns = self.get_clock().now().nanoseconds
            self._tick_s.append(elapsed)
            self._last_tick_s = elapsed
            if result is not None:
                self._last_result = result

    def _on_clock_jump(self, jump: Any) -> None:
        with self._lock:
            self._last_expected_ns = None
            self._last_tick_start_ns = self._last_tick_end_ns = 0

    # ------------------------------------------------------------------ services and diagnostics
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.stream.reset("service")
        response.success = True
        response.message = f"new episode {self.stream.episode}"
        self._log.info(f"reset requested: {response.message}")
        return response

    def diagnostics_values(self) -> tuple[str, str, dict[str, Any]]:
        """``(level, message, values)`` of the current /diagnostics status."""
        st = self.stream.stats
        now = time.monotonic()
        with self._lock:
            tick_s, self._tick_s = list(self._tick_s), deque(maxlen=100_000)
            last_tick_s, skipped, result = self._last_tick_s, self._skipped_ticks, self._last_result
            published, publish_errors = self._published, self._publish_errors
        measured_rate = 0.0
        if self._diag_prev is not None and now > self._diag_prev[0]:
            measured_rate = (st.frames_accepted - self._diag_prev[1]) / (now - self._diag_prev[0])
        self._diag_prev = (now, st.frames_accepted)
        bad = self._bad_images.counts
        values: dict[str, Any] = {
            "tick_latency_ms": 1e3 * last_tick_s,
            "tick_latency_ms_mean": 1e3 * float(np.mean(tick_s)) if tick_s else 0.0,
            "tick_latency_ms_max": 1e3 * max(tick_s) if tick_s else 0.0,
            "inference_ms": 1e3 * result.inference_s if result else 0.0,
            "data_latency_ms": 1e3 * result.latency_s if result else 0.0,
            "feature_rate_hz": measured_rate,
            "feature_rate_hz_effective": st.feature_rate_hz,
            "buffer_length": st.buffer_length,
            "window_capacity": self.settings.stream.window_capacity,
            "episode": st.episode,
            "images_received": self._images_received,
            "frames_missed_estimate": self._missed_frames.missed,
            "camera_rate_hz": self._missed_frames.rate_hz,
            "frames_dropped": self._queue.dropped,
            "queue_length": len(self._queue),
            "bad_images": sum(bad.values()),
            "frames_received": st.frames_received,
            "frames_accepted": st.frames_accepted,
            "frames_not_due": st.frames_not_due,
            "frames_rejected": self._frame_errors.total,
            "invalid_frames": st.invalid_frames,
            "extract_errors": st.extract_errors,
            "future_frames": st.future_frames,
            "duplicates": st.duplicates,
            "out_of_order": st.out_of_order,
            "ticks": st.ticks,
            "published": published,
            "publish_errors": publish_errors,
            "skipped_ticks": skipped,
            "tick_errors": self._tick_errors.total,
            "resets": st.resets,
            "dropped_features": st.dropped_features,
            "last_stamp_ns": result.stamp_ns if result else 0,
        }
        values.update({f"bad_images.{k}": n for k, n in sorted(bad.items())})
        values.update({f"stream_skips.{k}": n for k, n in sorted(st.skip_reasons.items())})
        values.update({f"resets.{k}": n for k, n in sorted(st.reset_reasons.items())})
        reason = self.stream.last_skip_reason
        new_future, self._diag_prev_future = st.future_frames - self._diag_prev_future, st.future_frames
        if self._tick_errors.total and reason == "forecast_error":
            level, message = "error", "forecasting fails (see the node's log)"
        elif new_future > 0:
            level, message = "warn", (f"{new_future} frame(s) stamped more than max_future_s = "
                                      f"{self.settings.stream.max_future_s:g} s ahead of the node's clock "
                                      f"rejected (camera clock not synchronised?)")
        elif st.buffer_length == 0:
            level, message = "warn", "waiting for images"
        elif reason == "stale":
            level, message = "warn", "no recent images: camera stalled"
        elif reason == "warming_up" or (result is not None and result.partial):
            level, message = "ok", f"warming up ({st.buffer_length} features)"
        else:
            level, message = "ok", f"forecasting (episode {st.episode}, {st.buffer_length} features)"
        return level, message, values

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


def main(args: Sequence[str] | None = None, shutdown: ShutdownRequest | None = None) -> int:
    """Spin until Ctrl-C / SIGTERM; exit 0 (also for a signal at any moment of start-up, spin or
    shutdown), or 2 on a bad start. ``shutdown``: handlers already installed (actfusion_ros.node_entry);
    by default they are installed here and restored on return."""
    own = shutdown is None
    if shutdown is None:
        shutdown = ShutdownRequest().install()
    try:
        return _run(args, shutdown)
    except ShutdownSignal:
        return 0
    finally:
        if own:
            shutdown.uninstall()


def _run(args: Sequence[str] | None, shutdown: ShutdownRequest) -> int:
    try:
        init = rclpy.init(args=args)
    except RuntimeError as err:  # rcl's RCLError, e.g. a missing or malformed --params-file
        print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr, flush=True)
        return 2
    with init:  # rclpy.try_shutdown on the way out, whatever happens
        try:
            node = ActFusionNode()
        except StartupError as err:
            if shutdown.requested:
                return 0
            print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr, flush=True)
            return 2
        except Exception:
            # a signal shut the context down while the node was being built (RCLError from rcl)
            if shutdown.requested or not rclpy.ok():
                return 0
            raise
        executor = MultiThreadedExecutor(num_threads=3)
        try:
            executor.add_node(node)
            if not shutdown.requested:
                executor.spin()
        except (KeyboardInterrupt, ShutdownSignal, ExternalShutdownException):
            pass
        except RuntimeError:
            # rclpy race: the signal handler shut the context down while spin() was building its wait set
            # (RCLError "the given context is not valid"): a shutdown all the same, not a failure
            if rclpy.ok(context=node.context) and not shutdown.requested:
                raise
        finally:
            shutdown.stop_interrupting()  # a second signal must not break the clean-up
            _shut_down(node, executor)
    return 0


def _shut_down(node: ActFusionNode, executor: MultiThreadedExecutor) -> None:
    """Timers, frames and worker first (ActFusionNode.close), then the executor, then the ROS entities."""
    node.close()
    for step in (lambda: executor.shutdown(timeout_sec=10.0), node.destroy_node):
        try:
            step()
        except Exception as err:  # noqa: BLE001 - e.g. the context already shut down by the signal
            if rclpy.ok(context=node.context):
                raise
            print(f"[{NODE_NAME}] during shutdown: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


