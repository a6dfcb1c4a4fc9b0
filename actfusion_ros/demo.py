"""Newcomer demo: run ActFusion (tiny preset, random weights) on a synthetic stream and print a forecast.

This is the placeholder main job until the synthetic activity world lands: it shows the r*N^O horizon
rule and the shapes of what the node publishes, nothing learnt.
"""
from __future__ import annotations

import argparse

import torch

from model.config import model_config
from model.labels import segments_from_labels
from model.network import ActFusion


def main(argv: list[str] | None = None) -> int:
    """Print the segmentation of an observed prefix and the forecast future segments."""
    ap = argparse.ArgumentParser(prog="actfusion-demo", description=__doc__.split("\n")[0])
    ap.add_argument("--observed", type=int, default=12, help="observed feature frames N^O")
    ap.add_argument("--ratio", type=float, default=4.0, help="r of the r*N^O rule")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    cfg = model_config("tiny", num_classes=5)
    torch.manual_seed(args.seed)
    model = ActFusion(cfg).eval()
    names = ["reach", "grasp", "pour", "stir", "place"]
    obs = torch.randn(1, cfg.input_dim, args.observed, generator=torch.Generator().manual_seed(args.seed))
    out = model.anticipate(obs, ratio=args.ratio, generator=torch.Generator().manual_seed(args.seed))
    print(f"model: tiny preset, random weights, {cfg.ddim_steps} DDIM steps")
    print(f"observed {args.observed} frames -> horizon {out.horizon} frames (r = {args.ratio})")
    for title, probs in (("observed", out.observed_probs), ("future", out.future_probs)):
        labels = probs[0].argmax(0).numpy()
        segs = ", ".join(f"{names[s.label]}[{s.start}:{s.end})" for s in segments_from_labels(labels))
        print(f"{title:>9}: {segs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
