"""Import of the authors' checkpoints (gongda0e/ActFusion): the documented key mapping.

| authors' key                                         | ours                                          |
|------------------------------------------------------|-----------------------------------------------|
| mask_token                                           | mask_token                                    |
| encoder.conv_in / encoder.conv_out                   | encoder.conv_in / encoder.conv_out            |
| encoder.encoder.layers.{i}.conv_block.0              | encoder.layers.{i}.conv                       |
| encoder.encoder.layers.{i}.att_linear_{q,k,v}        | encoder.layers.{i}.attn.{q,k,v}               |
| encoder.encoder.layers.{i}.ffn_block.{0,2}           | encoder.layers.{i}.ffn.{0,2}                  |
| encoder.encoder.layers.{i}.rel_pos_emb.weight [20000,1] | encoder.layers.{i}.attn.rel_bias [max_dist+1] |
| decoder.time_in.{0,1}                                | decoder.time_mlp.{0,1}                        |
| decoder.conv_in / decoder.conv_out                   | decoder.conv_in / decoder.conv_out            |
| decoder.module.time_proj                             | decoder.time_proj                             |
| decoder.module.layers.{i}.*                          | decoder.layers.{i}.* (as for the encoder)     |
| betas, alphas_cumprod, ... (12 float64 buffers)      | checked against our cosine schedule, dropped  |

The relative-bias tables: the authors index row ``10000 + min(j * dilation, 100)``, so only rows
10000..10100 are ever read; we keep exactly those rows (offset 0..100). Any other key, or a missing
one, is an error.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Mapping

import torch

from actfusion_model.checkpoint import CheckpointError, read_payload, save_checkpoint, state_dict_mismatches
from actfusion_model.config import ModelConfig, model_config
from actfusion_model.diffusion import cosine_alphas_cumprod
from actfusion_model.labels import ClassMapping
from actfusion_model.network import ActFusion

REL_TABLE_ROWS = 20000
REL_TABLE_CENTRE = 10000
SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2")

_LAYER_PARTS = {
    "conv_block.0": "conv",
    "att_linear_q": "attn.q",
    "att_linear_k": "attn.k",
    "att_linear_v": "attn.v",
    "ffn_block.0": "ffn.0",
    "ffn_block.2": "ffn.2",
}
_FIXED = {
    "mask_token": "mask_token",
    "encoder.conv_in.weight": "encoder.conv_in.weight", "encoder.conv_in.bias": "encoder.conv_in.bias",
    "encoder.conv_out.weight": "encoder.conv_out.weight", "encoder.conv_out.bias": "encoder.conv_out.bias",
    "decoder.time_in.0.weight": "decoder.time_mlp.0.weight", "decoder.time_in.0.bias": "decoder.time_mlp.0.bias",
    "decoder.time_in.1.weight": "decoder.time_mlp.1.weight", "decoder.time_in.1.bias": "decoder.time_mlp.1.bias",
    "decoder.conv_in.weight": "decoder.conv_in.weight", "decoder.conv_in.bias": "decoder.conv_in.bias",
    "decoder.conv_out.weight": "decoder.conv_out.weight", "decoder.conv_out.bias": "decoder.conv_out.bias",
    "decoder.module.time_proj.weight": "decoder.time_proj.weight",
    "decoder.module.time_proj.bias": "decoder.time_proj.bias",
}
_LAYER_RE = re.compile(r"^(encoder\.encoder|decoder\.module)\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def map_official_key(key: str) -> str | None:
    """Our name for one of the authors' tensor names (None for the schedule buffers)."""
    if key in SCHEDULE_BUFFERS:
        return None
    if key in _FIXED:
        return _FIXED[key]
    m = _LAYER_RE.match(key)
    if m:
        stack, idx, part, kind = m.groups()
        ours = "encoder" if stack == "encoder.encoder" else "decoder"
        if part == "rel_pos_emb" and kind == "weight":
            return f"{ours}.layers.{idx}.attn.rel_bias"
        if part in _LAYER_PARTS:
            return f"{ours}.layers.{idx}.{_LAYER_PARTS[part]}.{kind}"
    raise CheckpointError(f"unknown key in the authors' checkpoint: {key!r}")


def convert_official_state_dict(official: Mapping[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map the authors' state dict to ours for ``cfg``; unknown, missing or misshapen keys are errors."""
    expected = ActFusion(cfg).state_dict()
    ours: dict[str, torch.Tensor] = {}
    for key, value in official.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"authors' checkpoint entry {key!r} is not a tensor")
        name = map_official_key(key)
        if name is None:
            _check_schedule(key, value, cfg)
            continue
        if name.endswith("attn.rel_bias"):
            if tuple(value.shape) != (REL_TABLE_ROWS, 1):
                raise CheckpointError(f"{key}: expected shape ({REL_TABLE_ROWS}, 1), got {tuple(value.shape)}")
            value = value[REL_TABLE_CENTRE:REL_TABLE_CENTRE + cfg.rel_max_dist + 1, 0]
        ours[name] = value.to(torch.float32)
    problems = state_dict_mismatches(expected, ours)
    if problems:
        raise CheckpointError("authors' checkpoint does not fit the config "
                              "(preset/num_classes/input_dim?): " + "; ".join(problems[:20]))
    return ours


def _check_schedule(key: str, value: torch.Tensor, cfg: ModelConfig) -> None:
    if key != "alphas_cumprod":
        return
    ours = cosine_alphas_cumprod(cfg.num_timesteps)
    if value.shape != ours.shape or not torch.allclose(value.double(), ours, rtol=1e-6, atol=1e-9):
        raise CheckpointError("the checkpoint's diffusion schedule differs from our cosine schedule "
                              f"({cfg.num_timesteps} steps)")


def extract_state_dict(payload: Mapping[str, object]) -> Mapping[str, torch.Tensor]:
    """Accept a bare state dict or the usual wrappers ({'state_dict': ...} / {'model': ...})."""
    for wrapper in ("state_dict", "model", "model_state_dict"):
        inner = payload.get(wrapper)
        if isinstance(inner, Mapping):
            return inner  # type: ignore[return-value]
    return payload  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """``actfusion-convert --official CKPT --preset 50salads --num-classes 19 --out model.pt``."""
    ap = argparse.ArgumentParser(prog="actfusion-convert", description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, type=Path, help="the authors' .pth/.pt checkpoint")
    ap.add_argument("--preset", default="50salads", choices=("50salads", "breakfast", "gtea"))
    ap.add_argument("--num-classes", type=int, help="defaults to --mapping's length")
    ap.add_argument("--input-dim", type=int, default=2048)
    ap.add_argument("--mapping", type=Path, help="MS-TCN mapping.txt giving the class names")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    try:
        names = list(ClassMapping.from_file(args.mapping).names) if args.mapping else None
        num_classes = args.num_classes or (len(names) if names else None)
        if num_classes is None:
            ap.error("give --num-classes or --mapping")
        if names is not None and len(names) != num_classes:
            raise CheckpointError(f"--mapping has {len(names)} classes, --num-classes says {num_classes}")
        cfg = model_config(args.preset, num_classes=num_classes, input_dim=args.input_dim)
        state = convert_official_state_dict(extract_state_dict(read_payload(args.official)), cfg)
        model = ActFusion(cfg)
        model.load_state_dict(state)
        save_checkpoint(args.out, model, names or [f"class_{i}" for i in range(num_classes)],
                        {"source": f"converted from {args.official.name}", "preset": args.preset})
    except (CheckpointError, ValueError) as err:
        print(f"actfusion-convert: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({args.preset}, {num_classes} classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
