"""``actfusion-eval``: predict and score a checkpoint on the test split of an MS-TCN dataset.

    actfusion-eval --checkpoint RUN/best.pt --data-root DATA --split 1 --out EVAL [--steps 25] [--seed 0]
                   [--no-lta] [--no-baselines] [--median-filter K] [--single-offset] [--max-videos N]
                   [--max-plots N] [--exact-f1] [--num-samples K] [--consensus mode|medoid|mean]

Writes, under ``--out``:

* ``tas/<video>.txt`` and ``lta_{gt,rn}_a{0.2,0.3}/<video>.txt``: one class name per raw frame, the
  format and file names of ``groundTruth/``. LTA files hold the observed part and the forecast; under the
  r*N^O protocol frames the forecast does not reach are written as ``__no_prediction__`` (they count as
  wrong, also for ``python -m actfusion_training.evaluate`` without ``--mapping``).
* ``results.json`` (metrics, steps, seed, post-processing, mean latencies), ``results.md`` (tables),
  ``plots/<video>.png`` (ground truth vs predictions, the first ``--max-plots`` videos).
* With LTA, unless ``--no-baselines``: the label-only baselines of :mod:`actfusion_training.baselines` ("repeat the
  last observed action", segment grammars of order 1 and 2 fitted on the training split's ``groundTruth/``)
  scored by the same code, in ``results.json`` (``baselines``, and ``best_per_cell``: who has the highest
  MoC in each protocol/alpha/beta cell, the model included) and ``results.md``; their prediction files in
  ``baselines/<name>/lta_*/``.
* With LTA, the next-action scores of the model's K sampled futures per forecast (``--num-samples``, default
  1; the LTA files and MoC hold their ``--consensus``): top-1/top-3 accuracy, Brier score, ECE and the
  reliability table of the stated probabilities (:func:`actfusion_training.prob_metrics.next_action_summary`), per
  protocol, in ``results.json`` (``next_action``) and ``results.md``, beside the baselines' own
  next-action distributions (``baseline_next_action``) scored by the same code on the same events;
  ``plots/reliability.png`` is the model's reliability diagram (r*N^O protocol when it was run).

The metrics are those of :mod:`actfusion_training.metrics`, so they equal ``python -m actfusion_training.evaluate``
run on the written files (``tas``; ``lta --observed A --predicted 0.1 0.2 0.3 0.5``). F1 uses the reference ``eval.py``
segment ends (last segment ends at ``N-1``) unless ``--exact-f1``, as ``actfusion_training.evaluate tas --exact-f1``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch
from tqdm import tqdm

from actfusion_model.checkpoint import CheckpointError, load_checkpoint
from actfusion_model.io import atomic_write_text
from actfusion_training.baselines import BaselineRun, best_per_cell, fit_baselines, score_baselines
from actfusion_training.cli import add_dataset_arguments, add_device_arguments, apply_threads
from actfusion_training.data import DatasetError, MsTcnDataset, read_split_labels
from actfusion_training.inference import CONSENSUS_CHOICES, PROTOCOLS, frame_labels_to_names
from actfusion_training.plots import TimelineRow, plot_reliability, plot_timeline
from actfusion_training.prob_metrics import (
    ReliabilityBin,
    ReliabilityTable,
    forecaster_next_action_events,
    next_action_summary,
)
from actfusion_training.scoring import ScoredRun, ScoringOptions, VideoPredictions, lta_key, score_model

#: Written for raw frames a forecast does not cover (never a class name of the datasets).
MISSING_NAME = "__no_prediction__"


def write_predictions(out: Path, run: ScoredRun, class_names: Sequence[str], options: ScoringOptions) -> list[Path]:
    """One ``<video>.txt`` per video in ``tas/`` and every ``lta_*`` directory; returns the directories."""
    dirs = {"tas": out / "tas"}
    for protocol in options.protocols:
        for alpha in options.alphas:
            dirs[lta_key(protocol, alpha)] = out / lta_key(protocol, alpha)
    for video in run.videos:
        series = {"tas": video.tas.labels}
        series.update({lta_key(p, a): pred.labels for (p, a), pred in video.lta.items()})
        for key, ids in series.items():
            names = frame_labels_to_names(ids, class_names, MISSING_NAME)
            atomic_write_text(dirs[key] / f"{video.name}.txt", "".join(f"{n}\n" for n in names))
    return list(dirs.values())


def write_baseline_predictions(out: Path, run: BaselineRun, class_names: Sequence[str]) -> None:
    """``<out>/<baseline>/lta_*/<video>.txt`` for every baseline prediction (the ``groundTruth/`` format)."""
    for name, cells in run.predictions.items():
        for (protocol, alpha), videos in cells.items():
            for video, ids in videos.items():
                names = frame_labels_to_names(ids, class_names, MISSING_NAME)
                atomic_write_text(out / name / lta_key(protocol, alpha) / f"{video}.txt",
                                  "".join(f"{n}\n" for n in names))


def plot_video(path: Path, video: VideoPredictions, class_names: Sequence[str]) -> Path:
    """Ground truth, TAS and every forecast of one video in one timeline PNG."""
    rows = [TimelineRow("ground truth", video.labels), TimelineRow("TAS", video.tas.labels)]
    for (protocol, alpha), pred in sorted(video.lta.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        tag = "GT length" if protocol == "gt" else "r*N^O"
        rows.append(TimelineRow(f"LTA a={alpha:g} ({tag})", pred.labels, pred.observed_raw))
    return plot_timeline(path, rows, class_names, title=video.name)


PROTOCOL_NAMES = {"gt": "GT length", "rn": "r*N^O (r=4)"}


def moc_table_lines(lta: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    """One markdown table row per protocol/alpha of a ``{protocol: {alpha: {beta: MoC}}}`` table."""
    betas = list(next(iter(next(iter(lta.values())).values())))
    lines = ["| protocol | alpha | " + " | ".join(f"b={b}" for b in betas) + " |", "|---|---|" + "---|" * len(betas)]
    for protocol, per_alpha in lta.items():
        for alpha, row in per_alpha.items():
            cells = ["-" if row[b] is None else f"{row[b]:.2f}" for b in betas]
            lines.append(f"| {PROTOCOL_NAMES.get(protocol, protocol)} | {alpha} | " + " | ".join(cells) + " |")
    return lines


def baseline_report_lines(metrics: dict[str, Any]) -> list[str]:
    """Markdown: each baseline's MoC table, the mean MoC of everyone, and who is best in each cell."""
    baselines = metrics.get("baselines") or {}
    if not baselines:
        return []
    lines = ["", "## Label-only baselines (same scoring; see training/baselines.py)"]
    for name, result in baselines.items():
        lines += ["", f"{name.replace('_', ' ')}, MoC (%):", "", *moc_table_lines(result["lta"])]
    protocols = list(metrics["lta_mean"])
    lines += ["", "Mean MoC (%):", "", "| who | " + " | ".join(PROTOCOL_NAMES.get(p, p) for p in protocols) + " |",
              "|---|" + "---|" * len(protocols)]
    for name, means in [("model", metrics["lta_mean"])] + [(n, r["lta_mean"]) for n, r in baselines.items()]:
        lines.append(f"| {name.replace('_', ' ')} | "
                     + " | ".join("-" if means[p] is None else f"{means[p]:.2f}" for p in protocols) + " |")
    best = metrics.get("best_per_cell") or {}
    if best:
        betas = list(next(iter(next(iter(best.values())).values())))
        lines += ["", "Best MoC per cell:", "", "| protocol | alpha | " + " | ".join(f"b={b}" for b in betas) + " |",
                  "|---|---|" + "---|" * len(betas)]
        for protocol, per_alpha in best.items():
            for alpha, row in per_alpha.items():
                lines.append(f"| {PROTOCOL_NAMES.get(protocol, protocol)} | {alpha} | "
                             + " | ".join(row.get(b, "-").replace("_", " ") for b in betas) + " |")
    return lines


