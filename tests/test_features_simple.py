"""Tests of the feature-extractor interface and the cheap colour-layout extractor."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from actfusion_model.features import (
    CausalFeatureStream,
    FeatureExtractor,
    FrameError,
    FrameShapeChanged,
    available_extractors,
    build_extractor,
)
from actfusion_model.features.simple import ColorLayoutExtractor


def _clip(rng: np.random.Generator, n: int, h: int = 12, w: int = 16) -> np.ndarray:
    return rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def test_dim_dtype_and_shape() -> None:
    ext = ColorLayoutExtractor(grid=3, bins=5)
    assert ext.dim == 2 * 3 * 9 + 3 * 5 == 69
    assert ext.causal is True and ext.context_frames == 2
    feats = ext.extract(_clip(np.random.default_rng(0), 4))
    assert feats.shape == (4, 69) and feats.dtype == np.float32
    assert ext.extract(np.zeros((0, 8, 8, 3), np.uint8)).shape == (0, 69)


def test_exact_values_on_a_constructed_frame() -> None:
    ext = ColorLayoutExtractor(grid=2, bins=4)
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[:2, :3] = (255, 0, 0)      # top-left red
    frame[:2, 3:] = (0, 255, 0)      # top-right green
    frame[2:, :3] = (0, 0, 255)      # bottom-left blue
    frame[2:, 3:] = (255, 255, 255)  # bottom-right white
    second = frame.copy()
    second[2:, 3:] = 0               # bottom-right turns black
    feats = ext.extract(np.stack([frame, second]))
    layout = feats[0, :12].reshape(4, 3)
    np.testing.assert_array_equal(layout, [[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, 1]])
    # each channel: half the pixels 255 (last bin), half 0 (first bin); scaled by bins/2 = 2
    hist = feats[0, 12:24].reshape(3, 4)
    np.testing.assert_array_equal(hist, [[1, 0, 0, 1]] * 3)
    np.testing.assert_array_equal(feats[0, 24:], np.zeros(12))         # first frame: no motion
    motion = feats[1, 24:].reshape(4, 3)
    np.testing.assert_array_equal(motion, [[0, 0, 0]] * 3 + [[-1, -1, -1]])


def test_uneven_cells_use_array_split_boundaries() -> None:
    ext = ColorLayoutExtractor(grid=2, bins=1)
    frame = np.zeros((3, 3, 3), np.uint8)
    frame[0, 0] = 255                           # cells: rows [0,1) [1,3), cols [0,1) [1,3)
    layout = ext.extract(frame[None])[0, :12].reshape(4, 3)
    np.testing.assert_array_equal(layout[:, 0], [1, -1, -1, -1])
    np.testing.assert_array_equal(ext.extract(frame[None])[0, 12:15], [0.5, 0.5, 0.5])


def test_online_push_equals_offline_extract_over_a_clip() -> None:
    ext = ColorLayoutExtractor()
    clip = _clip(np.random.default_rng(1), 25)
    offline = ext.extract(clip)
    stream = CausalFeatureStream(ext)
    online = np.stack([stream.push(f) for f in clip])
    np.testing.assert_array_equal(online, offline)
    assert len(stream) == 2 and stream.frames_pushed == 25
    # chunked offline extraction with one frame of overlap matches as well
    chunked = np.concatenate([ext.extract(clip[:10]), ext.extract(clip[9:])[1:]])
    np.testing.assert_array_equal(chunked, offline)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 8), h=st.integers(2, 9), w=st.integers(2, 9), seed=st.integers(0, 2**31),
       grid=st.integers(1, 2), bins=st.sampled_from([1, 3, 8, 256]))
def test_online_equals_offline_property(n: int, h: int, w: int, seed: int, grid: int, bins: int) -> None:
    ext = ColorLayoutExtractor(grid=grid, bins=bins)
    clip = _clip(np.random.default_rng(seed), n, h, w)
    stream = CausalFeatureStream(ext)
    np.testing.assert_array_equal(np.stack([stream.push(f) for f in clip]), ext.extract(clip))


def test_causality_and_bounded_context() -> None:
    ext = ColorLayoutExtractor()
    rng = np.random.default_rng(2)
    clip = _clip(rng, 10)
    base = ext.extract(clip)
    for i in range(9):
        changed = clip.copy()
        changed[i + 1:] = _clip(rng, 9 - i)
        np.testing.assert_array_equal(ext.extract(changed)[:i + 1], base[:i + 1])
    changed = clip.copy()
    changed[4] = 255 - clip[4]
    feats = ext.extract(changed)
    assert not np.array_equal(feats[4], base[4]) and not np.array_equal(feats[5], base[5])
    np.testing.assert_array_equal(feats[6:], base[6:])   # context_frames == 2: frame 6 no longer sees it


def test_appearance_drives_the_feature() -> None:
    ext = ColorLayoutExtractor()
    red = np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0] = 200
    blue = np.zeros((1, 8, 8, 3), np.uint8)
    blue[..., 2] = 200
    a, b = ext.extract(red)[0], ext.extract(blue)[0]
    np.testing.assert_array_equal(ext.extract(red)[0], a)
    assert np.abs(a - b).max() > 1.0


@pytest.mark.parametrize("frames", [
    np.zeros((2, 8, 8, 3), np.float32),
    np.zeros((8, 8, 3), np.uint8),
    np.zeros((2, 8, 8, 4), np.uint8),
    np.zeros((2, 0, 8, 3), np.uint8),
])
def test_bad_frames_raise_frame_error(frames: np.ndarray) -> None:
    with pytest.raises(FrameError):
        ColorLayoutExtractor().extract(frames)


def test_frame_smaller_than_grid_and_bad_params() -> None:
    with pytest.raises(FrameError, match="smaller than the 4x4 grid"):
        ColorLayoutExtractor(grid=4).extract(np.zeros((1, 3, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="grid"):
        ColorLayoutExtractor(grid=0)
    with pytest.raises(ValueError, match="bins"):
        ColorLayoutExtractor(bins=257)


def test_registry() -> None:
    assert "color_layout" in available_extractors()
    ext = build_extractor("color_layout", grid=2, bins=3)
    assert isinstance(ext, ColorLayoutExtractor) and ext.dim == 2 * 3 * 4 + 9
    with pytest.raises(ValueError, match="unknown feature extractor 'nope'.*color_layout"):
        build_extractor("nope")


class _NonCausal(FeatureExtractor):
    dim = 1
    causal = False

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros((frames.shape[0], 1))


class _Failing(FeatureExtractor):
    dim = 1
    context_frames = 2

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        if (frames[-1] == 13).all():
            raise RuntimeError("boom")
        return frames[:, 0, 0, :1].astype(np.float32) + (frames.shape[0] - 1) * 1000


class _WrongShape(FeatureExtractor):
    dim = 3

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return np.zeros((frames.shape[0], 2))


def test_stream_rejects_non_causal_and_checks_output() -> None:
    with pytest.raises(ValueError, match="not causal"):
        CausalFeatureStream(_NonCausal())
    with pytest.raises(ValueError, match=r"shape \(1, 2\), expected \(1, 3\)"):
        CausalFeatureStream(_WrongShape()).push(np.zeros((2, 2, 3), np.uint8))


def test_stream_failed_frame_leaves_context_unchanged_and_shape_change() -> None:
    stream = CausalFeatureStream(_Failing())
    f = [np.full((2, 2, 3), v, np.uint8) for v in (1, 13, 2)]
    assert stream.push(f[0])[0] == 1.0
    with pytest.raises(RuntimeError):
        stream.push(f[1])
    assert len(stream) == 1 and stream.push(f[2])[0] == 1002.0    # context was frame 1, not 13
    with pytest.raises(FrameShapeChanged):
        stream.push(np.zeros((3, 2, 3), np.uint8))
    stream.reset()
    assert stream.push(np.zeros((3, 2, 3), np.uint8))[0] == 0.0


# --------------------------------------------------------------------------- large frames: shrink first
def _old_formula(ext: ColorLayoutExtractor, frames: np.ndarray) -> np.ndarray:
    """The features as computed before frames were shrunk (int64 cell sums, bincount histogram)."""
    g, bins = ext.grid, ext.bins
    starts = np.searchsorted((np.arange(256) * bins) // 256, np.arange(bins))
    means, hists = [], []
    for f in frames:
        h, w, _ = f.shape
        rows, cols = (np.arange(g) * h) // g, (np.arange(g) * w) // g
        sums = np.add.reduceat(np.add.reduceat(f.astype(np.int64), rows, axis=0), cols, axis=1)
        counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))[..., None]
        means.append((sums / counts).reshape(-1))
        px = f.reshape(-1, 3)
        hists.append(np.concatenate([np.add.reduceat(np.bincount(px[:, c], minlength=256), starts) / len(px)
                                     for c in range(3)]))
    means, hists = np.stack(means), np.stack(hists)
    motion = np.zeros_like(means)
    motion[1:] = (means[1:] - means[:-1]) / 255.0
    return np.concatenate([means / 127.5 - 1.0, hists * (bins / 2.0), motion], axis=1).astype(np.float32)


def test_frames_up_to_the_pixel_budget_give_the_features_of_the_old_formula() -> None:
    rng = np.random.default_rng(7)
    ext = ColorLayoutExtractor(grid=3, bins=6, max_pixels=48 * 64)
    for h, w in ((12, 16), (48, 64), (31, 7)):
        clip = _clip(rng, 5, h, w)
        np.testing.assert_array_equal(ext.extract(clip), _old_formula(ext, clip))
        stream = CausalFeatureStream(ext)
        np.testing.assert_array_equal(np.stack([stream.push(f) for f in clip]), _old_formula(ext, clip))
    assert ColorLayoutExtractor().max_pixels == 1920 * 1080  # 1080p frames are used as they are


def test_a_larger_frame_is_shrunk_before_the_features_are_computed() -> None:
    import cv2
    rng = np.random.default_rng(8)
    ext = ColorLayoutExtractor(grid=4, bins=8, max_pixels=50 * 60)
    clip = _clip(rng, 3, 200, 240)                                       # 16x the budget
    shrunk = np.stack([cv2.resize(f, (60, 50), interpolation=cv2.INTER_AREA) for f in clip])
    np.testing.assert_array_equal(ext.extract(clip), _old_formula(ext, shrunk))
    stream = CausalFeatureStream(ext)
    np.testing.assert_array_equal(np.stack([stream.push(f) for f in clip]), _old_formula(ext, shrunk))
    assert ext.preprocess_frame(clip[0]).shape == (50, 60, 3)          # what the stream's ring keeps
    thin = ColorLayoutExtractor(grid=4, max_pixels=16).shrink(np.zeros((4, 1000, 3), np.uint8))
    assert thin.shape == (4, 4, 3)                                     # never thinner than the grid


def test_a_huge_frame_never_widens_at_full_size() -> None:
    """Peak heap growth stays below the frame's own size (an int64 copy at full size is 8x it).

    numpy (and cv2's numpy allocator) report their buffers to tracemalloc."""
    import tracemalloc
    ext = ColorLayoutExtractor(max_pixels=100 * 100)
    frame = np.random.default_rng(9).integers(0, 256, (1500, 2000, 3), dtype=np.uint8)  # 300x the budget
    stream = CausalFeatureStream(ext)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        ext.extract(frame[None])
        stream.push(frame)
        stream.push(frame)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < frame.nbytes, f"peak {peak / 1e6:.1f} MB for a {frame.nbytes / 1e6:.1f} MB frame"


def test_max_pixels_is_validated() -> None:
    with pytest.raises(ValueError, match="max_pixels must be an int >= grid"):
        ColorLayoutExtractor(grid=4, max_pixels=15)
    assert "max_pixels=100" in repr(ColorLayoutExtractor(max_pixels=100))
    assert repr(ColorLayoutExtractor()) == "ColorLayoutExtractor(grid=4, bins=8)"
