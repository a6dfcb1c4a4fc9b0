"""Training samples: one per video (temporal offset, masking strategy, targets), collated into padded batches.

Per iteration (reference §2, §5): an offset ``o`` uniform in ``[0, sample_rate)`` gives ``features[:, o::sr]``;
one masking strategy is drawn uniformly from ``masking.types`` (repeats weight it), including ``ant_ratio``
(the r*N^O crop); the boundary target is smoothed at the raw rate, subsampled and re-normalised; Gaussian
soft labels are built when the loss config asks for them. With ``masking.time_stretch = a > 1`` the video is
first resampled in time at the raw rate by a speed factor ``s`` log-uniform in ``[1/a, a]`` (nearest
neighbour: stretched frame ``i`` reads source frame ``floor(i / s)``), and its boundary target is recomputed
from the stretched labels, so offset, masks, crop and every target follow the stretched video. With
``masking.window_observed``/``window_future`` > 0 the masked sample is then cut to a window around its
anticipation cut (:func:`window_bounds`), so a sample's cost is bounded by the window, not the video.
:func:`collate` pads a list of samples to the longest (targets with IGNORE_INDEX, everything else with zeros) and
marks each video's frames in ``valid``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from actfusion_model.config import ExperimentConfig, MaskingConfig
from actfusion_model.masking import IGNORE_INDEX, MaskedSample, masked_sample
from actfusion_training.data import (
    MsTcnDataset,
    VideoRecord,
    boundary_targets,
    gaussian_soft_labels,
    sample,
    subsample_boundary,
)


@dataclass(frozen=True)
class CachedVideo:
    """A training video with its raw-rate boundary target."""

    record: VideoRecord
    boundary: np.ndarray


class VideoStore:
    """Loads training videos on demand and keeps them in memory up to ``cache_bytes`` of features."""

    def __init__(self, dataset: MsTcnDataset, boundary_sigma: float, cache_bytes: int = 2 << 30) -> None:
        self.dataset = dataset
        self.boundary_sigma = float(boundary_sigma)
        self.cache_bytes = int(cache_bytes)
        self._cache: dict[str, CachedVideo] = {}
        self._used = 0

    def get(self, name: str) -> CachedVideo:
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        rec = self.dataset.load(name)
        video = CachedVideo(rec, boundary_targets(rec.labels, self.boundary_sigma))
        if self._used + rec.features.nbytes <= self.cache_bytes:
            self._cache[name] = video
            self._used += rec.features.nbytes
        return video


@dataclass
class TrainingSample:
    """Tensors of one iteration, batch 1: features (1, D, L), visible (1, L), targets (1, L), boundary (1, L)."""

    features: torch.Tensor
    visible: torch.Tensor
    targets: torch.Tensor
    boundary: torch.Tensor
    soft_targets: torch.Tensor | None
    mask_type: str
    offset: int
    stretch: float = 1.0  # the sample's temporal speed factor (1.0: not stretched)
    window_start: int = 0  # first model-rate frame of the masked sample kept (masking.window_*)


def anticipation_cut(visible: np.ndarray) -> int | None:
    """Where the masked suffix of an anticipative mask starts (None: the mask is not "prefix visible, rest
    masked" with both parts present)."""
    n = int(visible.size)
    cut = int(np.argmin(visible)) if n else 0
    if n == 0 or visible[cut] or cut == 0 or visible[cut:].any():
        return None
    return cut


def window_bounds(ms: MaskedSample, cfg: MaskingConfig, np_rng: np.random.Generator) -> tuple[int, int]:
    """``[start, end)`` of the training window of a masked sample (``masking.window_*``; whole sample if 0).

    An anticipative sample keeps up to ``window_observed`` frames before its cut and ``window_future`` from
    it; any other sample a window of their sum at a uniformly drawn start (one numpy draw, only then).
    """
    length = int(ms.visible.size)
    if cfg.window_observed <= 0:
        return 0, length
    cut = anticipation_cut(ms.visible)
    if cut is not None:
        return max(0, cut - cfg.window_observed), min(length, cut + cfg.window_future)
    size = cfg.window_observed + cfg.window_future
    if length <= size:
        return 0, length
    start = int(np_rng.integers(length - size + 1))
    return start, start + size


def crop(ms: MaskedSample, start: int, end: int) -> MaskedSample:
    """Frames ``[start, end)`` of a masked sample (features, targets, boundary and mask alike)."""
    return MaskedSample(ms.features[:, start:end], ms.targets[start:end], ms.boundary[start:end],
                        ms.visible[start:end])


def stretch_indices(num_frames: int, factor: float) -> np.ndarray:
    """Source frame of each frame of a video of ``num_frames`` resampled in time by ``factor`` (> 0).

    The stretched video has ``max(1, round(num_frames * factor))`` frames and frame ``i`` reads source frame
    ``floor(i / factor)`` (nearest neighbour: one-hot features stay one-hot, labels stay labels).
    """
    if num_frames < 1 or not factor > 0:
        raise ValueError(f"need num_frames >= 1 and factor > 0, got {num_frames}, {factor}")
    length = max(1, int(round(num_frames * factor)))
    src = np.floor(np.arange(length, dtype=np.float64) / factor).astype(np.int64)
    return np.minimum(src, num_frames - 1)


def draw_time_stretch(max_factor: float, np_rng: np.random.Generator) -> float:
    """A speed factor log-uniform in ``[1 / max_factor, max_factor]`` (one numpy draw)."""
    bound = float(np.log(max_factor))
    return float(np.exp(np_rng.uniform(-bound, bound)))


def soft_targets(targets: np.ndarray, num_classes: int, sigma: float) -> np.ndarray:
    """Gaussian soft labels (C, L) over the known prefix of ``targets``; zero where the label is unknown."""
    known = targets != IGNORE_INDEX
    n = int(known.sum())
    if not known[:n].all():
        raise ValueError("soft labels need the known targets to be a prefix (as every masking type gives)")
    out = np.zeros((num_classes, targets.size), dtype=np.float32)
    if n:
        out[:, :n] = gaussian_soft_labels(targets[:n], num_classes, sigma)
    return out


def draw_sample(video: CachedVideo, cfg: ExperimentConfig, np_rng: np.random.Generator, py_rng: random.Random,
                device: torch.device) -> TrainingSample:
    """Speed factor (numpy, only when ``masking.time_stretch`` > 1), offset (numpy), masking type (python),
    mask geometry (numpy) -> model-ready tensors."""
    sr = cfg.model.sample_rate
    record, raw_boundary, source = video.record, video.boundary, None
    stretch = 1.0
    if cfg.masking.time_stretch > 1.0:
        stretch = draw_time_stretch(cfg.masking.time_stretch, np_rng)
        source = stretch_indices(record.num_frames, stretch)
        raw_boundary = boundary_targets(record.labels[source], cfg.loss.boundary_sigma)
    num_frames = record.num_frames if source is None else source.size
    offset = int(np_rng.integers(sr)) if sr > 1 else 0
    if offset >= num_frames:
        offset = 0
    if source is None:
        feats, labels = sample(record.features, record.labels, sr, offset)
    else:  # gather only the model-rate frames of the stretched video (no raw-rate copy of the features)
        picked = source[offset::sr]
        feats, labels = record.features[:, picked], record.labels[picked]
    boundary = subsample_boundary(raw_boundary, sr, offset)
    kind = py_rng.choice(cfg.masking.types)
    ms = masked_sample(kind, feats, labels, boundary, cfg.masking, np_rng)
    start, end = window_bounds(ms, cfg.masking, np_rng)
    if (start, end) != (0, ms.visible.size):
        ms = crop(ms, start, end)
    soft = None
    if cfg.loss.soft_label_sigma is not None:
        soft = torch.from_numpy(soft_targets(ms.targets, cfg.model.num_classes, cfg.loss.soft_label_sigma))
        soft = soft.unsqueeze(0).to(device)

    def tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).unsqueeze(0).to(device)

    return TrainingSample(tensor(ms.features, torch.float32), tensor(ms.visible, torch.bool),
                          tensor(ms.targets, torch.long), tensor(ms.boundary, torch.float32), soft, kind, offset,
                          stretch, start)


