"""``actfusion-replay ... --record OUT.mcap``: a replay as one MCAP file, to scrub through in Foxglove.

:class:`ReplayRecorder` writes, on the camera time line,

* the bag's camera topic: the original messages, byte for byte, under their own topic and definition;
* what ``actfusion_node`` would publish at each tick: ``/actfusion/future_actions``
  (``actfusion_msgs/ActionForecast``), ``/actfusion/current_action`` (``actfusion_msgs/ActionSegment``)
  and ``/actfusion_node/timeline_image`` (``sensor_msgs/Image`` rgb8, :mod:`actfusion_ros.timeline_image`);
* the class map once, on ``/actfusion/label_info`` (``vision_msgs/LabelInfo`` where vision_msgs is
  importable, else ``actfusion_msgs/LabelInfo``), at the first camera stamp.

Log times are camera stamps: a camera message at its ``header.stamp``, a tick's messages at the stamp
of the frame that made the tick due (the replay ticks on camera time), the class map at the first
frame's. The messages are built by the node's own converters (:mod:`actfusion_ros.ros_messages`) and
serialized by rclpy, so they are the bytes the node publishes; their definitions (the MCAP schemas
Foxglove decodes with) come from the installed interface packages. The file is written atomically
(:class:`actfusion_ros.tools.bags.McapFileWriter`). Needs rclpy and the built actfusion_msgs (the replay
without ``--record`` does not).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from actfusion_ros import topics
from actfusion_ros.stream_types import ForecastResult
from actfusion_ros.timeline_image import TimelineConfig, TimelineRenderer
from actfusion_ros.tools.bags import BagError, ImageMessage, McapFileWriter

__all__ = ["CURRENT_TOPIC", "FUTURE_TOPIC", "LABEL_INFO_TOPIC", "RecordSettings", "ReplayRecorder", "TIMELINE_TOPIC",
           "interface_definitions"]

#: The node's topics with its default name and no namespace (:mod:`actfusion_ros.topics`).
FUTURE_TOPIC, CURRENT_TOPIC = topics.RESOLVED_FUTURE_TOPIC, topics.RESOLVED_CURRENT_TOPIC
TIMELINE_TOPIC, LABEL_INFO_TOPIC = topics.RESOLVED_TIMELINE_TOPIC, topics.RESOLVED_LABEL_INFO_TOPIC
_IMAGE_TYPE = "sensor_msgs/msg/Image"
_REPO_MSGS = Path(__file__).resolve().parents[3] / "actfusion_msgs" / "msg"


@dataclass(frozen=True)
class RecordSettings:
    """What ``--record`` writes: the file and the timeline images' size, span and whether they show the
    latest camera frame (``camera``)."""

    path: Path
    width: int = 640
    height: int = 240
    past_s: float = 30.0
    future_s: float = 30.0
    camera: bool = False

    def timeline_config(self, class_names: Sequence[str]) -> TimelineConfig:
        return TimelineConfig(class_names=class_names, width=self.width, height=self.height, past_s=self.past_s,
                              future_s=self.future_s)


def _msg_dirs(package: str) -> list[Path]:
    """Where ``package``'s installed ``.msg`` files may be: each ament prefix, this interpreter's prefix and,
    for actfusion_msgs, the source tree."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    dirs = [Path(p) / "share" / package / "msg" for p in prefixes]
    return dirs + ([_REPO_MSGS] if package == "actfusion_msgs" else [])


def interface_definitions(package: str, names: Sequence[str] | None = None) -> dict[str, str]:
    """``{"pkg/msg/Name": definition text}`` of the messages ``names`` (default: all) of an installed interface
    package, from the first directory of :func:`_msg_dirs` that has them all; ``BagError`` when none has."""
    for d in _msg_dirs(package):
        files = sorted(d.glob("*.msg")) if d.is_dir() else []
        if names is not None:
            files = [f for f in files if f.stem in names]
        if files and (names is None or len(files) == len(names)):
            return {f"{package}/msg/{f.stem}": f.read_text() for f in files}
    wanted = f"{package} ({', '.join(names)})" if names else package
    raise BagError(f"no message definitions of {wanted} found in {', '.join(map(str, _msg_dirs(package)))}")


