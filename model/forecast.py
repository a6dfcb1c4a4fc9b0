"""The one forecast function, and the interface of the backends it drives.

:func:`forecast` serves every backend (the eager model here, and :mod:`actfusion_model.runtime`'s torch, ONNX Runtime
and TensorRT backends) and every caller (the node's forecaster, replay, evaluation, and the network's own
:meth:`~actfusion_model.network.ActFusion.anticipate` / :meth:`~actfusion_model.network.ActFusion.segment`, thin
wrappers over it), so what is evaluated is what is deployed. It returns a :class:`Forecast`.

It is the boundary where an observation enters the model: the observed features are checked here (once),
the horizon is resolved here (once, :func:`actfusion_model.horizon.anticipation_horizon`), the r*N^O input (observed
frames + H mask tokens) and its frame mask are built here, and the noise is drawn here on the CPU
(:func:`actfusion_model.diffusion.sample_noise`), so a seed gives the same forecast on every backend and device.
Then one encoder pass, one ``prepare`` and the DDIM loop (:func:`actfusion_model.diffusion.ddim_sample`) over a
batch of K noisy samples of that one observation.

Nothing here imports the network or :mod:`actfusion_model.runtime`: both depend on this module.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from actfusion_model.config import ModelConfig
from actfusion_model.diffusion import DDIMSchedule, ddim_sample, ddim_schedule, sample_noise
from actfusion_model.horizon import anticipation_horizon


@runtime_checkable
class Backend(Protocol):
    """What :func:`forecast` needs from an inference backend.

    The encoder runs on one observation (batch 1); the decoder on a batch of K noisy samples of it,
    its per-forecast condition terms broadcast along the batch. Tensors crossing this interface are
    torch tensors on ``device``; ``encode`` also accepts CPU tensors and moves them. ``state`` is
    backend-private (the decoder's condition terms).
    """

    name: str
    device: torch.device
    config: ModelConfig
    class_names: list[str]

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (1, D, T) float32``, ``frame_mask (1, T) bool`` -> (logits (1, C, T), condition)."""
        ...

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> Any:
        """Per-forecast decoder state from the encoder's condition (computed once, reused by every step)
        for ``denoise`` calls on batches of ``num_samples``."""
        ...

    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        """One decoder pass at diffusion step ``t`` on K noisy labels in [0, 1] ``(K, C, T)`` -> x0 logits
        ``(K, C, T)``."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU); used only for timing."""
        ...


class EagerBackend:
    """An ActFusion model (:class:`actfusion_model.network.ActFusion`) as a :class:`Backend`: eager fp32 on ``device``
    (default: where its parameters are), in eval mode. :meth:`~actfusion_model.network.ActFusion.anticipate` runs it;
    :class:`actfusion_model.runtime.torch_backend.TorchBackend` adds autocast, ``torch.compile`` and CUDA graphs.

    The decoder runs on a batch of K samples; the condition terms (batch 1) broadcast along it.
    """

    name = "torch"

    def __init__(self, model: nn.Module, *, device: str | torch.device | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.config: ModelConfig = model.cfg
        self.class_names = [f"class_{i}" for i in range(self.config.num_classes)]

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The encoder on the structured input (Eq. 3); the features were checked by :func:`forecast`."""
        features = torch.as_tensor(features).to(self.device, torch.float32)
        frame_mask = torch.as_tensor(frame_mask)
        frame_mask = (frame_mask if frame_mask.dtype == torch.bool else frame_mask > 0.5).to(self.device)
        with torch.inference_mode():
            x, gap = self.model.encoder_input(features, frame_mask)
            logits, condition = self.model.encoder(x, None, gap)
        return logits.float(), condition

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> Any:
        """The decoder's condition terms; with ``model.self_condition`` also a slot for the last x0 estimate."""
        with torch.inference_mode():
            terms = self.model.decoder.condition_terms(condition)
        return _SelfConditionedTerms(terms) if self.config.self_condition else terms

    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        steps = torch.full((x01.shape[0],), int(t), dtype=torch.long, device=self.device)
        with torch.inference_mode():
            if isinstance(state, _SelfConditionedTerms):
                logits = self.model.decoder.forward_prepared(state.terms, steps, x01.to(self.device),
                                                             previous_x0=state.previous).float()
                state.previous = torch.softmax(logits, dim=1)  # fed to the next step (self-conditioning)
                return logits
            return self.model.decoder.forward_prepared(state, steps, x01.to(self.device)).float()

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class _SelfConditionedTerms:
    """Per-forecast decoder state of a self-conditioned model: condition terms + the previous x0 estimate."""

    def __init__(self, terms: Any) -> None:
        self.terms = terms
        self.previous: torch.Tensor | None = None


class Forecast(NamedTuple):
    """Class probabilities of the observed frames and of the H future frames, plus the encoder's logits: the
    model's result, what :func:`forecast` and :meth:`actfusion_model.network.ActFusion.anticipate` return.

    Shapes: ``observed_probs`` (C, N_O), ``future_probs`` (C, H) and ``encoder_logits`` (C, N_O + H) for a
    2-D observation and one sample; with a batched (1, D, N_O) observation or ``num_samples`` given, the
    probabilities carry a leading sample axis K (``(K, C, .)``) and the logits a batch axis of 1.
    """

    observed_probs: torch.Tensor
    future_probs: torch.Tensor
    encoder_logits: torch.Tensor

    @property
    def horizon(self) -> int:
        """H, the number of forecast frames."""
        return int(self.future_probs.shape[-1])


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
    only from ``noise`` (shape ``(steps, K, C, N_O + H)``, see :func:`actfusion_model.diffusion.sample_noise`) or
    from ``generator``, drawn on the CPU, so every backend gives the same forecast for the same seed; for
    K = 1 the draw is the one of a single-sample run, and sample k of a batch equals a single run with
    ``noise[:, k:k+1]``. ``timings``: if a dict is given, ``encode_s``, ``prepare_s``, ``sample_s`` and
    ``total_s`` are stored. torch's CPU threads are not touched here (a process sets them once, at start-up:
    :mod:`actfusion_model.torch_threads`). Returns CPU float32 tensors.
    """
    if schedule is None:
        schedule = schedule_for(backend.config, steps, eta)
    elif (steps is not None and int(steps) != schedule.num_steps) or (eta is not None and float(eta) != schedule.eta):
        raise ValueError(f"steps={steps}, eta={eta} contradict the given schedule ({schedule.num_steps} steps, "
                         f"eta {schedule.eta}); give one or the other")
    samples = 1 if num_samples is None else int(num_samples)
    if samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return _forecast(backend, observed, horizon=horizon, ratio=ratio, max_horizon=max_horizon,
                     schedule=schedule, samples=samples, keep_sample_axis=num_samples is not None,
                     noise=noise, generator=generator, timings=timings)


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
    probs = denoise_loop(backend, state, schedule, noise)
    probs = probs.to("cpu", torch.float32)
    logits = logits.to("cpu", torch.float32)
    _mark(backend, timings, "sample_s", t_sample, clock)
    if timings is not None:
        timings["total_s"] = clock() - t_start
    if not (batched or keep_sample_axis):
        probs, logits = probs[0], logits[0]
    return Forecast(probs[..., :n_obs], probs[..., n_obs:], logits)


def denoise_loop(backend: Backend, state: Any, schedule: DDIMSchedule, noise: torch.Tensor) -> torch.Tensor:
    """The DDIM loop of :func:`forecast` (:func:`actfusion_model.diffusion.ddim_sample` over ``backend.denoise``)
    from ``noise`` ``(steps, K, C, T)``, given ``state = backend.prepare(condition, K)`` -> probabilities
    ``(K, C, T)`` on the backend's device. Self-conditioning, where a model has it, lives in the backend's
    ``prepare`` / ``denoise`` (:class:`EagerBackend`), so every caller of this loop gets it the same way."""

    def denoise(t: int, x01: torch.Tensor) -> torch.Tensor:
        return backend.denoise(state, t, x01)

    return ddim_sample(denoise, schedule, noise.to(backend.device, torch.float32))


def _mark(backend: Backend, timings: dict[str, float] | None, key: str, start: float, clock: Any) -> None:
    if timings is not None:
        backend.synchronize()
        timings[key] = clock() - start
