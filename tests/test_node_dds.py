"""actfusion_node: message conversion, node helpers, an in-process node, and the node over real DDS.

Skipped (with the reason) when rclpy or the message packages (actfusion_msgs: scripts/build_msgs.sh)
are not importable. DDS traffic stays on loopback (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and
config/fastdds_local.xml), on a pid-derived ROS_DOMAIN_ID and under a unique namespace.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from actfusion_ros.stream_types import ForecastOutput
from actfusion_ros.testing.ros_harness import (
    diagnostics_values,
    make_image,
    node_session,
    ros_skip_reason,
    synthetic_frame,
    wait_for,
)

REASON = ros_skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))

if REASON is None:
    from actfusion_msgs.msg import ActionForecast, ActionSegment
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from actfusion_model.features import build_extractor
    from actfusion_ros.builder import StartupError
    from actfusion_ros.node.actfusion_node import ActFusionNode
    from actfusion_ros.ros_messages import (
        diagnostic_array,
        duration_from_s,
        forecast_to_msg,
        segment_to_msg,
        time_from_ns,
        time_to_ns,
    )
    from actfusion_ros.stream import StreamingAnticipator
    from actfusion_ros.stream_types import StreamConfig, TimedSegment

T0 = 1_700_000_000_123_456_789
HANG_S = 60.0   # "did not hang" bound: only a hang fails on time


class FakeForecaster:
    """Deterministic: class k for observed frames in block k, future = the next class."""

    def __init__(self, num_classes: int = 3, delay_s: float = 0.0) -> None:
        self.num_classes = num_classes
        self.class_names = tuple(f"c{i}" for i in range(num_classes))
        self.input_dim: int | None = None  # any feature size
        self.pipeline = None
        self.delay_s = delay_s
        self.calls = 0
        self.in_call = threading.Event()

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        self.calls += 1
        self.in_call.set()
        if self.delay_s:
            time.sleep(self.delay_s)
        n = observed.shape[1]
        obs = np.full((self.num_classes, n), 0.1, np.float32)
        obs[np.minimum(np.arange(n) // 3, self.num_classes - 1), np.arange(n)] = 0.8
        fut = np.full((self.num_classes, horizon), 0.1, np.float32)
        fut[(n // 3 + 1) % self.num_classes] = 0.8
        return ForecastOutput(obs, fut)


# ============================================================================ message conversion
def test_time_conversion_is_exact() -> None:
    for ns in (0, 1, 999_999_999, 1_000_000_000, T0, (2**31 - 1) * 10**9 + 999_999_999):
        t = time_from_ns(ns)
        assert (t.sec, t.nanosec) == divmod(ns, 10**9)
        assert time_to_ns(t) == ns
    with pytest.raises(ValueError):
        time_from_ns(-1)
    with pytest.raises(ValueError, match="overflow"):
        time_from_ns(2**31 * 10**9)
    d = duration_from_s(0.0123456789)
    assert (d.sec, d.nanosec) == (0, 12_345_679)
    assert (duration_from_s(2.5).sec, duration_from_s(2.5).nanosec) == (2, 500_000_000)


def test_segment_to_msg() -> None:
    seg = TimedSegment(label="pour", class_id=3, start_ns=T0, end_ns=T0 + 1_500_000_001, confidence=0.75)
    msg = segment_to_msg(seg)
    assert isinstance(msg, ActionSegment)
    assert (msg.label, msg.class_id) == ("pour", 3)
    assert time_to_ns(msg.start) == T0 and time_to_ns(msg.end) == T0 + 1_500_000_001
    assert msg.confidence == pytest.approx(0.75)


def _stream_result(partial_min: int = 4, frames: int = 7):
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=2.0, max_horizon_s=4.0, max_window_s=60.0,
                       min_observed_frames=partial_min, stale_after_s=1e6)
    fc = FakeForecaster()
    stream = StreamingAnticipator(cfg, build_extractor("color_layout"), fc, ["idle", "reach", "pour"])
    period = 500_000_000
    for i in range(frames):
        stream.push_frame(T0 + i * period, synthetic_frame(i))
    return stream.tick(T0 + frames * period), period


def test_forecast_to_msg_matches_result() -> None:
    result, period = _stream_result()
    msg = forecast_to_msg(result, "cam_optical")
    assert time_to_ns(msg.header.stamp) == result.stamp_ns == T0 + 6 * period  # last frame, not now
    assert msg.header.frame_id == "cam_optical"
    assert msg.num_observed_frames == 7 and msg.horizon_frames == min(math.ceil(2.0 * 7), 8) == 8
    assert msg.partial is False and msg.feature_rate_hz == pytest.approx(2.0)
    assert msg.model_latency == duration_from_s(result.inference_s)
    for seg_msg, seg in zip([*msg.observed, *msg.future, msg.current],
                            [*result.observed, *result.future, result.current]):
        assert (seg_msg.label, seg_msg.class_id) == (seg.label, seg.class_id)
        assert (time_to_ns(seg_msg.start), time_to_ns(seg_msg.end)) == (seg.start_ns, seg.end_ns)
    # observed segments tile [first stamp, last stamp + P); the future continues from there
    assert time_to_ns(msg.observed[0].start) == T0
    assert time_to_ns(msg.observed[-1].end) == time_to_ns(msg.future[0].start) == T0 + 7 * period
    assert time_to_ns(msg.future[-1].end) == T0 + 7 * period + 8 * period
    assert [s.label for s in msg.observed] == ["idle", "reach", "pour"]
    assert msg.current == msg.observed[-1]
    assert deserialize_message(serialize_message(msg), ActionForecast) == msg


def test_forecast_to_msg_partial() -> None:
    result, _ = _stream_result(partial_min=10, frames=3)
    msg = forecast_to_msg(result)
    assert msg.partial is True and msg.num_observed_frames == 3 and msg.horizon_frames == 6


def test_diagnostic_array() -> None:
    arr = diagnostic_array(time_from_ns(T0), name="/ns/actfusion_node: stream", level="warn",
                           message="waiting", values={"a": 1, "b": 0.123456, "c": True})
    assert isinstance(arr, DiagnosticArray) and len(arr.status) == 1
    st = arr.status[0]
    assert st.level == DiagnosticStatus.WARN and st.name == "/ns/actfusion_node: stream"
    assert {kv.key: kv.value for kv in st.values} == {"a": "1", "b": "0.1235", "c": "true"}
    assert time_to_ns(arr.header.stamp) == T0


# ============================================================================ node helpers
# ============================================================================ in-process node
def _params(**values) -> list:
    return [Parameter(k, value=v) for k, v in values.items()]


def test_startup_rejects_bad_parameters(ros_context) -> None:
    with pytest.raises(StartupError) as info:
        ActFusionNode(context=ros_context, node_name="bad_params", parameter_overrides=_params(
            tick_rate_hz=5000.0, device="gpu", checkpoint="", random_weights=False, feature_rate_hz=2.0,
            max_window_s=0.5))
    text = str(info.value)
    for expected in ("tick_rate_hz: 5000.0 is outside", "device: 'gpu'", "checkpoint: required",
                     "max_window_s must be >= 2 s"):
        assert expected in text, text


def test_startup_rejects_extractor_model_mismatch(ros_context) -> None:
    fc = FakeForecaster()
    fc.input_dim = 7
    with pytest.raises(StartupError, match="expects 7-dimensional features"):
        ActFusionNode(context=ros_context, node_name="mismatch", forecaster=fc,
                      parameter_overrides=_params(random_weights=True))


def test_startup_rejects_a_checkpoint_trained_on_another_feature_pipeline(ros_context) -> None:
    from actfusion_model.features.pipeline import FeaturePipeline

    fc = FakeForecaster()
    fc.pipeline = FeaturePipeline.of("color_layout", 4.0, {"grid": 4, "bins": 8})
    with pytest.raises(StartupError, match=r"feature_rate_hz: 4 != 2"):
        ActFusionNode(context=ros_context, node_name="pipeline_mismatch", forecaster=fc,
                      parameter_overrides=_params(random_weights=True, feature_rate_hz=2.0,
                                                  extractor_kwargs="{grid: 4, bins: 8}"))


def test_node_counts_overruns_bad_images_and_shuts_down_during_tick(ros_context) -> None:
    """In-process: slow forecaster -> skipped ticks; bad images counted; shutdown mid-tick is clean."""
    fc = FakeForecaster(delay_s=0.3)
    node = ActFusionNode(context=ros_context, node_name="inproc", forecaster=fc, parameter_overrides=_params(
        random_weights=True, tick_rate_hz=20.0, feature_rate_hz=10.0, min_observed_frames=1,
        stale_after_s=100.0, diagnostics_period_s=0.1))
    executor = MultiThreadedExecutor(num_threads=3, context=ros_context)
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        t_start = time.time_ns()
        for i in range(12):
            node.image_callback(make_image(Image, synthetic_frame(i), t_start + i * 50_000_000))
        bad = make_image(Image, synthetic_frame(0), t_start)
        bad.encoding = "yuv422"
        node.image_callback(bad)
        short = make_image(Image, synthetic_frame(0), t_start)
        short.data = bytes(10)
        node.image_callback(short)
        wait_for(lambda: fc.calls >= 3, HANG_S, "three forecasts from the slow forecaster")
        level, message, values = node.diagnostics_values()
        assert values["bad_images"] == 2 and values["bad_images.encoding"] == 1
        assert values["bad_images.truncated"] == 1
        # 3 ticks of 0.3 s at 20 Hz: most of the ~18 due times fall inside a running tick
        assert values["skipped_ticks"] >= 8, values
        assert values["published"] >= 2 and values["images_received"] == 14
        response = node.reset_callback(Trigger.Request(), Trigger.Response())
        assert response.success and node.pipeline.stream.episode == 1
        # shut down while the forecaster is running
        fc.in_call.clear()
        node.image_callback(make_image(Image, synthetic_frame(20), time.time_ns()))
        wait_for(fc.in_call.is_set, HANG_S, "a tick in progress")
        stopper = threading.Thread(target=lambda: (executor.shutdown(timeout_sec=HANG_S), node.destroy_node()))
        stopper.start()
        stopper.join(HANG_S)
        assert not stopper.is_alive(), "shutdown during a tick hung"
        # what happened: the worker stopped, and the tick in progress ended without an error (below)
        assert not node.feature_worker.thread.is_alive()
        assert node.pipeline.tick_errors.total == 0, node.pipeline.tick_errors.counts
    finally:
        executor.shutdown(timeout_sec=1.0)
        spin.join(5.0)


def test_compressed_input_callback(ros_context) -> None:
    """compressed: true: JPEG CompressedImages are decoded and enqueued; broken ones are counted."""
    from sensor_msgs.msg import CompressedImage

    from actfusion_ros.frames import rgb_to_jpeg

    node = ActFusionNode(context=ros_context, node_name="jpeg", forecaster=FakeForecaster(),
                         parameter_overrides=_params(random_weights=True, compressed=True))
    try:
        assert node.image_sub.msg_type is CompressedImage
        node.close()  # stop the worker: inspect the queue
        jpeg = rgb_to_jpeg(synthetic_frame(3), 95)
        good = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg)
        good.header.stamp.sec = 5
        node.image_callback(good)
        node.image_callback(CompressedImage(format="jpeg", data=jpeg[: len(jpeg) // 2]))
        node.image_callback(CompressedImage(format="webp", data=jpeg))
        assert node.pipeline.queue.put_count == 1
        assert node.pipeline.bad_images.counts == {"truncated": 1, "format": 1}
    finally:
        node.destroy_node()


def test_node_with_onnxruntime_backend(ros_context, tmp_path: Path) -> None:
    """backend onnxruntime + onnx_dir: the node builds its forecaster through actfusion_model.runtime, with
    the parameters that reach ONNX Runtime (num_threads, sample_workers)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    export = pytest.importorskip("actfusion_model.export", reason="actfusion_model.export not installed")
    pytest.importorskip("actfusion_model.runtime", reason="actfusion_model.runtime not installed")
    from actfusion_ros.stream_model import ModelForecaster

    dim = build_extractor("color_layout").dim
    ref = ModelForecaster.random_weights(input_dim=dim, class_names=["idle", "reach", "pour"], seed=4)
    export.export_onnx(ref.model, tmp_path / "onnx", class_names=["idle", "reach", "pour"], verify_length=None)
    node = ActFusionNode(context=ros_context, node_name="ort", parameter_overrides=_params(
        backend="onnxruntime", onnx_dir=str(tmp_path / "onnx"), seed=4, num_threads=1, stale_after_s=100.0,
        num_samples=4, sample_workers=2))
    try:
        fc = node.pipeline.stream.forecaster
        assert (fc.backend, fc.class_names, node.pipeline.stream.class_names) == (
            "onnxruntime", ("idle", "reach", "pour"), ("idle", "reach", "pour"))
        assert (fc.runtime.intra_op_threads, fc.runtime.sample_workers, fc.num_samples) == (1, 2, 4)
        t0 = time.time_ns()
        for i in range(6):
            node.pipeline.stream.push_frame(t0 + i * 500_000_000, synthetic_frame(i))
        result = node.pipeline.stream.tick(t0 + 3 * 10**9)
        assert result is not None and result.num_observed == 6 and result.horizon == 24
        msg = forecast_to_msg(result)
        assert {s.label for s in msg.future} <= {"idle", "reach", "pour"}
    finally:
        node.destroy_node()


