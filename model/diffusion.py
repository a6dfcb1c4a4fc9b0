"""Diffusion arithmetic: the cosine schedule, q-sampling and the DDIM step (the one implementation).

Labels live in ``[-snr_scale, snr_scale]`` (one-hot * 2 - 1, times the SNR scale); the decoder sees them
mapped to ``[0, 1]`` and predicts x0 (not the noise). Every backend (torch, ONNX Runtime, TensorRT) runs
the loop in :func:`ddim_sample` over a :class:`DDIMSchedule` built once; only the ``denoise`` callable differs.
"""
from __future__ import annotations

import functools
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
    """Forward process (paper Eq. 1) ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps`` for per-sample steps
    ``t`` (B,)."""
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
    """DDIM (Song et al. 2021) coefficients: ``sigma = eta sqrt((1 - a/a')(1 - a')/(1 - a))`` (their Eq. 16)
    with a = abar_t, a' = abar_prev (1 after the last step)."""
    a = float(alphas_cumprod[t])
    a_prev = float(alphas_cumprod[t_prev]) if t_prev >= 0 else 1.0
    sigma = eta * math.sqrt(max((1 - a / a_prev) * (1 - a_prev) / (1 - a), 0.0))
    c = math.sqrt(max(1 - a_prev - sigma ** 2, 0.0))
    return DDIMCoefficients(math.sqrt(1 / a), math.sqrt(1 / a - 1), math.sqrt(a_prev), c, sigma)


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, coef: DDIMCoefficients,
              noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update (DDIM paper Eq. 12): ``eps = (sqrt(1/a) x_t - x0) / sqrt(1/a - 1)`` (the noise implied
    by the predicted x0), ``x' = sqrt(a') x0 + c eps + sigma z`` with ``c = sqrt(1 - a' - sigma^2)``.

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


@dataclass(frozen=True)
class DDIMStepOutput:
    """What one DDIM step returns (as diffusers' ``DDIMSchedulerOutput``)."""

    prev_sample: torch.Tensor  # x_{t_prev}, unclamped, signal space
    pred_x0: torch.Tensor  # the decoder's x0 in signal space, clamped to [-snr_scale, snr_scale]


@dataclass(frozen=True)
class DDIMSchedule:
    """The sampling schedule of one forecast configuration, built once and reused by every forecast.

    ``pairs[i] = (t, t_prev)`` are the DDIM time pairs (:func:`ddim_timesteps`; ``t_prev = -1`` on the
    last); ``coefficients[i]`` the float64-derived scalars of the step from ``t`` to ``t_prev``
    (:func:`ddim_coefficients`). Paper Eq. 1 is the forward process ``x^s = sqrt(abar_s) x^0 +
    sqrt(1 - abar_s) eps`` (:func:`q_sample`); inference inverts it from pure noise with the decoder
    predicting x^0 at each visited step (paper Eq. 2), one DDIM update per pair (DDIM paper Eq. 12, sigma
    from its Eq. 16).
    """

    num_timesteps: int
    eta: float
    snr_scale: float
    pairs: tuple[tuple[int, int], ...]
    coefficients: tuple[DDIMCoefficients, ...]

    @classmethod
    def create(cls, num_steps: int, *, num_timesteps: int = 1000, eta: float = 0.0, snr_scale: float = 1.0,
               alphas_cumprod: torch.Tensor | None = None) -> "DDIMSchedule":
        """``num_steps`` of the cosine schedule over ``num_timesteps`` (or of the given ``alphas_cumprod``)."""
        if alphas_cumprod is None:
            alphas_cumprod = cosine_alphas_cumprod(num_timesteps)
        num_timesteps = int(alphas_cumprod.shape[0])
        if not 1 <= int(num_steps) <= num_timesteps:
            raise ValueError(f"ddim steps must be in [1, {num_timesteps}], got {num_steps}")
        alphas = alphas_cumprod.detach().to("cpu", torch.float64)
        pairs = tuple(ddim_timesteps(int(num_steps), num_timesteps))
        coefs = tuple(ddim_coefficients(alphas, t, t_prev, float(eta)) for t, t_prev in pairs)
        return cls(num_timesteps, float(eta), float(snr_scale), pairs, coefs)

    @property
    def num_steps(self) -> int:
        return len(self.pairs)

    def step(self, index: int, x_t: torch.Tensor, probs: torch.Tensor,
             noise: torch.Tensor | None) -> DDIMStepOutput:
        """Step ``index``: the decoder's class probabilities -> x0 in signal space (clamped), then the update
        ``x_{t_prev} = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma z`` (DDIM Eq. 12)."""
        x0 = torch.clamp(labels_to_signal(probs, self.snr_scale), -self.snr_scale, self.snr_scale)
        return DDIMStepOutput(ddim_step(x_t, x0, self.coefficients[index], noise), x0)


@functools.lru_cache(maxsize=64)
def ddim_schedule(num_steps: int, num_timesteps: int = 1000, eta: float = 0.0,
                  snr_scale: float = 1.0) -> DDIMSchedule:
    """The cosine-schedule :class:`DDIMSchedule` for these settings, built once and then shared (frozen)."""
    return DDIMSchedule.create(num_steps, num_timesteps=num_timesteps, eta=eta, snr_scale=snr_scale)


def ddim_sample(denoise: DenoiseFn, schedule: DDIMSchedule, noise: torch.Tensor) -> torch.Tensor:
    """Run the DDIM loop from pure noise and return class probabilities of shape ``noise.shape[1:]`` (B, C, T).

    Per step: clamp x_t, map to [0, 1], decode, softmax over classes, then :meth:`DDIMSchedule.step`.
    The last step returns the probabilities themselves. ``noise`` comes from :func:`sample_noise`
    (shape (num_steps, B, C, T); [0] is x_T, [i] the z of step i).
    """
    if noise.dim() != 4 or noise.shape[0] != schedule.num_steps:
        raise ValueError(f"noise has shape {tuple(noise.shape)}, expected ({schedule.num_steps}, batch, "
                         f"classes, time)")
    x_t = noise[0]
    probs = None
    for i, (t, t_prev) in enumerate(schedule.pairs):
        logits = denoise(t, signal_to_unit(x_t, schedule.snr_scale))
        probs = torch.softmax(logits.float(), dim=1)
        if t_prev < 0:
            break
        x_t = schedule.step(i, x_t, probs, noise[i + 1]).prev_sample
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
