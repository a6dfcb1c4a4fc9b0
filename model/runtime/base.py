"""The backend interface and the one forecasting loop every backend shares.

A backend runs the network: ``encode`` once per tick, ``prepare`` once per tick (the decoder's
condition terms), ``denoise`` once per DDIM step. :func:`forecast` builds the r*N^O input
(:func:`model.horizon.anticipation_horizon`), draws the noise on the CPU
(:func:`model.diffusion.sample_noise`) and runs :func:`model.diffusion.ddim_sample`, so the torch,
ONNX Runtime and TensorRT backends differ only in how a graph is executed.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Mapping, NamedTuple, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from model.config import ModelConfig
from model.diffusion import cosine_alphas_cumprod, ddim_sample, sample_noise
from model.horizon import anticipation_horizon


class BackendError(RuntimeError):
    """A backend cannot be created or run (missing package or device, bad files, wrong shapes)."""


@runtime_checkable
class Backend(Protocol):
    """What :func:`forecast` needs from an inference backend (batch size 1).

    Tensors crossing this interface are torch tensors on ``device``; ``encode`` also accepts CPU
    tensors and moves them. ``state`` is backend-private (the decoder's condition terms).
    """

    name: str
    device: torch.device
    config: ModelConfig
    class_names: list[str]

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (1, D, T) float32``, ``frame_mask (1, T) bool`` -> (logits (1, C, T), condition)."""
        ...

    def prepare(self, condition: torch.Tensor) -> Any:
        """Per-tick decoder state from the encoder's condition (computed once, reused by every step)."""
        ...

    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        """One decoder pass at diffusion step ``t`` on noisy labels in [0, 1] -> x0 logits (1, C, T)."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU); used only for timing."""
        ...


class Forecast(NamedTuple):
    """Class probabilities of the observed frames (C, N_O) and of the H future frames (C, H).

    Shapes carry a leading batch dimension of 1 when the observed input had one.
    """

    observed_probs: torch.Tensor
    future_probs: torch.Tensor


def as_observed_tensor(observed: np.ndarray | torch.Tensor, input_dim: int) -> tuple[torch.Tensor, bool]:
    """``(D, N)`` or ``(1, D, N)`` array/tensor -> (float32 CPU tensor (1, D, N), had_batch_dim)."""
    tensor = torch.from_numpy(np.ascontiguousarray(observed)) if isinstance(observed, np.ndarray) else observed
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"observed must be a numpy array or torch tensor, got {type(observed).__name__}")
    batched = tensor.dim() == 3
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3 or tensor.shape[0] != 1 or tensor.shape[1] != input_dim:
        raise ValueError(f"observed features must be ({input_dim}, N) or (1, {input_dim}, N), "
                         f"got {tuple(tensor.shape)}")
    if tensor.shape[2] < 1:
        raise ValueError("observed features need at least one frame")
    return tensor.detach().to("cpu", torch.float32), batched


