"""The network: shapes, the shifted-slice attention, masking by ``where``, determinism, horizon."""
from __future__ import annotations

import math

import pytest
import torch

from actfusion_model.config import model_config
from actfusion_model.layers import WindowedAttention
from actfusion_model.network import ActFusion
from tests.official_reference import _attention, _window_index


@pytest.mark.parametrize("preset,num_classes", [("50salads", 19), ("breakfast", 48), ("gtea", 11), ("tiny", 5)])
def test_shapes_for_all_presets(preset: str, num_classes: int) -> None:
    cfg = model_config(preset, num_classes=num_classes, ddim_steps=2)
    model = ActFusion(cfg).eval()
    feats = torch.randn(2, cfg.input_dim, 23)
    logits, cond = model.encode(feats)
    assert logits.shape == (2, num_classes, 23)
    assert cond.shape == (2, cfg.enc_dim * len(cfg.cond_layers), 23)
    x0 = model.denoise(cond, 500, torch.rand(2, num_classes, 23))
    assert x0.shape == (2, num_classes, 23)
    probs = model.segment(feats, generator=torch.Generator().manual_seed(0))
    assert probs.shape == (2, num_classes, 23)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 23))


def test_parameter_count_matches_authors_without_unused_bias_rows() -> None:
    # official_architecture.md sec. 6: 1,216,614 params without the 20000-row tables; we keep 101 rows/layer.
    for preset, classes, official in (("50salads", 19, 1_216_614), ("breakfast", 48, 11_914_848)):
        cfg = model_config(preset, num_classes=classes)
        n = sum(p.numel() for p in ActFusion(cfg).parameters())
        assert n == official + (cfg.enc_layers + cfg.dec_layers) * (cfg.rel_max_dist + 1)


@pytest.mark.parametrize("kernel,dilation,length", [(5, 1, 37), (5, 64, 300), (7, 128, 150), (3, 2, 1), (5, 4, 9)])
def test_shifted_slice_attention_equals_gather_reference(kernel: int, dilation: int, length: int) -> None:
    torch.manual_seed(0)
    attn = WindowedAttention(qk_in=12, v_in=12, dim=12, kernel=kernel, dilation=dilation, max_dist=100)
    x = torch.randn(2, 12, length)
    table = torch.zeros(20000, 1)
    table[10000:10101, 0] = attn.rel_bias.detach()
    sd = {"att_linear_q.weight": attn.q.weight, "att_linear_q.bias": attn.q.bias,
          "att_linear_k.weight": attn.k.weight, "att_linear_k.bias": attn.k.bias,
          "att_linear_v.weight": attn.v.weight, "att_linear_v.bias": attn.v.bias, "rel_pos_emb.weight": table}
    with torch.no_grad():
        ours = attn(x, x)
        ref = _attention(sd, "", x, x, kernel, dilation)
    # Same maths, different float32 reduction order (einsum over a gather): equal to rounding.
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    # The windows themselves are the gather, bit for bit.
    idx, valid = _window_index(length, kernel, dilation)
    gathered = (x[:, :, idx] * valid).permute(0, 1, 3, 2)
    assert torch.equal(attn.windows(x), gathered)


def test_window_bias_index_follows_authors_clip_rule() -> None:
    attn = WindowedAttention(qk_in=4, v_in=4, dim=4, kernel=5, dilation=64, max_dist=100)
    assert attn.bias_rows.tolist() == [0, 64, 100, 100, 100]


def test_mask_token_replaces_only_masked_frames_in_order() -> None:
    cfg = model_config("tiny", num_classes=4)
    model = ActFusion(cfg).eval()
    feats = torch.arange(2 * cfg.input_dim * 6, dtype=torch.float32).view(2, cfg.input_dim, 6)
    mask = torch.tensor([[True, False, True, True, False, True]] * 2)
    structured = model.structure_input(feats, mask)
    assert torch.equal(structured[:, :, mask[0]], feats[:, :, mask[0]])  # kept frames, same order
    token = model.mask_token[0, :, 0]
    assert torch.equal(structured[0, :, 1], token) and torch.equal(structured[1, :, 4], token)


def test_masked_frames_do_not_leak_their_features() -> None:
    cfg = model_config("tiny", num_classes=4)
    model = ActFusion(cfg).eval()
    feats = torch.randn(1, cfg.input_dim, 12)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[:, 8:] = False
    other = feats.clone()
    other[:, :, 8:] = torch.randn(1, cfg.input_dim, 4) * 100
    with torch.no_grad():
        a, _ = model.encode(feats, mask)
        b, _ = model.encode(other, mask)
        c, _ = model.encode(other)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_seeded_anticipation_is_deterministic_and_seed_dependent() -> None:
    cfg = model_config("tiny", num_classes=6)
    model = ActFusion(cfg).eval()
    obs = torch.randn(1, cfg.input_dim, 10)
    runs = [model.anticipate(obs, generator=torch.Generator().manual_seed(s)).future_probs for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize("n_obs,ratio,cap,expected", [(10, 4.0, None, 40), (7, 4.0, 20, 20), (3, 0.5, None, 2),
                                                      (10, 4.0, 0, 0)])
def test_anticipation_horizon_follows_r_times_observed_and_cap(n_obs: int, ratio: float, cap, expected: int) -> None:
    cfg = model_config("tiny", num_classes=3, ddim_steps=2)
    model = ActFusion(cfg).eval()
    out = model.anticipate(torch.randn(1, cfg.input_dim, n_obs), ratio=ratio, max_horizon=cap,
                           generator=torch.Generator().manual_seed(0))
    assert out.horizon == expected == math.ceil(min(ratio * n_obs, cap if cap is not None else 1e9))
    assert out.observed_probs.shape[-1] == n_obs


def test_explicit_horizon_wins_over_ratio() -> None:
    cfg = model_config("tiny", num_classes=3, ddim_steps=2)
    out = ActFusion(cfg).eval().anticipate(torch.randn(1, cfg.input_dim, 5), horizon=13, max_horizon=2)
    assert out.horizon == 13


def test_wrong_feature_dim_is_a_clear_error() -> None:
    cfg = model_config("tiny", num_classes=3)
    with pytest.raises(ValueError, match=r"features must be \(batch, 32, time\)"):
        ActFusion(cfg).encode(torch.randn(1, 31, 8))
