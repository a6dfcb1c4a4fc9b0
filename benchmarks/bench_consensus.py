"""Consensus of K sampled futures vs one sample: MoC and next-action scores of a trained checkpoint (issue 13).

    python benchmarks/bench_consensus.py --checkpoint RUN/best.pt --data-root DATA [--split 1]
                                         [--samples 1 4 8 16] [--consensus mode medoid mean] [--steps 25 ...]
                                         [--alphas 0.2 0.3] [--single-offset] [--max-videos N] [--seed 0]
                                         [--out DIR] [--threads 1]

For every test video, protocol (GT length, r*N^O) and alpha, one LTA run per DDIM step setting draws the
largest K of ``--samples`` futures at once (:func:`actfusion_training.inference.predict_lta`, the path of
``actfusion-eval --num-samples``); K = k uses the first k of them (K = 1: the first sample alone, a
single-sample forecast; the largest K equals ``actfusion-eval --num-samples K`` with the same seed).

* Per K and consensus (:func:`actfusion_training.inference.consensus_ids`): the MoC of the consensus forecast
  (:func:`actfusion_training.scoring.moc_tables`; the mean over alphas and betas is ``actfusion-eval``'s ``lta_mean``).
* Per K: the next-action distribution of the k samples (:func:`actfusion_training.inference.sample_next_action`),
  scored by :func:`actfusion_training.prob_metrics.next_action_summary` (top-1, top-3, Brier, ECE) on the events of
  :func:`actfusion_training.prob_metrics.lta_next_action_case`, beside the label-only baselines' own distributions
  (:mod:`actfusion_training.baselines`, fitted on the training split's labels) on the same events.

Writes ``consensus.md`` (the tables), ``consensus.json`` and ``reliability.png`` (stated probabilities of
the largest K, r*N^O, first steps setting) under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.checkpoint import load_checkpoint  # noqa: E402
from actfusion_model.consensus import outcome_vector  # noqa: E402
from actfusion_model.io import atomic_write_text  # noqa: E402
from actfusion_training import inference, prob_metrics  # noqa: E402
from actfusion_training.baselines import fit_baselines  # noqa: E402
from actfusion_training.data import MsTcnDataset, read_split_labels  # noqa: E402
from actfusion_training.eval_model import PROTOCOL_NAMES, default_median_filter, reliability_from_dict  # noqa: E402
from actfusion_training.plots import plot_reliability  # noqa: E402
from actfusion_training.scoring import BETAS, moc_tables, video_key  # noqa: E402

#: One video's forecasts: ``{(protocol, alpha): prediction with the largest K samples}``.
Cells = dict[tuple[str, float], inference.LtaPrediction]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--data-root", required=True, type=Path, help="MS-TCN dataset root (e.g. one-hot features)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--samples", type=int, nargs="+", default=[1, 4, 8, 16], help="K values (prefixes of one draw)")
    p.add_argument("--consensus", nargs="+", default=list(inference.CONSENSUS_CHOICES),
                   choices=inference.CONSENSUS_CHOICES)
    p.add_argument("--steps", type=int, nargs="+", default=[None], help="DDIM step settings (default: the "
                   "checkpoint's)")
    p.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--median-filter", type=int, default=None, help="default: the training config's")
    p.add_argument("--single-offset", action="store_true", help="offset 0 only (sr times cheaper)")
    p.add_argument("--max-videos", type=int, default=None)
    p.add_argument("--bins", type=int, default=10, help="reliability bins")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: a temp dir)")
    return p


def forecast_cells(model: Any, features: np.ndarray, name: str, *, samples: int, steps: int | None,
                   alphas: Sequence[float], seed: int, median_filter: int, aggregate_offsets: bool) -> Cells:
    """Every (protocol, alpha) LTA forecast of one video with ``samples`` futures each."""
    return {(p, a): inference.predict_lta(model, features, a, p, video_index=video_key(name), seed=seed, steps=steps,
                                          median_filter=median_filter, aggregate_offsets=aggregate_offsets,
                                          num_samples=samples)
            for p in inference.PROTOCOLS for a in alphas}


def consensus_moc(videos: Sequence[tuple[np.ndarray, Cells]], k: int, consensus: str, alphas: Sequence[float]
                  ) -> tuple[dict, dict[str, float | None]]:
    """MoC tables of the ``consensus`` of the first ``k`` samples of every forecast."""
    def pairs(protocol: str, alpha: float) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for gt, cells in videos:
            pred = cells[(protocol, alpha)]
            ids = inference.consensus_ids(pred.sample_probs[:k], consensus)
            out.append((inference.lta_raw_labels(ids, pred.sample_rate, gt.size), gt))
        return out

    return moc_tables(pairs, inference.PROTOCOLS, alphas, BETAS)


def model_events(videos: Sequence[tuple[np.ndarray, Cells]], k: int, num_classes: int,
                 alphas: Sequence[float]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{protocol: (probs, truth)}`` of the next-action distributions of the first ``k`` samples."""
    out = {}
    for protocol in inference.PROTOCOLS:
        probs, truth = [], []
        for gt, cells in videos:
            for alpha in alphas:
                pred = cells[(protocol, alpha)]
                dist = inference.sample_next_action(pred.sample_probs[:k], pred.layout.observed, pred.layout.horizon)
                case = prob_metrics.lta_next_action_case(gt, pred.sample_rate, alpha, protocol)
                probs.append(outcome_vector(dist.as_mapping(), num_classes))
                truth.append(prob_metrics.outcome_index(case.truth, num_classes))
        out[protocol] = (np.stack(probs), np.asarray(truth, dtype=np.int64))
    return out


