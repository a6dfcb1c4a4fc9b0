"""Eager PyTorch cost of the model next to the authors' CPU figures (random weights, batch 1).

    python benchmarks/bench_model.py [--presets 50salads breakfast] [--lengths 256 1024 2048]
                                     [--threads 2] [--repeats 5] [--steps 25]

Per preset and length T: the encoder pass, one decoder step as the authors timed it (condition
projections included, ``model.denoise``), one step as our sampler runs it (condition terms prepared once,
``decoder.forward_prepared``), and a full anticipation (``model.anticipate``: 30% observed, the rest mask
tokens, encoder + ``--steps`` DDIM steps). Medians of ``--repeats`` runs after one warm-up. The "authors"
columns are the medians measured on their implementation (torch 2.13 eager, 2 threads) in
../shared/reference/official_architecture.md, section 7, hard-coded here as reference values. The
machine is shared: the load average before and after is printed; compare within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import timed_runs  # noqa: E402  (benchmarks/timing.py, beside this script)

from actfusion_model.config import model_config  # noqa: E402
from actfusion_model.diffusion import sample_noise  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402

CLASSES = {"50salads": 19, "breakfast": 48}
# official_architecture.md sec. 7: (encoder pass, decoder step (isolated), full LTA (25 steps)), seconds.
AUTHORS = {
    ("50salads", 256): ("0.018", "0.011", "0.31"),
    ("50salads", 512): ("0.032", "0.018", "0.48"),
    ("50salads", 1024): ("0.077", "0.040", "1.08-1.45"),
    ("50salads", 2048): ("0.13-0.15", "0.063-0.075", "1.6-2.0"),
    ("breakfast", 256): ("0.074", "0.031", "1.09"),
    ("breakfast", 512): ("0.21", "0.083", "1.63"),
    ("breakfast", 1024): ("0.34", "0.12", "4.1"),
    ("breakfast", 2048): ("0.66", "0.26", "6.6"),
}


def median_time(fn: Callable[[], object], repeats: int, *, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` untimed runs."""
    return statistics.median(timed_runs(fn, repeats, warmup=warmup))


def bench(preset: str, length: int, *, repeats: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    cfg = model_config(preset, num_classes=CLASSES[preset])
    model = ActFusion(cfg).eval()
    gen = torch.Generator().manual_seed(length)
    feats = torch.randn(1, cfg.input_dim, length, generator=gen)
    n_obs = max(1, round(0.3 * length))
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[:, :n_obs] = True
    noise = sample_noise((1, cfg.num_classes, length), steps, generator=gen)
    x01 = torch.rand(1, cfg.num_classes, length, generator=gen)
    with torch.inference_mode():
        _, cond = model.encode(feats, mask)
        terms = model.decoder.condition_terms(cond)
        step = torch.tensor([cfg.num_timesteps // 2])
        return {
            "encoder": median_time(lambda: model.encode(feats, mask), repeats),
            "step_authors": median_time(lambda: model.denoise(cond, step, x01), repeats),
            "step_prepared": median_time(lambda: model.decoder.forward_prepared(terms, step, x01), repeats),
            "full": median_time(lambda: model.anticipate(feats[:, :, :n_obs], horizon=length - n_obs,
                                                         steps=steps, noise=noise), repeats),
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the authors used 2)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=25, help="DDIM steps of the full anticipation")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# bench_model: torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} before")
    print("| preset | T | encoder (s) | authors | step, cond. incl. (s) | authors | step, prepared (s) "
          f"| full {args.steps}-step (s) | authors (25) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        for length in args.lengths:
            r = bench(preset, length, repeats=args.repeats, steps=args.steps)
            a = AUTHORS.get((preset, length), ("-", "-", "-"))
            print(f"| {preset} | {length} | {r['encoder']:.3f} | {a[0]} | {r['step_authors']:.3f} | {a[1]} | "
                  f"{r['step_prepared']:.3f} | {r['full']:.2f} | {a[2]} |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.2f} after; authors' figures: "
          "../shared/reference/official_architecture.md sec. 7 (their code, same CPU class, 2 threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
