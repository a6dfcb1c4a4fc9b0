"""An independent, deliberately literal re-statement of the authors' layers, for equivalence tests.

Written from ../shared/reference/official_architecture.md (no code of theirs): their parameter names,
their 20000-row relative-bias tables and a gather over a Python-built (T, k) index table, which is
exactly what our shifted-slice attention replaces. Eval mode only (no dropout).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from actfusion_model.config import ModelConfig


def _window_index(length: int, kernel: int, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx, valid = [], []
    for pos in range(length):
        for j in range(kernel):
            tap = pos + (j - kernel // 2) * dilation
            ok = 0 <= tap < length
            idx.append(tap if ok else 0)
            valid.append(1.0 if ok else 0.0)
    return torch.tensor(idx).view(length, kernel), torch.tensor(valid).view(length, kernel)


def _attention(sd: dict, prefix: str, qk_in: torch.Tensor, v_in: torch.Tensor, kernel: int,
               dilation: int) -> torch.Tensor:
    q = F.conv1d(qk_in, sd[prefix + "att_linear_q.weight"], sd[prefix + "att_linear_q.bias"])
    k = F.conv1d(qk_in, sd[prefix + "att_linear_k.weight"], sd[prefix + "att_linear_k.bias"])
    v = F.conv1d(v_in, sd[prefix + "att_linear_v.weight"], sd[prefix + "att_linear_v.bias"])
    _, dim, length = q.shape
    idx, valid = _window_index(length, kernel, dilation)
    keys = k[:, :, idx]  # (B, F, T, k) gather
    vals = v[:, :, idx]
    rows = torch.tensor([10000 + min(j * dilation, 100) for j in range(kernel)])
    bias = sd[prefix + "rel_pos_emb.weight"][rows, 0]
    logits = torch.einsum("bft,bftk->btk", q, keys)
    logits = (logits + bias) / math.sqrt(dim)
    logits = logits + torch.log(valid + 1e-6)
    w = torch.softmax(logits, dim=-1) * valid
    return torch.einsum("btk,bftk->bft", w, vals)


def _layer_tail(sd: dict, prefix: str, x: torch.Tensor, conv_in: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
    h = F.instance_norm(conv_in + attn, eps=1e-5)
    h = F.conv1d(F.relu(F.conv1d(h, sd[prefix + "ffn_block.0.weight"], sd[prefix + "ffn_block.0.bias"])),
                 sd[prefix + "ffn_block.2.weight"], sd[prefix + "ffn_block.2.bias"])
    return x + h


def _dilated_conv(sd: dict, prefix: str, x: torch.Tensor, dilation: int) -> torch.Tensor:
    w = sd[prefix + "conv_block.0.weight"]
    return F.conv1d(x, w, sd[prefix + "conv_block.0.bias"], padding=(w.shape[-1] // 2) * dilation, dilation=dilation)


def official_encoder(sd: dict, cfg: ModelConfig, features: torch.Tensor, mask: torch.Tensor | None):
    """-> (logits, condition) with the authors' names; ``mask`` (B, T) bool True=visible."""
    if mask is not None:
        features = torch.where(mask.unsqueeze(1), features, sd["mask_token"])
    x = F.conv1d(features, sd["encoder.conv_in.weight"], sd["encoder.conv_in.bias"])
    taken = []
    for i in range(cfg.enc_layers):
        p = f"encoder.encoder.layers.{i}."
        d = 2 ** i
        x = _layer_tail(sd, p, x, _dilated_conv(sd, p, x, d), _attention(sd, p, x, x, cfg.enc_kernel, d))
        if i in cfg.cond_layers:
            taken.append(x)
    return F.conv1d(x, sd["encoder.conv_out.weight"], sd["encoder.conv_out.bias"]), torch.cat(taken, 1)


def official_decoder(sd: dict, cfg: ModelConfig, condition: torch.Tensor, t: int, x01: torch.Tensor) -> torch.Tensor:
    half = cfg.time_emb_dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
    arg = float(t) * freqs
    emb = torch.cat([torch.sin(arg), torch.cos(arg)]).unsqueeze(0)
    emb = F.linear(emb, sd["decoder.time_in.0.weight"], sd["decoder.time_in.0.bias"])
    emb = F.linear(emb * torch.sigmoid(emb), sd["decoder.time_in.1.weight"], sd["decoder.time_in.1.bias"])
    x = F.conv1d(x01, sd["decoder.conv_in.weight"], sd["decoder.conv_in.bias"])
    tb = F.linear(emb * torch.sigmoid(emb), sd["decoder.module.time_proj.weight"], sd["decoder.module.time_proj.bias"])
    x = x + tb.unsqueeze(-1)
    for i in range(cfg.dec_layers):
        p = f"decoder.module.layers.{i}."
        d = 2 ** i
        attn = _attention(sd, p, torch.cat([x, condition], 1), x, cfg.dec_kernel, d)
        x = _layer_tail(sd, p, x, _dilated_conv(sd, p, x, d), attn)
    return F.conv1d(x, sd["decoder.conv_out.weight"], sd["decoder.conv_out.bias"])


def official_ddim(sd: dict, cfg: ModelConfig, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The authors' sampling loop as described (float64 schedule from the state dict, eta from cfg)."""
    abar = sd["alphas_cumprod"]
    scale = cfg.snr_scale
    times = list(reversed(torch.linspace(-1, cfg.num_timesteps - 1, cfg.ddim_steps + 1).int().tolist()))
    x = noise[0]
    for i, (t, tn) in enumerate(zip(times[:-1], times[1:])):
        x_in = (torch.clamp(x, -scale, scale) / scale + 1) / 2
        x0 = torch.softmax(official_decoder(sd, cfg, condition, t, x_in.float()), 1)
        x0 = torch.clamp((x0 * 2 - 1) * scale, -scale, scale)
        if tn < 0:
            return (x0 / scale + 1) / 2
        a, an = abar[t], abar[tn]
        eps = (torch.sqrt(1 / a) * x - x0) / torch.sqrt(1 / a - 1)
        sigma = cfg.ddim_eta * torch.sqrt((1 - a / an) * (1 - an) / (1 - a))
        c = torch.sqrt(1 - an - sigma ** 2)
        x = torch.sqrt(an) * x0 + c * eps + sigma * noise[i + 1]
    raise AssertionError("unreachable")


def fake_official_state_dict(shapes: list[tuple[str, list[int]]], cfg: ModelConfig, seed: int = 0) -> dict:
    """Random tensors with the authors' names and shapes (from official_state_dict_*.json)."""
    from actfusion_model.diffusion import cosine_alphas_cumprod

    g = torch.Generator().manual_seed(seed)
    sd = {}
    abar = cosine_alphas_cumprod(cfg.num_timesteps)
    for name, shape in shapes:
        if name == "alphas_cumprod":
            sd[name] = abar.clone()
        elif len(shape) == 1 and shape[0] == cfg.num_timesteps and "." not in name:
            sd[name] = torch.rand(shape, generator=g, dtype=torch.float64)
        else:
            # PyTorch's default init scale (U(+-1/sqrt(fan_in))); biases small; bias tables N(0, 1).
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 64
            sd[name] = (torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(fan_in)
            if name.endswith("rel_pos_emb.weight"):
                sd[name] = torch.randn(shape, generator=g)
    return sd
