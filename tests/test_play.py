"""actfusion-play: pacing logic (fake clock) and the message-type lookup."""
from __future__ import annotations

import pytest

from actfusion_ros.tools.play import PlayError, message_class, pace


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s


def test_pace_releases_each_item_at_its_bag_time_scaled_by_rate() -> None:
    clock = FakeClock()
    items = [(5_000_000_000, "a"), (5_500_000_000, "b"), (7_000_000_000, "c")]
    released = []
    for bag_ns, item, lag in pace(items, rate=2.0, clock=clock, sleep=clock.sleep):
        released.append((item, round(clock.now - 100.0, 9), lag))
    assert released == [("a", 0.0, 0.0), ("b", 0.25, 0.0), ("c", 1.0, 0.0)]


def test_pace_reports_lag_when_the_consumer_is_slow() -> None:
    clock = FakeClock()
    items = [(0, "a"), (100_000_000, "b")]
    lags = []
    for _, _, lag in pace(items, rate=1.0, clock=clock, sleep=clock.sleep):
        lags.append(lag)
        clock.now += 0.3  # publishing took 300 ms
    assert lags[0] == 0.0 and lags[1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rate must be > 0"):
        list(pace(items, rate=0.0))


def test_message_class_lookup() -> None:
    pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message wheels not installed")
    assert message_class("sensor_msgs/msg/Image").__name__ == "Image"
    with pytest.raises(PlayError, match="no ROS 2 Python type for 'nope_msgs/msg/X'"):
        message_class("nope_msgs/msg/X")
