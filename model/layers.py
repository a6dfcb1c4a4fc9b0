"""Building blocks of the ASFormer-style encoder and decoder (shapes: (batch, channels, time)).

The windowed ("dilated") attention gives each query exactly ``kernel`` keys, at the taps of the dilated
convolution: ``l + (j - kernel // 2) * dilation``. It is written as ``kernel`` shifted slices of a
zero-padded tensor, so there are no Python-built index tables and the time axis stays dynamic in ONNX.

Padded batches: every layer takes an optional ``valid`` mask (B, T) bool, True on each video's own frames
(a prefix). With it, a video padded to the batch's longest length computes exactly what it computes alone:
the hidden state is zeroed past its end before each conv and attention (so they see the zeros of the
unbatched zero padding), projected keys and values are zeroed there and count as outside the sequence, and
instance-norm statistics run over its valid frames only. ``valid=None`` is the unpadded path (unchanged).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_EPS = 1e-6  # the authors' soft validity mask: logits += log(valid + 1e-6)


def instance_norm(x: torch.Tensor, eps: float = 1e-5, valid: torch.Tensor | None = None) -> torch.Tensor:
    """InstanceNorm1d (affine=False, no running stats), written out so ONNX keeps the channel dim.

    With ``valid`` (B, T) the mean and variance are taken over each sample's valid frames only.
    """
    if valid is None:
        mean = x.mean(dim=-1, keepdim=True)
        centred = x - mean
        var = (centred * centred).mean(dim=-1, keepdim=True)
        return centred / torch.sqrt(var + eps)
    weight = valid.unsqueeze(1).to(x.dtype)
    count = weight.sum(dim=-1, keepdim=True).clamp(min=1.0)
    mean = (x * weight).sum(dim=-1, keepdim=True) / count
    centred = x - mean
    var = (centred * centred * weight).sum(dim=-1, keepdim=True) / count
    return centred / torch.sqrt(var + eps)


GAP_SCALES = tuple(2.0 ** k for k in range(12))  # frames: the decay lengths of the gap features
MAX_GAP_DOUBLINGS = 20  # last_visible_index looks back up to 2**20 frames in a graph of unknown length


def last_visible_index(frame_mask: torch.Tensor, doublings: int | None = None) -> torch.Tensor:
    """(B, T) bool -> (B, T) int64: the index of the last True frame at or before each frame (-1: none).

    A running maximum by pointer doubling (``doublings`` shifted maxima; default ``ceil(log2 T)``), so it
    exports to ONNX with a dynamic time axis (there with :data:`MAX_GAP_DOUBLINGS`).
    """
    length = frame_mask.shape[-1]
    idx = torch.arange(length, device=frame_mask.device).expand(frame_mask.shape)
    last = torch.where(frame_mask, idx, torch.full_like(idx, -1))
    if doublings is None:
        doublings = max(1, math.ceil(math.log2(max(2, length))))
    for k in range(doublings):
        shift = 2 ** k
        last = torch.maximum(last, F.pad(last, (shift, 0), value=-1)[..., :length])
    return last


def gap_features(frame_mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """(B, T) mask and :func:`last_visible_index` -> (B, len(GAP_SCALES), T): ``exp(-gap / s)`` per scale ``s``
    on masked frames (``gap``: frames since the last visible frame, or since the start), 0 on visible ones."""
    idx = torch.arange(frame_mask.shape[-1], device=frame_mask.device).expand(frame_mask.shape)
    gap = (idx - last).to(torch.float32)  # last = -1 before any visible frame: idx + 1
    scales = torch.tensor(GAP_SCALES, dtype=torch.float32, device=frame_mask.device).view(1, -1, 1)
    return torch.exp(-gap.unsqueeze(1) / scales) * (~frame_mask).unsqueeze(1).to(torch.float32)


def zero_padding(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """``x`` (B, C, T) with the frames past each sample's end (``valid`` False) set to 0; as is without a mask."""
    return x if valid is None else x * valid.unsqueeze(1).to(x.dtype)


def window_bias_rows(kernel: int, dilation: int, max_dist: int) -> list[int]:
    """Relative-bias offset for each window slot: ``min(j * dilation, max_dist)``.

    The authors count the offset from the window's start, not from the query, and clip it at
    ``max_dist`` (their table row is ``10000 + offset``); later slots of wide windows share a row.
    """
    return [min(j * dilation, max_dist) for j in range(kernel)]