def next_action_report_lines(metrics: dict[str, Any]) -> list[str]:
    """Markdown: next-action scores of the model and the baselines, and the model's reliability tables."""
    model = metrics.get("next_action") or {}
    if not model:
        return []
    rows = [("model", model)] + list((metrics.get("baseline_next_action") or {}).items())
    lines = ["", f"## Next action after the current one ({metrics.get('num_samples', 1)} sampled futures per "
             "forecast; see training/prob_metrics.py)", "",
             "| who | protocol | events | top-1 % | top-3 % | Brier | ECE top | ECE stated |",
             "|---|---|---|---|---|---|---|---|"]
    for name, per_protocol in rows:
        for protocol, s in per_protocol.items():
            lines.append(f"| {name.replace('_', ' ')} | {PROTOCOL_NAMES.get(protocol, protocol)} | {s['count']} | "
                         f"{s['top1']:.1f} | {s['top3']:.1f} | {s['brier']:.3f} | {s['ece_top']:.3f} | "
                         f"{s['ece_stated']:.3f} |")
    lines += ["", "Current action right (model): "
              + ", ".join(f"{PROTOCOL_NAMES.get(p, p)} {s['current_correct']:.1f} %" for p, s in model.items())]
    for protocol, s in model.items():
        name = PROTOCOL_NAMES.get(protocol, protocol)
        lines += ["", f"Reliability of the model's stated next-action probabilities, {name}:", "",
                  "| stated in | pairs | mean stated | observed |", "|---|---|---|---|"]
        for b in s["reliability"]["bins"]:
            if b["count"]:
                lines.append(f"| [{b['lower']:.1f}, {b['upper']:.1f}) | {b['count']} | {b['mean_stated']:.3f} | "
                             f"{b['observed']:.3f} |")
    return lines


