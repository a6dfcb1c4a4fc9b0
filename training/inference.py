"""Offline TAS and LTA prediction for one video, at the raw frame rate (reference §5).

* The model sees ``features[:, o::sr]``. With ``aggregate_offsets`` (the authors' "decoder-agg") a full
  DDIM run is made for every offset ``o`` in ``[0, sr)``; the probabilities are truncated to the shortest
  offset and averaged. Otherwise offset 0 only (``sr`` times cheaper).
* Post-processing: an optional per-class median filter of ``median_filter`` frames on the probabilities at
  the sampled rate (``scipy.ndimage.median_filter``, mode ``reflect``), renormalised, argmax.
* Upsampling: sampled frame ``i`` stands for raw frames ``[i*sr, (i+1)*sr)`` (nearest-block mapping,
  clipped at the last sampled frame). The authors interpolate on ticks ``i*sr + sr//2``; the two differ by at
  most one raw frame at a boundary.
* LTA, ``full_len = ceil(N/sr)`` (offset 0's length) and ``obs_len = round(full_len*alpha)`` (Python's
  banker's rounding, as the authors). Horizon: ``gt`` = ``full_len - obs_len`` (the literature's oracle
  length); ``rn`` = ``ceil(r * obs_len)`` from :func:`model.horizon.anticipation_horizon` (deployable).
  The predicted sequence (observed part + forecast) is cut to the video's N raw frames; where it is shorter
  the missing frames are :data:`NO_PREDICTION` and count as wrong.

Every forecast runs :func:`model.runtime.forecast` (the function the node deploys) on a backend: an
:class:`~model.network.ActFusion` model is run as the torch backend on its own device; any other
:mod:`model.runtime` backend (e.g. ONNX Runtime over an export) is used as given.

Every DDIM run draws its noise from a generator seeded by ``(seed, video_index, task, offset, alpha)``
(:func:`noise_generator`; callers pass a per-video key such as the CRC-32 of its name), so results do not
depend on the order or the set of videos processed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy.ndimage import median_filter as _median_filter

from model.horizon import anticipation_horizon
from model.network import ActFusion
from model.runtime import Backend, forecast, load_backend

#: Label id of raw frames for which a forecast made no prediction (never equal to a ground-truth id).
NO_PREDICTION = -1

#: Task codes that separate the noise streams of TAS and the LTA protocols.
_TASK_CODES = {"tas": 0, "gt": 1, "rn": 2}

PROTOCOLS = ("gt", "rn")


def noise_generator(seed: int, video_index: int, task: str, offset: int, alpha: float = 0.0) -> torch.Generator:
    """A CPU generator that depends only on its arguments (not on processing order)."""
    words = np.random.SeedSequence([int(seed), int(video_index), _TASK_CODES[task], int(offset),
                                    int(round(alpha * 1000))]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(words[0]) | (int(words[1]) << 32))


def postprocess(probs: np.ndarray, median_filter: int = 0) -> np.ndarray:
    """(C, T) probabilities -> (T,) class ids: optional per-class median filter, renormalise, argmax."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (classes, time), got shape {probs.shape}")
    if median_filter < 0:
        raise ValueError(f"median_filter must be >= 0, got {median_filter}")
    if median_filter > 1 and probs.shape[1] > 0:
        probs = _median_filter(probs, size=(1, int(median_filter)), mode="reflect")
        probs = probs / np.maximum(probs.sum(axis=0, keepdims=True), 1e-12)
    return probs.argmax(axis=0).astype(np.int64)


