"""Offline TAS and LTA prediction for one video, at the raw frame rate (reference §5).

* The model sees ``features[:, o::sr]``. With ``aggregate_offsets`` (the authors' "decoder-agg") a full
  DDIM run is made for every offset ``o`` in ``[0, sr)``; the probabilities are truncated to the shortest
  offset and averaged. Otherwise offset 0 only (``sr`` times cheaper).
* Post-processing: an optional per-class median filter of ``median_filter`` frames on the probabilities at
  the sampled rate (``scipy.ndimage.median_filter``, mode ``reflect``), renormalised, argmax.
* Upsampling: sampled frame ``i`` stands for raw frames ``[i*sr, (i+1)*sr)`` (nearest-block mapping,
  clipped at the last sampled frame). The authors interpolate on ticks ``i*sr + sr//2``; the two differ by at
  most one raw frame at a boundary.
* K samples (``num_samples``): each offset's DDIM run draws K futures at once (one encoder pass,
  :func:`actfusion_model.runtime.forecast` with ``num_samples=K``; the noise generator of a K = 1 run is the one above,
  so K = 1 gives today's forecast). Sample ``k`` is averaged over the offsets and median-filtered on its
  own (:func:`filtered_probs`), then the K samples are reduced to one forecast by ``consensus``
  (:func:`consensus_ids`): ``"mode"`` (per-frame most voted class) or ``"medoid"`` (the sample closest to
  the others) of :mod:`actfusion_model.consensus`, or ``"mean"`` (argmax of the mean probabilities). For K = 1 every
  consensus is that one sample. The next-action distribution over the K samples
  (:func:`sample_next_action`) comes with every LTA forecast.
* LTA, ``full_len = ceil(N/sr)`` (offset 0's length) and ``obs_len = round(full_len*alpha)`` (Python's
  banker's rounding, as the authors). Horizon: ``gt`` = ``full_len - obs_len`` (the literature's oracle
  length); ``rn`` = ``ceil(r * obs_len)`` from :func:`actfusion_model.horizon.anticipation_horizon` (deployable).
  The predicted sequence (observed part + forecast) is cut to the video's N raw frames; where it is shorter
  the missing frames are :data:`NO_PREDICTION` and count as wrong.

Every forecast runs :func:`actfusion_model.runtime.forecast` (the function the node deploys) on a backend: an
:class:`~actfusion_model.network.ActFusion` model is run as the torch backend on its own device; any other
:mod:`actfusion_model.runtime` backend (e.g. ONNX Runtime over an export) is used as given.

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

from actfusion_model.consensus import (
    CONSENSUS_METHODS,
    FutureSamples,
    NextActionDistribution,
    consensus_labels,
    current_label,
    next_action_distribution,
)
from actfusion_model.horizon import anticipation_horizon
from actfusion_model.network import ActFusion
from actfusion_model.runtime import Backend, forecast, load_backend

#: Label id of raw frames for which a forecast made no prediction (never equal to a ground-truth id).
NO_PREDICTION = -1

#: Task codes that separate the noise streams of TAS and the LTA protocols.
_TASK_CODES = {"tas": 0, "gt": 1, "rn": 2}

PROTOCOLS = ("gt", "rn")

#: Ways of reducing K sampled forecasts to one (:func:`consensus_ids`).
CONSENSUS_CHOICES: tuple[str, ...] = (*CONSENSUS_METHODS, "mean")


def noise_generator(seed: int, video_index: int, task: str, offset: int, alpha: float = 0.0) -> torch.Generator:
    """A CPU generator that depends only on its arguments (not on processing order)."""
    words = np.random.SeedSequence([int(seed), int(video_index), _TASK_CODES[task], int(offset),
                                    int(round(alpha * 1000))]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(words[0]) | (int(words[1]) << 32))


def filtered_probs(probs: np.ndarray, median_filter: int = 0) -> np.ndarray:
    """(..., C, T) probabilities, each (C, T) slice median-filtered per class over time and renormalised.

    ``median_filter`` <= 1 returns the probabilities unchanged (as float64); see the module docstring.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim < 2:
        raise ValueError(f"probs must be (classes, time) or (samples, classes, time), got shape {probs.shape}")
    if median_filter < 0:
        raise ValueError(f"median_filter must be >= 0, got {median_filter}")
    if median_filter > 1 and probs.shape[-1] > 0:
        probs = _median_filter(probs, size=(1,) * (probs.ndim - 1) + (int(median_filter),), mode="reflect")
        probs = probs / np.maximum(probs.sum(axis=-2, keepdims=True), 1e-12)
    return probs


def postprocess(probs: np.ndarray, median_filter: int = 0) -> np.ndarray:
    """(C, T) probabilities -> (T,) class ids: optional per-class median filter, renormalise, argmax."""
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (classes, time), got shape {probs.shape}")
    return filtered_probs(probs, median_filter).argmax(axis=0).astype(np.int64)


