"""``actfusion-play BAG``: publish a rosbag2's topics on ROS 2 with real-time pacing.

What ``ros2 bag play --clock`` does, for machines where rosbag2 is not installable: messages go out in
recorded order, paced by their bag timestamps (scaled by ``--rate``), as raw CDR (no re-serialisation).
Before the first message it waits until every publisher has matched ``--wait-subscribers`` subscribers,
because DDS silently drops what is published before discovery completes. With ``--clock`` (default) it
also publishes ``/clock`` from bag time, so a node with ``use_sim_time:=true`` judges staleness in the
recording's time, not the wall clock's.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence


class PlayError(RuntimeError):
    """The bag cannot be played (missing, unreadable, unknown message type, no subscribers)."""


@dataclass
class PlayStats:
    """What one playback did."""

    published: int = 0
    per_topic: dict[str, int] | None = None
    duration_s: float = 0.0
    max_lag_s: float = 0.0


def message_class(msgtype: str) -> Any:
    """``'sensor_msgs/msg/Image'`` -> the generated rclpy class (its package must be installed)."""
    try:
        package, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as err:
        raise PlayError(f"no ROS 2 Python type for {msgtype!r} is installed: {err}") from None


def pace(items: Iterable[tuple[int, Any]], *, rate: float, clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Iterable[tuple[int, Any, float]]:
    """Yield ``(bag_ns, item, lag_s)`` no earlier than their bag time (relative to the first) / ``rate``."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0, got {rate}")
    start_wall = None
    start_bag = 0
    for bag_ns, item in items:
        if start_wall is None:
            start_wall, start_bag = clock(), bag_ns
        due = start_wall + (bag_ns - start_bag) / 1e9 / rate
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield bag_ns, item, max(0.0, clock() - due)


def play(bag: Path, *, topics: Sequence[str] | None = None, rate: float = 1.0, wait_subscribers: int = 1,
         wait_timeout_s: float = 10.0, publish_clock: bool = True, node_name: str = "actfusion_play") -> PlayStats:
    """Publish ``bag`` (sqlite3 or mcap) on ROS 2; returns counts and the worst pacing lag."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosbags.highlevel import AnyReader

    if not Path(bag).exists():
        raise PlayError(f"bag not found: {bag}")
    try:
        reader = AnyReader([Path(bag)])
        reader.open()
    except Exception as err:  # rosbags raises several types for corrupt/unsupported bags
        raise PlayError(f"{bag}: cannot open bag: {err}") from None
    rclpy.init(args=None)
    node = rclpy.create_node(node_name)
    stats = PlayStats(per_topic={})
    try:
        present = {c.topic: c for c in reader.connections}
        wanted = list(topics) if topics else sorted(present)
        missing = [t for t in wanted if t not in present]
        if missing:
            raise PlayError(f"{bag}: topic(s) {missing} not in the bag; it has {sorted(present)}")
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {t: node.create_publisher(message_class(present[t].msgtype), t, qos) for t in wanted}
        clock_pub = None
        if publish_clock:
            from rosgraph_msgs.msg import Clock
            clock_pub = node.create_publisher(Clock, "/clock", 10)
        _wait_for_subscribers(pubs, wait_subscribers, wait_timeout_s)
        conns = [present[t] for t in wanted]
        raw = ((ts, (conn.topic, data)) for conn, ts, data in reader.messages(connections=conns))
        t0 = time.monotonic()
        for bag_ns, (topic, data), lag in pace(raw, rate=rate):
            if clock_pub is not None:
                msg = Clock()
                msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
                clock_pub.publish(msg)
            pubs[topic].publish(bytes(data))
            stats.published += 1
            stats.per_topic[topic] = stats.per_topic.get(topic, 0) + 1
            stats.max_lag_s = max(stats.max_lag_s, lag)
        stats.duration_s = time.monotonic() - t0
        time.sleep(0.2)  # let the last messages leave before the participant goes away
    finally:
        reader.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return stats


def _wait_for_subscribers(pubs: dict[str, Any], count: int, timeout_s: float) -> None:
    if count <= 0:
        return
    deadline = time.monotonic() + timeout_s
    while True:
        lacking = {t: p.get_subscription_count() for t, p in pubs.items() if p.get_subscription_count() < count}
        if not lacking:
            return
        if time.monotonic() > deadline:
            raise PlayError(f"no subscriber matched within {timeout_s:.0f} s on {sorted(lacking)} "
                            f"(is the node running, on the same ROS_DOMAIN_ID?)")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="actfusion-play", description=__doc__.split("\n")[0])
    ap.add_argument("bag", type=Path)
    ap.add_argument("--topics", nargs="*", help="topics to play (default: all)")
    ap.add_argument("--rate", type=float, default=1.0, help="speed factor (2 = twice as fast)")
    ap.add_argument("--wait-subscribers", type=int, default=1, help="subscribers each topic waits for (0: none)")
    ap.add_argument("--wait-timeout", type=float, default=10.0, help="seconds to wait for them")
    ap.add_argument("--no-clock", action="store_true", help="do not publish /clock from bag time")
    args = ap.parse_args(argv)
    try:
        stats = play(args.bag, topics=args.topics, rate=args.rate, wait_subscribers=args.wait_subscribers,
                     wait_timeout_s=args.wait_timeout, publish_clock=not args.no_clock)
    except (PlayError, ValueError) as err:
        print(f"actfusion-play: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    topics = ", ".join(f"{t}: {n}" for t, n in sorted((stats.per_topic or {}).items()))
    print(f"published {stats.published} messages in {stats.duration_s:.2f} s ({topics}); "
          f"worst pacing lag {stats.max_lag_s * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
