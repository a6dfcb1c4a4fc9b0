"""actfusion-replay --record OUT.mcap: the camera topic and the node's outputs of every tick in one MCAP file,
read back with the reference `mcap` reader and with rosbags."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")
pytest.importorskip("actfusion_msgs.msg", reason="actfusion_msgs not built; run scripts/build_msgs.sh .venv")
pytest.importorskip("rclpy.serialization", reason="rclpy not importable")

from actfusion_ros.stream_types import StreamConfig  # noqa: E402
from actfusion_ros.tools.bags import BagError, McapFileWriter, write_bag  # noqa: E402
from actfusion_ros.tools.replay.cli import main, record_settings  # noqa: E402
from actfusion_ros.tools.replay.driver import replay  # noqa: E402
from actfusion_ros.tools.replay.recording import (  # noqa: E402
    CURRENT_TOPIC,
    FUTURE_TOPIC,
    LABEL_INFO_TOPIC,
    TIMELINE_TOPIC,
    RecordSettings,
)
from actfusion_ros.tools.replay.records import ReplayError  # noqa: E402
from tests.test_replay import BOUNDARY_S, NAMES, Blueness, RepeatLast, _frames  # noqa: E402

CAMERA = "/camera/image_raw"


def _bag(tmp_path: Path, storage: str = "sqlite3", encoding: str = "rgb8") -> Path:
    return write_bag(tmp_path / "bag", storage=storage, images=list(_frames()), encoding=encoding,
                     labels=[(0, "red_thing"), (int(BOUNDARY_S * 1e9), "blue_thing")])


def _replay(tmp_path: Path, bag: Path, record: RecordSettings | None, topic: str = CAMERA):
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=4.0, max_horizon_s=30.0, min_observed_frames=2)
    return replay(bag, RepeatLast(), Blueness(), out=tmp_path / "out", image_topic=topic, label_topic="/action/label",
                  config=cfg, tick_rate_hz=1.0, lookahead_s=(1.0, 2.0), record=record)


def _read_rosbags(path: Path) -> tuple[dict[str, str], list[tuple[str, int, bytes]]]:
    """``({topic: msgtype}, [(topic, log_ns, raw), ...])`` of a bare MCAP file, via rosbags' MCAP storage reader."""
    from rosbags.rosbag2.storage_mcap import McapReader

    reader = McapReader(path)
    reader.open()
    try:
        conns = list(reader.connections)
        return ({c.topic: c.msgtype for c in conns},
                [(c.topic, int(t), bytes(raw)) for c, t, raw in reader.messages(conns)])
    finally:
        reader.close()


