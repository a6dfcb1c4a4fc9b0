"""The ActFusion network: masked encoder g, denoising decoder h, and the public inference surface.

Shapes are (batch, channels, time). ``features`` are (B, input_dim, T); ``frame_mask`` is (B, T) bool,
True for observed frames and False where the learnable mask token replaces the input (Eq. 3). ``valid``
(B, T) bool, optional, marks each video's own frames in a padded batch (a prefix per row; see
:mod:`actfusion_model.layers`): a padded video's outputs on its frames equal those of the video run alone.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from actfusion_model.config import LossConfig, ModelConfig
from actfusion_model.diffusion import (
    cosine_alphas_cumprod,
    labels_to_signal,
    q_sample,
    sample_noise,
    signal_to_unit,
    training_timesteps,
)
from actfusion_model.forecast import EagerBackend, Forecast, denoise_loop, forecast, schedule_for
from actfusion_model.layers import (
    GAP_SCALES,
    DecoderLayer,
    EncoderLayer,
    gap_features,
    last_visible_index,
    sinusoidal_embedding,
)


class Encoder(nn.Module):
    """Input dropouts, 1x1 conv, ``enc_layers`` mixed layers (dilation 2**i), 1x1 conv to class logits."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv_in = nn.Conv1d(cfg.input_dim, cfg.enc_dim, 1)
        self.layers = nn.ModuleList(
            EncoderLayer(dim=cfg.enc_dim, kernel=cfg.enc_kernel, dilation=2 ** i, dropout=cfg.enc_dropout,
                         max_dist=cfg.rel_max_dist)
            for i in range(cfg.enc_layers))
        self.conv_out = nn.Conv1d(cfg.enc_dim, cfg.num_classes, 1)
        # masked_input "carry": frames since the last visible frame, embedded after conv_in.
        self.gap_in = nn.Linear(len(GAP_SCALES), cfg.enc_dim, bias=False) if cfg.masked_input == "carry" else None

    def input_dropout(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout2d over whole feature channels, then over whole frames (training only)."""
        if not self.training:
            return x
        b, c, t = x.shape
        if self.cfg.enc_channel_dropout > 0:
            x = x * F.dropout(x.new_ones(b, c, 1), self.cfg.enc_channel_dropout, True)
        if self.cfg.enc_temporal_dropout > 0:
            x = x * F.dropout(x.new_ones(b, 1, t), self.cfg.enc_temporal_dropout, True)
        return x

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None,
                gap: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D, T) structured input (and, for ``masked_input: carry``, its (B, G, T) gap features) ->
        (logits (B, C, T), condition (B, cond_dim, T))."""
        h = self.conv_in(self.input_dropout(x))
        if self.gap_in is not None:
            if gap is None:
                raise ValueError("model.masked_input 'carry' needs the gap features (ActFusion.encoder_input)")
            h = h + self.gap_in(gap.transpose(1, 2)).transpose(1, 2)
        taken = []
        for i, layer in enumerate(self.layers):
            h = layer(h, valid)
            if i in self.cfg.cond_layers:
                taken.append(h)
        return self.conv_out(h), torch.cat(taken, dim=1)


class Decoder(nn.Module):
    """Time MLP, 1x1 conv on noisy labels, ``dec_layers`` cross layers, 1x1 conv to x0 logits.

    With ``self_condition`` the 1x1 input conv also reads C channels of a previous x0 estimate
    (probabilities; zeros when there is none): ``conv_in(concat(noisy_labels01, previous_x0))``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.time_mlp = nn.ModuleList([nn.Linear(cfg.time_emb_dim, cfg.time_emb_dim),
                                       nn.Linear(cfg.time_emb_dim, cfg.time_emb_dim)])
        self.time_proj = nn.Linear(cfg.time_emb_dim, cfg.dec_dim)
        in_channels = cfg.num_classes * (2 if cfg.self_condition else 1)
        self.conv_in = nn.Conv1d(in_channels, cfg.dec_dim, 1)
        # Optional: the condition also enters the decoder's hidden state (not only its attention's q/k).
        self.cond_in = nn.Conv1d(cfg.cond_dim, cfg.dec_dim, 1) if cfg.dec_input_condition else None
        self.layers = nn.ModuleList(
            DecoderLayer(dim=cfg.dec_dim, cond_dim=cfg.cond_dim, kernel=cfg.dec_kernel, dilation=2 ** i,
                         dropout=cfg.dec_dropout, max_dist=cfg.rel_max_dist)
            for i in range(cfg.dec_layers))
        self.conv_out = nn.Conv1d(cfg.dec_dim, cfg.num_classes, 1)

    def time_bias(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) steps -> (B, dec_dim, 1): ``time_proj(swish(MLP(sinusoid(t))))``, added once after conv_in."""
        emb = sinusoidal_embedding(timesteps, self.cfg.time_emb_dim)
        emb = self.time_mlp[1](F.silu(self.time_mlp[0](emb)))
        return self.time_proj(F.silu(emb)).unsqueeze(-1)

    def condition_terms(self, condition: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the condition's share of q and k: constant across the DDIM steps of one forecast."""
        terms = [layer.condition_terms(condition) for layer in self.layers]
        if self.cond_in is not None:
            terms.append((self.cond_in(condition), condition.new_zeros(())))
        return terms

    def decoder_input(self, noisy_labels01: torch.Tensor, previous_x0: torch.Tensor | None) -> torch.Tensor:
        """What ``conv_in`` reads: the noisy labels, plus the previous x0 estimate when self-conditioned."""
        if not self.cfg.self_condition:
            if previous_x0 is not None:
                raise ValueError("previous_x0 given to a decoder without model.self_condition")
            return noisy_labels01
        if previous_x0 is None:
            previous_x0 = torch.zeros_like(noisy_labels01)
        return torch.cat([noisy_labels01, previous_x0.to(noisy_labels01.dtype)], dim=1)

    def forward_prepared(self, terms: list[tuple[torch.Tensor, torch.Tensor]], timesteps: torch.Tensor,
                         noisy_labels01: torch.Tensor, valid: torch.Tensor | None = None,
                         previous_x0: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder pass given :meth:`condition_terms`; returns x0 logits (B, C, T)."""
        h = self.conv_in(self.decoder_input(noisy_labels01, previous_x0)) + self.time_bias(timesteps)
        if self.cond_in is not None:
            h = h + terms[-1][0]
        for layer, (cq, ck) in zip(self.layers, terms):
            h = layer(h, cq, ck, valid)
        return self.conv_out(h)

    def forward(self, condition: torch.Tensor, timesteps: torch.Tensor, noisy_labels01: torch.Tensor,
                valid: torch.Tensor | None = None, previous_x0: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_prepared(self.condition_terms(condition), timesteps, noisy_labels01, valid,
                                     previous_x0)


class ActFusion(nn.Module):
    """One diffusion model for segmentation (no mask) and anticipation (anticipative mask)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mask_token = nn.Parameter(torch.empty(1, cfg.input_dim, 1))
        nn.init.xavier_uniform_(self.mask_token)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(cfg.num_timesteps), persistent=False)

    # -- the small public surface ------------------------------------------------------------
    def structure_input(self, features: torch.Tensor, frame_mask: torch.Tensor | None) -> torch.Tensor:
        """Eq. 3: ``F' = F * M + (1 - M) * m`` as a ``where`` (observed frames kept in order).

        With ``masked_input: carry`` a masked frame reads the features of the last visible frame before it
        plus the token (the token alone where no frame before it is visible).
        """
        return self.encoder_input(features, frame_mask)[0]

    def encoder_input(self, features: torch.Tensor, frame_mask: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the encoder reads: the structured input (B, D, T) and, for ``masked_input: carry``, the gap
        features (B, G, T) of :func:`actfusion_model.layers.gap_features` (else None)."""
        carry = self.cfg.masked_input == "carry"
        if frame_mask is None:
            if not carry:
                return features, None
            frame_mask = torch.ones(features.shape[0], features.shape[2], dtype=torch.bool, device=features.device)
        if frame_mask.shape != (features.shape[0], features.shape[2]):
            raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}, expected "
                             f"{(features.shape[0], features.shape[2])} (batch, time)")
        token = self.mask_token.to(features.dtype)
        if not carry:
            return torch.where(frame_mask.unsqueeze(1), features, token), None
        last = last_visible_index(frame_mask)
        src = last.clamp(min=0).unsqueeze(1).expand(-1, features.shape[1], -1)
        carried = torch.gather(features, 2, src) * (last >= 0).unsqueeze(1).to(features.dtype)
        return torch.where(frame_mask.unsqueeze(1), features, carried + token), gap_features(frame_mask, last)

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor | None = None,
               valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D, T) features -> (encoder logits (B, C, T), decoder condition (B, cond_dim, T))."""
        self._check_features(features)
        if valid is not None and valid.shape != (features.shape[0], features.shape[2]):
            raise ValueError(f"valid has shape {tuple(valid.shape)}, expected "
                             f"{(features.shape[0], features.shape[2])} (batch, time)")
        x, gap = self.encoder_input(features, frame_mask)
        return self.encoder(x, valid, gap)

    def denoise(self, condition: torch.Tensor, timestep: torch.Tensor | int, noisy_labels01: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """One decoder pass: condition (B, cond_dim, T), step (B,) or int, labels in [0,1] (B, C, T) -> x0 logits."""
        return self.decoder(condition, self._steps(timestep, condition), noisy_labels01, valid)

    @torch.no_grad()
    def sample(self, condition: torch.Tensor, *, steps: int | None = None, eta: float | None = None,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM from pure noise given a condition (B, cond_dim, T) -> probabilities (B, C, T).

        The loop of :func:`actfusion_model.forecast.forecast` (:func:`~actfusion_model.forecast.denoise_loop`) with
        this model as an :class:`~actfusion_model.forecast.EagerBackend` (on the model's device, in eval mode),
        self-conditioning included. Randomness comes only from ``noise`` (see
        :func:`actfusion_model.diffusion.sample_noise`) or ``generator``.
        """
        backend = EagerBackend(self)
        schedule = schedule_for(self.cfg, steps, eta)
        shape = (condition.shape[0], self.cfg.num_classes, condition.shape[2])
        noise = self._noise(shape, schedule.num_steps, generator, noise)
        state = backend.prepare(condition.to(backend.device), shape[0])
        return denoise_loop(backend, state, schedule, noise)

    @torch.no_grad()
    def segment(self, features: torch.Tensor, *, steps: int | None = None,
                generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Temporal action segmentation of a batch: no mask, full videos (B, D, T) -> probabilities (B, C, T).

        Each video is one :func:`actfusion_model.forecast.forecast` with horizon 0 (on the model's device, in
        eval mode); ``noise`` ``(steps, B, C, T)``, or one draw of that shape from ``generator``, gives video
        ``b`` its ``noise[:, b:b+1]``, as one batched run would.
        """
        self._check_features(features)
        backend = EagerBackend(self)
        schedule = schedule_for(self.cfg, steps)
        shape = (features.shape[0], self.cfg.num_classes, features.shape[2])
        noise = self._noise(shape, schedule.num_steps, generator, noise)
        probs = [forecast(backend, features[b:b + 1], horizon=0, schedule=schedule, noise=noise[:, b:b + 1]
                          ).observed_probs for b in range(shape[0])]
        return torch.cat(probs, dim=0).to(backend.device)

    @torch.no_grad()
    def anticipate(self, observed_features: torch.Tensor, horizon: int | None = None, ratio: float = 4.0,
                   max_horizon: int | None = None, *, steps: int | None = None,
                   generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> Forecast:
        """Segment the observed prefix (1, D, N_O) and forecast H future frames.

        H is ``horizon`` when given (ground-truth-length protocol), else ``ceil(ratio * N_O)`` capped at
        ``max_horizon`` (the deployable r*N^O rule). A thin wrapper over :func:`actfusion_model.forecast.forecast` with
        this model as an :class:`~actfusion_model.forecast.EagerBackend` (on the model's device, in eval mode), so it
        is the deployed forecast exactly; its :class:`~actfusion_model.forecast.Forecast` on the model's device.
        """
        backend = EagerBackend(self)
        out = forecast(backend, observed_features, horizon=horizon, ratio=ratio, max_horizon=max_horizon,
                       steps=steps, noise=noise, generator=generator)
        return Forecast(*(part.to(backend.device) for part in out))

    # -- helpers -----------------------------------------------------------------------------
    def _check_features(self, features: torch.Tensor) -> None:
        if features.dim() != 3 or features.shape[1] != self.cfg.input_dim:
            raise ValueError(f"features must be (batch, {self.cfg.input_dim}, time), got {tuple(features.shape)}")
        if features.shape[2] < 1:
            raise ValueError("features need at least one frame")

    @staticmethod
    def _noise(shape: tuple[int, int, int], num_steps: int, generator: torch.Generator | None,
               noise: torch.Tensor | None) -> torch.Tensor:
        """``noise`` checked to be ``(num_steps, *shape)``, or drawn from ``generator`` (on the CPU)."""
        if noise is None:
            return sample_noise(shape, num_steps, generator=generator)
        if tuple(noise.shape) != (num_steps, *shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {(num_steps, *shape)}")
        return noise

    @staticmethod
    def _steps(timestep: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        if isinstance(timestep, torch.Tensor):
            return timestep.to(like.device).reshape(-1).expand(like.shape[0])
        return torch.full((like.shape[0],), int(timestep), dtype=torch.long, device=like.device)


class TrainingOutputs(NamedTuple):
    """One training forward pass: encoder logits (B, C, T), decoder x0 logits (K*B, C, T), steps (K*B,)."""

    enc_logits: torch.Tensor
    dec_logits: torch.Tensor
    steps: torch.Tensor


def training_outputs(model: ActFusion, features: torch.Tensor, frame_mask: torch.Tensor | None,
                     targets: torch.Tensor, *, generator: torch.Generator | None = None,
                     valid: torch.Tensor | None = None, loss_cfg: LossConfig | None = None) -> TrainingOutputs:
    """One training forward pass (see :class:`TrainingOutputs`).

    Per decoder run a step ``s`` uniform over :func:`~actfusion_model.diffusion.training_timesteps`;
    ``x_s = q_sample(onehot * 2 - 1) * scale``, clamped and mapped to [0, 1] for the decoder, which is
    conditioned on the masked-input encoder's features. Frames with unknown targets (negative) get an
    all-zero one-hot. ``loss_cfg.dec_timesteps_per_video`` = K runs the decoder K times per video on one
    encoder pass (the condition repeated along the batch: run k of video b at ``k*B + b``). With
    ``model.self_condition`` each run, with probability 1/2, first decodes without the previous estimate
    (no gradient) and then feeds that pass's x0 probabilities back. Random draws, in order, from
    ``generator``: steps, noise, then (self-conditioning only) the coin flips; K=1 without the options
    draws exactly what the original single-run pass drew.
    """
    cfg = model.cfg
    loss_cfg = loss_cfg or LossConfig()
    repeats = loss_cfg.dec_timesteps_per_video
    enc_logits, condition = model.encode(features, frame_mask, valid)
    b, _, t = enc_logits.shape
    onehot = F.one_hot(targets.clamp(min=0), cfg.num_classes).permute(0, 2, 1).to(features.dtype)
    onehot = onehot * (targets >= 0).unsqueeze(1).to(features.dtype)
    if repeats > 1:
        onehot, condition = onehot.repeat(repeats, 1, 1), condition.repeat(repeats, 1, 1)
        valid = None if valid is None else valid.repeat(repeats, 1)
    runs = b * repeats
    if loss_cfg.train_on_ddim_steps:
        choices = training_timesteps(cfg.num_timesteps, cfg.ddim_steps)
        steps = choices[torch.randint(0, choices.numel(), (runs,), generator=generator)].to(features.device)
    else:
        steps = torch.randint(0, cfg.num_timesteps, (runs,), generator=generator).to(features.device)
    noise = torch.randn(onehot.shape, generator=generator).to(features.device, features.dtype)
    x_s = q_sample(labels_to_signal(onehot, cfg.snr_scale), steps, noise, model.alphas_cumprod)
    x01 = signal_to_unit(x_s, cfg.snr_scale)
    terms = model.decoder.condition_terms(condition)
    previous = None
    if cfg.self_condition:
        use = torch.rand((runs,), generator=generator).to(features.device) < 0.5
        with torch.no_grad():
            first = model.decoder.forward_prepared(terms, steps, x01, valid)
        previous = torch.softmax(first.float(), dim=1).to(x01.dtype) * use.view(-1, 1, 1).to(x01.dtype)
    dec_logits = model.decoder.forward_prepared(terms, steps, x01, valid, previous)
    return TrainingOutputs(enc_logits, dec_logits, steps)
