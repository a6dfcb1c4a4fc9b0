"""The node never dies of its own logging (issue 10, section 2).

rclpy raises ``ValueError: Logger severity cannot be changed between calls`` when one call site logs at
two severities; the node once logged bad-image warnings and tick errors from the same line, so a tick
error followed by a bad frame (or the reverse) killed spin() or the feature worker. Here an in-process
node receives, over loopback DDS from a test client, every kind of rejected frame interleaved with
failing ticks (tick thread), failing feature extraction (worker thread) and bad images (image callback),
in both orders; afterwards it must still forecast on good frames, with every thread alive and every
first error of a kind logged once. Skipped when rclpy or the message packages are missing.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any, Callable

import numpy as np
import pytest

from actfusion_ros.testing import ros_harness as harness

REASON = harness.ros_skip_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=str(REASON)), pytest.mark.slow]

if REASON is None:
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image

    from actfusion_ros.frames import compressed_to_rgb, image_to_rgb, rgb_to_jpeg
    from actfusion_ros.reporting import error_kind
    from actfusion_ros.time_ns import stamp_to_ns
    from tests.test_faults_node import ScriptedForecaster, running

HANG_S = 60.0


class TwoFaultForecaster(ScriptedForecaster):
    """ScriptedForecaster whose calls in :attr:`fail_value` raise ValueError (a second kind of tick error)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_value: set[int] = set()

    def __call__(self, observed: np.ndarray, horizon: int) -> Any:
        if self.calls + 1 in self.fail_value:
            self.calls += 1
            raise ValueError(f"forecast horizon overflows builtin_interfaces/Time (call {self.calls})")
        return super().__call__(observed, horizon)


def _raw_bad(stamp: int) -> list[Any]:
    def img(**change: Any) -> Any:
        msg = harness.make_image(Image, harness.synthetic_frame(1), stamp)
        for k, v in change.items():
            setattr(msg, k, v)
        return msg

    good = harness.make_image(Image, harness.synthetic_frame(1), stamp)
    negative = harness.make_image(Image, harness.synthetic_frame(1), stamp)
    negative.header.stamp.sec = -5
    return [img(encoding="yuv422"), img(step=good.width), img(data=bytes(good.data[:100])), img(height=0, data=b""),
            img(encoding="bgr16"), negative]