# ============================================================================ over real DDS
CLASSES = ["idle", "reach", "grasp", "pour"]


@pytest.mark.slow
def test_node_over_dds(tmp_path: Path) -> None:
    """Node subprocess + test client: forecasts, stamps, horizon, labels, bad images, reset, SIGINT."""
    rate, ratio, max_h_s, min_obs = 10.0, 2.0, 1.0, 3
    (tmp_path / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(CLASSES)))
    with node_session(tmp_path, {
            "random_weights": True, "class_names_file": str(tmp_path / "classes.txt"),
            "tick_rate_hz": 10.0, "feature_rate_hz": rate, "ratio": ratio, "max_horizon_s": max_h_s,
            "min_observed_frames": min_obs, "publish_partial": True, "stale_after_s": 5.0, "episode_gap_s": 5.0,
            "qos_reliability": "reliable", "qos_depth": 20, "queue_size": 64, "diagnostics_period_s": 0.2,
            "num_threads": 1}, name="aft", image_depth=50, current=True) as session:
        node, client, pub, ns = session.node, session.client, session.image_pub, session.namespace
        fut_topic, cur_topic = session.future_topic, session.current_topic
        reset = client.node.create_client(Trigger, f"{ns}/actfusion_node/reset")
        assert session.lifecycle.get_state() == "active"       # autostart (the default): configured + activated

        def log() -> str:
            return node.log_tail()

        sent: list[int] = []
        counter = [0]

        def send(n: int, hz: float = 30.0) -> None:
            for _ in range(n):
                stamp = time.time_ns()
                pub.publish(make_image(Image, synthetic_frame(counter[0]), stamp, pad=counter[0] % 2 * 8))
                sent.append(stamp)
                counter[0] += 1
                time.sleep(1.0 / hz)

        def forecasts() -> list:
            return client.messages(fut_topic)

        def node_diags(since: int = 0) -> list[dict]:
            """The node's diagnostics values in the /diagnostics messages from number ``since`` on."""
            arrays = client.messages("/diagnostics")[since:]
            values = (diagnostics_values(arr, f"{ns}/actfusion_node") for arr in arrays)
            return [v for v in values if v is not None]

        def node_diag() -> dict | None:
            for arr in reversed(client.messages("/diagnostics")):
                values = diagnostics_values(arr, f"{ns}/actfusion_node")
                if values is not None:
                    return values
            return None

        # --- 1. a stream of images -> forecasts
        send(60)  # 2 s at 30 Hz -> ~20 features at 10 Hz
        wait_for(lambda: any(m.num_observed_frames >= 15 for m in forecasts()), HANG_S,
                 "a forecast over >= 15 observed features",
                 details=lambda: f"{len(forecasts())} forecasts\n{log()}")
        msgs = forecasts()
        sent_set = set(sent)
        period = int(round(1e9 / rate))
        cap = round(max_h_s * rate)
        stamps = [time_to_ns(m.header.stamp) for m in msgs]
        assert all(s in sent_set for s in stamps), "forecast stamps must be camera stamps of sent frames"
        assert stamps == sorted(stamps), "forecasts arrive in stamp order"
        for m in msgs:
            n = m.num_observed_frames
            assert m.horizon_frames == min(math.ceil(ratio * n), cap)
            assert m.partial == (n < min_obs)
            assert m.feature_rate_hz == pytest.approx(rate)
            for seg in [m.current, *m.observed, *m.future]:
                assert seg.label == CLASSES[seg.class_id], seg
                assert 0.0 <= seg.confidence <= 1.0
            assert time_to_ns(m.observed[0].start) in sent_set
            assert time_to_ns(m.observed[-1].end) == time_to_ns(m.header.stamp) + period
            if m.horizon_frames:
                assert time_to_ns(m.future[0].start) == time_to_ns(m.header.stamp) + period
                assert time_to_ns(m.future[-1].end) == time_to_ns(m.header.stamp) + (m.horizon_frames + 1) * period
            assert m.current == m.observed[-1]
        assert msgs[0].partial or msgs[0].num_observed_frames >= min_obs
        assert any(m.horizon_frames == cap for m in msgs), "the horizon cap applies once N*r > cap"
        currents = client.messages(cur_topic)
        assert currents and all(c.label in CLASSES for c in currents)

        # --- 2. malformed images are counted; the node keeps forecasting
        bad = make_image(Image, synthetic_frame(0), time.time_ns())
        bad.encoding = "yuv422"
        truncated = make_image(Image, synthetic_frame(0), time.time_ns())
        truncated.data = truncated.data[:100]
        pub.publish(bad)
        pub.publish(truncated)
        n_before = len(forecasts())
        send(15)
        wait_for(lambda: (node_diag() or {}).get("bad_images") == "2", HANG_S, "bad_images == 2 in /diagnostics",
                 details=lambda: f"{node_diag()}\n{log()}")
        values = node_diag()
        assert values["bad_images.encoding"] == "1" and values["bad_images.truncated"] == "1", values
        wait_for(lambda: len(forecasts()) > n_before + 2, HANG_S, "forecasts after the malformed images",
                 details=log)
        assert node.alive()

        # --- 3. ~/reset starts a new episode: num_observed restarts
        max_before = max(m.num_observed_frames for m in forecasts())
        # no frame sent so far is still in flight (across the reset it would be a new-episode frame); frames the
        # node has not processed yet are dropped by the reset. Either every image sent has reached the node, or
        # its count stood still over 5 diagnostics published after the last send (1 s of the node running): a
        # loaded machine can stall the node past the QoS depth, and KEEP_LAST then drops the oldest images.
        diags_before = len(client.messages("/diagnostics"))

        def all_received() -> bool:
            counts = [int(v["images_received"]) for v in node_diags(diags_before)]
            return bool(counts) and (counts[-1] >= len(sent) + 2 or len(counts) >= 5 and len(set(counts[-5:])) == 1)

        wait_for(all_received, HANG_S, "the node to receive every image sent, or no more of them",
                 details=lambda: f"{node_diag()}\n{log()}")
        assert reset.wait_for_service(timeout_sec=HANG_S), f"reset service not available\n{log()}"
        future = reset.call_async(Trigger.Request())
        response = wait_for(lambda: future.done() and future.result(), HANG_S, "the reset response", details=log)
        assert response.success and "episode 1" in response.message, response
        t_reset = time.time_ns()
        send(20)
        after = lambda: [m for m in forecasts() if time_to_ns(m.header.stamp) > t_reset]  # noqa: E731
        wait_for(lambda: len(after()) >= 3, HANG_S, "forecasts after the reset", details=log)
        first = after()[0]
        # the window restarted after the reset (nothing of the old episode) and N_O counts from 1 again
        assert time_to_ns(first.observed[0].start) > t_reset
        assert first.num_observed_frames <= 5 < max_before, (first.num_observed_frames, max_before)
        assert first.partial == (first.num_observed_frames < min_obs)
        wait_for(lambda: (node_diag() or {}).get("resets.service") == "1", HANG_S, "the reset in /diagnostics")

        # --- 4. SIGINT -> clean exit 0 (while images and ticks are flowing)
        flood = threading.Thread(target=send, args=(30,), daemon=True)
        flood.start()
        n_images = len(sent)
        wait_for(lambda: len(sent) > n_images + 5, HANG_S, "images flowing")
        node.signal(signal.SIGINT)
        rc = node.wait(HANG_S)                       # only a hang fails on time
        flood.join(HANG_S)
        assert rc == 0, f"exit code {rc}\n{log()}"
        assert "Traceback" not in node.log_path.read_text(), log()


