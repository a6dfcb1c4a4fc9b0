"""The one sampling engine: frame stamp -> keep/skip decision -> the extractor's context window.

:class:`FeatureSampling` pairs the :class:`~actfusion_ros.sampler.FeatureRateSampler` (which frames
become features, by stamp) with the :class:`~actfusion_model.features.base.CausalFeatureStream` (the ring of
camera frames that makes a feature's context). The live stream
(:class:`~actfusion_ros.stream.StreamingAnticipator`, batch 1) and the offline feature files
(:func:`actfusion_ros.tools.extract.extract_sampled`, batch N) both run it, so offline features equal the live
ones by construction:

1. :meth:`FeatureSampling.decide` by stamp (and frame size): ``taken``, ``not_due``, ``duplicate`` or
   ``out_of_order``, possibly starting a new episode;
2. :meth:`FeatureSampling.needs_pixels`: only taken frames and, for an extractor with context, not-due
   frames are ever looked at (decoded, preprocessed);
3. :meth:`FeatureSampling.observe` (not due: context only), :meth:`FeatureSampling.feature` (taken,
   batch 1) or :meth:`FeatureSampling.window` (taken, for a batch).

Not thread-safe: the caller serialises (the anticipator holds its locks).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from actfusion_model.features.base import CausalFeatureStream, FeatureExtractor
from actfusion_ros.sampler import FeatureRateSampler, SampleDecision

__all__ = ["FRAME_SHAPE", "FeatureSampling"]

#: ``SampleDecision.reset_reason`` of a frame whose size differs from the context's: a new episode.
FRAME_SHAPE = "frame_shape"


class FeatureSampling:
    """Sampler + context ring of one stream (see the module docstring).

    ``episode_gap_ns`` / ``backward_jump_ns``: as :class:`~actfusion_ros.sampler.FeatureRateSampler`
    (``None``: an offline clip is one episode).
    """

    def __init__(self, extractor: FeatureExtractor, period_ns: int, *, episode_gap_ns: int | None = None,
                 backward_jump_ns: int | None = None) -> None:
        self.sampler = FeatureRateSampler(period_ns, episode_gap_ns=episode_gap_ns,
                                          backward_jump_ns=backward_jump_ns)
        self.context = CausalFeatureStream(extractor)

    @property
    def frame_shape(self) -> tuple[int, ...] | None:
        """Shape of the frames in the context (``None`` at the start of an episode)."""
        return self.context.frame_shape

    def decide(self, stamp_ns: int, frame_shape: Sequence[int] | None = None) -> SampleDecision:
        """The decision about a frame stamped ``stamp_ns`` of shape ``frame_shape`` (known before decoding).

        A frame of another shape than the context's starts a new episode and is taken, whatever its
        stamp (``reset_reason`` :data:`FRAME_SHAPE`); a gap or backward jump starts one as the sampler
        decides. Every new episode clears the context.
        """
        if frame_shape is not None and self.frame_shape is not None and tuple(frame_shape) != self.frame_shape:
            self.sampler.reset()
            self.context.reset()
            decision = self.sampler.offer(stamp_ns)
            return SampleDecision(decision.take, decision.kind, FRAME_SHAPE)
        decision = self.sampler.offer(stamp_ns)
        if decision.reset_reason is not None:
            self.context.reset()
        return decision

    def needs_pixels(self, decision: SampleDecision) -> bool:
        """Whether the frame of ``decision`` is used at all (else it need not even be decoded)."""
        return decision.take or (decision.kind == "not_due" and self.context.context_frames > 1)

    def observe(self, frame_rgb: np.ndarray) -> None:
        """A not-due frame: it enters the context only."""
        self.context.observe(frame_rgb)

    def feature(self, frame_rgb: np.ndarray) -> np.ndarray:
        """A taken frame's feature ``(dim,)`` (batch 1; the context is unchanged if extraction fails)."""
        return self.context.push(frame_rgb)

    def window(self, frame_rgb: np.ndarray) -> np.ndarray:
        """A taken frame's context window, to extract in a batch with others."""
        return self.context.window(frame_rgb)

    def reset(self) -> None:
        """Start a new episode: the next frame is taken and anchors a new grid; the context is cleared."""
        self.sampler.reset()
        self.context.reset()
