"""The node's live picture, without ROS: when to draw, with which camera frame, and failures counted.

:class:`LivePicture` holds a :class:`~actfusion_ros.timeline_image.TimelineRenderer`, a
:class:`~actfusion_ros.timeline_image.RenderGate` (a rate limit; nothing while no one subscribes) and the
latest camera frame, still encoded (the image callback hands it over with :meth:`LivePicture.observe_frame`;
it is decoded only when a picture is drawn with it). After a tick, :meth:`LivePicture.picture` gives the
image to publish or ``None``; a frame or result it cannot draw is counted per kind in ``errors`` (the first
of each kind logged) and skipped, never raised into the tick.

In ``actfusion_node`` (ROS types from :mod:`actfusion_ros.ros_messages`)::

    self._picture = LivePicture(TimelineConfig(class_names=self.stream.class_names, width=..., height=...),
                                rate_hz=..., camera=..., log=self._log.warning)
    self._timeline_pub = self.create_publisher(Image, "~/timeline_image", TIMELINE_IMAGE_QOS)
    # image callback:  self._picture.observe_frame(image)          (the EncodedImage of inspect_image)
    # tick, after the forecast is published:
    rgb = self._picture.picture(result, now_ns, self._timeline_pub.get_subscription_count())
    if rgb is not None:
        self._timeline_pub.publish(rgb_image_msg(rgb, result.stamp_ns, self._frame_id))
"""
from __future__ import annotations

import threading
from typing import Any, Callable

import numpy as np

from actfusion_ros.reporting import KindCounter
from actfusion_ros.stream_types import EncodedFrame, ForecastResult
from actfusion_ros.timeline_image import RenderGate, TimelineConfig, TimelineImageError, TimelineRenderer, camera_rgb

__all__ = ["LivePicture"]


class LivePicture:
    """See the module docstring. ``camera``: draw the latest camera frame above the timeline. Thread-safe
    (:meth:`observe_frame` from the image callback, :meth:`picture` from the tick)."""

    def __init__(self, config: TimelineConfig, *, rate_hz: float, camera: bool = True,
                 log: Callable[[str], Any] | None = None) -> None:
        self.renderer = TimelineRenderer(config)
        self.gate = RenderGate(rate_hz)
        self.camera = bool(camera)
        self.errors = KindCounter("timeline image skipped", log)
        self.drawn = 0
        self._frame: np.ndarray | EncodedFrame | None = None
        self._lock = threading.Lock()

    def observe_frame(self, frame: np.ndarray | EncodedFrame | Any) -> None:
        """Keep ``frame`` (an RGB array or an encoded frame with ``decode()``) as the latest camera frame."""
        if self.camera:
            with self._lock:
                self._frame = frame

    def picture(self, result: ForecastResult | None, now_ns: int, subscribers: int) -> np.ndarray | None:
        """The picture of ``result`` when one is due (someone subscribes, the rate allows), else ``None``.

        A result that cannot be drawn is counted (``errors``, kind ``result``) and gives ``None``; a camera
        frame that does not decode is counted (kind ``camera_frame``), dropped, and the picture drawn without it.
        """
        if result is None or not self.gate.due(int(now_ns), int(subscribers)):
            return None
        with self._lock:
            frame = self._frame
        rgb = None
        if frame is not None:
            try:
                rgb = camera_rgb(frame)
            except TimelineImageError as err:
                self.errors.record("camera_frame", err)
                with self._lock:
                    if self._frame is frame:
                        self._frame = None   # not tried again
        try:
            image = self.renderer.render_result(result, camera_frame=rgb)
        except TimelineImageError as err:
            self.errors.record("result", err)
            return None
        self.drawn += 1
        return image

