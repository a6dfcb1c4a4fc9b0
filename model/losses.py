"""Training losses (Eqs. 8-12), applied to both encoder and decoder outputs of shape (B, C, T)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from model.config import LossConfig
from model.masking import IGNORE_INDEX


def frame_ce(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Hard frame-wise cross-entropy, optionally class-weighted; frames with IGNORE_INDEX are skipped."""
    return F.cross_entropy(logits, targets, weight=class_weights, ignore_index=IGNORE_INDEX)


def soft_frame_ce(logits: torch.Tensor, soft_targets: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``-sum_c g_c log_softmax`` with Gaussian-soft targets (B, C, T); mean over frames with a known label."""
    per_frame = -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    known = targets != IGNORE_INDEX
    return per_frame[known].mean() if known.any() else per_frame.sum() * 0.0


def smoothing_loss(logits: torch.Tensor, clamp: float = 16.0) -> torch.Tensor:
    """Truncated MSE between adjacent frames' log-probabilities (the previous frame detached)."""
    if logits.shape[-1] < 2:
        return logits.sum() * 0.0
    cur = F.log_softmax(logits[:, :, 1:], dim=1)
    prev = F.log_softmax(logits.detach()[:, :, :-1], dim=1)
    return torch.clamp((cur - prev) ** 2, min=0.0, max=clamp).mean()


def boundary_loss(logits: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    """BCE between ``1 - <p_t, p_{t-1}>`` (previous detached) and the smoothed boundary targets (B, T)."""
    if logits.shape[-1] < 2:
        return logits.sum() * 0.0
    probs = torch.softmax(logits, dim=1)
    pred = 1.0 - (probs[:, :, 1:] * probs.detach()[:, :, :-1]).sum(dim=1)
    pred = pred.clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(pred, boundary[:, 1:].to(pred.dtype))


def actfusion_loss(enc_logits: torch.Tensor, dec_logits: torch.Tensor, targets: torch.Tensor,
                   boundary: torch.Tensor, cfg: LossConfig, *, class_weights: torch.Tensor | None = None,
                   soft_targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Total = L_enc + L_dec with the per-preset weights; returns every term and ``total``."""
    def ce(logits: torch.Tensor) -> torch.Tensor:
        if cfg.soft_label_sigma is not None:
            if soft_targets is None:
                raise ValueError("soft_label_sigma is set: pass soft_targets")
            return soft_frame_ce(logits, soft_targets, targets)
        return frame_ce(logits, targets, class_weights if cfg.class_weighting else None)

    terms = {
        "enc_ce": ce(enc_logits), "enc_smooth": smoothing_loss(enc_logits, cfg.smooth_clamp),
        "dec_ce": ce(dec_logits), "dec_smooth": smoothing_loss(dec_logits, cfg.smooth_clamp),
    }
    if cfg.enc_boundary:
        terms["enc_boundary"] = boundary_loss(enc_logits, boundary)
    if cfg.dec_boundary:
        terms["dec_boundary"] = boundary_loss(dec_logits, boundary)
    weights = {"enc_ce": cfg.enc_ce, "enc_smooth": cfg.enc_smooth, "enc_boundary": cfg.enc_boundary,
               "dec_ce": cfg.dec_ce, "dec_smooth": cfg.dec_smooth, "dec_boundary": cfg.dec_boundary}
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms
