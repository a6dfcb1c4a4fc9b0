"""Training losses (Eqs. 8-12), applied to both encoder and decoder outputs of shape (B, C, T).

Every term is a mean over *elements*: frames with a known label for the cross-entropies, adjacent frame
pairs inside the video for the smoothing (times classes) and boundary terms. In a padded batch (``valid``
(B, T) bool, True on each video's own frames) padded frames and pairs are left out, so a batch's term is
the frame-weighted combination ``sum_b n_b L_b / sum_b n_b`` of the per-video terms ``L_b`` (``n_b`` the
video's element count); for one video it is exactly the unbatched term. Optional per-sample weights
``sample_weights`` (B,) multiply each sample's elements before that mean (``sum_b w_b n_b L_b / sum_b n_b``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from actfusion_model.config import LossConfig
from actfusion_model.masking import IGNORE_INDEX


def _weighted_mean(per_element: torch.Tensor, keep: torch.Tensor | None,
                   sample_weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``per_element`` (B, ...) over the True entries of ``keep``, each sample scaled by its weight."""
    if sample_weights is not None:
        per_element = per_element * sample_weights.to(per_element.dtype).view(-1, *([1] * (per_element.dim() - 1)))
    if keep is None:
        return per_element.mean()
    keep = keep.expand_as(per_element)
    return per_element[keep].mean() if keep.any() else per_element.sum() * 0.0


def frame_ce(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor | None = None,
             sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Hard frame-wise cross-entropy; frames with IGNORE_INDEX are skipped.

    Class-weighted as the authors do: each frame's loss times its class weight, averaged over the known
    frames (not divided by the sum of the frames' weights, which ``reduction='mean'`` would do).
    """
    if class_weights is None and sample_weights is None:
        return F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX)
    per_frame = F.cross_entropy(logits, targets, weight=class_weights, ignore_index=IGNORE_INDEX, reduction="none")
    return _weighted_mean(per_frame, targets != IGNORE_INDEX, sample_weights)


def soft_frame_ce(logits: torch.Tensor, soft_targets: torch.Tensor, targets: torch.Tensor,
                  sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``-sum_c g_c log_softmax`` with Gaussian-soft targets (B, C, T); mean over frames with a known label."""
    per_frame = -(soft_targets * F.log_softmax(logits, dim=1)).sum(dim=1)
    return _weighted_mean(per_frame, targets != IGNORE_INDEX, sample_weights)


def _pair_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """(B, T) valid frames -> (B, 1, T-1): pairs (t-1, t) inside the video (valid is a prefix per row)."""
    return None if valid is None else valid[:, 1:].unsqueeze(1)


def smoothing_loss(logits: torch.Tensor, clamp: float = 16.0, valid: torch.Tensor | None = None,
                   sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Truncated MSE between adjacent frames' log-probabilities (the previous frame detached)."""
    if logits.shape[-1] < 2:
        return logits.sum() * 0.0
    cur = F.log_softmax(logits[:, :, 1:], dim=1)
    prev = F.log_softmax(logits.detach()[:, :, :-1], dim=1)
    return _weighted_mean(torch.clamp((cur - prev) ** 2, min=0.0, max=clamp), _pair_mask(valid), sample_weights)


def boundary_loss(logits: torch.Tensor, boundary: torch.Tensor, valid: torch.Tensor | None = None,
                  sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """BCE between ``1 - <p_t, p_{t-1}>`` (previous detached) and the smoothed boundary targets (B, T)."""
    if logits.shape[-1] < 2:
        return logits.sum() * 0.0
    probs = torch.softmax(logits, dim=1)
    pred = 1.0 - (probs[:, :, 1:] * probs.detach()[:, :, :-1]).sum(dim=1)
    pred = pred.clamp(1e-6, 1 - 1e-6)
    target = boundary[:, 1:].to(pred.dtype)
    if valid is None and sample_weights is None:
        return F.binary_cross_entropy(pred, target)
    per_pair = F.binary_cross_entropy(pred, target, reduction="none")
    pairs = _pair_mask(valid)
    return _weighted_mean(per_pair, None if pairs is None else pairs[:, 0], sample_weights)


def actfusion_loss(enc_logits: torch.Tensor, dec_logits: torch.Tensor, targets: torch.Tensor,
                   boundary: torch.Tensor, cfg: LossConfig, *, class_weights: torch.Tensor | None = None,
                   soft_targets: torch.Tensor | None = None, valid: torch.Tensor | None = None,
                   dec_weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Total = L_enc + L_dec with the per-preset weights; returns every term and ``total``.

    ``dec_logits`` may hold K decoder runs per video (batch K*B, run k of video b at ``k*B + b``, see
    :func:`actfusion_model.network.training_outputs`); its terms then average over the K runs. ``dec_weights``
    (K*B,) are per-run weights of the decoder terms (timestep weighting); ``valid`` marks padded batches.
    """
    repeats = dec_logits.shape[0] // enc_logits.shape[0]
    if repeats * enc_logits.shape[0] != dec_logits.shape[0]:
        raise ValueError(f"decoder batch {dec_logits.shape[0]} is not a multiple of the encoder's "
                         f"{enc_logits.shape[0]}")

    def rep(x: torch.Tensor | None) -> torch.Tensor | None:
        return x if (x is None or repeats == 1) else x.repeat(repeats, *([1] * (x.dim() - 1)))

    def ce(logits: torch.Tensor, tgt: torch.Tensor, soft: torch.Tensor | None,
           weights: torch.Tensor | None) -> torch.Tensor:
        if cfg.soft_label_sigma is not None:
            if soft is None:
                raise ValueError("soft_label_sigma is set: pass soft_targets")
            return soft_frame_ce(logits, soft, tgt, weights)
        return frame_ce(logits, tgt, class_weights if cfg.class_weighting else None, weights)

    dec_targets, dec_valid = rep(targets), rep(valid)
    terms = {
        "enc_ce": ce(enc_logits, targets, soft_targets, None),
        "enc_smooth": smoothing_loss(enc_logits, cfg.smooth_clamp, valid),
        "dec_ce": ce(dec_logits, dec_targets, rep(soft_targets), dec_weights),
        "dec_smooth": smoothing_loss(dec_logits, cfg.smooth_clamp, dec_valid, dec_weights),
    }
    if cfg.enc_boundary:
        terms["enc_boundary"] = boundary_loss(enc_logits, boundary, valid)
    if cfg.dec_boundary:
        terms["dec_boundary"] = boundary_loss(dec_logits, rep(boundary), dec_valid, dec_weights)
    weights = {"enc_ce": cfg.enc_ce, "enc_smooth": cfg.enc_smooth, "enc_boundary": cfg.enc_boundary,
               "dec_ce": cfg.dec_ce, "dec_smooth": cfg.dec_smooth, "dec_boundary": cfg.dec_boundary}
    terms["total"] = sum(weights[k] * v for k, v in terms.items())
    return terms