@pytest.mark.slow
def test_node_follows_sim_time(tmp_path: Path) -> None:
    """use_sim_time: ticks and staleness follow /clock (frames stamped far from the wall clock)."""
    from rosgraph_msgs.msg import Clock

    with node_session(tmp_path, {
            "random_weights": True, "tick_rate_hz": 5.0, "feature_rate_hz": 5.0, "min_observed_frames": 2,
            "qos_reliability": "reliable", "qos_depth": 20, "diagnostics_period_s": 0.2, "num_threads": 1},
            name="afsim", image_depth=50, extra_args=["-p", "use_sim_time:=true"]) as session:
        node, client, pub, topic = session.node, session.client, session.image_pub, session.future_topic
        ns = session.namespace
        clock = client.node.create_publisher(Clock, "/clock", 10)
        wait_for(lambda: not node.alive() or clock.get_subscription_count() > 0, HANG_S, "the node's /clock",
                 details=node.log_tail)
        assert node.alive(), node.log_tail()
        sim = 1000 * 10**9  # 1000 s after the epoch: hopelessly stale on the wall clock
        start, sent = sim, set()
        # Stream frames and /clock together (30 Hz of sim time, in real time) until 3 forecasts came. Ticks only
        # happen while /clock advances and frames keep the stream fresh, so on a loaded machine, where the first
        # extraction and inference can lag by seconds, the stream simply runs longer; only a hang fails.
        deadline = time.monotonic() + HANG_S
        i = 0
        while len(client.messages(topic)) < 3:
            assert time.monotonic() < deadline, f"no forecasts on sim time after {HANG_S:g} s\n{node.log_tail()}"
            assert node.alive(), node.log_tail()
            sim += 33_333_333
            tick = Clock()
            tick.clock.sec, tick.clock.nanosec = divmod(sim, 10**9)
            clock.publish(tick)
            pub.publish(make_image(Image, synthetic_frame(i), sim))
            sent.add(sim)
            i += 1
            time.sleep(1 / 30)
        streamed_s = (sim - start) / 1e9
        stamps = [time_to_ns(m.header.stamp) for m in client.messages(topic)]
        assert set(stamps) <= sent and stamps == sorted(stamps)
        # /clock stopped: no more ticks. A tick already running when it stopped may still publish, so wait until
        # the count has been still for 2 s (bounded), then it must stay still (at 5 Hz, 2 s would add ~10).
        n, still_since = len(client.messages(topic)), time.monotonic()
        hang = time.monotonic() + HANG_S
        while time.monotonic() - still_since < 2.0:
            assert time.monotonic() < hang, "forecasts kept coming after /clock stopped"
            if len(client.messages(topic)) != n:
                n, still_since = len(client.messages(topic)), time.monotonic()
            time.sleep(0.05)
        time.sleep(2.0)
        assert len(client.messages(topic)) == n
        values = None
        for arr in reversed(client.messages("/diagnostics")):
            values = diagnostics_values(arr, f"{ns}/actfusion_node")
            if values:
                break
        assert values is not None
        # the jump of /clock to 1000 s is not an overrun: it would count its ~5000 due times, while only the
        # 5 Hz due times of the sim time streamed can be real overruns (inference spikes on a busy machine)
        assert int(values["skipped_ticks"]) <= 5 * streamed_s + 2, (values, streamed_s)
        assert values.get("stream_skips.stale", "0") == "0", values
        node.signal(signal.SIGTERM)
        assert node.wait(HANG_S) == 0, node.log_tail()