def _typestore(packages: Mapping[str, Sequence[str] | None]) -> Any:
    """The Kilted typestore plus the messages of ``packages`` (``{package: names or None for all}``), for the
    MCAP schemas."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for package, names in packages.items():
        for name, text in interface_definitions(package, names).items():
            types.update(get_types_from_msg(text, name))
    ts.register(types)
    return ts


class ReplayRecorder:
    """Writes one replay into ``settings.path`` (a context manager; see the module docstring).

    Use::

        with ReplayRecorder(settings, class_names) as rec:
            drive(rec.frames(read_image_messages(bag, topic), topic), anticipator, tick_period_ns=..., on_tick=rec.tick)

    ``counts``: messages written per topic.
    """

    def __init__(self, settings: RecordSettings, class_names: Sequence[str]) -> None:
        try:
            from rclpy.serialization import serialize_message

            from actfusion_ros import ros_messages
        except ImportError as err:
            raise BagError(f"--record needs rclpy and the built actfusion_msgs (scripts/build_msgs.sh): {err}") from err
        self._serialize = serialize_message
        self._msgs = ros_messages
        self.settings = settings
        self.class_names = list(class_names)
        self._renderer = TimelineRenderer(settings.timeline_config(self.class_names))
        self._label_info_type = ros_messages.label_info_msgtype()
        package = self._label_info_type.split("/")[0]
        label_msgs = {} if package == "actfusion_msgs" else {package: ("LabelInfo", "VisionClass")}
        self._ts = _typestore({"actfusion_msgs": None, **label_msgs})
        self._file = McapFileWriter(settings.path)
        self._camera: Any = None
        self._conns: dict[str, Any] = {}
        self._last_rgb: np.ndarray | None = None
        self._frame_id = ""
        self.counts: dict[str, int] = {}

    def __enter__(self) -> "ReplayRecorder":
        self._file.__enter__()
        for topic, msgtype in ((FUTURE_TOPIC, "actfusion_msgs/msg/ActionForecast"),
                               (CURRENT_TOPIC, "actfusion_msgs/msg/ActionSegment"),
                               (TIMELINE_TOPIC, _IMAGE_TYPE), (LABEL_INFO_TOPIC, self._label_info_type)):
            self._conns[topic] = self._file.add_connection(topic, msgtype, typestore=self._ts)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._file.__exit__(exc_type, exc, tb)

    def _write(self, topic: str, log_ns: int, raw: bytes) -> None:
        self._file.write(self._conns[topic], log_ns, raw)
        self.counts[topic] = self.counts.get(topic, 0) + 1

    def frames(self, messages: Iterable[ImageMessage], topic: str) -> Iterator[tuple[int, np.ndarray]]:
        """Pass the bag's frames on as ``(stamp_ns, rgb)`` (what the replay drives the stream with), writing
        each original message at its stamp first, on ``topic`` (the bag's camera topic)."""
        for m in messages:
            if self._camera is None:
                self._conns[topic] = self._file.add_connection(topic, m.msgtype, typestore=self._ts,
                                                               msgdef=m.msgdef, digest=m.digest)
                self._camera = topic
                self._write(LABEL_INFO_TOPIC, m.stamp_ns,
                            self._serialize(self._msgs.make_label_info(self.class_names, m.stamp_ns)))
            self._write(self._camera, m.stamp_ns, m.raw)
            self._last_rgb, self._frame_id = m.rgb, m.frame_id
            yield m.stamp_ns, m.rgb

    def tick(self, tick_ns: int, result: ForecastResult) -> None:
        """Write a published tick: forecast, current action and timeline image, at log time ``tick_ns``."""
        self._write(FUTURE_TOPIC, tick_ns, self._serialize(self._msgs.forecast_to_msg(result, self._frame_id)))
        self._write(CURRENT_TOPIC, tick_ns, self._serialize(self._msgs.segment_to_msg(result.current)))
        camera = self._last_rgb if self.settings.camera else None
        picture = self._renderer.render_result(result, camera_frame=camera)
        self._write(TIMELINE_TOPIC, tick_ns,
                    self._serialize(self._msgs.rgb_image_msg(picture, result.stamp_ns, self._frame_id)))
