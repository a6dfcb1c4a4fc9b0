"""The node's ROS-free parts: frame queue, kind counters, class names, tick overruns, tick statistics and
diagnostics, error kinds, the builder, parameter declaration problems and changes, process threads, the
pipeline's tick, reset and live picture. (The lifecycle rules are the node's: tests/test_lifecycle.py.)"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from actfusion_model.labels import load_class_names
from actfusion_ros.builder import StartupError, build_anticipator
from actfusion_ros.frame_queue import FrameQueue
from actfusion_ros.frames import ERROR_KINDS, ImageConversionError, ImageTooLargeError, compressed_to_rgb, image_to_rgb
from actfusion_ros.node.diagnostics import MissedFrameEstimator, NodeDiagnostics, TickOverrunCounter, TickStats
from actfusion_ros.node_params import declaration_problem, parameter_change_refusal, spec, validate_values
from actfusion_ros.reporting import KindCounter, error_kind
from actfusion_ros.stream_types import ForecastOutput

MS = 1_000_000


# ---------------------------------------------------------------------- queue, counters, kinds, class names
def test_frame_queue_drops_oldest_and_closes() -> None:
    q = FrameQueue(2)
    assert [q.put(i) for i in range(4)] == [False, False, True, True]
    assert q.dropped == 2 and q.put_count == 4 and len(q) == 2
    assert q.get() == 2 and q.get() == 3
    assert q.get(timeout=0.01) is None
    got: list = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    time.sleep(0.05)
    q.close()
    t.join(2)
    assert not t.is_alive() and got == [None]


def test_frame_queue_clear_counts_and_reopen_accepts_again() -> None:
    """Deactivating drops the waiting frames (counted, so images_received still adds up); activating again
    reopens the queue the previous deactivation closed."""
    q = FrameQueue(4)
    for i in range(3):
        q.put(i)
    assert q.clear() == 3 and q.dropped == 3 and len(q) == 0
    q.close()
    assert q.get(timeout=0.01) is None
    q.reopen()
    q.put("next")
    assert q.get(timeout=1.0) == "next"


def test_parameters_change_only_while_unconfigured() -> None:
    assert parameter_change_refusal(["checkpoint", "random_weights"], "unconfigured") is None
    refusal = parameter_change_refusal(["random_weights", "checkpoint"], "inactive")
    assert refusal is not None and refusal.startswith("checkpoint, random_weights: can be changed only while")
    assert parameter_change_refusal(["use_sim_time"], "active") is None      # rclpy's own
    assert parameter_change_refusal(["autostart"], "active") is None         # read once, at start-up


def test_kind_counter_logs_once_per_kind() -> None:
    logged: list[str] = []
    c = KindCounter("bad image", logged.append)
    for kind in ("encoding", "encoding", "truncated", "encoding"):
        c.record(kind, ValueError(kind))
    assert c.counts == {"encoding": 3, "truncated": 1} and c.total == 4
    assert len(logged) == 2 and "encoding" in logged[0] and "only counted" in logged[0]


def _conversion_error(fn, **fields) -> Exception:
    with pytest.raises(ImageConversionError) as info:
        fn(SimpleNamespace(**fields))
    return info.value


def test_error_kinds() -> None:
    good = dict(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=bytes(12))
    assert error_kind(_conversion_error(image_to_rgb, **{**good, "encoding": "yuv422"})) == "encoding"
    assert error_kind(_conversion_error(image_to_rgb, **{**good, "data": bytes(5)})) == "truncated"
    assert error_kind(_conversion_error(image_to_rgb, **{**good, "step": 2})) == "step"
    assert error_kind(_conversion_error(image_to_rgb, **{**good, "height": 0})) == "empty"
    assert error_kind(_conversion_error(compressed_to_rgb, format="jpeg", data=b"\xff\xd8\xff" + bytes(10)
                                        )) == "truncated"
    assert error_kind(_conversion_error(compressed_to_rgb, format="webp", data=b"x")) == "format"
    assert error_kind(ValueError("negative time stamp")) == "ValueError"


def test_load_class_names(tmp_path: Path) -> None:
    (tmp_path / "mapping.txt").write_text("1 reach\n0 idle\n2 pour water\n")
    assert load_class_names(tmp_path / "mapping.txt") == ["idle", "reach", "pour water"]
    (tmp_path / "names.txt").write_text("idle\nreach\n\npour\n")
    assert load_class_names(tmp_path / "names.txt") == ["idle", "reach", "pour"]
    (tmp_path / "dup.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="duplicate"):
        load_class_names(tmp_path / "dup.txt")


# ---------------------------------------------------------------------- tick overruns
def test_a_tick_due_while_the_previous_one_runs_is_skipped() -> None:
    c = TickOverrunCounter(100 * MS)
    assert c.start(0, 0)
    c.finish(250 * MS)                      # ran 250 ms: the due times 100 and 200 fell inside it
    assert not c.start(200 * MS, 250 * MS)  # a late call for 200: skipped, 100 dropped by rcl: skipped
    assert c.skipped == 2
    assert c.start(300 * MS, 300 * MS)      # on time again
    c.finish(310 * MS)
    assert c.skipped == 2


def test_due_times_dropped_for_other_reasons_are_not_skipped_ticks() -> None:
    c = TickOverrunCounter(100 * MS)
    assert c.start(0, 0)
    c.finish(10 * MS)                          # short tick
    assert c.start(500 * MS, 500 * MS)         # 100..400 dropped by a coarse clock, not by an overrun
    assert c.skipped == 0


def test_backwards_time_and_clock_jumps_start_counting_afresh() -> None:
    c = TickOverrunCounter(100 * MS)
    assert c.start(1000 * MS, 1000 * MS)
    c.finish(5000 * MS)
    assert c.start(0, 0)                       # time went back: not "due while running"
    assert c.skipped == 0
    c.finish(5000 * MS)
    c.clock_jumped()
    assert c.start(200 * MS, 200 * MS) and c.skipped == 0
    with pytest.raises(ValueError):
        TickOverrunCounter(0)


# ---------------------------------------------------------------------- tick statistics, diagnostics
def test_tick_stats_hand_over_durations_and_keep_totals() -> None:
    t = TickStats()
    t.finished(0.01, None)
    t.published()
    t.publish_failed()
    t.finished(0.03, None)
    first = t.take()
    assert first.durations_s == [0.01, 0.03] and first.last_s == 0.03
    assert (first.published, first.publish_errors, first.last_result) == (1, 1, None)
    second = t.take()
    assert second.durations_s == [] and second.last_s == 0.03 and second.published == 1


class _Fixed:
    num_classes = 2
    class_names = ("a", "b")
    input_dim = None
    pipeline = None

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        return ForecastOutput(np.full((2, observed.shape[1]), 0.5, np.float32), np.full((2, horizon), 0.5, np.float32))


def _settings(**values):
    return validate_values({"random_weights": True, "extractor": "color_layout", **values}, check_files=False)


def test_diagnostics_report_the_counters_and_the_level() -> None:
    stream = build_anticipator(_settings(min_observed_frames=1), forecaster=_Fixed())
    clock = iter([10.0, 12.0]).__next__
    queue, bad, ticks = FrameQueue(2), KindCounter("bad image"), TickStats()
    diag = NodeDiagnostics(stream, queue=queue, missed_frames=MissedFrameEstimator(5 * 10**9), bad_images=bad,
                           frame_errors=KindCounter("x"), tick_errors=KindCounter("y"), ticks=ticks,
                           overruns=TickOverrunCounter(100 * MS), images_received=lambda: 7, clock=clock)
    level, message, v = diag.values()
    assert (level, message) == ("warn", "waiting for images")
    assert v["images_received"] == 7 and v["feature_rate_hz"] == 0.0 and v["window_capacity"] == 600
    bad.record("encoding", ValueError("yuv"))
    rgb = np.zeros((8, 8, 3), np.uint8)
    for k in range(4):
        stream.push_frame(k * 500 * MS, rgb)
    result = stream.tick(1500 * MS)
    ticks.finished(0.02, result)
    level, message, v = diag.values()
    assert level == "ok" and message.startswith("forecasting (episode")
    assert v["feature_rate_hz"] == pytest.approx(4 / 2.0)        # 4 features in 2 s of the clock
    assert v["bad_images"] == 1 and v["bad_images.encoding"] == 1
    assert v["tick_latency_ms_max"] == pytest.approx(20.0) and v["last_stamp_ns"] == 1500 * MS


# ---------------------------------------------------------------------- error kinds
def test_conversion_errors_carry_their_kind() -> None:
    assert error_kind(ImageConversionError("x", kind="step")) == "step"
    assert error_kind(ImageConversionError("an encoding word in the text")) == "other"  # no substring guessing
    assert error_kind(ImageTooLargeError("big")) == "too_large"
    assert error_kind(ValueError("negative time stamp")) == "ValueError"
    assert set(ERROR_KINDS) >= {"fields", "encoding", "empty", "step", "truncated", "format", "corrupt"}
    with pytest.raises(ValueError, match="unknown image error kind"):
        ImageConversionError("x", kind="typo")


# ---------------------------------------------------------------------- parameters, builder
def test_declaration_problems_name_the_parameter() -> None:
    rate = spec("tick_rate_hz")
    assert declaration_problem(rate, 2, RuntimeError(), wrong_type=True, out_of_range=False) == \
        "tick_rate_hz: expected double, got int 2 (write e.g. 2.0 for a double)"
    assert "is outside the allowed" in declaration_problem(rate, -1.0, RuntimeError(), wrong_type=False,
                                                           out_of_range=True)
    assert declaration_problem(rate, 1.0, RuntimeError("why"), wrong_type=False, out_of_range=False) == \
        "tick_rate_hz: why"


def test_builder_checks_that_model_and_extractor_fit() -> None:
    wide = _Fixed()
    wide.input_dim = 7
    with pytest.raises(StartupError, match="expects 7-dimensional features"):
        build_anticipator(_settings(), forecaster=wide)
    with pytest.raises(StartupError, match="3 class names .* with 2 classes"):
        build_anticipator(_settings(), forecaster=_Fixed(), class_names=["a", "b", "c"])
    stream = build_anticipator(_settings(feature_rate_hz=4.0, ratio=1.0), forecaster=_Fixed())
    assert stream.config.feature_rate_hz == 4.0 and stream.config.ratio == 1.0
    assert stream.class_names == ("a", "b")


def test_builder_loads_the_model_the_settings_name() -> None:
    stream = build_anticipator(_settings(seed=3))
    assert stream.forecaster.seed == 3 and stream.forecaster.input_dim == stream.extractor.dim


def test_process_threads_are_set_at_start_up_only(monkeypatch) -> None:
    import torch

    from actfusion_model import torch_threads
    from actfusion_model.torch_threads import process_threads, set_process_threads

    monkeypatch.setattr(torch_threads, "_chosen", None)  # restored after the test
    before = torch.get_num_threads()
    try:
        assert set_process_threads(None) == before and set_process_threads(0) == before
        assert process_threads() is None
        assert set_process_threads(1) == 1 and torch.get_num_threads() == 1 and process_threads() == 1
        with pytest.raises(ValueError):
            set_process_threads(-1)
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- the pipeline: tick, reset, live picture
def _pipeline(**values):
    from actfusion_ros.node.pipeline import NodePipeline

    return NodePipeline.build(_settings(min_observed_frames=1, tick_rate_hz=2.0, **values), forecaster=_Fixed(),
                              info=lambda m: None, warning=lambda m: None, error=lambda m: None)


class _Host:
    """The node a tick runs in (actfusion_ros.node.pipeline.TickHost): a fixed clock, ``subscribers`` to the
    live picture, which ``show(rgb, stamp_ns, frame_id)`` publishes; forecasts are dropped."""

    def __init__(self, subscribers: int, show) -> None:
        self.subscribers, self.show = subscribers, show

    def now_ns(self) -> int:
        return 1500 * MS

    def publish_forecast(self, result, frame_id: str) -> None:
        pass

    def picture_subscribers(self) -> int:
        return self.subscribers

    def publish_picture(self, rgb, stamp_ns: int, frame_id: str) -> None:
        self.show(rgb, stamp_ns, frame_id)

    def shutting_down(self) -> bool:
        return False


def _push_and_tick(p, host: _Host) -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    for k in range(4):
        p.stream.push_frame(k * 500 * MS, rgb)
    p.tick(1500 * MS, host)


def test_reset_starts_a_new_episode() -> None:
    """(Without a pipeline, the node's reset says why not: tests/test_lifecycle.py.)"""
    p = _pipeline()
    before = p.stream.episode
    assert p.reset_episode() == f"new episode {before + 1}"
    assert p.stream.episode == before + 1 and p.stream.stats.reset_reasons == {"service": 1}


def test_reset_drops_the_frames_still_queued_from_the_old_episode() -> None:
    p = _pipeline()
    for item in ("old-1", "old-2"):
        p.queue.put(item)
    message = p.reset_episode()
    assert message.endswith("(2 queued frame(s) of the old episode dropped)"), message
    assert p.queue.dropped == 2 and p.queue.get(timeout=0.0) is None


def test_the_tick_draws_the_picture_only_for_a_subscriber_and_counts_it() -> None:
    assert _pipeline(timeline_rate_hz=0.0).picture is None            # 0 disables it
    p = _pipeline(timeline_width=320, timeline_height=120, timeline_camera=False)
    shown: list = []
    _push_and_tick(p, _Host(0, lambda *a: shown.append(a)))
    assert shown == [] and p.diagnostics.values()[2]["timeline_drawn"] == 0   # no subscriber: not drawn
    _push_and_tick(p, _Host(1, lambda *a: shown.append(a)))
    (rgb, stamp_ns, _), = shown
    assert rgb.shape == (120, 320, 3) and stamp_ns == 1500 * MS
    assert p.diagnostics.values()[2]["timeline_drawn"] == 1


def test_a_picture_that_cannot_be_published_is_counted_never_raised() -> None:
    def broken(*args) -> None:
        raise RuntimeError("publisher gone")

    p = _pipeline()
    _push_and_tick(p, _Host(1, broken))
    v = p.diagnostics.values()[2]
    assert v["timeline_errors.publish"] == 1 and v["timeline_errors"] == 1 and v["published"] == 1
    assert p.tick_errors.total == 0                                   # the tick itself did not fail


def test_random_weights_sample_as_many_futures_as_num_samples() -> None:
    """random_weights honours num_samples like every other model source (it used to sample one future)."""
    from actfusion_ros.builder import build_forecaster

    forecaster = build_forecaster(_settings(num_samples=3), input_dim=6, class_names=["a", "b"])
    assert forecaster.num_samples == 3
    out = forecaster(np.zeros((6, 5), np.float32), 4)
    assert out.future_samples is not None and out.future_samples.shape == (3, 2, 4)
    assert build_forecaster(_settings(num_samples=1), input_dim=6, class_names=["a", "b"]).num_samples == 1


def _image_msg(stamp_ns: int, encoding: str = "rgb8") -> SimpleNamespace:
    stamp = SimpleNamespace(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return SimpleNamespace(header=SimpleNamespace(stamp=stamp, frame_id="camera"), height=8, width=8,
                           encoding=encoding, is_bigendian=0, step=24, data=bytes(192))


def test_a_burst_of_malformed_frames_1_ms_apart_is_no_lost_frame() -> None:
    """Issue 18: malformed frames 1 ms apart (before the first good frame, and in the middle of the stream)
    made /diagnostics read thousands of frames_missed_estimate although no frame was lost."""
    p = _pipeline(max_future_s=1e6)
    t0, period = 1_700_000_000 * 10**9, 10**9 // 30
    stamps = [t0 + k * MS for k in range(200)]                                   # malformed, 1 ms apart
    stamps += [stamps[-1] + period * (k + 1) for k in range(100)]                # the camera, 30 fps
    stamps += [stamps[-1] + (k + 1) * MS for k in range(300)]                    # malformed again
    stamps += [stamps[-1] + period * (k + 1) for k in range(100)]
    for k, stamp in enumerate(stamps):
        p.offer(_image_msg(stamp, "rgb8" if 200 <= k < 300 or k >= 600 else "yuv422"), stamp)
    v = p.diagnostics.values()[2]
    assert v["bad_images.encoding"] == 500 and v["images_received"] == 700
    assert v["frames_missed_estimate"] == 0
    assert v["camera_rate_hz"] == pytest.approx(30.0, rel=0.01)
