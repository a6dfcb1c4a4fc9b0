"""The one forecast function: every backend (torch, ONNX Runtime, TensorRT) and every caller (the node's
forecaster, replay, evaluation, :meth:`model.network.ActFusion.anticipate`) runs :func:`forecast`.

It is the boundary where an observation enters the model: the observed features are checked here (once),
the horizon is resolved here (once, :func:`model.horizon.anticipation_horizon`), the r*N^O input (observed
frames + H mask tokens) and its frame mask are built here, and the noise is drawn here on the CPU
(:func:`model.diffusion.sample_noise`), so a seed gives the same forecast on every backend and device.
Then one encoder pass, one ``prepare`` and the DDIM loop (:func:`model.diffusion.ddim_sample`) over a
batch of K noisy samples of that one observation.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from model.config import ModelConfig
from model.diffusion import DDIMSchedule, ddim_sample, ddim_schedule, sample_noise
from model.horizon import anticipation_horizon
from model.runtime.base import Backend


class Forecast(NamedTuple):
    """Class probabilities of the observed frames and of the H future frames, plus the encoder's logits.

    Shapes: ``observed_probs`` (C, N_O), ``future_probs`` (C, H) and ``encoder_logits`` (C, N_O + H) for a
    2-D observation and one sample; with a batched (1, D, N_O) observation or ``num_samples`` given, the
    probabilities carry a leading sample axis K (``(K, C, .)``) and the logits a batch axis of 1.
    """

    observed_probs: torch.Tensor
    future_probs: torch.Tensor
    encoder_logits: torch.Tensor


def as_observed_tensor(observed: np.ndarray | torch.Tensor, input_dim: int) -> tuple[torch.Tensor, bool]:
    """``(D, N)`` or ``(1, D, N)`` array/tensor -> (float32 CPU tensor (1, D, N), had_batch_dim).

    The one check of observed features on the forecast path (callers do not repeat it).
    """
    tensor = torch.from_numpy(np.ascontiguousarray(observed)) if isinstance(observed, np.ndarray) else observed
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"observed must be a numpy array or torch tensor, got {type(observed).__name__}")
    batched = tensor.dim() == 3
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3 or tensor.shape[0] != 1 or tensor.shape[1] != input_dim:
        raise ValueError(f"observed features must be ({input_dim}, N>=1) float32, i.e. ({input_dim}, N) or "
                         f"(1, {input_dim}, N), got {tuple(tensor.shape)}")
    if tensor.shape[2] < 1:
        raise ValueError(f"observed features need at least one frame ({input_dim}, N>=1)")
    return tensor.detach().to("cpu", torch.float32), batched


def schedule_for(config: ModelConfig, steps: int | None = None, eta: float | None = None) -> DDIMSchedule:
    """The :class:`DDIMSchedule` of ``config`` with ``steps`` (default ``config.ddim_steps``) and ``eta``
    (default ``config.ddim_eta``); built once per distinct setting and then shared (it is frozen)."""
    return ddim_schedule(int(steps or config.ddim_steps), int(config.num_timesteps),
                         float(config.ddim_eta if eta is None else eta), float(config.snr_scale))


def forecast(backend: Backend, observed: np.ndarray | torch.Tensor, *, horizon: int | None = None,
             ratio: float = 4.0, max_horizon: int | None = None, steps: int | None = None,
             eta: float | None = None, schedule: DDIMSchedule | None = None, num_samples: int | None = None,
             noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
             timings: dict[str, float] | None = None) -> Forecast:
    """Segment the observed features and anticipate the future with any backend.

    ``observed``: (D, N_O) or (1, D, N_O). The horizon H is ``horizon`` if given, else
    ``ceil(ratio * N_O)`` capped at ``max_horizon`` (``horizon=0``: segmentation only). H mask tokens
    are appended; the encoder runs once over N_O + H frames, ``prepare`` once, then the DDIM steps of
    ``schedule`` (default :func:`schedule_for` ``(config, steps, eta)``) on ``num_samples`` K noisy samples
    at once (default one, without a sample axis in the result for a 2-D observation). Randomness comes
    only from ``noise`` (shape ``(steps, K, C, N_O + H)``, see :func:`model.diffusion.sample_noise`) or
    from ``generator``, drawn on the CPU, so every backend gives the same forecast for the same seed; for
    K = 1 the draw is the one of a single-sample run, and sample k of a batch equals a single run with
    ``noise[:, k:k+1]``. ``timings``: if a dict is given, ``encode_s``, ``prepare_s``, ``sample_s`` and
    ``total_s`` are stored. A backend with a ``loop_threads`` attribute (ONNX Runtime) gets torch's intra-op
    threads set to it for the duration of the call (restored after). Returns CPU float32 tensors.
    """
    if schedule is None:
        schedule = schedule_for(backend.config, steps, eta)
    elif (steps is not None and int(steps) != schedule.num_steps) or (eta is not None and float(eta) != schedule.eta):
        raise ValueError(f"steps={steps}, eta={eta} contradict the given schedule ({schedule.num_steps} steps, "
                         f"eta {schedule.eta}); give one or the other")
    samples = 1 if num_samples is None else int(num_samples)
    if samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    with _torch_threads(getattr(backend, "loop_threads", None)):
        return _forecast(backend, observed, horizon=horizon, ratio=ratio, max_horizon=max_horizon,
                         schedule=schedule, samples=samples, keep_sample_axis=num_samples is not None,
                         noise=noise, generator=generator, timings=timings)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _forecast(backend: Backend, observed: np.ndarray | torch.Tensor, *, horizon: int | None, ratio: float,
              max_horizon: int | None, schedule: DDIMSchedule, samples: int, keep_sample_axis: bool,
              noise: torch.Tensor | None, generator: torch.Generator | None,
              timings: dict[str, float] | None) -> Forecast:
    cfg = backend.config
    clock = time.perf_counter
    t_start = clock()
    feats, batched = as_observed_tensor(observed, cfg.input_dim)
    n_obs = feats.shape[2]
    h = anticipation_horizon(n_obs, ratio=ratio, max_horizon=max_horizon, horizon=horizon)
    length = n_obs + h
    shape = (samples, cfg.num_classes, length)
    if noise is None:
        noise = sample_noise(shape, schedule.num_steps, generator=generator)
    elif tuple(noise.shape) != (schedule.num_steps, *shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(schedule.num_steps, *shape)} "
                         f"(steps, samples, classes, N_O + H)")
    padded = torch.cat([feats, feats.new_zeros(1, cfg.input_dim, h)], dim=2)
    frame_mask = torch.zeros(1, length, dtype=torch.bool)
    frame_mask[:, :n_obs] = True

    logits, condition = backend.encode(padded, frame_mask)
    _mark(backend, timings, "encode_s", t_start, clock)
    t_prep = clock()
    state = backend.prepare(condition, samples)
    _mark(backend, timings, "prepare_s", t_prep, clock)
    t_sample = clock()

    def denoise(t: int, x01: torch.Tensor) -> torch.Tensor:
        return backend.denoise(state, t, x01)

    probs = ddim_sample(denoise, schedule, noise.to(backend.device, torch.float32))
    probs = probs.to("cpu", torch.float32)
    logits = logits.to("cpu", torch.float32)
    _mark(backend, timings, "sample_s", t_sample, clock)
    if timings is not None:
        timings["total_s"] = clock() - t_start
    if not (batched or keep_sample_axis):
        probs, logits = probs[0], logits[0]
    return Forecast(probs[..., :n_obs], probs[..., n_obs:], logits)


def _mark(backend: Backend, timings: dict[str, float] | None, key: str, start: float, clock: Any) -> None:
    if timings is not None:
        backend.synchronize()
        timings[key] = clock() - start


def step_agreement(backend: Backend, observed: Sequence[np.ndarray | torch.Tensor], *, steps: int,
                   reference_steps: int = 25, seeds: Sequence[int] = (0,), horizon: int | None = None,
                   ratio: float = 4.0, max_horizon: int | None = None) -> dict[str, float]:
    """How much a ``steps``-step forecast agrees with a ``reference_steps``-step one (the accuracy side of
    the fewer-DDIM-steps latency trade-off; no ground truth needed).

    For every observed sequence and seed, both forecasts are drawn from a generator seeded alike.
    Returns frame-level argmax agreement on the observed and the future frames (pooled over all
    sequences and seeds) and the mean absolute probability difference on the future frames.
    """
    agree_obs = agree_fut = n_obs = n_fut = 0
    abs_diff = 0.0
    for feats in observed:
        for seed in seeds:
            first, second = (forecast(backend, feats, horizon=horizon, ratio=ratio, max_horizon=max_horizon,
                                      steps=s, generator=torch.Generator().manual_seed(int(seed)))
                             for s in (steps, reference_steps))
            o1, f1, o2, f2 = first.observed_probs, first.future_probs, second.observed_probs, second.future_probs
            agree_obs += int((o1.argmax(-2) == o2.argmax(-2)).sum())
            agree_fut += int((f1.argmax(-2) == f2.argmax(-2)).sum())
            n_obs += int(o1.shape[-1])
            n_fut += int(f1.shape[-1])
            abs_diff += float((f1 - f2).abs().sum())
    classes = backend.config.num_classes
    return {"steps": float(steps), "reference_steps": float(reference_steps),
            "observed_agreement": agree_obs / max(n_obs, 1), "future_agreement": agree_fut / max(n_fut, 1),
            "future_mean_abs_diff": abs_diff / max(n_fut * classes, 1)}
