"""A cheap, deterministic, causal extractor: colour layout + colour histogram + motion.

Good enough to tell apart actions whose appearance differs (the synthetic demo), and to exercise the
whole online pipeline without a GPU. Real backbones (I3D, ResNet) implement the same interface.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from actfusion_model.features.base import FeatureExtractor, FrameError

#: Frames with more pixels are shrunk before the features are computed (1080p and smaller are not).
DEFAULT_MAX_PIXELS = 1920 * 1080


class ColorLayoutExtractor(FeatureExtractor):
    """Per-cell mean colour on a ``grid x grid`` layout, a per-channel histogram, and frame difference.

    Feature layout (all float32, ``dim = 2 * 3 * grid**2 + 3 * bins``):

    1. ``layout``  (``3 * grid**2``): mean R, G, B of each cell, mapped from ``[0, 255]`` to ``[-1, 1]``.
       Cells split the image as evenly as possible (``np.array_split`` boundaries), row-major,
       channels innermost.
    2. ``histogram`` (``3 * bins``): per-channel histogram of all pixels (bin = ``value * bins // 256``),
       each channel normalised to sum 1, then multiplied by ``bins / 2`` so that a flat histogram
       has entries 0.5 (keeps the block on the same scale as the others).
    3. ``motion`` (``3 * grid**2``): this frame's raw cell means minus the previous frame's,
       divided by 255 (range ``[-1, 1]``); zeros for the first frame of a clip.

    Frames of more than ``max_pixels`` pixels (default 1920 x 1080) are first shrunk with
    ``cv2.INTER_AREA`` (aspect ratio kept, uint8 to uint8) to at most ``max_pixels``: this is the
    per-frame :meth:`preprocess` step, done before any widening conversion (the exact integer cell
    sums and the histogram counts), so a huge frame costs neither gigabytes nor seconds. Frames up to
    ``max_pixels`` are used as they are.

    Cell means are resolution-independent, so frames of different sizes within one batch would be
    comparable, but batches must be ``(N, H, W, 3)`` anyway. ``context_frames == 2``: a feature
    depends on the current camera frame and the one before it (online and offline alike: the
    stream keeps every accepted camera frame as context, not only the sampled ones).
    """

    causal = True
    context_frames = 2

    def __init__(self, grid: int = 4, bins: int = 8, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if not isinstance(grid, (int, np.integer)) or not 1 <= grid <= 64:
            raise ValueError(f"grid must be an int in [1, 64], got {grid!r}")
        if not isinstance(bins, (int, np.integer)) or not 1 <= bins <= 256:
            raise ValueError(f"bins must be an int in [1, 256], got {bins!r}")
        if (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer))
                or max_pixels < int(grid) ** 2):
            raise ValueError(f"max_pixels must be an int >= grid**2 = {int(grid) ** 2}, got {max_pixels!r}")
        self.grid = int(grid)
        self.bins = int(bins)
        self.max_pixels = int(max_pixels)
        self.dim = 2 * 3 * self.grid ** 2 + 3 * self.bins
        # value (0..255) -> start of each bin, for np.add.reduceat over a 256-bin histogram
        self._bin_starts = np.searchsorted((np.arange(256) * self.bins) // 256, np.arange(self.bins))

    def __repr__(self) -> str:
        extra = "" if self.max_pixels == DEFAULT_MAX_PIXELS else f", max_pixels={self.max_pixels}"
        return f"ColorLayoutExtractor(grid={self.grid}, bins={self.bins}{extra})"

    # ------------------------------------------------------------------ per-frame step
    def shrink(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` (uint8) itself when it has at most ``max_pixels`` pixels, else a uint8 copy shrunk
        (``cv2.INTER_AREA``, aspect ratio kept, no side below ``min(side, grid)``) to at most that many."""
        h, w = frame.shape[:2]
        if h * w <= self.max_pixels:
            return frame
        scale = math.sqrt(self.max_pixels / (h * w))
        low_h, low_w = min(h, self.grid), min(w, self.grid)
        new_h = max(low_h, int(h * scale))
        new_w = max(low_w, min(int(w * scale), self.max_pixels // new_h))  # a side held at the grid
        new_h = max(low_h, min(new_h, self.max_pixels // new_w))           # shrinks the other more
        return cv2.resize(np.ascontiguousarray(frame), (new_w, new_h), interpolation=cv2.INTER_AREA)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """Each frame through :meth:`shrink` (a fresh ``(N, h, w, 3)`` uint8 array)."""
        if frames.shape[1] * frames.shape[2] <= self.max_pixels:
            return np.array(frames, copy=True)
        return np.stack([self.shrink(f) for f in frames])

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return self._features(self.preprocess(frames))

    def _compute_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        return np.stack([self._features(np.asarray(w))[-1] for w in windows])

    # ------------------------------------------------------------------ features of shrunk frames
    def _features(self, frames: np.ndarray) -> np.ndarray:
        n, h, w, _ = frames.shape
        if h < self.grid or w < self.grid:
            raise FrameError(f"frames of size {h}x{w} are smaller than the {self.grid}x{self.grid} grid")
        means = np.stack([self._cell_means(f) for f in frames])            # (N, 3*g*g) in [0, 255]
        hists = np.stack([self._histogram(f) for f in frames])             # (N, 3*bins), rows sum to 3
        motion = np.zeros_like(means)
        motion[1:] = (means[1:] - means[:-1]) / 255.0
        layout = means / 127.5 - 1.0
        return np.concatenate([layout, hists * (self.bins / 2.0), motion], axis=1).astype(np.float32)

    def _cell_means(self, frame: np.ndarray) -> np.ndarray:
        h, w, _ = frame.shape
        rows = (np.arange(self.grid) * h) // self.grid
        cols = (np.arange(self.grid) * w) // self.grid
        # integer sums are exact, so results do not depend on how frames are batched
        sums = np.add.reduceat(np.add.reduceat(frame.astype(np.int64), rows, axis=0), cols, axis=1)
        counts = np.outer(np.diff(np.append(rows, h)), np.diff(np.append(cols, w)))[..., None]
        return (sums / counts).reshape(-1)

    def _histogram(self, frame: np.ndarray) -> np.ndarray:
        pixels = frame.reshape(-1, 3)
        out = np.empty((3, self.bins), dtype=np.float64)
        for c in range(3):
            full = np.bincount(pixels[:, c], minlength=256)
            out[c] = np.add.reduceat(full, self._bin_starts) / pixels.shape[0]
        return out.reshape(-1)
