"""The live picture and the class map of the real ``actfusion_node`` over loopback DDS (PyPI ROS wheels).

The node runs as a subprocess (:func:`actfusion_ros.testing.ros_harness.node_session`) while a camera thread streams
frames: a best-effort viewer of ``~/timeline_image`` gets rgb8 pictures of the configured size stamped with a
camera stamp that was sent; with no viewer nothing is drawn (``timeline_drawn`` stays 0); a subscriber created
after activation gets the transient-local class map with the node's class names; a deactivated node publishes
no pictures. Waits are on what arrives, bounded by a generous "did not hang" limit; "nothing arrives" is
judged over several /diagnostics periods of the node (its steady clock), never by the wall clock.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actfusion_ros.testing import ros_harness as harness

REASON = harness.ros_skip_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=str(REASON)), pytest.mark.slow]

NAMES = ["take", "pour", "stir"]
HANG_S = 60.0  # "did not hang" bound; the tests wait on what arrives
PARAMS = {"random_weights": True, "num_samples": 1, "tick_rate_hz": 10.0, "feature_rate_hz": 5.0,
          "min_observed_frames": 1, "max_window_s": 30.0, "max_horizon_s": 4.0, "qos_reliability": "reliable",
          "qos_depth": 10, "num_threads": 1, "diagnostics_period_s": 0.2, "stale_after_s": 100.0,
          "timeline_rate_hz": 20.0, "timeline_width": 320, "timeline_height": 120, "timeline_camera": True}


def _collect(session: harness.NodeSession, msg_type: Any, topic: str, qos: Any) -> list[Any]:
    """Subscribe ``session``'s client to ``topic``; the list the messages are appended to."""
    got: list[Any] = []
    session.client.node.create_subscription(msg_type, topic, got.append, qos)
    return got


def _wait_statuses(session: harness.NodeSession, state: str, more: int) -> dict[str, str]:
    return harness.wait_statuses(session, state, more, HANG_S)


def _params(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(NAMES) + "\n")
    return {**PARAMS, "class_names_file": str(names), **extra}


def test_a_best_effort_viewer_gets_camera_stamped_pictures_of_the_configured_size(tmp_path: Path) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from actfusion_ros.frames import image_to_rgb
    from actfusion_ros.ros_messages import time_to_ns

    with (harness.node_session(tmp_path, _params(tmp_path), name="timeline") as s,
          harness.camera_feed(s, join_s=HANG_S) as feed):
        topic = f"{s.namespace}/actfusion_node/timeline_image"
        got = _collect(s, Image, topic, qos_profile_sensor_data)
        harness.wait_for(lambda: not s.node.alive() or len(got) >= 3, HANG_S, "timeline images at the viewer",
                         details=s.node.log_tail)
        assert s.node.alive(), s.node.log_tail()
        for msg in list(got):
            assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 320, 120, 960)
            assert time_to_ns(msg.header.stamp) in feed.stamps, "the picture's stamp is a camera stamp that was sent"
            assert image_to_rgb(msg).shape == (120, 320, 3)
        values = _wait_statuses(s, "active", 2)
        assert int(values["timeline_drawn"]) >= 1 and values["timeline_errors"] == "0"


def test_without_a_viewer_nothing_is_drawn_and_a_late_subscriber_gets_the_class_map(tmp_path: Path) -> None:
    from actfusion_ros.ros_messages import LABEL_INFO_QOS, label_info_type

    with (harness.node_session(tmp_path, _params(tmp_path), name="nopicture") as s,
          harness.camera_feed(s, join_s=HANG_S)):
        harness.wait_for(lambda: not s.node.alive() or len(s.client.messages(s.future_topic)) >= 5, HANG_S,
                         "forecasts", details=s.node.log_tail)
        values = _wait_statuses(s, "active", 3)
        assert int(values["published"]) >= 1 and values["timeline_drawn"] == "0", values
        # created long after the activation published the class map: transient local delivers it
        got = _collect(s, label_info_type(), f"{s.namespace}/actfusion/label_info", LABEL_INFO_QOS)
        harness.wait_for(lambda: got, HANG_S, "the class map at a late subscriber", details=s.node.log_tail)
        assert [(c.class_id, c.class_name) for c in got[0].class_map] == [(0, "take"), (1, "pour"), (2, "stir")]
        _wait_statuses(s, "active", 3)
        assert len(got) == 1, "published once per activation"
        assert _wait_statuses(s, "active", 1)["timeline_drawn"] == "0"


def test_a_deactivated_node_publishes_no_pictures(tmp_path: Path) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    with harness.node_session(tmp_path, _params(tmp_path, autostart=False), name="timelinelc", active=False) as s, \
            harness.camera_feed(s, join_s=HANG_S):
        assert s.lifecycle is not None
        got = _collect(s, Image, f"{s.namespace}/actfusion_node/timeline_image", qos_profile_sensor_data)
        assert s.lifecycle.change_state("configure") and s.lifecycle.change_state("activate")
        harness.wait_for(lambda: not s.node.alive() or len(got) >= 2, HANG_S, "timeline images while active",
                         details=s.node.log_tail)
        assert s.lifecycle.change_state("deactivate")
        drawn = _wait_statuses(s, "inactive", 3)["timeline_drawn"]  # pictures in flight arrive meanwhile
        before = len(got)
        assert _wait_statuses(s, "inactive", 5)["timeline_drawn"] == drawn
        assert len(got) == before, "timeline images while inactive"
        assert s.lifecycle.change_state("activate")
        harness.wait_for(lambda: not s.node.alive() or len(got) > before, HANG_S, "timeline images after reactivation",
                         details=s.node.log_tail)
