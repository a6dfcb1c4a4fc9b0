"""Tests of the ROS-free streaming core: sampler, buffer, anticipator."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from actfusion_model.features.base import FeatureExtractor, FrameError
from actfusion_model.features.simple import ColorLayoutExtractor
from actfusion_model.horizon import anticipation_horizon
from actfusion_ros.buffer import FeatureBuffer
from actfusion_ros.sampler import FeatureRateSampler, sample_frame_indices
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastError, ForecastOutput, StreamConfig, TimedSegment, timed_segments
from actfusion_ros.time_ns import period_ns_from_rate

S = 1_000_000_000
MS = 1_000_000
FPS30 = [k * S // 30 for k in range(301)]   # exact 30 fps stamps: frame 15 is at exactly 0.5 s


# --------------------------------------------------------------------------- fakes
class TagExtractor(FeatureExtractor):
    """Feature = (value of this frame, value of the previous frame or -1): shows what it was fed."""

    dim = 2
    context_frames = 2

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        v = frames[:, 0, 0, 0].astype(np.float32)
        prev = np.concatenate([[-1.0], v[:-1]])
        return np.stack([v, prev], axis=1)


def tag(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value % 256, np.uint8)


class FakeForecaster:
    """Records (observed, horizon); returns one-hot probabilities from label patterns."""

    def __init__(self, num_classes: int = 3, observed_labels=None, future_labels=None,
                 max_prob: float = 1.0, delay_s: float = 0.0) -> None:
        self.num_classes = num_classes
        self.observed_labels = observed_labels
        self.future_labels = future_labels
        self.max_prob = max_prob
        self.delay_s = delay_s
        self.calls: list[tuple[np.ndarray, int]] = []

    def _probs(self, labels, n: int) -> np.ndarray:
        labels = np.zeros(n, int) if labels is None else np.asarray(labels)[:n]
        p = np.full((self.num_classes, n), (1 - self.max_prob) / (self.num_classes - 1), np.float32)
        p[labels, np.arange(n)] = self.max_prob
        return p

    def __call__(self, observed: np.ndarray, horizon: int):
        self.calls.append((observed.copy(), horizon))
        if self.delay_s:
            time.sleep(self.delay_s)
        return ForecastOutput(self._probs(self.observed_labels, observed.shape[1]),
                              self._probs(self.future_labels, horizon))


def make(config: StreamConfig | None = None, forecaster=None, extractor=None) -> StreamingAnticipator:
    forecaster = forecaster or FakeForecaster()
    names = [chr(ord("a") + i) for i in range(forecaster.num_classes)]
    return StreamingAnticipator(config or StreamConfig(), extractor or TagExtractor(), forecaster, names)


def push_all(ant: StreamingAnticipator, stamps, values=None) -> list[bool]:
    values = range(len(stamps)) if values is None else values
    return [ant.push_frame(s, tag(v)) for s, v in zip(stamps, values)]


# --------------------------------------------------------------------------- sampler
def test_30fps_to_2hz_exact() -> None:
    sampler = FeatureRateSampler(period_ns_from_rate(2.0))
    taken = [s for s in FPS30[:90] if sampler.offer(s).take]
    assert taken == [0, S // 2, S, 3 * S // 2, 2 * S, 5 * S // 2]
    assert sampler.counts.taken == 6 and sampler.counts.not_due == 84


def test_jittered_and_swapped_arrival_exact() -> None:
    stamps = list(FPS30[:50])
    stamps[15] -= 1 * MS          # just before the 0.5 s grid point -> frame 16 is taken instead
    stamps[30] += 2 * MS          # late but still the first at/after 1.0 s
    order = list(range(50))
    order[44], order[45] = 45, 44  # frame 45 (exactly 1.5 s) arrives before 44 -> 44 is out of order
    sampler = FeatureRateSampler(period_ns_from_rate(2.0))
    kinds = {i: sampler.offer(stamps[i]).kind for i in order}
    assert [i for i in range(50) if kinds[i] == "taken"] == [0, 16, 30, 45]
    assert kinds[44] == "out_of_order" and sampler.counts.out_of_order == 1
    # the grid does not drift: after the late frame 30 (1.002 s) the next due time is 1.5 s
    assert sampler.next_due_ns == 2 * S


def _reference_taken(arrivals: list[int], period: int) -> list[int]:
    """Independent formulation: keep record-breaking stamps; for every grid point the first one >= it."""
    kept, top = [], None
    for s in arrivals:
        if top is None or s > top:
            kept.append(s)
            top = s
    grid = range(kept[0], kept[-1] + 1, period)
    return sorted({min(s for s in kept if s >= g) for g in grid})


def test_30fps_jittered_reordered_matches_reference() -> None:
    rng = np.random.default_rng(7)
    stamps = np.array(FPS30) + rng.integers(-3 * MS, 3 * MS + 1, size=len(FPS30))
    stamps[0], stamps[-1] = 0, 10 * S            # anchor the grid at 0 and end exactly on a grid point
    order = np.arange(len(stamps))
    for i in range(0, len(order) - 1, 2):
        if rng.random() < 0.3:
            order[i], order[i + 1] = order[i + 1], order[i]
    arrivals = [int(stamps[i]) for i in order]
    sampler = FeatureRateSampler(period_ns_from_rate(2.0))
    taken = [s for s in arrivals if sampler.offer(s).take]
    assert taken == _reference_taken(arrivals, S // 2)
    assert len(taken) == 21
    # each feature lies within two camera periods (+ jitter) of its grid point: a jittered-early frame
    # plus a swap that hides the next one
    for j, s in enumerate(taken):
        assert j * S // 2 <= s < j * S // 2 + 2 * S // 30 + 6 * MS


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5 * S), min_size=1, max_size=60),
       st.sampled_from([1.0, 2.0, 3.0, 7.5]))
def test_sampler_matches_reference_property(arrivals: list[int], rate: float) -> None:
    period = period_ns_from_rate(rate)
    sampler = FeatureRateSampler(period)
    taken = [s for s in arrivals if sampler.offer(s).take]
    assert taken == _reference_taken(arrivals, period)
    c = sampler.counts
    assert c.received == c.taken + c.not_due + c.duplicates + c.out_of_order == len(arrivals)


def test_sample_frame_indices_offline() -> None:
    np.testing.assert_array_equal(sample_frame_indices(FPS30[:61], 2.0), [0, 15, 30, 45, 60])


# --------------------------------------------------------------------------- counting
def test_duplicates_and_out_of_order_counting() -> None:
    ant = make()
    stamps = [0, 100 * MS, 100 * MS, 50 * MS, 600 * MS, 600 * MS, 200 * MS, 700 * MS, 0, 1000 * MS]
    accepted = push_all(ant, stamps)
    assert accepted == [True, False, False, False, True, False, False, False, False, True]
    st_ = ant.stats
    assert (st_.frames_received, st_.frames_accepted, st_.duplicates, st_.out_of_order,
            st_.frames_not_due) == (10, 3, 2, 3, 2)
    assert st_.resets == 0 and st_.buffer_length == 3
    np.testing.assert_array_equal(ant.snapshot()[1], [0, 600 * MS, 1000 * MS])


def test_invalid_frame_and_stamp_types() -> None:
    ant = make()
    with pytest.raises(FrameError):
        ant.push_frame(0, np.zeros((2, 2, 3), np.float32))
    with pytest.raises(TypeError, match="integer number of nanoseconds"):
        ant.push_frame(0.5, tag(0))
    assert ant.push_frame(np.int64(0), tag(0)) is True       # the invalid frame did not touch the sampler
    st_ = ant.stats
    assert st_.invalid_frames == 1 and st_.frames_received == 2 and st_.frames_accepted == 1


# --------------------------------------------------------------------------- features
def test_features_only_at_sampled_frames_with_previous_camera_frame_as_context() -> None:
    # Context is counted in camera frames: the feature at frame 15 sees frame 14 (not the previous
    # sampled frame 0, as before the full-rate context change).
    ant = make()
    push_all(ant, FPS30[:46], values=range(46))   # values = camera frame index
    feats, stamps = ant.snapshot()
    np.testing.assert_array_equal(stamps, [0, S // 2, S, 3 * S // 2])
    np.testing.assert_array_equal(feats, [[0, 15, 30, 45], [-1, 14, 29, 44]])


class WindowExtractor(FeatureExtractor):
    """Feature = the values of its whole window, newest first, -1 where the window is shorter."""

    dim = 4
    context_frames = 4

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        v = frames[:, 0, 0, 0].astype(np.float32)
        out = np.full((len(v), 4), -1.0, np.float32)
        for i in range(len(v)):
            window = v[max(0, i - 3):i + 1][::-1]
            out[i, :len(window)] = window
        return out


def test_context_ring_holds_accepted_camera_frames_only() -> None:
    ant = make(extractor=WindowExtractor())
    stamps = [0, 100 * MS, 200 * MS, 200 * MS, 150 * MS, 300 * MS, 400 * MS, 500 * MS]
    values = [0, 1, 2, 99, 98, 3, 4, 5]       # 99: duplicate stamp, 98: out of order -> not context
    assert push_all(ant, stamps, values) == [True, False, False, False, False, False, False, True]
    feats, _ = ant.snapshot()
    np.testing.assert_array_equal(feats.T, [[0, -1, -1, -1], [5, 4, 3, 2]])
    st_ = ant.stats
    assert st_.duplicates == 1 and st_.out_of_order == 1 and st_.frames_not_due == 4


def test_frame_shape_change_on_a_not_due_frame_starts_an_episode_there() -> None:
    ant = make()
    push_all(ant, [0, 100 * MS], [0, 1])
    big = np.full((3, 3, 3), 7, np.uint8)
    assert ant.push_frame(200 * MS, big) is True                   # not due by time, but a new episode
    assert ant.push_frame(300 * MS, np.full((3, 3, 3), 8, np.uint8)) is False
    assert ant.push_frame(700 * MS, np.full((3, 3, 3), 9, np.uint8)) is True   # grid anchored at 0.2 s
    feats, stamps = ant.snapshot()
    np.testing.assert_array_equal(stamps, [200 * MS, 700 * MS])
    np.testing.assert_array_equal(feats, [[7, 9], [-1, 8]])
    st_ = ant.stats
    assert dict(st_.reset_reasons) == {"frame_shape": 1}
    assert st_.frames_received == st_.frames_accepted + st_.frames_not_due == 5


def test_online_features_equal_offline_and_are_causal() -> None:
    rng = np.random.default_rng(3)
    clip = rng.integers(0, 256, size=(61, 8, 8, 3), dtype=np.uint8)
    ext = ColorLayoutExtractor(grid=2, bins=4)
    ant = make(extractor=ext)
    for s, f in zip(FPS30, clip):
        ant.push_frame(s, f)
    feats, _ = ant.snapshot()
    idx = sample_frame_indices(FPS30[:61], 2.0)
    np.testing.assert_array_equal(feats, ext.extract_at(clip, idx).T)
    np.testing.assert_array_equal(feats, ext.extract(clip)[idx].T)
    # changing frames after 1.0 s never changes the features up to 1.0 s
    changed = clip.copy()
    changed[31:] = 255 - changed[31:]
    ant2 = make(extractor=ext)
    for s, f in zip(FPS30, changed):
        ant2.push_frame(s, f)
    np.testing.assert_array_equal(ant2.snapshot()[0][:, :3], feats[:, :3])
    assert not np.array_equal(ant2.snapshot()[0][:, 3:], feats[:, 3:])


# --------------------------------------------------------------------------- buffer
def test_feature_buffer_ring() -> None:
    buf = FeatureBuffer(3, 2)
    drops = [buf.append(10 * i, np.array([i, -i])) for i in range(5)]
    assert drops == [0, 0, 0, 1, 1] and buf.dropped == 2 and len(buf) == 3
    feats, stamps = buf.snapshot()
    assert feats.dtype == np.float32 and feats.flags["C_CONTIGUOUS"] and stamps.dtype == np.int64
    np.testing.assert_array_equal(feats, [[2, 3, 4], [-2, -3, -4]])
    np.testing.assert_array_equal(stamps, [20, 30, 40])
    with pytest.raises(ValueError, match="stamps must increase"):
        buf.append(40, np.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        buf.append(50, np.zeros(3))
    assert buf.decimate() == 1
    np.testing.assert_array_equal(buf.stamps(), [20, 40])


def test_drop_oldest_bound_with_correct_stamps() -> None:
    ant = make(StreamConfig(max_window_s=3.0))              # 6 features at 2 Hz
    push_all(ant, [k * S // 2 for k in range(20)])
    feats, stamps = ant.snapshot()
    np.testing.assert_array_equal(stamps, [k * S // 2 for k in range(14, 20)])
    np.testing.assert_array_equal(feats[0], range(14, 20))
    st_ = ant.stats
    assert st_.buffer_length == 6 and st_.dropped_features == 14 and st_.downsample_factor == 1


def test_downsample_policy_keeps_stamps_and_halves_rate() -> None:
    ant = make(StreamConfig(max_window_s=3.0, window_policy="downsample", max_downsample_factor=4,
                            max_horizon_s=10.0, ratio=1.0))
    push_all(ant, [j * S // 10 for j in range(136)])        # 10 Hz camera up to 13.5 s
    feats, stamps = ant.snapshot()
    expected = [3_500, 5_500, 7_500, 9_500, 11_500, 13_500]
    np.testing.assert_array_equal(stamps, [ms * MS for ms in expected])
    np.testing.assert_array_equal(feats[0], [ms // 100 for ms in expected])
    # the context is the previous camera frame (100 ms earlier), whatever the feature rate
    np.testing.assert_array_equal(feats[1], [34, 54, 74, 94, 114, 134])
    st_ = ant.stats
    assert st_.dropped_features == 7 and st_.downsample_factor == 4 and st_.feature_rate_hz == 0.5
    result = ant.tick(13_500 * MS)
    assert result.feature_period_ns == 2 * S and result.horizon == 5     # min(6, round(10 s / 2 s))
    assert result.observed[0].end_ns == 15_500 * MS and result.future[0].start_ns == 15_500 * MS
    assert result.future[-1].end_ns == 25_500 * MS
    ant.reset("test")
    assert ant.stats.downsample_factor == 1 and ant.feature_period_ns == S // 2


# --------------------------------------------------------------------------- horizon
def test_horizon_rule_passed_to_forecaster() -> None:
    fc = FakeForecaster()
    ant = make(StreamConfig(max_horizon_s=5.0, min_observed_frames=1), forecaster=fc)   # cap 10 frames
    horizons = []
    for k in range(5):
        ant.push_frame(k * S // 2, tag(k))
        horizons.append(ant.tick(k * S // 2).horizon)
    assert horizons == [4, 8, 10, 10, 10]
    assert [h for _, h in fc.calls] == horizons
    assert [obs.shape for obs, _ in fc.calls] == [(2, n) for n in range(1, 6)]
    assert horizons == [anticipation_horizon(n, ratio=4.0, max_horizon=10) for n in range(1, 6)]

    fc2 = FakeForecaster()
    ant2 = make(StreamConfig(ratio=1.5, max_horizon_s=None, min_observed_frames=1), forecaster=fc2)
    push_all(ant2, [0, S // 2, S])
    assert ant2.tick(S).horizon == 5 and fc2.calls[-1][1] == 5            # ceil(1.5 * 3)


# --------------------------------------------------------------------------- segments
T0 = 1_700_000_000 * S


def test_segment_absolute_times_from_frame_stamps() -> None:
    fc = FakeForecaster(observed_labels=[0, 0, 1, 1, 1, 2], future_labels=[2, 2, 0, 0, 0, 1])
    ant = make(StreamConfig(ratio=1.0), forecaster=fc)
    push_all(ant, [T0 + j * S // 10 for j in range(26)])        # 10 Hz camera, 2.5 s -> 6 features
    r = ant.tick(T0 + 2_600 * MS)
    last = T0 + 2_500 * MS
    assert r.stamp_ns == last and r.num_observed == 6 and r.horizon == 6 and not r.partial
    assert r.observed == (
        TimedSegment("a", 0, T0, T0 + 1_000 * MS, 1.0),
        TimedSegment("b", 1, T0 + 1_000 * MS, T0 + 2_500 * MS, 1.0),
        TimedSegment("c", 2, T0 + 2_500 * MS, T0 + 3_000 * MS, 1.0))
    assert r.current == r.observed[-1]
    assert r.future == (
        TimedSegment("c", 2, T0 + 3_000 * MS, T0 + 4_000 * MS, 1.0),
        TimedSegment("a", 0, T0 + 4_000 * MS, T0 + 5_500 * MS, 1.0),
        TimedSegment("b", 1, T0 + 5_500 * MS, T0 + 6_000 * MS, 1.0))
    np.testing.assert_array_equal(r.observed_stamps_ns, T0 + np.arange(6) * 500 * MS)
    assert r.observed_probs.shape == (3, 6) and r.future_probs.shape == (3, 6)
    assert r.latency_s == pytest.approx(0.1 + r.inference_s)


def test_timed_segments_confidence_and_jittered_stamps() -> None:
    probs = np.array([[0.5, 1.0, 0.25, 0.0], [0.25, 0.0, 0.75, 0.5], [0.25, 0.0, 0.0, 0.5]], np.float32)
    starts = np.array([100, 600, 1_110, 1_600])
    segs = timed_segments(probs, starts, 500, ["x", "y", "z"])
    # frame 3 ties between y and z -> lowest id (y), so frames 2..3 form one y segment; x ends where y
    # begins (1_110; it ended at 600 + 500 = 1_100, leaving a hole, before segments were made contiguous)
    assert segs == (TimedSegment("x", 0, 100, 1_110, 0.75), TimedSegment("y", 1, 1_110, 2_100, 0.625))
    assert timed_segments(np.zeros((3, 0)), starts[:0], 500, ["x", "y", "z"]) == ()


def test_zero_horizon_gives_no_future() -> None:
    ant = make(StreamConfig(max_horizon_s=0.0, min_observed_frames=1))
    ant.push_frame(0, tag(0))
    r = ant.tick(0)
    assert r.horizon == 0 and r.future == () and r.future_probs.shape == (3, 0)


# --------------------------------------------------------------------------- resets
def test_reset_on_backwards_jump() -> None:
    ant = make()
    push_all(ant, [j * S // 10 for j in range(31)])                  # 0 .. 3.0 s
    assert ant.stats.buffer_length == 7
    assert ant.push_frame(2_500 * MS, tag(99)) is False               # 0.5 s back: out of order
    assert ant.push_frame(1_900 * MS, tag(99)) is True                # 1.1 s back: new episode
    st_ = ant.stats
    assert st_.resets == 1 and dict(st_.reset_reasons) == {"backward_jump": 1} and st_.episode == 1
    assert st_.out_of_order == 1
    feats, stamps = ant.snapshot()
    np.testing.assert_array_equal(stamps, [1_900 * MS])
    np.testing.assert_array_equal(feats[:, 0], [99, -1])             # extractor context was reset
    assert ant.push_frame(2_300 * MS, tag(1)) is False and ant.push_frame(2_400 * MS, tag(2)) is True


def test_reset_on_gap_but_not_at_exactly_the_gap() -> None:
    ant = make(StreamConfig(episode_gap_s=5.0))
    push_all(ant, [0, S // 2])
    assert ant.push_frame(S // 2 + 5 * S, tag(7)) is True           # exactly 5 s: same episode
    assert ant.stats.resets == 0 and ant.stats.buffer_length == 3
    assert ant.push_frame(S // 2 + 10 * S + 1, tag(8)) is True      # 5 s + 1 ns: new episode
    st_ = ant.stats
    assert dict(st_.reset_reasons) == {"gap": 1} and st_.buffer_length == 1 and st_.episode == 1
    np.testing.assert_array_equal(ant.snapshot()[0][:, 0], [8, -1])


def test_frame_shape_change_resets_episode() -> None:
    ant = make()
    push_all(ant, [0, S // 2])
    assert ant.push_frame(S, np.full((3, 3, 3), 5, np.uint8)) is True
    st_ = ant.stats
    assert dict(st_.reset_reasons) == {"frame_shape": 1} and st_.buffer_length == 1
    feats, stamps = ant.snapshot()
    np.testing.assert_array_equal(feats, [[5], [-1]])
    np.testing.assert_array_equal(stamps, [S])


def test_manual_reset() -> None:
    ant = make()
    push_all(ant, [0, S // 2, S])
    ant.reset("operator")
    assert ant.tick(S) is None and ant.last_skip_reason == "no_data"
    assert ant.push_frame(S + 1, tag(3)) is True                    # next frame starts the new episode
    assert ant.stats.reset_reasons == {"operator": 1} and ant.episode == 1


# --------------------------------------------------------------------------- tick gating
def test_stale_data_gives_none_with_reason() -> None:
    ant = make(StreamConfig(stale_after_s=2.0))
    push_all(ant, [j * S // 10 for j in range(21)])                  # newest frame at 2.0 s
    assert ant.tick(4 * S) is not None                                 # exactly 2 s old: fresh
    assert ant.tick(4 * S + 1) is None and ant.last_skip_reason == "stale"
    assert ant.tick(S) is not None and ant.last_skip_reason is None   # clock behind the frames: not stale
    st_ = ant.stats
    assert (st_.ticks, st_.published, st_.stale_ticks, st_.skipped_ticks) == (3, 2, 1, 1)
    # a not-due frame still refreshes staleness although no new feature was taken
    ant.push_frame(2_100 * MS, tag(0))
    assert ant.tick(4 * S + 1) is not None


def test_partial_results_at_start_up() -> None:
    ant = make(StreamConfig(min_observed_frames=3, publish_partial=True))
    assert ant.tick(0) is None and ant.last_skip_reason == "no_data"
    flags = []
    for k in range(4):
        ant.push_frame(k * S // 2, tag(k))
        flags.append(ant.tick(k * S // 2).partial)
    assert flags == [True, True, False, False]

    ant2 = make(StreamConfig(min_observed_frames=3, publish_partial=False))
    out = []
    for k in range(3):
        ant2.push_frame(k * S // 2, tag(k))
        out.append(ant2.tick(k * S // 2))
        out.append(ant2.last_skip_reason)
    assert out[:4] == [None, "warming_up", None, "warming_up"]
    assert out[4].partial is False and out[5] is None
    assert dict(ant2.stats.skip_reasons) == {"warming_up": 2}


def test_bad_forecaster_output_is_reported() -> None:
    class Bad(FakeForecaster):
        def __call__(self, observed, horizon):
            return ForecastOutput(np.zeros((3, observed.shape[1])), np.zeros((2, horizon)))

    ant = make(StreamConfig(min_observed_frames=1), forecaster=Bad())
    ant.push_frame(0, tag(0))
    with pytest.raises(ForecastError, match=r"expected \(3, 1\) and \(3, 4\)"):
        ant.tick(0)
    assert ant.stats.skip_reasons == {"forecast_error": 1} and ant.stats.ticks == 1


def test_class_names_must_match_forecaster() -> None:
    with pytest.raises(ValueError, match="class_names has 2 entries but forecaster.num_classes is 3"):
        StreamingAnticipator(StreamConfig(), TagExtractor(), FakeForecaster(), ["a", "b"])


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("field, value", [
    ("feature_rate_hz", 0.0), ("feature_rate_hz", float("nan")), ("feature_rate_hz", 2000.0),
    ("ratio", -1.0), ("ratio", float("inf")), ("max_horizon_s", -0.5), ("max_window_s", 0.0),
    ("max_window_s", 1.0), ("min_observed_frames", 0), ("min_observed_frames", 2.5),
    ("publish_partial", "yes"), ("stale_after_s", 0.0), ("episode_gap_s", -1.0),
    ("backward_jump_s", -0.1), ("window_policy", "fifo"), ("max_downsample_factor", 3),
    ("max_downsample_factor", 0), ("feature_rate_hz", True),
])
def test_config_validation_names_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"StreamConfig\.{field} must be .*, got {value!r}"):
        StreamConfig(**{field: value})


def test_config_defaults_and_mapping() -> None:
    cfg = StreamConfig.from_mapping({"feature_rate_hz": 2.0, "max_window_s": 60.0})
    assert cfg.period_ns == S // 2 and cfg.window_capacity == 120 and cfg.max_horizon_frames() == 600
    assert cfg.max_horizon_frames(2 * S) == 150
    with pytest.raises(ValueError, match=r"unknown StreamConfig keys \['rate'\]"):
        StreamConfig.from_mapping({"rate": 2.0})
    with pytest.raises(TypeError):
        StreamConfig(2.0)  # keyword-only


# --------------------------------------------------------------------------- threads
def test_push_and_tick_from_two_threads() -> None:
    fc = FakeForecaster(delay_s=0.001)
    ant = make(StreamConfig(min_observed_frames=2), forecaster=fc)
    n_frames = 3000
    stamps = [j * S // 30 for j in range(n_frames)]
    errors: list[BaseException] = []
    done = threading.Event()

    def pusher() -> None:
        try:
            for s in stamps:
                ant.push_frame(s, tag(0))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)
        finally:
            done.set()

    def ticker() -> None:
        try:
            while not done.is_set():
                r = ant.tick(0)
                if r is not None:
                    assert r.num_observed == r.observed_probs.shape[1] == r.observed_stamps_ns.size
                    assert np.all(np.diff(r.observed_stamps_ns) == S // 2)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=pusher), threading.Thread(target=ticker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    st_ = ant.stats
    assert st_.frames_received == n_frames and st_.frames_accepted == 200          # 100 s at 2 Hz
    assert (st_.frames_accepted + st_.frames_not_due + st_.duplicates + st_.out_of_order
            + st_.invalid_frames + st_.extract_errors) == st_.frames_received
    assert st_.ticks == st_.published + st_.skipped_ticks and st_.ticks > 0
    assert st_.published == len(fc.calls)


def test_pushes_are_not_blocked_by_inference_and_reset_discards() -> None:
    inside, release, left = threading.Event(), threading.Event(), threading.Event()

    class Blocking(FakeForecaster):
        def __call__(self, observed, horizon):
            inside.set()
            assert release.wait(timeout=60)
            left.set()
            return super().__call__(observed, horizon)

    ant = make(StreamConfig(min_observed_frames=1), forecaster=Blocking())
    ant.push_frame(0, tag(0))
    out: list = []
    t = threading.Thread(target=lambda: out.append(ant.tick(0)))
    t.start()
    assert inside.wait(timeout=60)
    pushed: list = []
    pusher = threading.Thread(target=lambda: (pushed.extend(push_all(ant, [S // 2, S])), ant.reset("operator")))
    pusher.start()
    pusher.join(timeout=60)                                            # only a hang fails on time
    assert not pusher.is_alive() and pushed == [True, True]
    assert not left.is_set()                   # the pushes and the reset completed while the forecaster was busy
    release.set()
    t.join(timeout=60)
    assert out == [None] and ant.last_skip_reason == "reset_during_inference"


# --------------------------------------------------------------------------- contiguous segments
def _all_boundaries_exact(r) -> int:
    """Assert observed -> current -> future segments tile time without overlap or hole; count them."""
    segs = [*r.observed, *r.future]
    assert r.current == r.observed[-1]
    for a, b in zip(segs, segs[1:]):
        assert a.end_ns == b.start_ns, (a, b)
        assert a.start_ns < a.end_ns
    return len(segs) - 1


def test_segments_share_their_boundaries_with_jitter_and_a_lost_frame() -> None:
    """30 fps camera with +-4 ms jitter and lost frames, features at 10 Hz: every boundary is exact."""
    rng = np.random.default_rng(11)
    labels = np.repeat(np.arange(60) % 3, rng.integers(1, 4, 60))       # a label change every 1-3 features
    fc = FakeForecaster(observed_labels=labels, future_labels=np.roll(labels, 1))
    ant = make(StreamConfig(feature_rate_hz=10.0, ratio=1.0, min_observed_frames=1), forecaster=fc)
    stamps = [T0 + k * S // 30 + int(rng.integers(-4 * MS, 4 * MS + 1)) for k in range(150)]
    lost = {31, 32, 33, 34, 35, 36, 90}                                  # 200 ms, then one frame
    push_all(ant, [s for k, s in enumerate(stamps) if k not in lost])
    r = ant.tick(stamps[-1])
    assert _all_boundaries_exact(r) > 20
    # each observed segment starts at its first feature's stamp and ends at the next segment's first stamp
    feats = list(r.observed_stamps_ns)
    for seg, nxt in zip(r.observed, r.observed[1:]):
        assert seg.start_ns in feats and seg.end_ns == nxt.start_ns
    assert r.observed[-1].end_ns == r.stamp_ns + r.feature_period_ns == r.future[0].start_ns
    irregular = np.diff(r.observed_stamps_ns)
    assert irregular.min() != irregular.max()                             # the stamps really are jittered


# --------------------------------------------------------------------------- counters
def test_published_counts_only_results_actually_built() -> None:
    """A tick that fails while building its result is a forecast_error, not published."""
    ant = make(StreamConfig(min_observed_frames=1))
    push_all(ant, [0, S // 2, S])
    boom = RuntimeError("cannot build the segments")
    import actfusion_ros.stream as stream_module
    real = stream_module.timed_segments
    calls = [0]

    def flaky(*args, **kwargs):
        calls[0] += 1
        if calls[0] in (1, 4):                     # the 1st and 2nd ticks' observed segments
            raise boom
        return real(*args, **kwargs)

    stream_module.timed_segments = flaky
    try:
        with pytest.raises(RuntimeError, match="cannot build"):
            ant.tick(S)
        assert ant.tick(S) is not None
        with pytest.raises(RuntimeError, match="cannot build"):
            ant.tick(S)
    finally:
        stream_module.timed_segments = real
    st_ = ant.stats
    assert (st_.ticks, st_.published, dict(st_.skip_reasons)) == (3, 1, {"forecast_error": 2})
    assert st_.ticks == st_.published + st_.skipped_ticks


# --------------------------------------------------------------------------- frames from the future
def test_frames_stamped_ahead_of_the_clock_are_rejected_and_counted() -> None:
    ant = make(StreamConfig(max_future_s=2.0, min_observed_frames=1))
    now = T0
    assert ant.push_frame(T0, tag(0), now_ns=now)
    assert ant.push_frame(T0 + 2 * S, tag(1), now_ns=now)                    # exactly 2 s ahead: accepted
    assert ant.push_frame(T0 + 2 * S + 1, tag(2), now_ns=now) is False       # beyond: rejected
    assert ant.push_frame(T0 + 86_400 * S, tag(3), now_ns=now) is False      # a day ahead
    _, stamps = ant.snapshot()
    assert list(stamps) == [T0, T0 + 2 * S] and ant.tick(now).stamp_ns == T0 + 2 * S
    assert ant.push_frame(T0 + 86_400 * S, tag(3), now_ns=0)                 # clock not started: no check
    st_ = ant.stats
    assert st_.future_frames == 2 and st_.frames_accepted == 3 and st_.resets == 1   # (a gap: new episode)
    assert st_.frames_received == 5 == (st_.frames_accepted + st_.frames_not_due + st_.duplicates
                                        + st_.out_of_order + st_.invalid_frames + st_.extract_errors
                                        + st_.future_frames)
    with pytest.raises(ValueError, match="max_future_s"):
        StreamConfig(max_future_s=0.0)


def test_admit_judges_the_stamp_before_anything_is_decoded() -> None:
    ant = make(StreamConfig(max_future_s=1.0))
    assert ant.admit(T0 + S, T0) and not ant.admit(T0 + S + 1, T0) and ant.admit(T0 + 86_400 * S, 0)
    st_ = ant.stats
    assert st_.future_frames == 1 == st_.frames_received and st_.frames_accepted == 0


# --------------------------------------------------------------------------- K sampled futures
class SamplingForecaster(FakeForecaster):
    """Observed: class 0 throughout; future: K hand-made samples, ``(class, start frame)`` each (None: no
    change), returned as a ForecastOutput with their per-frame mean as the probabilities."""

    def __init__(self, changes, samples_shape=None, max_prob: float = 1.0) -> None:
        super().__init__(num_classes=3, max_prob=max_prob)
        self.changes = changes
        self.samples_shape = samples_shape

    def __call__(self, observed: np.ndarray, horizon: int):
        labels = np.zeros((len(self.changes), horizon), int)
        for k, change in enumerate(self.changes):
            if change is not None:
                labels[k, change[1]:] = change[0]
        samples = np.stack([self._probs(row, horizon) for row in labels])
        future = samples.mean(axis=0)
        if self.samples_shape is not None:
            samples = np.zeros(self.samples_shape, np.float32)
        return ForecastOutput(self._probs(None, observed.shape[1]), future, samples)


def _sampled_tick(forecaster) -> "object":
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=2.0, max_horizon_s=None, min_observed_frames=2,
                       stale_after_s=1e6)
    ant = make(cfg, forecaster)
    push_all(ant, [k * S // 2 for k in range(4)])   # 4 features at 2 Hz -> horizon 8
    return ant, ant.tick(2 * S)


def test_k_samples_reach_the_result_with_their_next_action_distribution() -> None:
    """b follows the current a in 3 of 4 samples (future frames 2, 2, 4), c in one (frame 1)."""
    fc = SamplingForecaster([(1, 2), (1, 2), (1, 4), (2, 1)])
    _, result = _sampled_tick(fc)
    assert result is not None and result.horizon == 8 and result.current.label == "a"
    assert result.num_samples == 4 and result.future_samples.shape == (4, 3, 8)
    assert result.future_samples.dtype == np.float32
    first_future = result.stamp_ns + S // 2          # future frame f starts at first_future + f * P
    b, c = result.next_actions
    assert (b.label, b.class_id, c.label, c.class_id) == ("b", 1, "c", 2)
    assert (b.probability, c.probability) == (0.75, 0.25)
    assert b.start_ns == first_future + round(8 / 3 * S / 2)               # mean of 2, 2, 4 frames
    assert (b.low_ns, b.high_ns) == (first_future + S, first_future + round(3.6 * S / 2))  # 10%, 90%
    assert c.start_ns == c.low_ns == c.high_ns == first_future + S // 2


def test_k_sample_segment_confidence_is_the_fraction_of_samples_that_agree() -> None:
    """Samples (8 future frames): a a b b b b b b | a a b b b b b b | a a a a b b b b | a c c c c c c c.
    Votes for a: 1, 3/4 over the consensus a [0, 2); for b: 1/2, 1/2, 3/4 x 4 over b [2, 8). The samples'
    probabilities are soft (0.7 on their label), so the mean probability is not the vote share."""
    _, result = _sampled_tick(SamplingForecaster([(1, 2), (1, 2), (1, 4), (2, 1)], max_prob=0.7))
    a, b = result.future
    assert (a.label, b.label) == ("a", "b")
    assert a.confidence == pytest.approx((1 + 0.75) / 2) and b.confidence == pytest.approx((0.5 * 2 + 0.75 * 4) / 6)
    _, single = _sampled_tick(FakeForecaster(observed_labels=np.zeros(100, int), future_labels=[0] * 8))
    assert single.future[0].confidence == pytest.approx(float(single.future_probs.max(axis=0).mean()))


def test_one_sample_states_its_next_action_with_probability_one() -> None:
    fc = FakeForecaster(observed_labels=np.zeros(100, int), future_labels=[0, 0, 0, 2, 2, 1, 1, 1])
    _, result = _sampled_tick(fc)
    assert result.num_samples == 1 and result.future_samples is None
    (alt,) = result.next_actions
    start = result.stamp_ns + S // 2 + 3 * S // 2   # future frame 3
    assert (alt.label, alt.class_id, alt.probability) == ("c", 2, 1.0)
    assert alt.start_ns == alt.low_ns == alt.high_ns == start == result.future[1].start_ns
    _, unchanged = _sampled_tick(FakeForecaster())     # class 0 throughout: no next action
    assert unchanged.next_actions == () and unchanged.num_samples == 1


def test_bad_future_samples_are_a_forecast_error() -> None:
    ant, _ = _sampled_tick(FakeForecaster())
    ant.forecaster = SamplingForecaster([None], samples_shape=(2, 3, 5))
    with pytest.raises(ForecastError, match=r"future samples of shape \(2, 3, 5\), expected \(K, 3, 8\)"):
        ant.tick(2 * S)
    assert ant.stats.skip_reasons["forecast_error"] == 1
