"""Stream results -> ROS messages (the edge where integer nanoseconds become builtin_interfaces/Time).

* :func:`forecast_to_msg`: :class:`~actfusion_ros.stream.ForecastResult` -> ``actfusion_msgs/ActionForecast``,
  ``header.stamp`` = the camera stamp of the last feature used (never the clock's ``now``).
* :func:`segment_to_msg`: :class:`~actfusion_ros.stream.TimedSegment` -> ``actfusion_msgs/ActionSegment``;
  times are copied exactly (``[start, end)``, see the stream's segment-time convention).
* :func:`marginals_to_msg`: a result's per-frame class distribution
  (:meth:`~actfusion_ros.stream_types.ForecastResult.future_marginals`) -> ``actfusion_msgs/ForecastMarginals``,
  stamped like the tick's forecast (the node's optional ``actfusion/future_marginals``).
* :func:`alternative_to_msg`: :class:`~actfusion_ros.next_actions.TimedAlternative` ->
  ``actfusion_msgs/ActionAlternative`` (one possible next action, its probability and start interval).
* :func:`diagnostic_array`: one ``diagnostic_msgs/DiagnosticStatus`` with key/value pairs.
* :func:`rgb_image_msg`: an ``(H, W, 3) uint8`` RGB array (e.g. a timeline image of
  :mod:`actfusion_ros.timeline_image`) -> ``sensor_msgs/Image`` (rgb8).
* :func:`label_info_type` / :func:`make_label_info`: the class map as ``vision_msgs/LabelInfo`` where
  ``vision_msgs`` is importable (a ROS install with it), else the field-compatible
  ``actfusion_msgs/LabelInfo``; publish it with :data:`LABEL_INFO_QOS` (transient local: late subscribers
  get it too).
"""
from __future__ import annotations

import array
import math
from typing import Any, Mapping, Sequence

import numpy as np
from actfusion_msgs.msg import ActionAlternative, ActionForecast, ActionSegment, ForecastMarginals
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from actfusion_ros.frames import rgb_to_image_fields
from actfusion_ros.next_actions import TimedAlternative
from actfusion_ros.stream_types import ForecastResult, TimedSegment
from actfusion_ros.time_ns import NS_PER_S, ns_to_stamp_fields

__all__ = ["LABEL_INFO_QOS", "LEVELS", "MAX_CLASSES", "OUTPUT_QOS", "TIMELINE_IMAGE_QOS", "alternative_to_msg",
           "diagnostic_array", "duration_from_s", "image_qos", "forecast_to_msg", "format_value", "label_info_msgtype",
           "label_info_type", "label_info_types", "make_label_info", "marginals_to_msg", "rgb_image_msg",
           "segment_to_msg", "time_from_ns", "time_to_ns"]

LEVELS = {"ok": DiagnosticStatus.OK, "warn": DiagnosticStatus.WARN, "error": DiagnosticStatus.ERROR,
          "stale": DiagnosticStatus.STALE}


def time_from_ns(ns: int) -> Time:
    """Integer nanoseconds -> ``builtin_interfaces/Time`` (exact; ``ValueError`` if negative)."""
    sec, nanosec = ns_to_stamp_fields(int(ns))
    return Time(sec=sec, nanosec=nanosec)


