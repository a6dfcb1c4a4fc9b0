"""The feature-extractor interface: one code path for offline feature files and the online node.

Contract (bounded-context causality)
------------------------------------
An extractor maps a batch of RGB frames ``(N, H, W, 3) uint8`` to features ``(N, dim) float32``.
Feature ``i`` must be a function of ``frames[max(0, i - context_frames + 1) : i + 1]`` only: the
current frame and at most ``context_frames - 1`` frames before it, and nothing after it. Near the
start of a clip (``i < context_frames - 1``) the window is simply shorter (an extractor may pad it,
e.g. I3D repeats the first frame).

Context is counted in *camera* frames: features are only computed at the frames the feature-rate
sampler takes (e.g. 2 Hz), but the window of such a frame holds the camera frames just before it
(e.g. the last 16 frames at 30 fps = 0.53 s for I3D), not the previously sampled frames.

Three views of the same computation, all giving the same numbers:

* :meth:`FeatureExtractor.extract` - a feature for every frame of a clip;
* :meth:`FeatureExtractor.extract_at` - features at chosen frames of a clip (offline feature files:
  the frames chosen by ``actfusion_ros.sampler.sample_frame_indices``);
* :class:`CausalFeatureStream` - frames one at a time; :meth:`CausalFeatureStream.observe` adds a
  camera frame to the context, :meth:`CausalFeatureStream.push` adds one and returns its feature
  (the live node).

Preprocessing hook: an extractor may turn each frame into a smaller per-frame form first
(:meth:`FeatureExtractor.preprocess`, e.g. resized and cropped uint8); the stream keeps that form in
its ring, so each camera frame is preprocessed once and the ring stays small. Feature computation
then works on windows of preprocessed frames (:meth:`FeatureExtractor.extract_windows`).

Implementers subclass :class:`FeatureExtractor`, set ``dim`` and ``context_frames`` and implement
:meth:`FeatureExtractor._compute` (whole clips of raw frames); extractors with a preprocessing hook
also implement :meth:`FeatureExtractor._compute_windows`. The public methods validate the input and
the output, so every extractor fails the same way on bad data.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from typing import Sequence

import numpy as np


class FrameError(ValueError):
    """Frames given to an extractor have the wrong dtype, rank, channel count or size."""


class FrameShapeChanged(FrameError):
    """A :class:`CausalFeatureStream` received a frame whose shape differs from its context frames."""


class FeatureError(ValueError):
    """An extractor produced features of the wrong shape or dtype, or non-finite values."""


def check_frames(frames: np.ndarray) -> np.ndarray:
    """Validate a batch of RGB frames ``(N, H, W, 3) uint8``; return it unchanged.

    Raises :class:`FrameError` naming what was received and what was expected.
    """
    if not isinstance(frames, np.ndarray):
        raise FrameError(f"frames must be a numpy array (N, H, W, 3) uint8, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise FrameError(f"frames must have dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise FrameError(f"frames must have shape (N, H, W, 3), got {frames.shape}")
    if frames.shape[1] == 0 or frames.shape[2] == 0:
        raise FrameError(f"frames must have non-empty height and width, got {frames.shape}")
    return frames


def check_frame(frame: np.ndarray) -> np.ndarray:
    """Validate one RGB frame ``(H, W, 3) uint8``; return it unchanged (raises :class:`FrameError`)."""
    if isinstance(frame, np.ndarray) and frame.ndim != 3:
        raise FrameError(f"a frame must have shape (H, W, 3), got {frame.shape}")
    check_frames(frame[None] if isinstance(frame, np.ndarray) else frame)
    return frame


class FeatureExtractor(ABC):
    """Base class of all frame-feature extractors (cheap, I3D, image backbones...).

    Attributes
    ----------
    dim:
        Length of one feature vector.
    causal:
        ``True`` when the bounded-context contract in the module docstring holds. Only causal
        extractors can be streamed.
    context_frames:
        How many frames one feature looks at, *including* the current one (``1`` = per-frame).
    batch_size:
        Windows per :meth:`_compute_windows` call in :meth:`extract` / :meth:`extract_at`.
    """

    dim: int
    causal: bool = True
    context_frames: int = 1
    batch_size: int = 8

    @abstractmethod
    def _compute(self, frames: np.ndarray) -> np.ndarray:
        """Compute features for validated frames ``(N, H, W, 3) uint8`` with ``N >= 1``.

        Must return an array of shape ``(N, dim)``; it is converted to float32 by :meth:`extract`.
        """

    def extract(self, frames: np.ndarray) -> np.ndarray:
        """Features ``(N, dim) float32`` of ``frames`` ``(N, H, W, 3) uint8`` RGB.

        Feature ``i`` depends only on ``frames[max(0, i - context_frames + 1) : i + 1]``.
        """
        check_frames(frames)
        n = frames.shape[0]
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._checked(self._compute(frames), n)

    # ------------------------------------------------------------------ preprocessing hook
    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """Per-frame form of validated frames ``(N, H, W, 3) uint8``: an array with ``N`` rows.

        Row ``i`` must depend on ``frames[i]`` only. The default keeps the frames as they are (a
        copy). Extractors that override it (resize + crop, ...) must also implement
        :meth:`_compute_windows`, which receives windows of these rows.
        """
        return np.array(frames, copy=True)

    def preprocess_frame(self, frame: np.ndarray) -> np.ndarray:
        """Per-frame form of one ``(H, W, 3) uint8`` frame (what a stream keeps in its ring)."""
        check_frame(frame)
        return self.preprocess(frame[None])[0]

    def _compute_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Features ``(B, dim)`` of the last frame of each window of preprocessed frames.

        ``windows[b]`` holds ``1..context_frames`` preprocessed frames, oldest first. The default
        runs :meth:`_compute` on each window, which is only valid when :meth:`preprocess` is the
        identity; extractors that batch (CNNs) override it.
        """
        if type(self).preprocess is not FeatureExtractor.preprocess:
            raise NotImplementedError(f"{type(self).__name__} overrides preprocess() and must "
                                      "implement _compute_windows()")
        return np.stack([np.asarray(self._compute(np.asarray(w)))[-1] for w in windows])

    def _compute_via_windows(self, frames: np.ndarray) -> np.ndarray:
        """A :meth:`_compute` for windowed extractors: one window per frame, ``batch_size`` at a time."""
        prepared = self.preprocess(frames)
        c = int(self.context_frames)
        batch_size = int(self.batch_size)
        out = []
        for lo in range(0, frames.shape[0], batch_size):
            ends = range(lo, min(lo + batch_size, frames.shape[0]))
            out.append(self._compute_windows([prepared[max(0, e - c + 1):e + 1] for e in ends]))
        return np.concatenate(out, axis=0)

    # ------------------------------------------------------------------ windowed extraction
    def extract_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Features ``(B, dim) float32`` of the last frame of each window of *preprocessed* frames.

        ``windows[b]`` is ``preprocess(clip)[max(0, e - context_frames + 1) : e + 1]`` for the frame
        ``e`` whose feature is wanted (oldest first, 1 to ``context_frames`` rows).
        """
        n = len(windows)
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        for b, w in enumerate(windows):
            if not 1 <= len(w) <= self.context_frames:
                raise FrameError(f"window {b} holds {len(w)} frames, expected 1..{self.context_frames}")
        return self._checked(self._compute_windows(windows), n)

    def extract_at(self, frames: np.ndarray, indices: Sequence[int] | np.ndarray,
                   batch_size: int | None = None) -> np.ndarray:
        """Features ``(len(indices), dim) float32`` at ``frames[indices]``, each with its full context.

        Row ``k`` equals ``extract(frames)[indices[k]]``, but only the needed windows are computed:
        this is the offline counterpart of a stream that :meth:`~CausalFeatureStream.observe` s
        every frame and :meth:`~CausalFeatureStream.push` es the frames at ``indices``.
        ``batch_size`` (windows per call) defaults to the extractor's ``batch_size``.
        """
        batch_size = int(self.batch_size if batch_size is None else batch_size)
        check_frames(frames)
        idx = np.asarray(indices).reshape(-1)
        if idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0 or idx.max() >= frames.shape[0]):
            raise IndexError(f"indices must be integers in [0, {frames.shape[0]}), got values "
                             f"{idx.min()}..{idx.max()} of dtype {idx.dtype}")
        idx = idx.astype(np.int64)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        c = int(self.context_frames)
        starts = np.maximum(idx - c + 1, 0)
        needed = np.unique(np.concatenate([np.arange(s, e + 1) for s, e in zip(starts, idx)]
                                          or [np.zeros(0, np.int64)]))
        prepared = self.preprocess(frames[needed]) if needed.size else None
        out = [np.zeros((0, self.dim), dtype=np.float32)]
        for lo in range(0, idx.size, batch_size):
            windows = []
            for s, e in zip(starts[lo:lo + batch_size], idx[lo:lo + batch_size]):
                a, b = np.searchsorted(needed, [s, e])   # needed holds s..e contiguously
                windows.append(prepared[a:b + 1])
            out.append(self.extract_windows(windows))
        return np.concatenate(out, axis=0)

    def extract_last(self, window: np.ndarray) -> np.ndarray:
        """Feature ``(dim,)`` of the last frame of ``window`` (raw frames, its context, oldest first).

        ``window`` holds at most ``context_frames`` frames.
        """
        check_frames(window)
        if window.shape[0] == 0:
            raise FrameError("extract_last needs at least one frame")
        return self.extract_windows([self.preprocess(window)])[0]

    def _checked(self, out: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(out)
        if out.shape != (n, self.dim):
            raise FeatureError(f"{type(self).__name__} returned features of shape {out.shape}, "
                               f"expected ({n}, {self.dim})")
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise FeatureError(f"{type(self).__name__} returned non-finite features (first at frame {bad})")
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, context_frames={self.context_frames})"


class CausalFeatureStream:
    """Feed camera frames one at a time to a causal extractor; get the same features as offline.

    Keeps the last ``extractor.context_frames`` frames in a ring (a bounded deque), in the
    extractor's per-frame preprocessed form (:meth:`FeatureExtractor.preprocess_frame`).

    * :meth:`observe` adds a camera frame to the context without computing a feature (frames the
      feature-rate sampler accepted as new but did not take);
    * :meth:`push` adds a frame and returns its feature (the sampled frames).

    If the frames given since the last :meth:`reset` (observed or pushed) are ``clip[:i + 1]``,
    ``push(clip[i])`` equals ``extractor.extract(clip)[i]`` (up to float rounding of a batched
    backbone, see ``docs/features.md``), and the pushed features together equal
    ``extractor.extract_at(clip, pushed_indices)``.

    Not thread-safe: one stream belongs to one producer (the anticipator serialises pushes).
    """

    def __init__(self, extractor: FeatureExtractor) -> None:
        if not getattr(extractor, "causal", False):
            raise ValueError(f"{extractor!r} is not causal; only causal extractors can be streamed")
        context = int(extractor.context_frames)
        if context < 1:
            raise ValueError(f"extractor.context_frames must be >= 1, got {extractor.context_frames}")
        self.extractor = extractor
        self._ring: deque[np.ndarray] = deque(maxlen=context)
        self._shape: tuple[int, ...] | None = None
        self.frames_pushed = 0
        self.frames_observed = 0

    @property
    def context_frames(self) -> int:
        return self._ring.maxlen or 1

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        """Shape of the frames of the current context (``None`` after a reset)."""
        return self._shape

    def __len__(self) -> int:
        """Number of context frames currently held (<= ``context_frames``)."""
        return len(self._ring)

    def reset(self) -> None:
        """Forget the context: the next frame is treated as the first frame of a clip."""
        self._ring.clear()
        self._shape = None
        self.frames_pushed = 0
        self.frames_observed = 0

    def shape_changed(self, frame_rgb: np.ndarray) -> bool:
        """True when ``frame_rgb`` has another shape than the frames of the current context."""
        return self._shape is not None and tuple(frame_rgb.shape) != self._shape

    def _check(self, frame_rgb: np.ndarray) -> np.ndarray:
        frame = check_frame(frame_rgb)
        if self.shape_changed(frame):
            raise FrameShapeChanged(f"frame shape changed from {self._shape} to {frame.shape} "
                                    "within one stream; reset the stream first")
        return frame

    def observe(self, frame_rgb: np.ndarray) -> None:
        """Add one ``(H, W, 3) uint8`` camera frame to the context; no feature is computed.

        With ``context_frames == 1`` nothing needs keeping and the frame is not preprocessed.
        """
        frame = self._check(frame_rgb)
        if self.context_frames > 1:
            self._ring.append(self.extractor.preprocess_frame(frame))
        self._shape = tuple(frame.shape)
        self.frames_observed += 1

    def push(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Add one ``(H, W, 3) uint8`` RGB frame; return its feature ``(dim,) float32`` (batch 1).

        The context is only updated when extraction succeeds, so a failing frame leaves the stream
        as it was. A frame whose shape differs from the held context raises
        :class:`FrameShapeChanged` (call :meth:`reset` to start over at the new size).
        """
        frame, prepared, window = self._window(frame_rgb)
        feature = self.extractor.extract_windows([window])
        if feature.shape != (1, self.extractor.dim):
            raise FeatureError(f"{self.extractor!r}.extract_windows returned shape {feature.shape}, "
                               f"expected (1, {self.extractor.dim})")
        self._commit(frame, prepared)
        return feature[0]

    def window(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Add one sampled frame and return its window (its context and itself, preprocessed, oldest
        first) for a batched :meth:`FeatureExtractor.extract_windows` (batch N); the context is
        updated at once. ``extract_windows([window(f)])[0]`` equals ``push(f)``."""
        frame, prepared, window = self._window(frame_rgb)
        self._commit(frame, prepared)
        return window

    def _window(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frame = self._check(frame_rgb)
        # preprocess_frame returns a fresh array: the caller may reuse its image buffer.
        prepared = self.extractor.preprocess_frame(frame)
        return frame, prepared, np.stack(self._context_with(prepared))

    def _commit(self, frame: np.ndarray, prepared: np.ndarray) -> None:
        self._ring.append(prepared)
        self._shape = tuple(frame.shape)
        self.frames_pushed += 1

    def _context_with(self, prepared: np.ndarray) -> Sequence[np.ndarray]:
        keep = self.context_frames - 1
        past = list(self._ring)[-keep:] if keep > 0 else []
        return [*past, prepared]
