"""Property-based tests of the label/segment utilities (actfusion_model.labels) and of segment times (stream).

Image conversion has its own property tests in tests/test_frames.py; these cover what was missing:
``segments_from_labels`` / ``labels_from_segments`` (round trip, cover, adjacency, ``ignore``),
``ClassMapping`` file round trip, and :func:`actfusion_ros.stream.timed_segments` times (monotone;
contiguous exactly when the frame stamps are one period apart, as future frames always are), also as
produced by a live :class:`~actfusion_ros.stream.StreamingAnticipator` on jittered camera stamps.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from actfusion_model.features.base import FeatureExtractor
from actfusion_model.labels import ClassMapping, Segment, labels_from_segments, segments_from_labels
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastOutput, StreamConfig, timed_segments

label_arrays = hnp.arrays(np.int64, st.integers(0, 60), elements=st.integers(0, 4))


# --------------------------------------------------------------------------- segments <-> labels
@given(label_arrays)
def test_segments_cover_the_sequence_and_round_trip(labels: np.ndarray) -> None:
    segs = segments_from_labels(labels)
    if labels.size == 0:
        assert segs == []
        return
    assert segs[0].start == 0 and segs[-1].end == labels.size
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start                      # contiguous: no gap, no overlap
        assert a.label != b.label                    # maximal runs: neighbours differ
    for s in segs:
        assert s.start < s.end and s.length == s.end - s.start
        assert (labels[s.start:s.end] == s.label).all()
    np.testing.assert_array_equal(labels_from_segments(segs, labels.size), labels)
    np.testing.assert_array_equal(labels_from_segments(segs), labels)
    # the container type does not matter
    assert segments_from_labels(labels.tolist()) == segs == segments_from_labels(labels.astype(np.int32))


@st.composite
def maximal_segments(draw: st.DrawFn) -> list[Segment]:
    """A list of contiguous segments from 0 whose neighbours have different labels."""
    lengths = draw(st.lists(st.integers(1, 9), min_size=0, max_size=12))
    out, start, prev = [], 0, None
    for n in lengths:
        label = draw(st.integers(0, 5).filter(lambda v, p=prev: v != p))
        out.append(Segment(label, start, start + n))
        start, prev = start + n, label
    return out


@given(maximal_segments())
def test_labels_from_segments_inverts(segs: list[Segment]) -> None:
    assert segments_from_labels(labels_from_segments(segs)) == segs


@given(label_arrays, st.sets(st.integers(0, 4), max_size=3))
def test_ignored_runs_are_dropped_after_splitting(labels: np.ndarray, ignore: set[int]) -> None:
    segs = segments_from_labels(labels, ignore=ignore)
    assert segs == [s for s in segments_from_labels(labels) if s.label not in ignore]
    assert all(s.label not in ignore for s in segs)
    # an ignored run still separates its neighbours: A B A with B ignored stays two A segments
    kept = np.where(np.isin(labels, list(ignore)), -1, labels)
    np.testing.assert_array_equal(labels_from_segments(segs, labels.size, fill=-1), kept)


def test_ignore_keeps_neighbours_apart() -> None:
    assert segments_from_labels([1, 1, 0, 1], ignore=[0]) == [Segment(1, 0, 2), Segment(1, 3, 4)]


# --------------------------------------------------------------------------- class mapping
names = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789 ", min_size=1, max_size=12)
                 .map(str.strip).filter(bool), min_size=1, max_size=8, unique=True)


@settings(max_examples=40, deadline=None)
@given(names, st.data())
def test_class_mapping_file_round_trip(tmp_path_factory, names_: list[str], data: st.DataObject) -> None:
    mapping = ClassMapping(tuple(names_))
    path = Path(tmp_path_factory.mktemp("map")) / "mapping.txt"
    mapping.to_file(path)
    assert ClassMapping.from_file(path) == mapping
    ids = data.draw(st.lists(st.integers(0, len(names_) - 1), max_size=10))
    assert mapping.encode(mapping.decode(ids)).tolist() == ids


# --------------------------------------------------------------------------- timed segments
@st.composite
def probs_and_stamps(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    c = draw(st.integers(2, 4))
    t = draw(st.integers(1, 30))
    # few distinct values so that ties (lowest id wins) and repeated argmax runs both occur
    probs = draw(hnp.arrays(np.float32, (c, t), elements=st.sampled_from([0.0, 0.25, 0.5, 1.0])))
    period = draw(st.integers(1, 1000))
    steps = draw(st.lists(st.integers(1, 2000), min_size=t - 1, max_size=t - 1))
    start = draw(st.integers(0, 10**12))
    stamps = start + np.concatenate([[0], np.cumsum(steps, dtype=np.int64)]).astype(np.int64)
    return probs, stamps, period


@given(probs_and_stamps())
def test_timed_segments_times_follow_the_stamps(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    probs, stamps, period = case
    names_ = [f"c{i}" for i in range(probs.shape[0])]
    segs = timed_segments(probs, stamps, period, names_)
    frame_segs = segments_from_labels(probs.argmax(axis=0))
    assert [(s.class_id, s.label) for s in segs] == [(f.label, names_[f.label]) for f in frame_segs]
    assert segs[0].start_ns == stamps[0] and segs[-1].end_ns == stamps[-1] + period
    top = probs.max(axis=0)
    for s, f in zip(segs, frame_segs):
        # a segment ends at the next segment's first stamp (the last one one period after its last stamp)
        end = stamps[f.end] if f.end < stamps.size else stamps[-1] + period
        assert s.start_ns == stamps[f.start] and s.end_ns == end
        assert s.start_ns < s.end_ns and s.duration_ns > 0
        assert top[f.start:f.end].min() - 1e-6 <= s.confidence <= top[f.start:f.end].max() + 1e-6
    for a, b in zip(segs, segs[1:]):
        assert b.start_ns > a.start_ns                       # monotone
        # contiguous whatever the spacing (before: a gap or overlap of the stamp spacing minus one period)
        assert b.start_ns == a.end_ns


@given(probs_and_stamps())
def test_timed_segments_are_contiguous_on_a_regular_grid(case: tuple[np.ndarray, np.ndarray, int]) -> None:
    probs, stamps, period = case
    grid = stamps[0] + period * np.arange(stamps.size, dtype=np.int64)   # how future frames are stamped
    segs = timed_segments(probs, grid, period, [f"c{i}" for i in range(probs.shape[0])])
    assert all(a.end_ns == b.start_ns for a, b in zip(segs, segs[1:]))
    assert segs[0].start_ns == grid[0] and segs[-1].end_ns == grid[-1] + period
    assert sum(s.duration_ns for s in segs) == period * stamps.size


# --------------------------------------------------------------------------- through the stream
class MeanExtractor(FeatureExtractor):
    """Feature = mean colour of the frame (cheap, per-frame)."""

    dim = 3
    context_frames = 1

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return frames.reshape(frames.shape[0], -1, 3).mean(axis=1)


class ColourForecaster:
    """Observed class = brightest channel of the feature; future = a fixed, changing pattern."""

    num_classes = 3

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        obs = np.full((3, observed.shape[1]), 0.1, np.float32)
        obs[observed.argmax(axis=0), np.arange(observed.shape[1])] = 0.8
        fut = np.full((3, horizon), 0.1, np.float32)
        fut[(np.arange(horizon) // 3) % 3, np.arange(horizon)] = 0.8
        return ForecastOutput(obs, fut)


@settings(max_examples=40, deadline=None)
@given(jitter_ms=st.lists(st.integers(-12, 12), min_size=40, max_size=120),
       colours=st.lists(st.integers(0, 2), min_size=40, max_size=120))
def test_stream_results_have_ordered_segments_and_a_contiguous_future(jitter_ms: list[int],
                                                                      colours: list[int]) -> None:
    """30 fps with +-12 ms jitter, features at 5 Hz: segment times are ordered and bounded by the stamps."""
    n = min(len(jitter_ms), len(colours))
    ms = 1_000_000
    stamps = [10**15 + i * 1_000_000_000 // 30 + jitter_ms[i] * ms for i in range(n)]
    config = StreamConfig(feature_rate_hz=5.0, ratio=1.5, max_horizon_s=2.0, max_window_s=60.0,
                          min_observed_frames=1, stale_after_s=1e3)
    stream = StreamingAnticipator(config, MeanExtractor(), ColourForecaster(), ["r", "g", "b"])
    for s, c in zip(stamps, colours):
        frame = np.zeros((2, 2, 3), np.uint8)
        frame[..., c] = 200
        stream.push_frame(s, frame)
    r = stream.tick(max(stamps))
    assert r is not None
    period = r.feature_period_ns
    obs = r.observed_stamps_ns
    assert np.all(np.diff(obs) > 0) and obs[0] == r.observed[0].start_ns and r.stamp_ns == obs[-1]
    assert r.observed[-1].end_ns == r.stamp_ns + period and r.current == r.observed[-1]
    assert all(b.start_ns > a.start_ns for a, b in zip(r.observed, r.observed[1:]))
    assert {s.start_ns for s in r.observed} <= set(obs.tolist())
    # the future starts where the observation ends and tiles [last + P, last + (H + 1) P)
    if r.horizon:
        assert r.future[0].start_ns == r.observed[-1].end_ns
        assert all(a.end_ns == b.start_ns for a, b in zip(r.future, r.future[1:]))
        assert r.future[-1].end_ns == r.stamp_ns + (r.horizon + 1) * period
    # observed classes are the colours of the sampled frames
    sampled = [colours[stamps.index(int(s))] for s in obs]
    assert [seg.class_id for seg in r.observed] == [f.label for f in segments_from_labels(sampled)]