@dataclass
class TrainingBatch:
    """B samples padded to the longest: features (B, D, L), visible/targets/boundary (B, L), soft (B, C, L).

    ``valid`` (B, L) is True on each video's own frames; None when no sample is padded (then every
    tensor is exactly the samples' own, e.g. for B = 1).
    """

    features: torch.Tensor
    visible: torch.Tensor
    targets: torch.Tensor
    boundary: torch.Tensor
    soft_targets: torch.Tensor | None
    valid: torch.Tensor | None
    lengths: list[int]
    mask_types: list[str]
    offsets: list[int]

    @property
    def frames(self) -> int:
        """Frames of the batch's videos, padding excluded."""
        return sum(self.lengths)


def _pad_cat(tensors: list[torch.Tensor], length: int, value: float) -> torch.Tensor:
    """Concatenate (1, ..., L_i) tensors along the batch after padding the last dim to ``length``."""
    return torch.cat([torch.nn.functional.pad(x, (0, length - x.shape[-1]), value=value) for x in tensors])


def collate(samples: list[TrainingSample]) -> TrainingBatch:
    """Pad ``samples`` (each batch 1) to the longest and stack them (see :class:`TrainingBatch`)."""
    if not samples:
        raise ValueError("collate needs at least one sample")
    lengths = [int(s.targets.shape[1]) for s in samples]
    longest = max(lengths)
    kinds, offsets = [s.mask_type for s in samples], [s.offset for s in samples]
    if all(n == longest for n in lengths):
        if len(samples) == 1:
            s = samples[0]
            return TrainingBatch(s.features, s.visible, s.targets, s.boundary, s.soft_targets, None, lengths,
                                 kinds, offsets)
        valid = None
    else:
        valid = torch.stack([torch.arange(longest, device=samples[0].targets.device) < n for n in lengths])
    soft = None
    if samples[0].soft_targets is not None:
        soft = _pad_cat([s.soft_targets for s in samples], longest, 0.0)
    return TrainingBatch(_pad_cat([s.features for s in samples], longest, 0.0),
                         _pad_cat([s.visible for s in samples], longest, False),
                         _pad_cat([s.targets for s in samples], longest, IGNORE_INDEX),
                         _pad_cat([s.boundary for s in samples], longest, 0.0), soft, valid, lengths, kinds, offsets)