def check_sampling(num_samples: int, consensus: str) -> None:
    """Raise ``ValueError`` unless ``num_samples >= 1`` and ``consensus`` is one of :data:`CONSENSUS_CHOICES`."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    check_consensus(consensus)


def check_consensus(consensus: str) -> None:
    """Raise ``ValueError`` unless ``consensus`` is one of :data:`CONSENSUS_CHOICES`."""
    if consensus not in CONSENSUS_CHOICES:
        raise ValueError(f"unknown consensus {consensus!r}; choose from {CONSENSUS_CHOICES}")


def consensus_ids(sample_probs: np.ndarray, consensus: str = "mode") -> np.ndarray:
    """(K, C, T) post-processed sample probabilities -> (T,) int64 class ids of the ``consensus`` forecast.

    ``"mode"`` / ``"medoid"``: :func:`actfusion_model.consensus.consensus_labels` of the samples (their argmax labels;
    mode ties go to the higher mean probability); ``"mean"``: the argmax of the samples' mean probabilities.
    One sample gives its own argmax under every consensus.
    """
    check_consensus(consensus)
    probs = np.asarray(sample_probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError(f"sample probabilities must be (samples, classes, time), got shape {probs.shape}")
    if consensus == "mean":
        return probs.mean(axis=0).argmax(axis=0).astype(np.int64)
    return consensus_labels(FutureSamples.of(probs), method=consensus)[0].astype(np.int64)


def sample_next_action(sample_probs: np.ndarray, observed: int, horizon: int | None = None
                       ) -> NextActionDistribution:
    """The next-action distribution of K forecasts ``(K, C, observed + H)`` at the sampled rate.

    The current action is :func:`actfusion_model.consensus.current_label` of the samples' last observed frame (the
    model's own segmentation, as the node sees it); the futures are the ``horizon`` frames after the
    ``observed`` ones (default: all of them).
    """
    probs = np.asarray(sample_probs, dtype=np.float64)
    if probs.ndim != 3 or not 1 <= int(observed) <= probs.shape[2]:
        raise ValueError(f"sample probabilities (K, C, T) with 1 <= observed <= T needed, got shape {probs.shape} "
                         f"and observed {observed}")
    end = probs.shape[2] if horizon is None else min(probs.shape[2], int(observed) + int(horizon))
    current = current_label(probs[:, :, :int(observed)])
    return next_action_distribution(probs[:, :, int(observed):end], current)


def upsample_nearest(ids: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """Sampled-rate ids -> ``num_frames`` raw-rate ids; raw frame n takes sampled frame ``n // sr``."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if sample_rate < 1:
        raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
    if ids.size == 0:
        return np.full(num_frames, NO_PREDICTION, dtype=np.int64)
    index = np.minimum(np.arange(num_frames) // sample_rate, ids.size - 1)
    return ids[index]


def lta_raw_labels(ids: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """Sampled-rate ids of an LTA forecast (observed + future) -> ``num_frames`` raw-rate ids, upsampled
    where they reach and :data:`NO_PREDICTION` after."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    covered = min(int(num_frames), ids.size * int(sample_rate))
    labels = np.full(int(num_frames), NO_PREDICTION, dtype=np.int64)
    labels[:covered] = upsample_nearest(ids, sample_rate, covered)
    return labels


def _offsets(sample_rate: int, aggregate: bool, num_frames: int) -> list[int]:
    return list(range(min(sample_rate, num_frames))) if aggregate else [0]


def as_backend(model: ActFusion | Backend) -> Backend:
    """``model`` as a :mod:`actfusion_model.runtime` backend: an ActFusion model becomes the torch backend on the device
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
    forecast_seconds: list[float]  # wall time of each DDIM forecast (one per offset, all K samples)
    sample_rate: int = 1
    sample_probs: np.ndarray | None = None  # (K, C, T) post-processed probabilities of each sample (sampled rate)
    consensus: str = "mode"
    next_action: NextActionDistribution | None = None  # over the K samples (sample_next_action)

    @property
    def num_samples(self) -> int:
        return 1 if self.sample_probs is None else int(self.sample_probs.shape[0])


@torch.no_grad()
def predict_lta(model: ActFusion | Backend, features: np.ndarray, alpha: float, protocol: str, *,
                video_index: int = 0, seed: int = 0, steps: int | None = None, median_filter: int = 0,
                ratio: float = 4.0, aggregate_offsets: bool = True, num_samples: int = 1,
                consensus: str = "mode") -> LtaPrediction:
    """Observe the first ``alpha`` of ``features`` (D, N) and forecast under ``protocol`` (``gt``/``rn``).

    ``num_samples`` futures per offset, reduced to the returned labels by ``consensus`` (module docstring).
    """
    check_sampling(num_samples, consensus)
    backend = as_backend(model)
    sr = backend.config.sample_rate
    n = int(features.shape[1])
    layout = lta_layout(n, sr, alpha, protocol, ratio)
    start = time.perf_counter()
    runs, times = [], []
    for off in _offsets(sr, aggregate_offsets, n):
        observed = features[:, off::sr][:, :layout.observed]
        t0 = time.perf_counter()
        out = forecast(backend, observed, horizon=layout.horizon, steps=steps, num_samples=int(num_samples),
                       generator=noise_generator(seed, video_index, protocol, off, alpha))
        probs = torch.cat([out.observed_probs, out.future_probs], dim=2).numpy()  # (K, C, observed + H)
        times.append(time.perf_counter() - t0)
        runs.append(probs)
    shortest = min(r.shape[2] for r in runs)
    samples = filtered_probs(np.mean([r[:, :, :shortest] for r in runs], axis=0), median_filter)
    labels = lta_raw_labels(consensus_ids(samples, consensus), sr, n)
    return LtaPrediction(labels, layout, min(n, layout.observed * sr), time.perf_counter() - start, times,
                         sample_rate=sr, sample_probs=samples.astype(np.float32), consensus=consensus,
                         next_action=sample_next_action(samples, min(layout.observed, shortest), layout.horizon))


def frame_labels_to_names(ids: Sequence[int], class_names: Sequence[str], missing: str) -> list[str]:
    """Ids -> names, :data:`NO_PREDICTION` -> ``missing``."""
    return [missing if int(i) == NO_PREDICTION else class_names[int(i)] for i in ids]
