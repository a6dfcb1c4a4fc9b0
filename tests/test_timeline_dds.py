"""The class map and the timeline image over loopback DDS with the PyPI ROS wheels: a late subscriber gets the
transient-local class map; a viewer's best-effort subscription gets the rgb8 picture, and the publisher sees it
subscribe (what gates the drawing)."""
from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from actfusion_ros.ros_testing import wait_for

NAMES = ["take", "pour", "stir"]
T0 = 1_700_000_000 * 10**9
TIMEOUT_S = 60.0  # "did not hang" bound; the tests wait on what arrives


class _Spinner:
    """Spin nodes of one context in a background thread."""

    def __init__(self, context: Any, *nodes: Any) -> None:
        from rclpy.executors import SingleThreadedExecutor

        self.executor = SingleThreadedExecutor(context=context)
        for node in nodes:
            self.executor.add_node(node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, node: Any) -> None:
        self.executor.add_node(node)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT_S)
        self.executor.shutdown()


def test_a_late_subscriber_gets_the_class_map_once(ros_context: Any) -> None:
    from rclpy.node import Node

    from actfusion_ros.ros_messages import LABEL_INFO_QOS, label_info_type, make_label_info

    label_info = label_info_type()
    publisher = Node("label_info_pub", context=ros_context)
    subscriber = Node("label_info_sub", context=ros_context)
    spinner = _Spinner(ros_context, publisher)
    try:
        pub = publisher.create_publisher(label_info, "actfusion/label_info", LABEL_INFO_QOS)
        pub.publish(make_label_info(NAMES, T0))   # before anyone subscribes
        got: list[Any] = []
        subscriber.create_subscription(label_info, "actfusion/label_info", got.append, LABEL_INFO_QOS)
        spinner.add(subscriber)
        wait_for(lambda: got, TIMEOUT_S, "the class map at a late subscriber")
        assert [(c.class_id, c.class_name) for c in got[0].class_map] == [(0, "take"), (1, "pour"), (2, "stir")]
        assert len(got) == 1
    finally:
        spinner.close()
        publisher.destroy_node()
        subscriber.destroy_node()


def test_a_best_effort_viewer_gets_the_timeline_image(ros_context: Any) -> None:
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from actfusion_ros.frames import image_to_rgb
    from actfusion_ros.ros_messages import TIMELINE_IMAGE_QOS, rgb_image_msg, time_to_ns
    from actfusion_ros.stream_types import TimedSegment
    from actfusion_ros.timeline_image import TimelineConfig, TimelineRenderer

    picture = TimelineRenderer(TimelineConfig(class_names=NAMES, width=320, height=120)).render(
        [TimedSegment("take", 0, T0 - 10**9, T0, 0.9)], [TimedSegment("pour", 1, T0, T0 + 5 * 10**9, 0.5)])
    publisher = Node("actfusion_node", context=ros_context)
    viewer = Node("rqt_image_view", context=ros_context)
    pub = publisher.create_publisher(Image, "~/timeline_image", TIMELINE_IMAGE_QOS)
    assert pub.topic_name == "/actfusion_node/timeline_image" and pub.get_subscription_count() == 0
    got: list[Any] = []
    viewer.create_subscription(Image, "/actfusion_node/timeline_image", got.append, qos_profile_sensor_data)
    spinner = _Spinner(ros_context, publisher, viewer)
    try:
        wait_for(lambda: pub.get_subscription_count() == 1, TIMEOUT_S, "the viewer to subscribe")

        def received() -> bool:
            if not got:
                pub.publish(rgb_image_msg(picture, T0, "camera"))
            return bool(got)

        wait_for(received, TIMEOUT_S, "a timeline image at the viewer", poll=0.2)
        msg = got[0]
        assert (msg.encoding, msg.width, msg.height) == ("rgb8", 320, 120) and time_to_ns(msg.header.stamp) == T0
        assert np.array_equal(image_to_rgb(msg), picture)
    finally:
        spinner.close()
        publisher.destroy_node()
        viewer.destroy_node()


@pytest.fixture(autouse=True)
def _msgs_built() -> None:
    msgs = pytest.importorskip("actfusion_msgs.msg", reason="actfusion_msgs not built")
    if not hasattr(msgs, "LabelInfo"):
        pytest.fail("actfusion_msgs was built before LabelInfo.msg; rerun scripts/build_msgs.sh", pytrace=False)
