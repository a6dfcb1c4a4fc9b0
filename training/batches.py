"""One training sample per video and iteration: temporal offset, masking strategy, targets (batch size 1).

Per iteration (reference §2, §5): an offset ``o`` uniform in ``[0, sample_rate)`` gives ``features[:, o::sr]``;
one masking strategy is drawn uniformly from ``masking.types`` (repeats weight it), including ``ant_ratio``
(the r*N^O crop); the boundary target is smoothed at the raw rate, subsampled and re-normalised; Gaussian
soft labels are built when the loss config asks for them.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from model.config import ExperimentConfig
from model.masking import IGNORE_INDEX, masked_sample
from training.data import (MsTcnDataset, VideoRecord, boundary_targets, gaussian_soft_labels,
                           subsample_boundary, sample)


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
    """Offset (numpy), masking type (python), mask geometry (numpy) -> model-ready tensors."""
    sr = cfg.model.sample_rate
    offset = int(np_rng.integers(sr)) if sr > 1 else 0
    if offset >= video.record.num_frames:
        offset = 0
    feats, labels = sample(video.record.features, video.record.labels, sr, offset)
    boundary = subsample_boundary(video.boundary, sr, offset)
    kind = py_rng.choice(cfg.masking.types)
    ms = masked_sample(kind, feats, labels, boundary, cfg.masking, np_rng)
    soft = None
    if cfg.loss.soft_label_sigma is not None:
        soft = torch.from_numpy(soft_targets(ms.targets, cfg.model.num_classes, cfg.loss.soft_label_sigma))
        soft = soft.unsqueeze(0).to(device)

    def tensor(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).unsqueeze(0).to(device)

    return TrainingSample(tensor(ms.features, torch.float32), tensor(ms.visible, torch.bool),
                          tensor(ms.targets, torch.long), tensor(ms.boundary, torch.float32), soft, kind, offset)
