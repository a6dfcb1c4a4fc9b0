"""Diffusion arithmetic: the cosine schedule, q-sampling and the DDIM step (the one implementation).

Labels live in ``[-snr_scale, snr_scale]`` (one-hot * 2 - 1, times the SNR scale); the decoder sees them
mapped to ``[0, 1]`` and predicts x0 (not the noise). Every backend (torch, ONNX Runtime, TensorRT) runs
the loop in :func:`ddim_sample`; only the ``denoise`` callable differs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch


def cosine_alphas_cumprod(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """float64 cumulative alphas of the cosine schedule (betas clipped at ``max_beta``)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = torch.clamp(1 - f[1:] / f[:-1], max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0)


def ddim_timesteps(num_steps: int, num_timesteps: int = 1000) -> list[tuple[int, int]]:
    """(t, t_prev) pairs from ``linspace(-1, S-1, num_steps+1)`` truncated to int, in reverse.

    For 25 of 1000 steps: (999, 959), (959, 919), ..., (39, -1). ``t_prev = -1`` marks the last step.
    """
    times = torch.linspace(-1, num_timesteps - 1, steps=num_steps + 1).int().tolist()
    times = list(reversed(times))
    return list(zip(times[:-1], times[1:]))


def labels_to_signal(onehot: torch.Tensor, snr_scale: float) -> torch.Tensor:
    """One-hot/probabilities in [0, 1] -> x0 in [-scale, scale]."""
    return (onehot * 2.0 - 1.0) * snr_scale


def signal_to_unit(x: torch.Tensor, snr_scale: float) -> torch.Tensor:
    """Clamp to [-scale, scale] and map to [0, 1] (what the decoder consumes)."""
    return (torch.clamp(x, -snr_scale, snr_scale) / snr_scale + 1.0) / 2.0


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Forward process ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` for per-sample steps ``t`` (B,)."""
    abar = alphas_cumprod.to(x0.device)[t].to(x0.dtype).view(-1, *([1] * (x0.dim() - 1)))
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise


@dataclass(frozen=True)
class DDIMCoefficients:
    """Scalars of one DDIM step from t to t_prev (computed in float64)."""

    sqrt_recip_a: float  # sqrt(1 / abar_t)
    sqrt_recipm1_a: float  # sqrt(1 / abar_t - 1)
    sqrt_a_prev: float
    c: float  # sqrt(1 - abar_prev - sigma^2)
    sigma: float


def ddim_coefficients(alphas_cumprod: torch.Tensor, t: int, t_prev: int, eta: float) -> DDIMCoefficients:
    """DDIM (Song et al.) coefficients: ``sigma = eta sqrt((1 - a/a')(1 - a')/(1 - a))`` with a' = abar_prev."""
    a = float(alphas_cumprod[t])
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    sigma = eta * math.sqrt(max((1 - a / a_prev) * (1 - a_prev) / (1 - a), 0.0))
    c = math.sqrt(max(1 - a_prev - sigma ** 2, 0.0))
    return DDIMCoefficients(math.sqrt(1 / a), math.sqrt(1 / a - 1), math.sqrt(a_prev), c, sigma)


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, coef: DDIMCoefficients,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update: ``eps = (sqrt(1/a) x_t - x0) / sqrt(1/a - 1)``, ``x' = sqrt(a') x0 + c eps + sigma z``.

    ``x_t`` is the unclamped current sample; ``x0`` the clamped prediction in signal space.
    """
    eps = (coef.sqrt_recip_a * x_t - x0) / coef.sqrt_recipm1_a
    out = coef.sqrt_a_prev * x0 + coef.c * eps
    if coef.sigma > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        out = out + coef.sigma * noise
    return out


def sample_noise(shape: tuple[int, ...], num_steps: int, *, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """All the randomness of one DDIM run: (num_steps, *shape); [0] is x_T, [i] the z of step i.

    Drawn on the CPU from ``generator`` so every backend and device gets identical numbers for a seed.
    """
    noise = torch.randn((num_steps, *shape), generator=generator, dtype=torch.float32)
    return noise.to(device)


DenoiseFn = Callable[[int, torch.Tensor], torch.Tensor]
"""``denoise(t, x_t01) -> x0 logits``: one decoder pass for step ``t`` on labels mapped to [0, 1]."""


def ddim_sample(denoise: DenoiseFn, shape: tuple[int, ...], *, alphas_cumprod: torch.Tensor,
                num_steps: int, eta: float, snr_scale: float, noise: torch.Tensor) -> torch.Tensor:
    """Run the DDIM loop from pure noise and return class probabilities of shape ``shape`` (B, C, T).

    Per step: clamp x_t, map to [0, 1], decode, softmax over classes, map back to signal space and clamp
    (the decoder's x0); then :func:`ddim_step`. The last step returns the probabilities themselves.
    ``noise`` comes from :func:`sample_noise` (shape (num_steps, *shape)).
    """
    if noise.shape != (num_steps, *shape):
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(num_steps, *shape)}")
    num_timesteps = alphas_cumprod.shape[0]
    x_t = noise[0]
    probs = None
    for i, (t, t_prev) in enumerate(ddim_timesteps(num_steps, num_timesteps)):
        logits = denoise(t, signal_to_unit(x_t, snr_scale))
        probs = torch.softmax(logits.float(), dim=1)
        if t_prev < 0:
            break
        x0 = torch.clamp(labels_to_signal(probs, snr_scale), -snr_scale, snr_scale)
        coef = ddim_coefficients(alphas_cumprod, t, t_prev, eta)
        x_t = ddim_step(x_t, x0, coef, noise[i + 1] if i + 1 < num_steps else None)
    assert probs is not None
    return probs


def training_timesteps(num_timesteps: int, ddim_steps: int | None = None) -> torch.Tensor:
    """The steps training draws from, uniformly: all of ``0..S-1``, or (given ``ddim_steps``) only the
    steps the DDIM sampler visits at inference (:func:`ddim_timesteps`), "a shorter schedule trained for"."""
    if ddim_steps is None:
        return torch.arange(num_timesteps)
    return torch.tensor(sorted(t for t, _ in ddim_timesteps(ddim_steps, num_timesteps)))


def min_snr_weights(steps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float,
                    candidates: torch.Tensor) -> torch.Tensor:
    """Min-SNR-gamma weights for x0 prediction (Hang et al. 2023): ``min(SNR_t, gamma)``, SNR = abar/(1-abar).

    Divided by the mean of the same quantity over ``candidates`` (the steps training draws from,
    uniformly), so the expected weight of a drawn step is 1 and the loss scale stays that of no weighting.
    """
    abar = alphas_cumprod.to(torch.float64)
    snr_min = torch.clamp(abar / (1.0 - abar), max=float(gamma))
    norm = snr_min[candidates.to(abar.device)].mean()
    return (snr_min[steps.to(abar.device)] / norm).to(torch.float32)