@pytest.mark.parametrize("storage, encoding", [("sqlite3", "rgb8"), ("mcap", "jpeg")])
def test_record_writes_camera_and_tick_outputs_on_camera_stamps(tmp_path: Path, storage: str, encoding: str) -> None:
    mcap = pytest.importorskip("mcap", reason="mcap (the reference MCAP library) not installed")
    from actfusion_msgs.msg import ActionForecast, ActionSegment, LabelInfo
    from mcap.reader import make_reader
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from actfusion_ros.frames import image_to_rgb
    from actfusion_ros.ros_messages import time_to_ns

    del mcap
    topic = CAMERA + ("/compressed" if encoding == "jpeg" else "")
    bag = _bag(tmp_path, storage, encoding)
    out = tmp_path / "replay.mcap"
    report = _replay(tmp_path, bag, RecordSettings(out, width=320, height=120), topic)
    assert out.is_file() and not list(tmp_path.glob(".replay.mcap*")), "the temporary directory is left"

    # real CRCs (not 0, "none"), which the reference reader checks as it reads
    from mcap.records import Chunk, DataEnd
    from mcap.stream_reader import StreamReader
    with out.open("rb") as fh:
        records = list(StreamReader(fh, validate_crcs=True, emit_chunks=True).records)
    assert all(r.uncompressed_crc != 0 for r in records if isinstance(r, Chunk))
    assert [r.data_section_crc != 0 for r in records if isinstance(r, DataEnd)] == [True]
    with out.open("rb") as fh:
        reader = make_reader(fh, validate_crcs=True)
        ref = [(channel.topic, message.log_time, message.data)
               for _, channel, message in reader.iter_messages(log_time_order=False)]
        schemas = {ch.topic: reader.get_summary().schemas[ch.schema_id].name
                   for ch in reader.get_summary().channels.values()}
    types, messages = _read_rosbags(out)
    assert messages == ref  # both readers read the same messages
    assert types == schemas == {
        topic: "sensor_msgs/msg/" + ("CompressedImage" if encoding == "jpeg" else "Image"),
        FUTURE_TOPIC: "actfusion_msgs/msg/ActionForecast", CURRENT_TOPIC: "actfusion_msgs/msg/ActionSegment",
        TIMELINE_TOPIC: "sensor_msgs/msg/Image", LABEL_INFO_TOPIC: "actfusion_msgs/msg/LabelInfo"}

    by_topic: dict[str, list[tuple[int, bytes]]] = {}
    for name, t, raw in messages:
        by_topic.setdefault(name, []).append((t, raw))
    camera_stamps = [s for s, _ in _frames()]
    # the camera topic: every original message, unchanged, at its stamp
    assert [t for t, _ in by_topic[topic]] == camera_stamps
    from rosbags.highlevel import AnyReader
    with AnyReader([bag]) as src:
        conns = [c for c in src.connections if c.topic == topic]
        assert [raw for _, _, raw in src.messages(connections=conns)] == [raw for _, raw in by_topic[topic]]
    # one forecast, current action and timeline image per published tick
    counts = {name: len(v) for name, v in by_topic.items()}
    assert counts[FUTURE_TOPIC] == counts[CURRENT_TOPIC] == counts[TIMELINE_TOPIC] == report.published > 0
    assert counts[LABEL_INFO_TOPIC] == 1 and report.settings["record"]["messages"] == counts
    # log times: monotone, each a camera stamp, the forecasts' header stamps <= their log times
    log_times = [t for _, t, _ in messages]
    assert log_times == sorted(log_times)
    assert {t for t, _ in by_topic[FUTURE_TOPIC]} <= set(camera_stamps)
    forecasts = [(t, deserialize_message(raw, ActionForecast)) for t, raw in by_topic[FUTURE_TOPIC]]
    for t, f in forecasts:
        assert time_to_ns(f.header.stamp) in set(camera_stamps) and time_to_ns(f.header.stamp) <= t
    currents = [deserialize_message(raw, ActionSegment) for _, raw in by_topic[CURRENT_TOPIC]]
    assert [c.label for c in currents] == [f.current.label for _, f in forecasts]
    assert currents[0].label == "red_thing" and currents[-1].label == "blue_thing"
    # a timeline image decodes to the size asked for, stamped like its forecast
    for (t, raw), (_, f) in zip(by_topic[TIMELINE_TOPIC], forecasts):
        image = deserialize_message(raw, Image)
        assert (image.encoding, image.height, image.width) == ("rgb8", 120, 320)
        assert image.header.stamp == f.header.stamp
    assert image_to_rgb(image).shape == (120, 320, 3)
    info = deserialize_message(by_topic[LABEL_INFO_TOPIC][0][1], LabelInfo)
    assert [(c.class_id, c.class_name) for c in info.class_map] == list(enumerate(NAMES))
    assert by_topic[LABEL_INFO_TOPIC][0][0] == camera_stamps[0]


def test_record_camera_draws_the_frame_in_the_timeline_images(tmp_path: Path) -> None:
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from actfusion_ros.frames import image_to_rgb

    out = tmp_path / "r.mcap"
    _replay(tmp_path, _bag(tmp_path), RecordSettings(out, width=320, height=200, camera=True))
    _, messages = _read_rosbags(out)
    images = [raw for topic, _, raw in messages if topic == TIMELINE_TOPIC]
    last = image_to_rgb(deserialize_message(images[-1], Image))
    # the last frames are blue (200 in the blue channel): the camera area shows them
    assert np.all(last[:60, 160] == (0, 0, 200))


def test_a_failed_record_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "x.mcap"
    with pytest.raises(RuntimeError, match="boom"):
        with McapFileWriter(out) as w:
            w.add_connection("/t", "std_msgs/msg/String")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(BagError, match="must end in .mcap"):
        McapFileWriter(tmp_path / "x.bag")


