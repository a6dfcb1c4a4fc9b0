"""Benchmark actfusion_node: image callback cost and end-to-end delay (frame stamp -> forecast).

1. Callback cost, in process: ``ActFusionNode.image_callback`` (conversion + enqueue, everything the image
   callback does) on 640x480 ``rgb8`` Images and JPEG CompressedImages, with the feature worker
   running as in the node. Median / p95 over ``--frames`` calls.
2. End to end, over loopback DDS: the node as a subprocess (tiny random-weights model), 640x480 rgb8
   frames published at ``--fps`` stamped with the wall clock; for every ActionForecast received,
   ``receive time - header.stamp`` (the camera stamp of the last frame used). This includes the DDS
   transport of the frame, the queue, feature extraction, waiting for the next tick (up to one tick
   period), inference and the transport of the forecast.

Run: ``.venv/bin/python benchmarks/bench_node.py [--seconds 10] [--tick-rate 10] [--feature-rate 5]``
"""
from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_ros.testing import ros_harness as harness  # noqa: E402


def stats_ms(values_s: list[float]) -> str:
    a = np.asarray(values_s) * 1e3
    return (f"median {np.median(a):7.3f} ms   p95 {np.percentile(a, 95):7.3f} ms   "
            f"mean {a.mean():7.3f} ms   (n={a.size})")


def test_image(height: int = 480, width: int = 640) -> np.ndarray:
    """A camera-like frame: smooth gradients, a few shapes and sensor noise (JPEG-realistic)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1)
    img[100:300, 200:400] = (200, 60, 40)
    img[300:420, 50:250] = (40, 160, 220)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def bench_callback(frames: int) -> None:
    import rclpy
    from rclpy.parameter import Parameter
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image

    from actfusion_ros.frames import rgb_to_jpeg
    from actfusion_ros.node.actfusion_node import ActFusionNode

    domain = harness.unique_domain_id()
    old = harness.apply_loopback_env(domain)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    rgb = test_image()
    jpeg = rgb_to_jpeg(rgb, 90)
    print(f"1. image callback (convert + enqueue), 640x480, {frames} calls, feature worker running")
    print(f"   jpeg q90 of the test frame: {len(jpeg) / 1024:.0f} KiB")
    try:
        for compressed in (False, True):
            node = ActFusionNode(context=ctx, node_name=f"bench_{int(compressed)}", parameter_overrides=[
                Parameter("random_weights", value=True), Parameter("compressed", value=compressed),
                Parameter("stale_after_s", value=1e5)])
            if compressed:
                msg = CompressedImage(format="jpeg", data=jpeg)
            else:
                msg = harness.make_image(Image, rgb, 0)
            t0 = time.time_ns()
            durations = []
            for i in range(frames):
                stamp = t0 + i * 33_333_333
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                start = time.perf_counter()
                node.image_callback(msg)
                durations.append(time.perf_counter() - start)
            name = "CompressedImage jpeg" if compressed else "Image rgb8          "
            print(f"   {name}: {stats_ms(durations)}")
            node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
        harness.restore_env(old)


def bench_end_to_end(seconds: float, fps: float, tick_rate: float, feature_rate: float) -> None:
    from sensor_msgs.msg import Image

    rgb = test_image()
    print(f"2. end to end over loopback DDS: 640x480 rgb8 at {fps:g} fps for {seconds:g} s; "
          f"tick {tick_rate:g} Hz, features {feature_rate:g} Hz, tiny random-weights model")
    with tempfile.TemporaryDirectory() as tmp, harness.node_session(Path(tmp), {
            "random_weights": True, "tick_rate_hz": tick_rate, "feature_rate_hz": feature_rate,
            "min_observed_frames": 1, "num_samples": 1}, name="bench", image_depth=5, reliable=False) as session:
        node, client, pub, topic = session.node, session.client, session.image_pub, session.future_topic
        msg = harness.make_image(Image, rgb, 0)
        publish_s = []
        n = int(seconds * fps)
        start = time.monotonic()
        for i in range(n):
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            t = time.perf_counter()
            pub.publish(msg)
            publish_s.append(time.perf_counter() - t)
            time.sleep(max(0.0, start + (i + 1) / fps - time.monotonic()))
        time.sleep(2.0 / tick_rate)
        got = client.timed_messages(topic)
        delays = [(recv - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e9 for recv, m in got]
        inference = [m.model_latency.sec + m.model_latency.nanosec / 1e9 for _, m in got]
        print(f"   publish() of a 921 KB Image: {stats_ms(publish_s)}")
        if delays:
            n_max = max(m.num_observed_frames for _, m in got)
            print(f"   forecasts received: {len(got)} (N_observed up to {n_max})")
            print(f"   stamp -> forecast received: {stats_ms(delays)}")
            print(f"   model inference (model_latency): {stats_ms(inference)}")
            print(f"   (waiting for the tick adds up to {1e3 / tick_rate:.0f} ms; the last frame used is "
                  f"the last *sampled* one, up to {1e3 / feature_rate:.0f} ms before the tick)")
        else:
            print("   no forecasts received\n" + node.log_tail())
        diags = session.diagnostics()
        if diags:
            d = diags[-1]
            print("   node diagnostics: " + ", ".join(f"{k}={d[k]}" for k in (
                "images_received", "frames_dropped", "frames_accepted", "ticks", "published",
                "skipped_ticks", "tick_latency_ms_max") if k in d)
                  + ", " + ", ".join(f"{k}={v}" for k, v in d.items() if k.startswith("stream_skips.")))
        node.signal(signal.SIGINT)
        node.wait(15)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=300, help="callback calls per encoding")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of the end-to-end stream")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--tick-rate", type=float, default=10.0)
    ap.add_argument("--feature-rate", type=float, default=5.0)
    ap.add_argument("--skip-e2e", action="store_true", help="only the callback benchmark")
    args = ap.parse_args(argv)
    reason = harness.ros_skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 1
    bench_callback(args.frames)
    if not args.skip_e2e:
        bench_end_to_end(args.seconds, args.fps, args.tick_rate, args.feature_rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
