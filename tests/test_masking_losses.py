"""Masking semantics and losses on hand-checked tiny cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actfusion_model.config import LossConfig, MaskingConfig
from actfusion_model.losses import actfusion_loss, boundary_loss, frame_ce, smoothing_loss, soft_frame_ce
from actfusion_model.masking import (
    IGNORE_INDEX,
    anticipative_crop,
    anticipative_mask,
    boundary_mask,
    class_mask,
    draw_mask,
    masked_sample,
    patch_mask,
)


def test_anticipative_mask_keeps_the_observed_prefix() -> None:
    assert anticipative_mask(10, 0.3).tolist() == [True] * 3 + [False] * 7


def test_patch_mask_masks_whole_patches_never_the_last_partial_one() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = patch_mask(47, 3, 10, rng)
        assert (~m).sum() == 30
        assert m[40:].all()
        starts = np.flatnonzero(np.diff(np.concatenate(([1], m.astype(int)))) == -1)
        assert all(s % 10 == 0 for s in starts)
    assert patch_mask(5, 3, 10, rng).all()  # shorter than one patch: nothing to mask


def test_boundary_and_class_masks() -> None:
    assert boundary_mask(np.array([0.1, 0.5, 0.7, 0.49]), 0.5).tolist() == [True, False, False, True]
    labels = np.array([0, 0, 1, 1, 2, 2])
    m = class_mask(labels, 1, np.random.default_rng(3))
    masked_classes = set(labels[~m].tolist())
    assert len(masked_classes) == 1 and set(labels[m].tolist()).isdisjoint(masked_classes)


def test_draw_mask_is_reproducible_with_the_same_generator() -> None:
    cfg = MaskingConfig()
    labels = np.repeat(np.arange(5), 20)
    bnd = np.zeros(100)
    for kind in ("full", "ant", "random_num_patch", "random_patch", "boundary", "segment"):
        a = draw_mask(kind, labels, bnd, cfg, np.random.default_rng(9))
        b = draw_mask(kind, labels, bnd, cfg, np.random.default_rng(9))
        assert np.array_equal(a, b) and a.shape == (100,)


def test_rn_anticipative_crop_appends_r_times_observed_mask_tokens() -> None:
    feats = np.arange(3 * 50, dtype=np.float32).reshape(3, 50)
    labels = np.arange(50) % 4
    s = anticipative_crop(feats, labels, np.zeros(50), observed_ratio=0.2, ratio=4.0)
    assert s.visible.sum() == 10 and s.visible[:10].all() and s.features.shape == (3, 50)
    s = anticipative_crop(feats, labels, np.zeros(50), observed_ratio=0.3, ratio=4.0)  # 15 + 60 > 50
    assert s.features.shape == (3, 75) and (s.targets[50:] == IGNORE_INDEX).all()
    assert np.array_equal(s.targets[:50], labels) and not s.visible[15:].any()
    cfg = MaskingConfig(types=("ant_ratio",), ant_ratios=(0.2,))
    assert masked_sample("ant_ratio", feats, labels, np.zeros(50), cfg, np.random.default_rng(0)).visible.sum() == 10


def test_cross_entropy_hand_case() -> None:
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # (1, C=2, T=2)
    targets = torch.tensor([[1, IGNORE_INDEX]])
    # frame 0: p(class1) = 3/4 -> -log(3/4); frame 1 ignored
    assert frame_ce(logits, targets).item() == pytest.approx(-math.log(0.75), rel=1e-6)
    w = torch.tensor([1.0, 2.0])
    # class-weighted: the frame's loss times its class weight (2), averaged over the 1 known frame
    assert frame_ce(logits, targets, w).item() == pytest.approx(-2.0 * math.log(0.75), rel=1e-6)
    soft = torch.tensor([[[0.5, 0.0], [0.5, 0.0]]])
    expected = -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    assert soft_frame_ce(logits, soft, targets).item() == pytest.approx(expected, rel=1e-6)


def test_weighted_cross_entropy_averages_weighted_frame_losses_over_frames() -> None:
    """Imbalanced toy case: 3 frames of a frequent class (weight 0.5), 1 of a rare one (weight 2), 1 unknown.

    The authors' trainer: ``CrossEntropyLoss(weight, reduction='none')(...).mean()`` over the known frames,
    i.e. ``sum_t w_{y_t} (-log p_t(y_t)) / n``; ``reduction='mean'`` would divide by ``sum_t w_{y_t}``.
    """
    logits = torch.tensor([[[2.0, 1.0, 0.5, -1.0, 0.0], [0.0, 0.5, 1.0, 1.0, 3.0]]])  # (1, C=2, T=5)
    targets = torch.tensor([[0, 0, 0, 1, IGNORE_INDEX]])
    w = torch.tensor([0.5, 2.0])
    logp = torch.log_softmax(logits, dim=1)[0]
    nll = [-logp[int(c), t].item() for t, c in enumerate(targets[0, :4])]
    expected = (0.5 * nll[0] + 0.5 * nll[1] + 0.5 * nll[2] + 2.0 * nll[3]) / 4
    assert frame_ce(logits, targets, w).item() == pytest.approx(expected, rel=1e-6)
    old = torch.nn.functional.cross_entropy(logits, targets, weight=w, ignore_index=IGNORE_INDEX).item()
    assert old == pytest.approx(expected * 4 / 3.5, rel=1e-6)  # the factor the fix removes


def test_smoothing_loss_is_truncated_at_the_clamp() -> None:
    same = torch.zeros(1, 3, 5)
    assert smoothing_loss(same).item() == 0.0
    jump = torch.tensor([[[0.0, 100.0], [0.0, 0.0]]])  # huge change between the two frames
    lp = torch.log_softmax(jump, 1)
    d = (lp[:, :, 1] - lp[:, :, 0]) ** 2
    assert smoothing_loss(jump, clamp=1e9).item() == pytest.approx(d.mean().item(), rel=1e-5)
    assert smoothing_loss(jump, clamp=16.0).item() == pytest.approx(d.clamp(max=16).mean().item(), rel=1e-5)
    assert smoothing_loss(jump, clamp=16.0).item() < smoothing_loss(jump, clamp=1e9).item()


def test_boundary_loss_low_when_changes_match_targets() -> None:
    big = 20.0
    logits = torch.tensor([[[big, big, -big, -big], [-big, -big, big, big]]])
    right = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    wrong = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert boundary_loss(logits, right).item() < 1e-3
    assert boundary_loss(logits, wrong).item() > 5.0


def test_total_loss_uses_the_preset_weights() -> None:
    torch.manual_seed(0)
    enc, dec = torch.randn(1, 4, 9), torch.randn(1, 4, 9)
    targets = torch.randint(0, 4, (1, 9))
    bnd = torch.rand(1, 9)
    cfg = LossConfig(enc_ce=0.5, enc_smooth=0.1, dec_ce=0.5, dec_smooth=0.1, dec_boundary=0.1)
    terms = actfusion_loss(enc, dec, targets, bnd, cfg)
    expected = (0.5 * terms["enc_ce"] + 0.1 * terms["enc_smooth"] + 0.5 * terms["dec_ce"]
                + 0.1 * terms["dec_smooth"] + 0.1 * terms["dec_boundary"])
    assert terms["total"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert "enc_boundary" not in terms