def test_record_flags_are_checked_before_the_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    def args(**kw):
        return argparse.Namespace(**{"record": tmp_path / "o.mcap", "record_size": "640x240",
                                     "record_camera": False, **kw})

    assert record_settings(args()) == RecordSettings(tmp_path / "o.mcap", 640, 240)
    assert record_settings(args(record=None)) is None
    for kw, match in ((dict(record=tmp_path / "o.db3"), "must end in .mcap"),
                      (dict(record=tmp_path / "nope" / "o.mcap"), "not a writable directory"),
                      (dict(record_size="640"), "WIDTHxHEIGHT"), (dict(record_size="10x10"), "width")):
        with pytest.raises(ReplayError, match=match):
            record_settings(args(**kw))
    bag = _bag(tmp_path)
    code = main([str(bag), "--checkpoint", str(bag / "metadata.yaml"), "--out", str(tmp_path / "out"),
                 "--label-topic", "/action/label", "--record", str(tmp_path / "o.txt")])
    assert code == 2 and "--record" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_cli_record_with_the_node_params_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The flags end to end: a tiny model from a node params file, --record with a size and the camera."""
    import json

    from tests.test_replay import _params_file

    out = tmp_path / "scrub.mcap"
    assert main([str(_bag(tmp_path)), "--params", str(_params_file(tmp_path)), "--out", str(tmp_path / "out"),
                 "--label-topic", "/action/label", "--record", str(out), "--record-size", "320x200",
                 "--record-camera"]) == 0
    settings = json.loads((tmp_path / "out" / "replay.json").read_text())["settings"]
    counts = settings["record"]["messages"]
    assert settings["record"]["path"] == str(out) and counts[CAMERA] == 120 and counts[LABEL_INFO_TOPIC] == 1
    assert counts[FUTURE_TOPIC] == counts[TIMELINE_TOPIC] > 0
    assert f"recorded {out}: " in capsys.readouterr().out
    _, messages = _read_rosbags(out)
    assert sum(topic == TIMELINE_TOPIC for topic, _, _ in messages) == counts[TIMELINE_TOPIC]


def test_record_writes_vision_msgs_label_info_where_vision_msgs_is_installed(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With vision_msgs importable (faked here: the same fields as actfusion_msgs') the class map is recorded as
    vision_msgs/msg/LabelInfo, its schema read from the installed package's share/ (an ament prefix)."""
    import sys
    import types

    from actfusion_msgs import msg as msgs
    from rclpy.serialization import deserialize_message

    fake = types.ModuleType("vision_msgs.msg")
    fake.LabelInfo, fake.VisionClass = msgs.LabelInfo, msgs.VisionClass   # the same fields, so the same bytes
    package = types.ModuleType("vision_msgs")
    package.msg = fake
    monkeypatch.setitem(sys.modules, "vision_msgs", package)
    monkeypatch.setitem(sys.modules, "vision_msgs.msg", fake)
    share = tmp_path / "prefix" / "share" / "vision_msgs" / "msg"
    share.mkdir(parents=True)
    repo_msgs = Path(__file__).resolve().parents[1] / "actfusion_msgs" / "msg"
    for name in ("LabelInfo", "VisionClass"):
        (share / f"{name}.msg").write_text((repo_msgs / f"{name}.msg").read_text())
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "prefix"))

    out = tmp_path / "v.mcap"
    _replay(tmp_path, _bag(tmp_path), RecordSettings(out, width=320, height=120))
    types_, messages = _read_rosbags(out)
    assert types_[LABEL_INFO_TOPIC] == "vision_msgs/msg/LabelInfo"
    (raw,) = [raw for topic, _, raw in messages if topic == LABEL_INFO_TOPIC]
    assert [c.class_name for c in deserialize_message(raw, msgs.LabelInfo).class_map] == list(NAMES)

    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "nowhere"))
    with pytest.raises(BagError, match=r"no message definitions of vision_msgs \(LabelInfo, VisionClass\)"):
        _replay(tmp_path, _bag(tmp_path / "again"), RecordSettings(tmp_path / "w.mcap"))
    assert not (tmp_path / "w.mcap").exists()
