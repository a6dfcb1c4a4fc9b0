"""A cheap, deterministic, causal extractor: colour layout + colour histogram + motion.

Good enough to tell apart actions whose appearance differs (the synthetic demo), and to exercise the
whole online pipeline without a GPU. Real backbones (I3D, ResNet) implement the same interface.
"""
from __future__ import annotations

import numpy as np

from model.features.base import FeatureExtractor, FrameError


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

    Cell means are resolution-independent, so frames of different sizes within one batch would be
    comparable, but batches must be ``(N, H, W, 3)`` anyway. ``context_frames == 2``: a feature
    depends on the current camera frame and the one before it (online and offline alike: the
    stream keeps every accepted camera frame as context, not only the sampled ones).
    """

    causal = True
    context_frames = 2

    def __init__(self, grid: int = 4, bins: int = 8) -> None:
        if not isinstance(grid, (int, np.integer)) or not 1 <= grid <= 64:
            raise ValueError(f"grid must be an int in [1, 64], got {grid!r}")
        if not isinstance(bins, (int, np.integer)) or not 1 <= bins <= 256:
            raise ValueError(f"bins must be an int in [1, 256], got {bins!r}")
        self.grid = int(grid)
        self.bins = int(bins)
        self.dim = 2 * 3 * self.grid ** 2 + 3 * self.bins
        # value (0..255) -> start of each bin, for np.add.reduceat over a 256-bin histogram
        self._bin_starts = np.searchsorted((np.arange(256) * self.bins) // 256, np.arange(self.bins))

    def __repr__(self) -> str:
        return f"ColorLayoutExtractor(grid={self.grid}, bins={self.bins})"

    def _compute(self, frames: np.ndarray) -> np.ndarray:
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
