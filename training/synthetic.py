"""Label-derived input features, for honest end-to-end tests without the real I3D features.

* :func:`synthetic_features`: class prototypes + noise, with boundaries jittered and ambiguous stretches
  (mixtures of two prototypes), so a model has to learn something and still cannot reach 100%.
* :func:`onehot_features`: the ground-truth observation protocol (features = one-hot labels).

Everything random comes from a ``numpy.random.Generator`` passed in by the caller.
"""
from __future__ import annotations

import numpy as np

from actfusion_model.labels import segments_from_labels


def class_prototypes(num_classes: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_classes, dim)`` random unit vectors (float64), one per class."""
    if num_classes < 1 or dim < 1:
        raise ValueError(f"need num_classes >= 1 and dim >= 1, got {num_classes}, {dim}")
    protos = rng.standard_normal((num_classes, dim))
    return protos / np.linalg.norm(protos, axis=1, keepdims=True)


def jitter_labels(labels: np.ndarray, jitter: int, rng: np.random.Generator) -> np.ndarray:
    """Move every segment boundary by a uniform integer shift in ``[-jitter, jitter]``.

    A shift never empties a segment: each boundary stays strictly between its neighbours.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    segs = segments_from_labels(labels)
    if jitter <= 0 or len(segs) < 2:
        return labels.copy()
    bounds = [s.start for s in segs] + [labels.size]
    shifts = rng.integers(-jitter, jitter + 1, size=len(segs) - 1)
    for i, shift in enumerate(shifts, 1):
        lo, hi = bounds[i - 1] + 1, bounds[i + 1] - 1
        bounds[i] = int(np.clip(bounds[i] + shift, lo, max(lo, hi)))
    out = np.empty_like(labels)
    for seg, start, end in zip(segs, bounds[:-1], bounds[1:]):
        out[start:end] = seg.label
    return out


def synthetic_features(labels: np.ndarray, num_classes: int, dim: int, rng: np.random.Generator, *,
                       noise: float = 1.0, jitter: int = 4, ambiguity: float = 0.3,
                       prototypes: np.ndarray | None = None) -> np.ndarray:
    """Features ``(dim, T)`` float32 derived from int ``labels`` ``(T,)``.

    Each frame is its class prototype (:func:`class_prototypes`, drawn from ``rng`` unless
    ``prototypes`` is given, pass the same prototypes for every video of a dataset) plus Gaussian noise
    whose expected norm is about ``noise`` (element std ``noise / sqrt(dim)``). The prototypes follow
    labels whose boundaries are shifted by up to ``jitter`` frames (:func:`jitter_labels`). With
    probability ``ambiguity`` a segment gets an ambiguous stretch (a random 20-60% of it) in which the
    frame is the mixture ``w * own + (1 - w) * other`` of its prototype and another class's, with
    ``w`` uniform in [0.35, 0.65]. Deterministic given the generator state.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    if noise < 0 or jitter < 0 or not 0.0 <= ambiguity <= 1.0:
        raise ValueError(f"need noise >= 0, jitter >= 0, ambiguity in [0, 1]; got {noise}, {jitter}, {ambiguity}")
    if prototypes is None:
        prototypes = class_prototypes(num_classes, dim, rng)
    prototypes = np.asarray(prototypes, dtype=np.float64)
    if prototypes.shape != (num_classes, dim):
        raise ValueError(f"prototypes must have shape {(num_classes, dim)}, got {prototypes.shape}")

    shown = jitter_labels(labels, jitter, rng)
    feats = prototypes[shown].copy()  # (T, dim)
    if num_classes > 1:
        for seg in segments_from_labels(shown):
            if rng.random() >= ambiguity:
                continue
            length = max(1, int(round(seg.length * rng.uniform(0.2, 0.6))))
            start = seg.start + int(rng.integers(0, seg.length - length + 1))
            other = int(rng.integers(0, num_classes - 1))
            other += other >= seg.label
            w = rng.uniform(0.35, 0.65)
            feats[start:start + length] = w * prototypes[seg.label] + (1.0 - w) * prototypes[other]
    feats += rng.standard_normal(feats.shape) * (noise / np.sqrt(dim))
    return np.ascontiguousarray(feats.T, dtype=np.float32)


def onehot_features(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot features ``(num_classes, T)`` float32 (ground-truth observation protocol)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]")
    out = np.zeros((num_classes, labels.size), dtype=np.float32)
    out[labels, np.arange(labels.size)] = 1.0
    return out