def _compressed_bad(stamp: int) -> list[Any]:
    jpeg = rgb_to_jpeg(harness.synthetic_frame(1), 90)

    def img(fmt: str, data: bytes) -> Any:
        msg = CompressedImage(format=fmt, data=data)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
        return msg

    negative = img("jpeg", jpeg)
    negative.header.stamp.sec = -5
    return [img("jpeg", jpeg[: len(jpeg) // 2]), img("jpeg", b"\x89PNG\r\n\x1a\n" + bytes(40)),
            img("jpeg", os.urandom(64)), img("webp", jpeg), img("16UC1; compressedDepth png", jpeg),
            img("jpeg", b""), negative]


def _good(compressed: bool, i: int, stamp: int) -> Any:
    if not compressed:
        return harness.make_image(Image, harness.synthetic_frame(i), stamp)
    msg = CompressedImage(format="jpeg", data=rgb_to_jpeg(harness.synthetic_frame(i), 90))
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
    return msg


def _rejection_kind(msg: Any, convert: Callable[[Any], np.ndarray]) -> str:
    """The kind the node's image callback counts ``msg`` under (it must be rejected)."""
    try:
        stamp_to_ns(msg.header.stamp)
        convert(msg)
    except Exception as err:  # noqa: BLE001 - the same catch as the callback's
        return error_kind(err)
    raise AssertionError(f"not a bad frame: {msg}")


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "compressed"])
def test_every_rejection_interleaved_with_failing_ticks_and_extraction_keeps_the_node_forecasting(
        compressed: bool, capfd) -> None:
    domain = harness.unique_domain_id()
    topic = f"/aflog{os.getpid()}{int(compressed)}/camera"
    fc = TwoFaultForecaster()
    bad_fn = _compressed_bad if compressed else _raw_bad
    convert = compressed_to_rgb if compressed else image_to_rgb
    expected_bad: Counter[str] = Counter()
    with harness.private_context(domain) as ctx, running(ctx, f"logging{int(compressed)}", fc, image_topic=topic,
                                                         compressed=compressed, qos_reliability="reliable",
                                                         qos_depth=100, queue_size=100) as r:
        client = harness.Client(f"aflog_client{int(compressed)}", domain)
        try:
            pub = client.node.create_publisher(CompressedImage if compressed else Image, topic,
                                               QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
            harness.wait_for(lambda: pub.get_subscription_count() > 0, HANG_S, "the node's image subscription")
            push, push_faults = r.node.pipeline.stream.push_encoded, {}  # stamp -> exception to raise

            def faulty_push(stamp_ns: int, image: Any) -> bool:         # the feature worker's thread
                err = push_faults.pop(stamp_ns, None)
                if err is not None:
                    raise err
                return push(stamp_ns, image)

            r.node.pipeline.stream.push_encoded = faulty_push
            sent = [0]

            def good(n: int, fault: BaseException | None = None) -> None:
                for _ in range(n):
                    i, stamp = sent[0], time.time_ns()
                    sent[0] += 1
                    if fault is not None:
                        push_faults[stamp] = fault
                    pub.publish(_good(compressed, i, stamp))
                    time.sleep(1 / 60)

            def bad() -> None:
                for msg in bad_fn(time.time_ns()):
                    expected_bad[_rejection_kind(msg, convert)] += 1
                    pub.publish(msg)
                    good(1)

            def bad_counted() -> bool:
                return r.node.pipeline.bad_images.counts == dict(expected_bad)

            good(20)
            harness.wait_for(lambda: r.published() >= 2, HANG_S, "forecasts on good frames")
            # 1. a tick error first, then every kind of bad frame and a failing extraction
            fc.fail = set(range(fc.calls + 1, fc.calls + 4))
            harness.wait_for(lambda: r.node.pipeline.tick_errors.total >= 1, HANG_S, "a failed tick")
            bad()
            good(3, fault=RuntimeError("extractor: CUDA out of memory"))
            harness.wait_for(bad_counted, HANG_S, "every bad frame counted",
                             details=lambda: f"{r.node.pipeline.bad_images.counts} != {dict(expected_bad)}")
            # 2. then another kind of tick error while bad frames and failing extractions go on
            fc.fail_value = set(range(fc.calls + 1, fc.calls + 4))
            bad()
            good(3, fault=TypeError("extractor: unexpected frame"))
            harness.wait_for(lambda: "ValueError" in r.node.pipeline.tick_errors.counts, HANG_S, "a ValueError tick")
            bad()
            harness.wait_for(bad_counted, HANG_S, "every bad frame counted",
                             details=lambda: f"{r.node.pipeline.bad_images.counts} != {dict(expected_bad)}")
            # 3. good frames only: the node forecasts again, every thread alive
            fc.fail, fc.fail_value = set(), set()
            p = r.published()
            good(30)
            harness.wait_for(lambda: r.published() >= p + 3, HANG_S, "forecasts after the storm")
            assert r._thread.is_alive() and r.node.feature_worker.thread.is_alive()
            assert r.node._log.failures == 0          # the logger never refused a line: no call site changed severity
            counts = r.node.pipeline.tick_errors.counts
            assert counts.get("RuntimeError", 0) >= 1 and counts.get("ValueError", 0) >= 1, counts
            frame_errors = r.node.pipeline.frame_errors.counts
            assert set(frame_errors) == {"RuntimeError", "TypeError"}, frame_errors
        finally:
            client.close()
    err = capfd.readouterr().err
    assert "Logger severity cannot be changed" not in err and "Traceback" not in err, err[-3000:]
    for line in ["tick failed (RuntimeError)", "tick failed (ValueError)",
                 "frame rejected by the stream (RuntimeError)", "frame rejected by the stream (TypeError)",
                 *(f"bad image skipped ({kind})" for kind in expected_bad)]:
        assert err.count(line) == 1, (line, err[-3000:])
