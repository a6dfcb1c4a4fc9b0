"""The node's /diagnostics output: :class:`DiagnosticsTimer`, its publisher and the timer that publishes.

It exists in every lifecycle state (created with the node, the period set again by each ``configure``); the
status is the node's ``diagnostics_values()`` (built ROS-free by :mod:`actfusion_ros.node_diagnostics`, in
lifecycle terms by :func:`actfusion_ros.node_pipeline.lifecycle_status`), the message by
:func:`actfusion_ros.ros_messages.diagnostic_array`, the topic name is :mod:`actfusion_ros.topics`'.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType

from actfusion_ros.ros_messages import OUTPUT_QOS, diagnostic_array
from actfusion_ros.topics import DIAGNOSTICS_TOPIC

__all__ = ["DiagnosticsTimer"]


class DiagnosticsTimer:
    """The /diagnostics publisher of ``node`` and its steady-clock timer (in ``callback_group``), started
    with ``period_s``.

    ``status()``: the ``(level, message, values)`` to publish; ``closing``: set by the node's ``close``
    (nothing is published from then on).
    """

    def __init__(self, node: Any, status: Callable[[], tuple[str, str, dict[str, Any]]], period_s: float, *,
                 closing: threading.Event, callback_group: Any) -> None:
        self._node = node
        self._status = status
        self._closing = closing
        self._group = callback_group
        self.publisher = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, OUTPUT_QOS)
        self.timer: Any = None
        self._period_s = 0.0
        self.start(period_s)

    def start(self, period_s: float) -> None:
        """(Re)start the timer (steady clock) with ``period_s``; a running timer of that period is kept."""
        if self.timer is not None and period_s == self._period_s:
            return
        if self.timer is not None:
            self._node.destroy_timer(self.timer)
        self._period_s = period_s
        self.timer = self._node.create_timer(period_s, self.publish, callback_group=self._group,
                                             clock=Clock(clock_type=ClockType.STEADY_TIME))

    def publish(self) -> None:
        """Publish the status now (nothing once the node is closing)."""
        if self._closing.is_set():
            return
        level, message, values = self._status()
        self.publisher.publish(diagnostic_array(self._node.get_clock().now().to_msg(),
                                                name=f"{self._node.get_fully_qualified_name()}: stream",
                                                level=level, message=message, values=values))

    def cancel(self) -> None:
        """Stop the timer (the node's ``close``); a timer of a shut-down context is stopped anyway."""
        if self.timer is not None:
            try:
                self.timer.cancel()
            except Exception:  # noqa: BLE001 - a timer of a shut-down context is stopped anyway
                pass