def reliability_from_dict(table: dict[str, Any]) -> ReliabilityTable:
    """The :class:`~actfusion_training.prob_metrics.ReliabilityTable` of its ``to_dict`` form (as in
    ``results.json``)."""
    return ReliabilityTable(tuple(ReliabilityBin(**b) for b in table["bins"]), int(table["count"]),
                            float(table["ece"]), str(table.get("mode", "")))


def markdown_report(metrics: dict[str, Any], info: dict[str, Any]) -> str:
    """Markdown tables of TAS metrics, MoC per protocol/alpha/beta, the baselines and the latencies."""
    tas = metrics["tas"]
    lines = [f"# ActFusion evaluation: {info['checkpoint']}", "",
             f"split {info['split']}, {metrics['videos']} videos, {info['steps']} DDIM steps, seed {info['seed']}, "
             f"median filter {info['median_filter'] or 'off'}, offsets {info['offsets']}, "
             f"LTA: {info.get('num_samples', 1)} sample(s) per forecast, consensus {info.get('consensus', 'mode')}",
             "",
             "| Acc | Edit | F1@10 | F1@25 | F1@50 | TAS score |", "|---|---|---|---|---|---|",
             "| " + " | ".join(f"{tas[k]:.2f}" for k in ("acc", "edit", "f1@10", "f1@25", "f1@50", "score")) + " |"]
    if metrics["lta"]:
        lines += ["", "MoC (%), frames [int(aN), int((a+b)N)) at the raw rate:", "", *moc_table_lines(metrics["lta"])]
        lines += baseline_report_lines(metrics)
        lines += next_action_report_lines(metrics)
    lines += ["", "| latency | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in metrics["latency_s"].items()]
    return "\n".join(lines) + "\n"


def default_median_filter(metadata: dict[str, Any]) -> int:
    """The training config's post-processing window when the checkpoint records it, else 0 (off)."""
    try:
        return int(metadata["experiment"]["training"]["median_filter"])
    except (KeyError, TypeError, ValueError):
        return 0


def run_evaluation(checkpoint: Path, data_root: Path, split: int, out: Path, *, steps: int | None = None,
                   seed: int = 0, lta: bool = True, median_filter: int | None = None,
                   aggregate_offsets: bool = True, max_videos: int | None = None, max_plots: int = 10,
                   device: str = "cpu", background: Sequence[str] = ("background",),
                   exact_f1: bool = False, baselines: bool = True, num_samples: int = 1,
                   consensus: str = "mode") -> dict[str, Any]:
    """Everything the CLI does; returns the results dictionary also written to ``results.json``.

    ``exact_f1`` scores F1 with the exact last-segment end instead of the reference ``eval.py``'s ``N-1``.
    """
    ckpt = load_checkpoint(checkpoint, map_location=device)
    dataset = MsTcnDataset(data_root, split, "test")
    if list(dataset.mapping.names) != list(ckpt.class_names):
        raise DatasetError(f"class mapping of {data_root} ({dataset.num_classes} classes) differs from the "
                           f"checkpoint's ({len(ckpt.class_names)}): {list(dataset.mapping.names)[:5]}... vs "
                           f"{ckpt.class_names[:5]}...")
    if max_videos is not None:
        dataset = MsTcnDataset(data_root, split, "test", names=dataset.names[:max_videos])
    filt = default_median_filter(ckpt.metadata) if median_filter is None else int(median_filter)
    options = ScoringOptions(steps=steps, seed=seed, median_filter=filt, aggregate_offsets=aggregate_offsets,
                             protocols=PROTOCOLS if lta else (), background=tuple(background),
                             exact_f1=exact_f1, num_samples=num_samples, consensus=consensus)
    records = list(dataset)
    for rec in records:
        if rec.features.shape[0] != ckpt.config.input_dim:
            raise DatasetError(f"video {rec.name!r}: features have dimension {rec.features.shape[0]}, the "
                               f"checkpoint expects input_dim {ckpt.config.input_dim}")
    def bar(it: Any) -> Any:
        return tqdm(it, total=len(records), desc="eval", disable=not sys.stderr.isatty())

    run = score_model(ckpt.model, records, ckpt.class_names, options, progress=bar)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions(out, run, ckpt.class_names, options)
    info = {"checkpoint": str(checkpoint), "data_root": str(data_root), "split": split,
            "steps": steps or ckpt.config.ddim_steps, "seed": seed, "median_filter": filt,
            "offsets": "all" if aggregate_offsets else "first", "sample_rate": ckpt.config.sample_rate,
            "alphas": list(options.alphas), "betas": list(options.betas), "ratio": options.ratio,
            "background": list(background), "missing_name": MISSING_NAME, "device": device,
            "f1_segment_ends": "exact" if exact_f1 else "reference", "num_samples": num_samples,
            "consensus": consensus,
            "videos_list": [v.name for v in run.videos]}
    results = {**info, **run.metrics}
    if lta and baselines:
        results.update(evaluate_baselines(out, run, dataset, ckpt.config.sample_rate, options))
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "results.md", markdown_report(results, info))
    for video in run.videos[:max(0, max_plots)]:
        plot_video(out / "plots" / f"{video.name}.png", video, ckpt.class_names)
    if results.get("next_action"):
        protocol = "rn" if "rn" in results["next_action"] else next(iter(results["next_action"]))
        plot_reliability(out / "plots" / "reliability.png",
                         reliability_from_dict(results["next_action"][protocol]["reliability"]),
                         f"next action, {PROTOCOL_NAMES.get(protocol, protocol)}, {num_samples} sample(s)")
    return results


