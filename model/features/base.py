"""The feature-extractor interface: one code path for offline feature files and the online node.

Contract (bounded-context causality)
------------------------------------
An extractor maps a batch of RGB frames ``(N, H, W, 3) uint8`` to features ``(N, dim) float32``.
Feature ``i`` must be a function of ``frames[max(0, i - context_frames + 1) : i + 1]`` only: the
current frame and at most ``context_frames - 1`` frames before it, and nothing after it. Near the
start of a clip (``i < context_frames - 1``) the window is simply shorter.

Because of this contract, :class:`CausalFeatureStream` can feed frames one at a time, keep only the
last ``context_frames`` frames, and produce *exactly* the features that :meth:`FeatureExtractor.extract`
produces over the whole clip. Offline feature files and the live node therefore agree bit for bit,
as long as both are given the same frame sequence (online: the frames the feature-rate sampler took,
see ``actfusion_ros.stream``; offline: the same sampling applied to the video's timestamps).

Implementers subclass :class:`FeatureExtractor`, set ``dim`` and ``context_frames`` and implement
:meth:`FeatureExtractor._compute`; the public :meth:`FeatureExtractor.extract` validates the input and
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
    """

    dim: int
    causal: bool = True
    context_frames: int = 1

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
        out = np.asarray(self._compute(frames))
        if out.shape != (n, self.dim):
            raise FeatureError(f"{type(self).__name__} returned features of shape {out.shape}, "
                               f"expected ({n}, {self.dim})")
        out = out.astype(np.float32, copy=False)
        if not np.isfinite(out).all():
            bad = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
            raise FeatureError(f"{type(self).__name__} returned non-finite features (first at frame {bad})")
        return out

    def extract_last(self, window: np.ndarray) -> np.ndarray:
        """Feature ``(dim,)`` of the last frame of ``window`` (its context, oldest first).

        ``window`` holds at most ``context_frames`` frames. The default runs :meth:`extract` on the
        window and keeps the last row; extractors may override it with something cheaper, but the
        result must stay identical.
        """
        if window.shape[0] == 0:
            raise FrameError("extract_last needs at least one frame")
        return self.extract(window)[-1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, context_frames={self.context_frames})"


class CausalFeatureStream:
    """Feed frames one at a time to a causal extractor; get the same features as an offline pass.

    Keeps the last ``extractor.context_frames`` frames in a ring (a bounded deque). ``push(frame)``
    returns the feature of that frame, which equals ``extractor.extract(clip)[i]`` when the frames
    pushed since the last :meth:`reset` are ``clip[:i + 1]``.

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
        self.frames_pushed = 0

    @property
    def context_frames(self) -> int:
        return self._ring.maxlen or 1

    def __len__(self) -> int:
        """Number of context frames currently held (<= ``context_frames``)."""
        return len(self._ring)

    def reset(self) -> None:
        """Forget the context: the next frame is treated as the first frame of a clip."""
        self._ring.clear()
        self.frames_pushed = 0

    def push(self, frame_rgb: np.ndarray) -> np.ndarray:
        """Add one ``(H, W, 3) uint8`` RGB frame; return its feature ``(dim,) float32``.

        The context is only updated when extraction succeeds, so a failing frame leaves the stream
        as it was. A frame whose shape differs from the held context raises
        :class:`FrameShapeChanged` (call :meth:`reset` to start over at the new size).
        """
        frame = check_frame(frame_rgb)
        if self._ring and self._ring[-1].shape != frame.shape:
            raise FrameShapeChanged(f"frame shape changed from {self._ring[-1].shape} to {frame.shape} "
                                    "within one stream; reset the stream first")
        # Copy: the caller may reuse its image buffer for the next message.
        frame = np.array(frame, copy=True)
        window = np.stack(self._context_with(frame))
        feature = self.extractor.extract_last(window)
        feature = np.asarray(feature, dtype=np.float32)
        if feature.shape != (self.extractor.dim,):
            raise FeatureError(f"{self.extractor!r}.extract_last returned shape {feature.shape}, "
                               f"expected ({self.extractor.dim},)")
        self._ring.append(frame)
        self.frames_pushed += 1
        return feature

    def _context_with(self, frame: np.ndarray) -> Sequence[np.ndarray]:
        keep = self.context_frames - 1
        past = list(self._ring)[-keep:] if keep > 0 else []
        return [*past, frame]