class WindowedAttention(nn.Module):
    """Single-head attention over ``kernel`` dilated taps with a per-slot relative bias.

    ``logits_j = (q . k_j + bias_j) / sqrt(dim) + log(valid_j + 1e-6)``; the softmax weights are then
    multiplied by ``valid`` without renormalising (keys outside [0, T) are zero-padded), as in the
    authors' layer.
    """

    def __init__(self, *, qk_in: int, v_in: int, dim: int, kernel: int, dilation: int, max_dist: int) -> None:
        super().__init__()
        self.kernel, self.dilation, self.dim = kernel, dilation, dim
        self.q = nn.Conv1d(qk_in, dim, 1)
        self.k = nn.Conv1d(qk_in, dim, 1)
        self.v = nn.Conv1d(v_in, dim, 1)
        self.rel_bias = nn.Parameter(torch.randn(max_dist + 1))
        self.register_buffer("bias_rows", torch.tensor(window_bias_rows(kernel, dilation, max_dist)),
                             persistent=False)

    def windows(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, kernel, T): slot j holds x at ``t + (j - kernel//2) * dilation`` (0 outside)."""
        pad = (self.kernel // 2) * self.dilation
        length = x.shape[-1]
        padded = F.pad(x, (pad, pad))
        return torch.stack([padded[:, :, j * self.dilation: j * self.dilation + length]
                            for j in range(self.kernel)], dim=2)

    def validity(self, reference: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """(kernel, T) float mask: 1 where the slot's key lies inside the sequence.

        With ``valid`` (B, T): (B, kernel, T), the sequence of sample b being its valid prefix.
        """
        length = reference.shape[-1]
        pos = torch.arange(length, device=reference.device)
        offsets = (torch.arange(self.kernel, device=reference.device) - self.kernel // 2) * self.dilation
        tap = pos.unsqueeze(0) + offsets.unsqueeze(1)
        if valid is None:
            return ((tap >= 0) & (tap < length)).to(reference.dtype)
        lengths = valid.sum(dim=-1).view(-1, 1, 1)
        return ((tap >= 0).unsqueeze(0) & (tap.unsqueeze(0) < lengths)).to(reference.dtype)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               valid: torch.Tensor | None = None) -> torch.Tensor:
        """Attention from projected q, k, v (each (B, dim, T)) -> (B, dim, T); ``valid`` as in the module doc."""
        keys = self.windows(zero_padding(k, valid))
        values = self.windows(zero_padding(v, valid))
        logits = (q.unsqueeze(2) * keys).sum(dim=1)  # (B, kernel, T)
        bias = self.rel_bias[self.bias_rows].to(logits.dtype)
        logits = (logits + bias.unsqueeze(-1)) / math.sqrt(self.dim)
        inside = self.validity(q, valid)
        logits = logits + torch.log(inside + LOG_EPS)
        weights = torch.softmax(logits, dim=1) * inside
        return (weights.unsqueeze(1) * values).sum(dim=2)

    def forward(self, qk_input: torch.Tensor, v_input: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.attend(self.q(qk_input), self.k(qk_input), self.v(v_input), valid)


class FeedForward(nn.Sequential):
    """1x1 conv, ReLU, 1x1 conv (indices 0 and 2 match the authors' ``ffn_block``)."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Conv1d(dim, dim, 1), nn.ReLU(), nn.Conv1d(dim, dim, 1))


class EncoderLayer(nn.Module):
    """``x + FFN(IN(conv(xd) + attn(xd)))`` with ``xd = dropout(x)`` (the residual skips dropout)."""

    def __init__(self, *, dim: int, kernel: int, dilation: int, dropout: float, max_dist: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=(kernel // 2) * dilation, dilation=dilation)
        self.attn = WindowedAttention(qk_in=dim, v_in=dim, dim=dim, kernel=kernel, dilation=dilation,
                                      max_dist=max_dist)
        self.ffn = FeedForward(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        xd = zero_padding(self.dropout(x), valid)
        return x + self.ffn(instance_norm(self.conv(xd) + self.attn(xd, xd, valid), valid=valid))


class DecoderLayer(nn.Module):
    """Cross layer: q and k see ``concat(x, condition)``, v and the conv see ``x`` only.

    Dropout is applied separately to ``x`` and to the condition.
    """

    def __init__(self, *, dim: int, cond_dim: int, kernel: int, dilation: int, dropout: float,
                 max_dist: int) -> None:
        super().__init__()
        self.dim = dim
        self.conv = nn.Conv1d(dim, dim, kernel, padding=(kernel // 2) * dilation, dilation=dilation)
        self.attn = WindowedAttention(qk_in=dim + cond_dim, v_in=dim, dim=dim, kernel=kernel,
                                      dilation=dilation, max_dist=max_dist)
        self.ffn = FeedForward(dim)
        self.dropout = nn.Dropout(dropout)

    def condition_terms(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts of q and k that depend only on the condition (bias included).

        They do not change between denoising steps, so a sampler can compute them once per forecast.
        """
        cond = self.dropout(condition)
        wq = self.attn.q.weight[:, self.dim:]
        wk = self.attn.k.weight[:, self.dim:]
        return F.conv1d(cond, wq, self.attn.q.bias), F.conv1d(cond, wk, self.attn.k.bias)

    def forward(self, x: torch.Tensor, cond_q: torch.Tensor, cond_k: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """``cond_q``, ``cond_k`` come from :meth:`condition_terms` (computed once per condition)."""
        xd = zero_padding(self.dropout(x), valid)
        q = F.conv1d(xd, self.attn.q.weight[:, :self.dim]) + cond_q
        k = F.conv1d(xd, self.attn.k.weight[:, :self.dim]) + cond_k
        attn = self.attn.attend(q, k, self.attn.v(xd), valid)
        return x + self.ffn(instance_norm(self.conv(xd) + attn, valid=valid))


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim): ``[sin(t f_i), cos(t f_i)]`` with ``f_i = exp(-ln(1e4) i / (dim/2 - 1))``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=timesteps.device, dtype=torch.float32)
                      / (half - 1))
    args = timesteps.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)