def upsample_nearest(ids: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """Sampled-rate ids -> ``num_frames`` raw-rate ids; raw frame n takes sampled frame ``n // sr``."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if ids.size == 0:
        return np.full(num_frames, NO_PREDICTION, dtype=np.int64)
    index = np.minimum(np.arange(num_frames) // sample_rate, ids.size - 1)
    return ids[index]


def _offsets(sample_rate: int, aggregate: bool, num_frames: int) -> list[int]:
    return list(range(min(sample_rate, num_frames))) if aggregate else [0]


def as_backend(model: ActFusion | Backend) -> Backend:
    """``model`` as a :mod:`model.runtime` backend: an ActFusion model becomes the torch backend on the device
    of its parameters (in eval mode); a backend is returned as is."""
    if isinstance(model, ActFusion):
        return load_backend("torch", model, device=next(model.parameters()).device)
    return model


@dataclass
class TasPrediction:
    """Raw-rate ids (N,), the averaged sampled-rate probabilities (C, T_s) and the wall time."""

    labels: np.ndarray
    probs: np.ndarray
    seconds: float


@torch.no_grad()
def predict_tas(model: ActFusion | Backend, features: np.ndarray, *, video_index: int = 0, seed: int = 0,
                steps: int | None = None, median_filter: int = 0, aggregate_offsets: bool = True) -> TasPrediction:
    """Segment a whole video ``features`` (D, N) (no mask, horizon 0); see the module docstring."""
    backend = as_backend(model)
    sr = backend.config.sample_rate
    n = int(features.shape[1])
    start = time.perf_counter()
    runs = []
    for off in _offsets(sr, aggregate_offsets, n):
        out = forecast(backend, features[:, off::sr], horizon=0, steps=steps,
                       generator=noise_generator(seed, video_index, "tas", off))
        runs.append(out.observed_probs.numpy())
    shortest = min(r.shape[1] for r in runs)
    probs = np.mean([r[:, :shortest] for r in runs], axis=0)
    labels = upsample_nearest(postprocess(probs, median_filter), sr, n)
    return TasPrediction(labels, probs, time.perf_counter() - start)


@dataclass(frozen=True)
class LtaLayout:
    """Sampled-rate lengths of one forecast: ``full_len`` (offset 0), observed and horizon frames."""

    full_len: int
    observed: int
    horizon: int

    @property
    def total(self) -> int:
        return self.observed + self.horizon


def lta_layout(num_frames: int, sample_rate: int, alpha: float, protocol: str, ratio: float = 4.0) -> LtaLayout:
    """Observed and forecast lengths at the sampled rate for a video of ``num_frames`` raw frames."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    full_len = math.ceil(num_frames / sample_rate)
    observed = max(1, round(full_len * alpha))
    if protocol == "gt":
        horizon = anticipation_horizon(observed, horizon=max(0, full_len - observed))
    else:
        horizon = anticipation_horizon(observed, ratio=ratio)
    return LtaLayout(full_len, observed, horizon)


@dataclass
class LtaPrediction:
    """Raw-rate ids of the observed part plus forecast (N,), with :data:`NO_PREDICTION` where not covered."""

    labels: np.ndarray
    layout: LtaLayout
    observed_raw: int  # raw frames covered by the observed part (for plots)
    seconds: float  # wall time of the whole video (all offsets)
    forecast_seconds: list[float]  # wall time of each DDIM forecast (one per offset)


@torch.no_grad()
def predict_lta(model: ActFusion | Backend, features: np.ndarray, alpha: float, protocol: str, *,
                video_index: int = 0, seed: int = 0, steps: int | None = None, median_filter: int = 0,
                ratio: float = 4.0, aggregate_offsets: bool = True) -> LtaPrediction:
    """Observe the first ``alpha`` of ``features`` (D, N) and forecast under ``protocol`` (``gt``/``rn``)."""
    backend = as_backend(model)
    sr = backend.config.sample_rate
    n = int(features.shape[1])
    layout = lta_layout(n, sr, alpha, protocol, ratio)
    start = time.perf_counter()
    runs, times = [], []
    for off in _offsets(sr, aggregate_offsets, n):
        observed = features[:, off::sr][:, :layout.observed]
        t0 = time.perf_counter()
        out = forecast(backend, observed, horizon=layout.horizon, steps=steps,
                       generator=noise_generator(seed, video_index, protocol, off, alpha))
        probs = torch.cat([out.observed_probs, out.future_probs], dim=1).numpy()
        times.append(time.perf_counter() - t0)
        runs.append(probs)
    shortest = min(r.shape[1] for r in runs)
    probs = np.mean([r[:, :shortest] for r in runs], axis=0)
    ids = postprocess(probs, median_filter)
    covered = min(n, ids.size * sr)
    labels = np.full(n, NO_PREDICTION, dtype=np.int64)
    labels[:covered] = upsample_nearest(ids, sr, covered)
    return LtaPrediction(labels, layout, min(n, layout.observed * sr), time.perf_counter() - start, times)


def frame_labels_to_names(ids: Sequence[int], class_names: Sequence[str], missing: str) -> list[str]:
    """Ids -> names, :data:`NO_PREDICTION` -> ``missing``."""
    return [missing if int(i) == NO_PREDICTION else class_names[int(i)] for i in ids]