def markdown(results: dict[str, Any]) -> str:
    """The MoC and next-action tables of :func:`run` as markdown."""
    info = results["info"]
    lines = [f"# Consensus of K sampled futures: `{info['checkpoint']}`", "",
             f"{info['data_root']} split {info['split']}, {info['videos']} test videos x alphas {info['alphas']}, "
             f"offsets {info['offsets']}, median filter {info['median_filter'] or 'off'}, seed {info['seed']}; "
             f"K = k: the first k samples of one K = {max(info['samples'])} draw.", "",
             "Mean MoC (%) over alphas and betas (K = 1: one sample):", "",
             "| DDIM steps | consensus | K | " + " | ".join(PROTOCOL_NAMES[p] for p in inference.PROTOCOLS) + " |",
             "|---|---|---|" + "---|" * len(inference.PROTOCOLS)]
    for steps, per in results["runs"].items():
        for row in per["moc"]:
            lines.append(f"| {steps} | {row['consensus']} | {row['k']} | "
                         + " | ".join("-" if row["lta_mean"][p] is None else f"{row['lta_mean'][p]:.2f}"
                                      for p in inference.PROTOCOLS) + " |")
    lines += ["", "Next action after the current one (model: the K samples' distribution; baselines: their own):",
              "", "| DDIM steps | who | K | protocol | events | top-1 % | top-3 % | Brier | ECE top | ECE stated |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for steps, per in results["runs"].items():
        for row in per["next_action"]:
            for p in inference.PROTOCOLS:
                s = row[p]
                lines.append(f"| {steps} | model | {row['k']} | {PROTOCOL_NAMES[p]} | {s['count']} | {s['top1']:.1f} | "
                             f"{s['top3']:.1f} | {s['brier']:.3f} | {s['ece_top']:.3f} | {s['ece_stated']:.3f} |")
    for name, per_protocol in results["baselines"].items():
        for p, s in per_protocol.items():
            lines.append(f"| - | {name.replace('_', ' ')} | - | {PROTOCOL_NAMES[p]} | {s['count']} | {s['top1']:.1f} | "
                         f"{s['top3']:.1f} | {s['brier']:.3f} | {s['ece_top']:.3f} | {s['ece_stated']:.3f} |")
    lines += ["", f"Forecasting time: {results['seconds']:.0f} s.", ""]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Forecast, score and write the outputs; returns the ``consensus.json`` dictionary."""
    ckpt = load_checkpoint(args.checkpoint)
    dataset = MsTcnDataset(args.data_root, args.split, "test")
    if args.max_videos is not None:
        dataset = MsTcnDataset(args.data_root, args.split, "test", names=dataset.names[:args.max_videos])
    if list(dataset.mapping.names) != list(ckpt.class_names):
        raise ValueError(f"class mapping of {args.data_root} differs from the checkpoint's")
    sr, num_classes = ckpt.config.sample_rate, len(ckpt.class_names)
    filt = default_median_filter(ckpt.metadata) if args.median_filter is None else int(args.median_filter)
    ks = sorted(set(args.samples))
    records = list(dataset)
    info = {"checkpoint": str(args.checkpoint), "data_root": str(args.data_root), "split": args.split,
            "videos": len(records), "alphas": list(args.alphas), "samples": ks, "consensus": list(args.consensus),
            "offsets": "first" if args.single_offset else "all", "median_filter": filt, "seed": args.seed,
            "sample_rate": sr}
    results: dict[str, Any] = {"info": info, "runs": {}}
    start = time.perf_counter()
    for steps in args.steps:
        videos = [(rec.labels, forecast_cells(ckpt.model, rec.features, rec.name, samples=max(ks), steps=steps,
                                              alphas=args.alphas, seed=args.seed, median_filter=filt,
                                              aggregate_offsets=not args.single_offset)) for rec in records]
        moc = [{"consensus": c, "k": k, "lta_mean": consensus_moc(videos, k, c, args.alphas)[1]}
               for c in args.consensus for k in ks if k > 1 or c == args.consensus[0]]
        next_action = []
        for k in ks:
            events = model_events(videos, k, num_classes, args.alphas)
            next_action.append({"k": k, **{p: prob_metrics.next_action_summary(*events[p], num_bins=args.bins)
                                           for p in inference.PROTOCOLS}})
        results["runs"][str(steps or ckpt.config.ddim_steps)] = {"moc": moc, "next_action": next_action}
    results["seconds"] = time.perf_counter() - start
    train = read_split_labels(args.data_root, args.split, "train", mapping=dataset.mapping)
    gts = [(rec.name, rec.labels) for rec in records]
    results["baselines"] = {
        f.name: {p: prob_metrics.next_action_summary(probs, truth, num_bins=args.bins) for p, (probs, truth) in
                 prob_metrics.forecaster_next_action_events(f, gts, num_classes, sr, alphas=args.alphas).items()}
        for f in fit_baselines(train.values(), sr)}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "consensus.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "consensus.md", markdown(results))
    first = next(iter(results["runs"].values()))["next_action"][-1]
    plot_reliability(out / "reliability.png", reliability_from_dict(first["rn"]["reliability"]),
                     f"{Path(args.data_root).name}: next action, {PROTOCOL_NAMES['rn']}, K = {max(ks)}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if any(k < 1 for k in args.samples) or any(s is not None and s < 1 for s in args.steps) or args.threads < 1:
        p.error("--samples, --steps and --threads must be >= 1")
    if 1 not in args.samples:
        p.error("--samples must include 1 (the single-sample reference)")
    torch.set_num_threads(args.threads)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="bench_consensus_"))
    try:
        results = run(args)
    except (OSError, ValueError) as err:
        print(f"bench_consensus: error: {err}", file=sys.stderr)
        return 1
    print(markdown(results))
    print(f"wrote {args.out / 'consensus.md'}, {args.out / 'consensus.json'}, {args.out / 'reliability.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