def evaluate_baselines(out: Path, run: ScoredRun, dataset: MsTcnDataset, sample_rate: int,
                       options: ScoringOptions) -> dict[str, Any]:
    """Fit the baselines on the training split's labels, score them on the model's videos, write their files.

    Returns the ``baselines``, ``best_per_cell``, ``baseline_next_action`` (each baseline's next-action
    distributions scored like the model's) and ``baseline_fit`` entries of ``results.json``.
    """
    train = read_split_labels(dataset.root, dataset.split, "train", mapping=dataset.mapping)
    if not train:
        raise DatasetError(f"{dataset.root}: training split {dataset.split} lists no videos to fit the baselines on")
    forecasters = fit_baselines(train.values(), sample_rate)
    videos = [(v.name, v.labels) for v in run.videos]
    scored = score_baselines(forecasters, videos, sample_rate, protocols=options.protocols, alphas=options.alphas,
                             betas=options.betas, ratio=options.ratio)
    write_baseline_predictions(out / "baselines", scored, dataset.mapping.names)
    tables = {"model": run.metrics["lta"], **{n: m["lta"] for n, m in scored.metrics.items()}}
    next_action = {f.name: {protocol: next_action_summary(probs, truth, num_bins=options.reliability_bins)
                            for protocol, (probs, truth) in forecaster_next_action_events(
                                f, videos, dataset.num_classes, sample_rate, protocols=options.protocols,
                                alphas=options.alphas, ratio=options.ratio).items()}
                   for f in forecasters}
    return {"baselines": scored.metrics, "best_per_cell": best_per_cell(tables), "baseline_next_action": next_action,
            "baseline_fit": {"train_split": dataset.split, "train_videos": len(train), "sample_rate": sample_rate}}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actfusion-eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="model checkpoint (best.pt / last.pt)")
    add_dataset_arguments(p, bundle="test", out_help="output directory")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: the checkpoint's, 25 for the "
                                                           "paper presets)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--no-lta", action="store_true", help="TAS only")
    p.add_argument("--no-baselines", action="store_true",
                   help="skip the label-only LTA baselines (repeat last, segment grammars of order 1 and 2)")
    p.add_argument("--median-filter", type=int, default=None, metavar="K",
                   help="median filter window at the sampled rate (0: off; default: the training config's)")
    p.add_argument("--single-offset", action="store_true",
                   help="one DDIM run at offset 0 instead of averaging all sample-rate offsets")
    p.add_argument("--max-videos", type=int, default=None, help="evaluate only the first N test videos")
    p.add_argument("--max-plots", type=int, default=10, help="timeline PNGs for the first N videos (default 10)")
    add_device_arguments(p)
    p.add_argument("--background", nargs="*", default=["background"], metavar="NAME",
                   help="classes dropped from Edit/F1 segments (default: background)")
    p.add_argument("--exact-f1", action="store_true",
                   help="F1 with the exact last-segment end N (default: the reference eval.py's N-1)")
    p.add_argument("--num-samples", type=int, default=1, metavar="K",
                   help="sampled futures per LTA forecast, from one encoder pass (default 1)")
    p.add_argument("--consensus", choices=CONSENSUS_CHOICES, default="mode",
                   help="how the K samples become the scored LTA forecast: per-frame mode, the medoid sample, "
                        "or the argmax of the mean probabilities (default mode; all equal for K=1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if not apply_threads(args.threads):
        return 2
    if args.steps is not None and args.steps < 1:
        print("error: --steps must be >= 1", file=sys.stderr)
        return 2
    if args.num_samples < 1:
        print("error: --num-samples must be >= 1", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {args.device} but CUDA is not available", file=sys.stderr)
        return 2
    try:
        results = run_evaluation(args.checkpoint, args.data_root, args.split, args.out, steps=args.steps,
                                 seed=args.seed, lta=not args.no_lta, median_filter=args.median_filter,
                                 aggregate_offsets=not args.single_offset, max_videos=args.max_videos,
                                 max_plots=args.max_plots, device=args.device, background=args.background,
                                 exact_f1=args.exact_f1, baselines=not args.no_baselines,
                                 num_samples=args.num_samples, consensus=args.consensus)
    except (CheckpointError, DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps({"out": str(args.out), "tas": results["tas"], "lta_mean": results["lta_mean"],
                      "latency_s": results["latency_s"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