def time_to_ns(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def duration_from_s(seconds: float) -> Duration:
    """Seconds (>= 0, rounded to the nanosecond) -> ``builtin_interfaces/Duration``."""
    if not math.isfinite(seconds):
        raise ValueError(f"duration must be finite, got {seconds!r}")
    sec, nanosec = divmod(max(0, int(round(seconds * NS_PER_S))), NS_PER_S)
    return Duration(sec=sec, nanosec=nanosec)


def segment_to_msg(seg: TimedSegment) -> ActionSegment:
    """One timed segment -> ``ActionSegment`` (label, class id, exact start/end, confidence)."""
    return ActionSegment(label=seg.label, class_id=int(seg.class_id), start=time_from_ns(seg.start_ns),
                         end=time_from_ns(seg.end_ns), confidence=float(seg.confidence))


def alternative_to_msg(alt: TimedAlternative) -> ActionAlternative:
    """One possible next action -> ``ActionAlternative`` (label, class id, probability, exact start times)."""
    return ActionAlternative(label=alt.label, class_id=int(alt.class_id), probability=float(alt.probability),
                             expected_start=time_from_ns(alt.start_ns), start_lower=time_from_ns(alt.low_ns),
                             start_upper=time_from_ns(alt.high_ns))


def forecast_to_msg(result: ForecastResult, frame_id: str = "") -> ActionForecast:
    """A tick's result -> ``ActionForecast`` stamped with the camera time of the last feature used."""
    msg = ActionForecast()
    msg.header.stamp = time_from_ns(result.stamp_ns)
    msg.header.frame_id = frame_id
    msg.current = segment_to_msg(result.current)
    msg.observed = [segment_to_msg(s) for s in result.observed]
    msg.future = [segment_to_msg(s) for s in result.future]
    msg.num_observed_frames = int(result.num_observed)
    msg.horizon_frames = int(result.horizon)
    msg.feature_rate_hz = float(NS_PER_S / result.feature_period_ns)
    msg.model_latency = duration_from_s(result.inference_s)
    msg.partial = bool(result.partial)
    msg.next_actions = [alternative_to_msg(a) for a in result.next_actions]
    msg.num_samples = int(result.num_samples)
    return msg


def marginals_to_msg(result: ForecastResult, frame_id: str = "") -> ForecastMarginals:
    """A tick's per-frame class distribution -> ``ForecastMarginals`` (row-major classes x future frames),
    stamped with the camera time of the last feature used, as the tick's ``ActionForecast``."""
    probs = result.future_marginals()
    num_classes, horizon = probs.shape
    msg = ForecastMarginals(num_samples=int(result.num_samples), num_classes=int(num_classes),
                            horizon_frames=int(horizon))
    msg.header.stamp = time_from_ns(result.stamp_ns)
    msg.header.frame_id = frame_id
    sec, nanosec = ns_to_stamp_fields(int(result.feature_period_ns))  # exact nanoseconds, as time_from_ns
    msg.frame_period = Duration(sec=sec, nanosec=nanosec)
    # C order: probabilities[c * horizon + h]; array('f', bytes) copies the buffer (no per-element checks)
    msg.probabilities = array.array("f", np.ascontiguousarray(probs, dtype=np.float32).tobytes())
    return msg


def format_value(value: Any) -> str:
    """Diagnostic value text: floats with 4 significant digits, bools lower-case, others ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def diagnostic_array(stamp: Time, *, name: str, level: str, message: str,
                     values: Mapping[str, Any], hardware_id: str = "") -> DiagnosticArray:
    """A ``DiagnosticArray`` holding one status; ``level`` is ok, warn, error or stale."""
    status = DiagnosticStatus(level=LEVELS[level], name=name, message=message, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=format_value(v)) for k, v in values.items()])
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def rgb_image_msg(rgb: Any, stamp_ns: int, frame_id: str = "") -> Image:
    """An ``(H, W, 3) uint8`` RGB array -> ``sensor_msgs/Image`` (``rgb8``, ``step = 3 * width``) stamped
    ``stamp_ns``; bad arrays raise :class:`~actfusion_ros.frames.ImageConversionError`."""
    f = rgb_to_image_fields(rgb, "rgb8")
    msg = Image(height=f["height"], width=f["width"], encoding=f["encoding"], is_bigendian=f["is_bigendian"],
                step=f["step"])
    msg.data = f["data"]  # bytes: far faster than assigning an ndarray
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    return msg


#: QoS of the forecasts, the current action and /diagnostics: reliable, keep last 10, volatile.
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.VOLATILE)


def image_qos(reliability: str, depth: int) -> QoSProfile:
    """QoS of the image subscription: keep last ``depth``, volatile, ``best_effort`` or ``reliable``."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, durability=DurabilityPolicy.VOLATILE,
                      reliability=(ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort"
                                   else ReliabilityPolicy.RELIABLE))


#: QoS of the class map: reliable, transient local, depth 1 (published once; late subscribers get it).
LABEL_INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: QoS of the timeline image: reliable (matches reliable and best-effort viewers), keep last 1, volatile.
TIMELINE_IMAGE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.VOLATILE)
#: ``VisionClass.class_id`` is a uint16.
MAX_CLASSES = 65536


def _label_info_source() -> tuple[str, type, type]:
    """``(package, LabelInfo, VisionClass)``: vision_msgs when importable, else actfusion_msgs."""
    try:
        from vision_msgs.msg import LabelInfo, VisionClass
        return "vision_msgs", LabelInfo, VisionClass
    except ImportError:
        from actfusion_msgs.msg import LabelInfo, VisionClass
        return "actfusion_msgs", LabelInfo, VisionClass


def label_info_types() -> tuple[type, type]:
    """``(LabelInfo, VisionClass)``: vision_msgs' when ``vision_msgs`` is importable, else actfusion_msgs'
    (the same fields: header, class_map[class_id, class_name], threshold)."""
    return _label_info_source()[1:]


def label_info_msgtype() -> str:
    """The full name of :func:`label_info_type`: ``vision_msgs/msg/LabelInfo`` or ``actfusion_msgs/msg/LabelInfo``."""
    return f"{_label_info_source()[0]}/msg/LabelInfo"


def label_info_type() -> type:
    """The class map's message type to publish: ``vision_msgs/LabelInfo`` when ``vision_msgs`` is importable,
    else ``actfusion_msgs/LabelInfo`` (:func:`label_info_types`)."""
    return label_info_types()[0]


def make_label_info(class_names: Sequence[str], stamp_ns: int, *, frame_id: str = "",
                    threshold: float = 0.0) -> Any:
    """The class map message of :func:`label_info_type` (a new one each call): entry ``k`` is
    ``(class_id=k, class_name=class_names[k])``.

    ``class_names``: non-empty strings, at most :data:`MAX_CLASSES`; ``threshold``: finite, in [0, 1]
    (0: the node reports every tick's most probable classes). Bad input raises ``ValueError``.
    """
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or not class_names:
        raise ValueError(f"class_names must be a non-empty sequence of str, got {class_names!r}")
    bad = [k for k, n in enumerate(class_names) if not isinstance(n, str) or not n]
    if bad:
        raise ValueError(f"class_names must be non-empty str; not so at index {bad[:5]}")
    if len(class_names) > MAX_CLASSES:
        raise ValueError(f"{len(class_names)} classes do not fit VisionClass.class_id (uint16, at most {MAX_CLASSES})")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    label_info, vision_class = label_info_types()
    msg = label_info(class_map=[vision_class(class_id=k, class_name=n) for k, n in enumerate(class_names)],
                     threshold=float(threshold))
    msg.header.stamp = time_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    return msg
