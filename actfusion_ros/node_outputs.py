"""The configured ``actfusion_node``'s outputs: its lifecycle publishers and what each publishes.

:class:`NodeOutputs` is created by ``configure`` (the publishers exist, disabled until ``activate``) and
destroyed by ``cleanup``: the forecasts, the current action, the class map (transient local, published by
every ``activate``), with ``publish_marginals`` the per-frame class distribution of each forecast and, when
the live picture is on, ``~/timeline_image``. The messages are built by
:mod:`actfusion_ros.ros_messages`; the names are :mod:`actfusion_ros.topics`'.
"""
from __future__ import annotations

from typing import Any, Sequence

from actfusion_msgs.msg import ActionForecast, ActionSegment, ForecastMarginals
from sensor_msgs.msg import Image

from actfusion_ros.node_pipeline import PictureOutput
from actfusion_ros.ros_messages import (LABEL_INFO_QOS, OUTPUT_QOS, TIMELINE_IMAGE_QOS, forecast_to_msg,
                                        label_info_type, make_label_info, marginals_to_msg, rgb_image_msg,
                                        segment_to_msg)
from actfusion_ros.stream_types import ForecastResult
from actfusion_ros.topics import (NODE_CURRENT_TOPIC, NODE_FUTURE_TOPIC, NODE_LABEL_INFO_TOPIC, NODE_MARGINALS_TOPIC,
                                  NODE_TIMELINE_TOPIC)

__all__ = ["NodeOutputs"]


class NodeOutputs:
    """The lifecycle publishers of ``node`` (an ``rclpy.lifecycle.LifecycleNode``); ``picture``: create
    ``~/timeline_image`` too (``timeline_rate_hz`` > 0); ``marginals``: create ``actfusion/future_marginals``
    too (``publish_marginals``)."""

    def __init__(self, node: Any, *, picture: bool, marginals: bool = False) -> None:
        self._node = node
        make = node.create_lifecycle_publisher
        self.future = make(ActionForecast, NODE_FUTURE_TOPIC, OUTPUT_QOS)
        self.current = make(ActionSegment, NODE_CURRENT_TOPIC, OUTPUT_QOS)
        self.label_info = make(label_info_type(), NODE_LABEL_INFO_TOPIC, LABEL_INFO_QOS)
        self.marginals = make(ForecastMarginals, NODE_MARGINALS_TOPIC, OUTPUT_QOS) if marginals else None
        self.timeline = make(Image, NODE_TIMELINE_TOPIC, TIMELINE_IMAGE_QOS) if picture else None
        #: where the tick sends its picture (None: no picture)
        self.picture_output = (PictureOutput(self.timeline.get_subscription_count, self.publish_picture)
                               if self.timeline is not None else None)

    @property
    def publishers(self) -> list[Any]:
        return [p for p in (self.future, self.current, self.marginals, self.label_info, self.timeline)
                if p is not None]

    @property
    def topic_names(self) -> list[str]:
        """The full names of the topics published (for the activation's log line)."""
        return [p.topic_name for p in self.publishers]

    def publish_forecast(self, result: ForecastResult, frame_id: str) -> None:
        """A tick's result: the forecast, the current action and (``marginals``) the per-frame distribution."""
        self.future.publish(forecast_to_msg(result, frame_id))
        self.current.publish(segment_to_msg(result.current))
        if self.marginals is not None:
            self.marginals.publish(marginals_to_msg(result, frame_id))

    def publish_picture(self, rgb: Any, stamp_ns: int, frame_id: str) -> None:
        self.timeline.publish(rgb_image_msg(rgb, stamp_ns, frame_id))

    def publish_class_map(self, class_names: Sequence[str], stamp_ns: int) -> None:
        self.label_info.publish(make_label_info(class_names, stamp_ns))

    def destroy(self) -> None:
        for pub in self.publishers:
            self._node.destroy_lifecycle_publisher(pub)
