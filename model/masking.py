"""Training-time masks (paper Sec. 3.3; the authors' ``ActFusion.mask``) and the r*N^O anticipative crop.

A mask is a 1-D bool array over frames, True where the frame is *visible*; masked frames are replaced by
the learnable token (Eq. 3, applied as ``torch.where``). Randomness only through the numpy Generator given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from actfusion_model.config import MaskingConfig
from actfusion_model.horizon import anticipation_horizon

IGNORE_INDEX = -100


def full_mask(length: int) -> np.ndarray:
    """M^N: nothing masked."""
    return np.ones(length, dtype=bool)


def anticipative_mask(length: int, observed_ratio: float) -> np.ndarray:
    """M^A: frames from ``int(length * observed_ratio)`` on are masked."""
    mask = np.ones(length, dtype=bool)
    mask[int(length * observed_ratio):] = False
    return mask


def patch_mask(length: int, num_patches: int, patch_size: int, rng: np.random.Generator) -> np.ndarray:
    """M^R: ``num_patches`` distinct whole patches ``[p*i, p*i+p)`` masked (the last partial patch never)."""
    mask = np.ones(length, dtype=bool)
    max_idx = length // patch_size
    n = min(num_patches, max_idx)
    for i in rng.choice(max_idx, size=n, replace=False) if n > 0 else ():
        mask[i * patch_size:(i + 1) * patch_size] = False
    return mask


def boundary_mask(boundary: np.ndarray, threshold: float) -> np.ndarray:
    """M^B: frames whose smoothed boundary signal is >= ``threshold`` are masked."""
    return np.asarray(boundary) < threshold


def class_mask(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """M^S: every frame of ``num_classes`` classes drawn (with replacement) from those present."""
    present = np.unique(labels[labels >= 0])
    if present.size == 0:
        return np.ones(labels.shape[0], dtype=bool)
    chosen = rng.choice(present, size=num_classes, replace=True)
    return ~np.isin(labels, chosen)


def draw_mask(kind: str, labels: np.ndarray, boundary: np.ndarray, cfg: MaskingConfig,
              rng: np.random.Generator) -> np.ndarray:
    """The visible-frame mask of one strategy for a training sample (same length as ``labels``)."""
    length = labels.shape[0]
    if kind == "full":
        return full_mask(length)
    if kind == "ant":
        return anticipative_mask(length, float(rng.choice(cfg.ant_ratios)))
    if kind == "random_num_patch":
        lo, hi = cfg.random_patches
        return patch_mask(length, int(rng.integers(lo, hi + 1)), cfg.patch_size, rng)
    if kind == "random_patch":
        return patch_mask(length, cfg.fixed_patches, cfg.patch_size, rng)
    if kind == "boundary":
        return boundary_mask(boundary, cfg.boundary_threshold)
    if kind == "segment":
        return class_mask(labels, cfg.segment_classes, rng)
    raise ValueError(f"unknown mask type {kind!r}")


@dataclass
class MaskedSample:
    """Model input for one training step: features (D, L), targets (L,) with IGNORE_INDEX, visible (L,)."""

    features: np.ndarray
    targets: np.ndarray
    boundary: np.ndarray
    visible: np.ndarray


def anticipative_crop(features: np.ndarray, labels: np.ndarray, boundary: np.ndarray, observed_ratio: float,
                      ratio: float) -> MaskedSample:
    """The deployable r*N^O layout: N^O observed frames, then ``ceil(r N^O)`` mask tokens.

    Targets past the end of the video are unknown (IGNORE_INDEX); features there are zeros, replaced by the
    mask token anyway. This is what the node feeds the model at every tick.
    """
    length = labels.shape[0]
    n_obs = max(1, int(length * observed_ratio))
    total = n_obs + anticipation_horizon(n_obs, ratio=ratio)
    feats = np.zeros((features.shape[0], total), dtype=features.dtype)
    targets = np.full(total, IGNORE_INDEX, dtype=np.int64)
    bnd = np.zeros(total, dtype=np.float32)
    keep = min(total, length)
    feats[:, :keep] = features[:, :keep]
    targets[:keep] = labels[:keep]
    bnd[:keep] = boundary[:keep]
    visible = np.zeros(total, dtype=bool)
    visible[:n_obs] = True
    return MaskedSample(feats, targets, bnd, visible)


def masked_sample(kind: str, features: np.ndarray, labels: np.ndarray, boundary: np.ndarray,
                  cfg: MaskingConfig, rng: np.random.Generator) -> MaskedSample:
    """Apply one masking strategy (including ``ant_ratio``, the r*N^O crop) to a sample."""
    if kind == "ant_ratio":
        return anticipative_crop(features, labels, boundary, float(rng.choice(cfg.ant_ratios)),
                                 cfg.anticipation_ratio)
    return MaskedSample(features, labels, boundary, draw_mask(kind, labels, boundary, cfg, rng))