def forecast(backend: Backend, observed: np.ndarray | torch.Tensor, *, horizon: int | None = None,
             ratio: float = 4.0, max_horizon: int | None = None, steps: int | None = None,
             eta: float | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None, timings: dict[str, float] | None = None) -> Forecast:
    """Segment the observed features and anticipate the future with any backend.

    ``observed``: (D, N_O) or (1, D, N_O). The horizon H is ``horizon`` if given, else
    ``ceil(ratio * N_O)`` capped at ``max_horizon`` (``horizon=0``: segmentation only). H mask tokens
    are appended; the encoder runs once over N_O + H frames, ``prepare`` once, then ``steps`` DDIM
    steps (default ``config.ddim_steps``, eta default ``config.ddim_eta``). Randomness comes only from
    ``noise`` (shape ``(steps, 1, C, N_O + H)``, see :func:`model.diffusion.sample_noise`) or from
    ``generator``, drawn on the CPU, so every backend gives the same forecast for the same seed.
    ``timings``: if a dict is given, ``encode_s``, ``prepare_s``, ``sample_s`` and ``total_s`` are stored.
    A backend with a ``loop_threads`` attribute (ONNX Runtime) gets torch's intra-op threads set to it for
    the duration of the call (restored after). Returns CPU float32 tensors.
    """
    with _torch_threads(getattr(backend, "loop_threads", None)):
        return _forecast(backend, observed, horizon=horizon, ratio=ratio, max_horizon=max_horizon, steps=steps,
                         eta=eta, noise=noise, generator=generator, timings=timings)


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
              max_horizon: int | None, steps: int | None, eta: float | None, noise: torch.Tensor | None,
              generator: torch.Generator | None, timings: dict[str, float] | None) -> Forecast:
    cfg = backend.config
    clock = time.perf_counter
    t_start = clock()
    feats, batched = as_observed_tensor(observed, cfg.input_dim)
    n_obs = feats.shape[2]
    h = anticipation_horizon(n_obs, ratio=ratio, max_horizon=max_horizon, horizon=horizon)
    length = n_obs + h
    steps = int(steps or cfg.ddim_steps)
    eta = cfg.ddim_eta if eta is None else float(eta)
    shape = (1, cfg.num_classes, length)
    if noise is None:
        noise = sample_noise(shape, steps, generator=generator)
    elif tuple(noise.shape) != (steps, *shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(steps, *shape)} "
                         f"(steps, 1, classes, N_O + H)")
    padded = torch.cat([feats, feats.new_zeros(1, cfg.input_dim, h)], dim=2)
    frame_mask = torch.zeros(1, length, dtype=torch.bool)
    frame_mask[:, :n_obs] = True

    _, condition = backend.encode(padded, frame_mask)
    _mark(backend, timings, "encode_s", t_start, clock)
    t_prep = clock()
    state = backend.prepare(condition)
    _mark(backend, timings, "prepare_s", t_prep, clock)
    t_sample = clock()

    def denoise(t: int, x01: torch.Tensor) -> torch.Tensor:
        return backend.denoise(state, t, x01)

    probs = ddim_sample(denoise, shape, alphas_cumprod=cosine_alphas_cumprod(cfg.num_timesteps),
                        num_steps=steps, eta=eta, snr_scale=cfg.snr_scale,
                        noise=noise.to(backend.device, torch.float32))
    probs = probs.to("cpu", torch.float32)
    _mark(backend, timings, "sample_s", t_sample, clock)
    if timings is not None:
        timings["total_s"] = clock() - t_start
    if not batched:
        probs = probs[0]
    return Forecast(probs[..., :n_obs], probs[..., n_obs:])


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
            runs = [forecast(backend, feats, horizon=horizon, ratio=ratio, max_horizon=max_horizon, steps=s,
                             generator=torch.Generator().manual_seed(int(seed)))
                    for s in (steps, reference_steps)]
            (o1, f1), (o2, f2) = runs
            agree_obs += int((o1.argmax(-2) == o2.argmax(-2)).sum())
            agree_fut += int((f1.argmax(-2) == f2.argmax(-2)).sum())
            n_obs += int(o1.shape[-1])
            n_fut += int(f1.shape[-1])
            abs_diff += float((f1 - f2).abs().sum())
    classes = backend.config.num_classes
    return {"steps": float(steps), "reference_steps": float(reference_steps),
            "observed_agreement": agree_obs / max(n_obs, 1), "future_agreement": agree_fut / max(n_fut, 1),
            "future_mean_abs_diff": abs_diff / max(n_fut * classes, 1)}


def describe(backend: Backend) -> Mapping[str, Any]:
    """A small JSON-able summary (for logs and diagnostics)."""
    info = {"backend": backend.name, "device": str(backend.device), "classes": backend.config.num_classes}
    extra = getattr(backend, "details", None)
    if callable(extra):
        info.update(extra())
    return info


def default_class_names(config: ModelConfig, names: Sequence[str] | None) -> list[str]:
    """``names`` checked against ``config.num_classes``, or ``class_0 ... class_{C-1}``."""
    if names is None:
        return [f"class_{i}" for i in range(config.num_classes)]
    names = [str(n) for n in names]
    if len(names) != config.num_classes:
        raise BackendError(f"{len(names)} class names for a model with {config.num_classes} classes")
    return names
