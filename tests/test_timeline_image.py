"""The timeline image (actfusion_ros.timeline_image): shape, strips where their times are, the camera frame,
bad input; its sensor_msgs/Image conversion."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from actfusion_ros.next_actions import TimedAlternative
from actfusion_ros.stream_types import EncodedFrame, ForecastResult, TimedSegment
from actfusion_ros.timeline_image import (
    BACKGROUND,
    FONT,
    FrameLabels,
    RenderGate,
    TimelineConfig,
    TimelineImageError,
    TimelineRenderer,
    default_colors,
)

S = 10**9
T0 = 1_700_000_000 * S
NAMES = ("take", "pour", "stir", "open")
COLORS = ((200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0))
CAMERA_COLOR = (255, 0, 255)  # no class has it


def _seg(k: int, start_s: float, end_s: float) -> TimedSegment:
    return TimedSegment(NAMES[k], k, T0 + int(start_s * S), T0 + int(end_s * S), 0.5)


OBSERVED = (_seg(0, -30.0, -6.0), _seg(1, -6.0, 0.0))   # "take" begins before the window (clipped)
FUTURE = (_seg(1, 0.0, 4.0), _seg(2, 4.0, 12.0), _seg(3, 12.0, 15.0))


def _renderer(**kw) -> TimelineRenderer:
    return TimelineRenderer(TimelineConfig(class_names=NAMES, colors=COLORS, width=400, height=200,
                                           past_s=10.0, future_s=20.0, **kw))


def _column(renderer: TimelineRenderer, t_s: float, camera: bool = False) -> int:
    """The column showing ``t_s`` seconds from now, computed here from the plot's extent (not by the renderer):
    the plot spans past_s + future_s seconds over [plot_left, plot_right), past_s of them left of now."""
    lay = renderer.layout(camera)
    px_per_s = (lay.plot_right - lay.plot_left) / (10.0 + 20.0)
    return int(lay.plot_left + (t_s + 10.0) * px_per_s)


def test_shape_dtype_and_a_fresh_array_each_time() -> None:
    r = _renderer()
    a = r.render(OBSERVED, FUTURE)
    b = r.render(OBSERVED, FUTURE, camera_frame=np.zeros((48, 64, 3), np.uint8))
    for img in (a, b):
        assert img.shape == (200, 400, 3) == r.shape and img.dtype == np.uint8 and img.flags.c_contiguous
    assert a is not r.render(OBSERVED, FUTURE) and np.array_equal(a, r.render(OBSERVED, FUTURE))
    wide = TimelineRenderer(TimelineConfig(class_names=NAMES, width=1280, height=360)).render(OBSERVED, FUTURE)
    assert wide.shape == (360, 1280, 3)


def test_strip_colours_at_known_columns_are_the_classes_at_those_times() -> None:
    r = _renderer()
    img = r.render(OBSERVED, FUTURE)
    lay = r.layout(False)
    obs_row, fut_row = lay.strip[0] + 1, lay.future[0] + 1
    # (seconds from now, class expected there); the times are away from boundaries by more than a column
    for t_s, k in ((-9.5, 0), (-6.5, 0), (-5.5, 1), (-0.5, 1)):
        assert tuple(img[obs_row, _column(r, t_s)]) == COLORS[k], (t_s, k)
    for t_s, k in ((0.5, 1), (3.5, 1), (4.5, 2), (11.5, 2), (12.5, 3), (14.5, 3)):
        assert tuple(img[fut_row, _column(r, t_s)]) == COLORS[k], (t_s, k)
    # nothing after the forecast's end; the forecast is an inset band (above it: background)
    assert tuple(img[fut_row, _column(r, 16.0)]) == BACKGROUND
    assert tuple(img[obs_row, _column(r, 2.0)]) == BACKGROUND
    # the "now" marker is at the boundary between observed and forecast
    assert tuple(img[(lay.strip[0] + lay.strip[1]) // 2, _column(r, 0.0)]) == (255, 255, 255)


def test_frame_labels_draw_what_the_same_segments_draw() -> None:
    r = _renderer()
    period = S // 2
    stamps = T0 + np.arange(-20, 0) * period   # the last 10 s at 2 Hz: 8 s "take", then 2 s "pour"
    labels = np.array([0] * 16 + [1] * 4)
    from_frames = r.render(FrameLabels(labels, stamps, period), FUTURE)
    segments = (TimedSegment("take", 0, T0 - 10 * S, T0 - 2 * S, 1.0), TimedSegment("pour", 1, T0 - 2 * S, T0, 1.0))
    assert np.array_equal(from_frames, r.render(segments, FUTURE))
    assert tuple(from_frames[r.layout().strip[0] + 1, _column(r, -1.0)]) == COLORS[1]


def test_next_action_alternatives_are_drawn_over_their_start_interval() -> None:
    r = _renderer()
    alt = TimedAlternative("stir", 0.7, T0 + 5 * S, T0 + 3 * S, T0 + 8 * S, class_id=2)
    img = r.render(OBSERVED, FUTURE, next_actions=[alt])
    row = r.layout().alternatives[0] + 2
    assert tuple(img[row, _column(r, 3.5)]) == COLORS[2] and tuple(img[row, _column(r, 7.5)]) == COLORS[2]
    assert tuple(img[row, _column(r, 9.0)]) == BACKGROUND
    assert tuple(r.render(OBSERVED, FUTURE)[row, _column(r, 3.5)]) == BACKGROUND


def test_the_camera_frame_appears_above_the_strip_when_given() -> None:
    r = _renderer()
    frame = np.empty((120, 160, 3), np.uint8)
    frame[:] = CAMERA_COLOR
    without = r.render(OBSERVED, FUTURE)
    assert not np.all(without == CAMERA_COLOR, axis=2).any()
    from types import SimpleNamespace

    from actfusion_ros.frames import inspect_image, rgb_to_image_fields

    message = SimpleNamespace(**rgb_to_image_fields(frame, "bgr8"))   # what the node's image callback keeps
    for given in (frame, EncodedFrame(frame.shape, lambda: frame), inspect_image(message)):
        img = r.render(OBSERVED, FUTURE, camera_frame=given)
        lay = r.layout(True)
        assert lay.camera is not None and lay.camera[1] <= lay.header[0]
        is_camera = np.all(img == CAMERA_COLOR, axis=2)
        rows, cols = np.nonzero(is_camera)
        assert rows.min() >= lay.camera[0] and rows.max() < lay.camera[1]
        # downscaled to the camera area, aspect kept (4:3), centred
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert height == lay.camera[1] - lay.camera[0] and abs(width - height * 4 / 3) <= 1
        assert abs((cols.min() + cols.max()) / 2 - 200) <= 1
        # the timeline is still there, below it
        assert tuple(img[lay.future[0] + 1, _column(r, 5.0, camera=True)]) == COLORS[2]


@pytest.mark.parametrize("kwargs, match", [
    (dict(class_names=()), "class_names"),
    (dict(class_names="abc"), "class_names"),
    (dict(class_names=NAMES, width=10), "width"),
    (dict(class_names=NAMES, height=True), "height"),
    (dict(class_names=NAMES, past_s=0), "past_s"),
    (dict(class_names=NAMES, future_s=float("nan")), "future_s"),
    (dict(class_names=NAMES, colors=COLORS[:2]), "2 colours for 4 classes"),
    (dict(class_names=NAMES, colors=COLORS[:3] + ((0, 0, 300),)), r"colors\[3\]"),
    (dict(class_names=NAMES, camera_fraction=1.0), "camera_fraction"),
])
def test_bad_config_raises_naming_the_field(kwargs, match) -> None:
    with pytest.raises(TimelineImageError, match=match):
        TimelineConfig(**kwargs)


@pytest.mark.parametrize("call, match", [
    (lambda r: r.render([TimedSegment("x", 4, T0, T0 + S, 1.0)], FUTURE), r"observed\[0\]: class_id 4"),
    (lambda r: r.render(OBSERVED, [TimedSegment("x", 1, T0 + S, T0, 1.0)]), r"future\[0\].*interval"),
    (lambda r: r.render(OBSERVED, [("pour", 1, T0, T0 + S)]), r"future\[0\] must be a TimedSegment"),
    (lambda r: r.render(OBSERVED, None), "future must be a sequence"),
    (lambda r: r.render((), ()), "nothing to draw"),
    (lambda r: r.render(OBSERVED, FUTURE, now_ns=1.5), "now_ns"),
    (lambda r: r.render(OBSERVED, FUTURE, next_actions=["stir"]), r"next_actions\[0\]"),
    (lambda r: r.render(OBSERVED, FUTURE, camera_frame=np.zeros((4, 4), np.uint8)), "camera_frame"),
    (lambda r: r.render(OBSERVED, FUTURE, camera_frame=np.zeros((4, 4, 3), np.float32)), "camera_frame"),
    (lambda r: r.render(OBSERVED, FUTURE, camera_frame=EncodedFrame((4, 4, 3), lambda: 1 / 0)),
     "could not be decoded"),
    (lambda r: r.render(FrameLabels(np.array([0, 7]), np.array([T0, T0 + S]), S), FUTURE), "class ids"),
    (lambda r: r.render(FrameLabels(np.array([0, 1]), np.array([T0, T0]), S), FUTURE), "increasing"),
    (lambda r: r.render_result("not a result"), "ForecastResult"),
])
def test_bad_input_raises_a_clear_error(call, match) -> None:
    with pytest.raises(TimelineImageError, match=match):
        call(_renderer())


def test_a_stream_tick_result_is_drawn_as_it_comes() -> None:
    """render_result takes the ForecastResult of StreamingAnticipator.tick; "now" is where the forecast begins."""
    from actfusion_model.features.base import FeatureExtractor
    from actfusion_ros.stream import StreamingAnticipator
    from actfusion_ros.stream_types import ForecastOutput, StreamConfig

    class Constant(FeatureExtractor):
        dim = 1

        def _compute(self, frames: np.ndarray) -> np.ndarray:
            return np.zeros((len(frames), 1), np.float32)

    def forecaster(observed: np.ndarray, horizon: int):
        obs = np.zeros((4, observed.shape[1]), np.float32)
        obs[1] = 1.0
        fut = np.zeros((4, horizon), np.float32)
        fut[2] = 1.0
        return ForecastOutput(obs, fut)

    forecaster.num_classes = 4
    period = S // 2
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=2.0, max_horizon_s=None, min_observed_frames=2, stale_after_s=1e6)
    stream = StreamingAnticipator(cfg, Constant(), forecaster, list(NAMES))
    for i in range(8):
        stream.push_frame(T0 + i * period, np.zeros((2, 2, 3), np.uint8))
    result = stream.tick(T0 + 8 * period)
    assert result is not None and result.future
    r = TimelineRenderer(TimelineConfig(class_names=NAMES, colors=COLORS, width=400, height=200, past_s=10.0,
                                        future_s=20.0))
    img = r.render_result(result)
    lay = r.layout()
    now = result.current.end_ns
    assert now == result.future[0].start_ns
    x_obs = int(lay.x_of(now - S, now))
    x_fut = int(lay.x_of(now + S, now))
    assert tuple(img[lay.strip[0] + 1, x_obs]) == COLORS[1] and tuple(img[lay.future[0] + 1, x_fut]) == COLORS[2]


def test_default_colours_are_fixed_and_distinct() -> None:
    colors = default_colors(48)
    assert len(set(colors)) == 48 and colors == default_colors(48) and colors[:3] == default_colors(3)
    assert BACKGROUND not in colors


def test_render_gate_only_with_subscribers_and_at_most_at_its_rate() -> None:
    gate = RenderGate(2.0)
    assert not gate.due(T0, 0)
    assert gate.due(T0, 1) and not gate.due(T0 + S // 4, 1) and gate.due(T0 + S // 2, 3)
    assert gate.due(T0, 1)  # the clock went back (a bag loop): due again
    with pytest.raises(TimelineImageError, match="rate"):
        RenderGate(0.0)


def test_rgb_image_msg_is_rgb8_and_decodes_back() -> None:
    pytest.importorskip("sensor_msgs.msg", reason="sensor_msgs not importable")
    from actfusion_ros.frames import ImageConversionError, image_to_rgb
    from actfusion_ros.ros_messages import rgb_image_msg, time_to_ns

    img = _renderer().render(OBSERVED, FUTURE)
    msg = rgb_image_msg(img, T0 + 5, "camera")
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("rgb8", 200, 400, 1200)
    assert time_to_ns(msg.header.stamp) == T0 + 5 and msg.header.frame_id == "camera"
    assert np.array_equal(image_to_rgb(msg), img)
    with pytest.raises(ImageConversionError):
        rgb_image_msg(img.astype(np.float32), T0)


# ------------------------------------------------------------------ the node's live picture (ROS-free part)
def _result() -> ForecastResult:
    return ForecastResult(stamp_ns=T0 - S // 2, episode=0, current=OBSERVED[-1], observed=OBSERVED, future=FUTURE,
                          num_observed=20, horizon=30, partial=False, feature_period_ns=S // 2,
                          observed_stamps_ns=np.zeros(0, np.int64), observed_probs=np.zeros((4, 0), np.float32),
                          future_probs=np.zeros((4, 0), np.float32), inference_s=0.0, latency_s=0.0)


def test_live_picture_draws_when_due_with_the_latest_frame_and_counts_what_it_cannot_draw() -> None:
    from actfusion_ros.node.pipeline import LivePicture

    logged: list[str] = []
    config = TimelineConfig(class_names=NAMES, colors=COLORS, width=400, height=200, past_s=10.0, future_s=20.0)
    live = LivePicture(config, rate_hz=1.0, camera=True, log=logged.append)
    assert live.picture(_result(), T0, subscribers=0) is None            # no one subscribes: nothing drawn
    plain = live.picture(_result(), T0, subscribers=1)
    assert plain is not None and np.array_equal(plain, live.renderer.render_result(_result()))
    assert live.picture(_result(), T0 + S // 2, subscribers=1) is None   # 1 Hz
    frame = np.empty((30, 40, 3), np.uint8)
    frame[:] = CAMERA_COLOR
    live.observe_frame(EncodedFrame(frame.shape, lambda: frame))
    with_frame = live.picture(_result(), T0 + S, subscribers=1)
    assert with_frame is not None and np.all(with_frame == CAMERA_COLOR, axis=2).any()
    # a frame that does not decode: counted once, dropped, the picture drawn without it
    live.observe_frame(EncodedFrame((4, 4, 3), lambda: 1 / 0))
    assert np.array_equal(live.picture(_result(), T0 + 2 * S, subscribers=1), plain)
    assert np.array_equal(live.picture(_result(), T0 + 3 * S, subscribers=1), plain)
    assert live.errors.counts == {"camera_frame": 1} and len(logged) == 1 and "could not be decoded" in logged[0]
    # a result it cannot draw (a class id the renderer does not know): counted, None, never raised
    bad = dataclasses.replace(_result(), future=(TimedSegment("x", 9, T0, T0 + S, 1.0),))
    assert live.picture(bad, T0 + 4 * S, subscribers=1) is None and live.errors.counts["result"] == 1
    assert live.drawn == 4 and live.picture(None, T0 + 9 * S, subscribers=1) is None


def _header_line(current: str, alternatives: list[str]) -> str:
    """The header text as the renderer writes it: ``now: ...   next: a, b``."""
    return current + ("   next: " + ", ".join(alternatives) if alternatives else "")


def test_the_header_keeps_only_the_alternatives_that_fit() -> None:
    # The premise (the first alternative fits the plot's width, the second does not) is built from OpenCV's own
    # text metrics, which differ between releases (Hershey fonts in 4.x and 5.x): the image width is chosen by
    # measuring the header lines, never assumed.
    alts = [TimedAlternative(f"reach_{k}", 0.3, T0 + k * S, T0, T0 + 2 * S, class_id=k) for k in range(3)]
    current = "now: pour 50%"   # OBSERVED[-1]: "pour", confidence 0.5; "now" is its end, T0
    texts = [f"reach_{k} 30% @ +{k}.0s" for k in range(3)]

    def renderer(width: int) -> TimelineRenderer:
        return TimelineRenderer(TimelineConfig(class_names=NAMES, colors=COLORS, width=width, height=200,
                                               past_s=10.0, future_s=20.0))

    def measured(text: str, lay) -> int:
        return cv2.getTextSize(text, FONT, lay.font_scale, 1)[0][0]

    def fits(r: TimelineRenderer, k: int) -> bool:
        lay = r.layout()
        return measured(_header_line(current, texts[:k]), lay) <= lay.plot_right - lay.plot_left

    r = next((r for r in map(renderer, range(160, 4097)) if fits(r, 1) and not fits(r, 2)), None)
    assert r is not None, "no image width makes exactly one alternative fit: the premise cannot be built"
    lay = r.layout()
    img = r.render(OBSERVED, FUTURE, next_actions=alts)
    header = img[lay.header[0]:lay.header[1]]
    drawn = np.flatnonzero(np.any(header != BACKGROUND, axis=(0, 2)))
    assert drawn.size and drawn.max() < lay.plot_right    # the text ends inside the plot, not cut at the edge
    assert not np.array_equal(header, r.render(OBSERVED, FUTURE)[lay.header[0]:lay.header[1]])  # one fits
    only_first = r.render(OBSERVED, FUTURE, next_actions=alts[:1])[lay.header[0]:lay.header[1]]
    assert np.array_equal(header, only_first)              # ... and only that one: the header is the same
    # a narrower image where not even the first fits: the header names the current action alone
    narrow = next(n for n in map(renderer, range(r.config.width, 159, -1)) if not fits(n, 1))
    nlay = narrow.layout()
    alone = narrow.render(OBSERVED, FUTURE, next_actions=alts)[nlay.header[0]:nlay.header[1]]
    assert np.array_equal(alone, narrow.render(OBSERVED, FUTURE)[nlay.header[0]:nlay.header[1]])
