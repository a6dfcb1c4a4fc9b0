"""The class map message: vision_msgs/LabelInfo where vision_msgs is importable, else actfusion_msgs/LabelInfo
with the same fields (ros_messages.label_info_type / make_label_info / LABEL_INFO_QOS)."""
from __future__ import annotations

import sys
import types

import pytest

msgs = pytest.importorskip("actfusion_msgs.msg", reason="actfusion_msgs not built; run scripts/build_msgs.sh .venv")
serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not importable")
if not hasattr(msgs, "LabelInfo"):
    pytest.fail("actfusion_msgs was built before LabelInfo.msg; rerun scripts/build_msgs.sh", pytrace=False)

from actfusion_ros import ros_messages  # noqa: E402
from actfusion_ros.ros_messages import (  # noqa: E402
    LABEL_INFO_QOS,
    label_info_msgtype,
    label_info_type,
    label_info_types,
    make_label_info,
    time_to_ns,
)

T0 = 1_700_000_000_123_456_789
NAMES = ["take", "pour", "stir"]
#: vision_msgs' documented fields (LabelInfo.msg, VisionClass.msg, ROS 2 vision_msgs >= 4.0).
VISION_MSGS_LABEL_INFO = {"header": "std_msgs/Header", "class_map": "sequence<{pkg}/VisionClass>", "threshold": "float"}
VISION_MSGS_VISION_CLASS = {"class_id": "uint16", "class_name": "string"}


@pytest.fixture
def no_vision_msgs(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import vision_msgs`` raises ImportError (as on an install without it)."""
    monkeypatch.setitem(sys.modules, "vision_msgs", None)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", None)


def test_fallback_is_actfusion_msgs_when_vision_msgs_is_absent(no_vision_msgs: None) -> None:
    assert label_info_types() == (msgs.LabelInfo, msgs.VisionClass) and label_info_type() is msgs.LabelInfo
    assert label_info_msgtype() == "actfusion_msgs/msg/LabelInfo"
    assert type(make_label_info(NAMES, T0)) is msgs.LabelInfo


def test_vision_msgs_is_used_when_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.ModuleType("vision_msgs.msg")

    class LabelInfo(msgs.LabelInfo):  # stands in for vision_msgs.msg.LabelInfo (same fields)
        pass

    class VisionClass(msgs.VisionClass):
        pass

    fake.LabelInfo, fake.VisionClass = LabelInfo, VisionClass
    package = types.ModuleType("vision_msgs")
    package.msg = fake
    monkeypatch.setitem(sys.modules, "vision_msgs", package)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", fake)
    assert label_info_types() == (LabelInfo, VisionClass) and label_info_type() is LabelInfo
    assert label_info_msgtype() == "vision_msgs/msg/LabelInfo"
    msg = make_label_info(NAMES, T0)
    assert type(msg) is LabelInfo and all(type(c) is VisionClass for c in msg.class_map)


def test_field_names_and_types_are_vision_msgs(no_vision_msgs: None) -> None:
    label_info, vision_class = label_info_types()
    expected = {k: v.format(pkg="actfusion_msgs") for k, v in VISION_MSGS_LABEL_INFO.items()}
    assert label_info.get_fields_and_field_types() == expected
    assert vision_class.get_fields_and_field_types() == VISION_MSGS_VISION_CLASS


def test_round_trip_of_the_fields(no_vision_msgs: None) -> None:
    msg = make_label_info(NAMES, T0, frame_id="camera", threshold=0.25)
    back = serialization.deserialize_message(serialization.serialize_message(msg), msgs.LabelInfo)
    assert back == msg
    assert time_to_ns(back.header.stamp) == T0 and back.header.frame_id == "camera"
    assert [(c.class_id, c.class_name) for c in back.class_map] == [(0, "take"), (1, "pour"), (2, "stir")]
    assert back.threshold == 0.25


@pytest.mark.parametrize("names, kwargs, match", [
    ([], {}, "non-empty sequence"),
    ("take", {}, "non-empty sequence"),
    (["take", ""], {}, r"index \[1\]"),
    (["take", 3], {}, r"index \[1\]"),
    (NAMES, {"threshold": 1.5}, "threshold"),
])
def test_bad_class_maps_raise(names, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        make_label_info(names, T0, **kwargs)


def test_too_many_classes_for_uint16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ros_messages, "MAX_CLASSES", 2)
    with pytest.raises(ValueError, match="uint16"):
        make_label_info(NAMES, T0)


def test_qos_is_transient_local_reliable_depth_one() -> None:
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

    assert LABEL_INFO_QOS.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert LABEL_INFO_QOS.reliability == ReliabilityPolicy.RELIABLE
    assert LABEL_INFO_QOS.history == HistoryPolicy.KEEP_LAST and LABEL_INFO_QOS.depth == 1
