"""Does the forecast leave the current action too early? Remaining duration of the current action, measured.

    python benchmarks/bench_current_action_duration.py [--demo-checkpoint demo_output/model.pt] [--episodes 24]
        [--lta-checkpoint RUN/best.pt --lta-data DATA] [--split 1] [--num-samples 8] [--seeds 0 1 2]
        [--consensus mode] [--work DIR] [--json OUT.json]

For every forecast: the current action's predicted remaining duration (the first change of the consensus
forecast, and the median of the K samples' first changes) vs the true one and vs the order-1 grammar's
``E[D - e | D > e]`` (:mod:`actfusion_training.current_action`); all clipped at the horizon. Printed: bias
(mean signed error, frames; negative = the forecast leaves the current action too early), mean absolute
error, the share of forecasts that change right at the observation cut vs the truth's, and the bias by the
elapsed part ``e`` and by the observed ratio.

* **Demo world** (``--demo-checkpoint``, its ``dataset/`` next to it for the grammar): ``--episodes`` unseen
  episodes (seeds from 1000) replayed through the streaming pipeline as ``bench_demo_episodes.py`` does
  (4 Hz features, a forecast every 0.5 s, horizon ``min(4 N_O, 60 s)``, K samples). Only ticks whose online
  segmentation has the right current action count (the question is the duration, not the label).
* **MS-TCN dataset with one-hot observation** (``--lta-checkpoint`` + ``--lta-data``, a
  ``make_dataset --kind onehot`` folder): the test split, alpha 0.2 / 0.3, the r*N^O layout (r = 4), offset 0,
  the checkpoint's median filter, K samples per forecast for each noise seed; the current action is the
  ground truth's (the observation is perfect). Also: how often the decoder's label of the last observed frame
  is wrong (the observed/mask boundary).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_training import current_action  # noqa: E402

ELAPSED_EDGES_S = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0)     # demo, seconds
ALPHA_EDGES = (0.0, 0.1, 0.2, 0.4, 0.6, 0.8)
ELAPSED_EDGES_FRAC = (0.0, 0.25, 0.5, 0.75, 1.0)     # elapsed / class mean duration


def demo_rows(checkpoint: Path, episodes: int, first_seed: int, num_samples: int, work: Path,
              consensus: str, outcomes: dict[str, dict[str, dict[str, int]]] | None = None
              ) -> list[current_action.RemainingDuration]:
    """Replay unseen demo episodes; one row per complete tick whose current action is right.

    ``outcomes`` (filled if given): ``{"model" | "repeat_last" | "grammar_order1": {"1s" | "2s": {outcome:
    count}}}`` over every complete tick (:func:`lookahead_outcome`), for episode ``first_seed`` under the key
    prefix ``first:`` and for all episodes."""
    from argparse import Namespace

    from actfusion_model.consensus import FutureSamples, consensus_labels
    from actfusion_ros.builder import build_anticipator
    from actfusion_ros.tools.bags import labels_at, read_images, read_labels
    from actfusion_ros.tools.demo import IMAGE_TOPIC, LABEL_TOPIC, write_episode_bag
    from actfusion_ros.tools.replay.cli import pipeline_settings
    from actfusion_ros.tools.replay.driver import drive
    from actfusion_ros.tools.replay.records import GroundTruth
    from actfusion_ros.tools.replay.scoring import fit_replay_baselines
    from actfusion_ros.tools.world import ActivityWorld

    args = Namespace(params=None, checkpoint=checkpoint, extractor=None, extractor_opt=[], feature_rate=None,
                     tick_rate=2.0, ratio=4.0, max_horizon_s=60.0, max_window_s=300.0, min_observed=4, steps=None,
                     seed=0, num_samples=num_samples, backend="torch", onnx_dir=None, engine_dir=None,
                     device="cpu", threads=1)
    settings, forecaster = pipeline_settings(args, {})
    world = ActivityWorld()
    rows: list[current_action.RemainingDuration] = []
    grammar = None
    for seed in range(first_seed, first_seed + episodes):
        anticipator = build_anticipator(settings, forecaster=forecaster)
        names = list(anticipator.class_names)
        if grammar is None:
            grammar = fit_replay_baselines([checkpoint.parent / "dataset"], names,
                                           feature_rate_hz=float(anticipator.config.feature_rate_hz), orders=(1,))[0]
        bag = write_episode_bag(world, world.episode(seed), work / f"bag{seed}")
        records, stamps, _ = drive(read_images(bag, IMAGE_TOPIC), anticipator, tick_period_ns=int(5e8))
        index = {n: i for i, n in enumerate(names)}
        truth = GroundTruth(np.asarray(stamps, np.int64),
                            np.asarray([index.get(n, -1) for n in labels_at(read_labels(bag, LABEL_TOPIC), stamps)]))
        total_frames = (stamps[-1] - stamps[0]) / records[0].period_ns + 1 if records else 1
        for rec in records:
            if rec.partial or rec.future_labels.size == 0:
                continue
            current = int(rec.observed_labels[-1])
            current_true = int(truth.at(np.asarray([rec.observed_stamps_ns[-1]]))[0])
            if outcomes is not None:
                gt = truth.at(rec.future_times_ns())
                futures = {"model": rec.future_labels, "repeat_last": np.full_like(rec.future_labels, current),
                           "grammar_order1": grammar.forecast(rec.observed_labels, rec.future_labels.size)}
                for who, fut in futures.items():
                    for sec in (1, 2):
                        k = int(round(sec * 1e9 / rec.period_ns)) - 1
                        if k < fut.size and gt[k] >= 0:
                            why = current_action.lookahead_outcome(current, current_true, int(fut[k]), int(gt[k]))
                            for key in ([f"first:{who}", who] if seed == first_seed else [who]):
                                cell = outcomes.setdefault(key, {}).setdefault(f"{sec}s", {})
                                cell[why] = cell.get(why, 0) + 1
            if current_true != current:
                continue
            e = current_action.elapsed_run(rec.observed_labels)
            samples = rec.sampled_futures()
            future = rec.future_labels if consensus == "mode" else \
                consensus_labels(FutureSamples.of(samples, len(names)), method=consensus)[0]
            row = current_action.remaining_duration(future, truth.at(rec.future_times_ns()), current, elapsed=e,
                                                    alpha=rec.observed_labels.size / total_frames,
                                                    grammar_residual=grammar.mean_residual(current, e, relative=False),
                                                    sample_labels=samples)
            if row is not None:
                rows.append(row)
    return rows


def lta_rows(checkpoint: Path, data: Path, split: int, num_samples: int, seeds: Sequence[int],
             consensus: str, median_filter: int | None = None, source: str = "decoder",
             alphas: Sequence[float] | None = None, subset: str = "test"
             ) -> tuple[list[current_action.RemainingDuration], dict[str, float]]:
    """One row per (test video, alpha, seed) under r*N^O; plus the observed/mask boundary figures.

    ``median_filter``: default the checkpoint's; ``source="encoder"``: score the encoder's argmax instead of
    the decoder's samples (one forecast, no noise)."""
    from actfusion_model.checkpoint import load_checkpoint
    from actfusion_model.consensus import FutureSamples, consensus_labels
    from actfusion_model.labels import ClassMapping
    from actfusion_model.runtime import forecast
    from actfusion_training.baselines import fit_baselines
    from actfusion_training.data import read_split_labels
    from actfusion_training.inference import as_backend, filtered_probs, lta_layout, noise_generator
    from actfusion_training.scoring import ALPHAS

    ckpt = load_checkpoint(checkpoint)
    backend = as_backend(ckpt.model.eval())
    sr = backend.config.sample_rate
    median = int(ckpt.metadata.get("experiment", {}).get("training", {}).get("median_filter", 0) or 0) \
        if median_filter is None else int(median_filter)
    mapping = ClassMapping.from_file(data / "mapping.txt")
    grammar = fit_baselines(read_split_labels(data, split, "train", mapping).values(), sr, orders=(1,))[1]
    test = read_split_labels(data, split, subset, mapping)
    rows: list[current_action.RemainingDuration] = []
    cut = {"last_observed_wrong": 0, "forecasts": 0}
    for vi, (name, gt) in enumerate(sorted(test.items())):
        feats = np.load(data / "features" / f"{name}.npy")
        gt_s = np.asarray(gt)[::sr]
        for alpha in (alphas or ALPHAS):
            layout = lta_layout(gt.size, sr, alpha, "rn")
            obs = layout.observed
            current = int(gt_s[obs - 1])
            e = current_action.elapsed_run(gt_s[:obs])
            truth = np.full(layout.horizon, -1, dtype=np.int64)
            avail = gt_s[obs:obs + layout.horizon]
            truth[:avail.size] = avail
            for seed in seeds:
                out = forecast(backend, feats[:, ::sr][:, :obs], horizon=layout.horizon, num_samples=num_samples,
                               generator=noise_generator(seed, vi, "rn", 0, alpha))
                probs = torch.cat([out.observed_probs, out.future_probs], dim=2).numpy()
                if source == "encoder":
                    probs = torch.softmax(out.encoder_logits, dim=1).numpy()
                probs = filtered_probs(probs, median)
                labels = probs.argmax(axis=1)
                cut["forecasts"] += 1
                cut["last_observed_wrong"] += int(np.mean(labels[:, obs - 1] != current) > 0.5)
                future = consensus_labels(FutureSamples.of(probs[:, :, obs:]), method=consensus)[0]
                residual = grammar.mean_residual(current, e, relative=False)
                row = current_action.remaining_duration(future, truth, current, elapsed=e, alpha=alpha,
                                                        grammar_residual=residual, sample_labels=labels[:, obs:])
                if row is not None:
                    rows.append(row)
    cut["last_observed_wrong_share"] = cut["last_observed_wrong"] / max(1, cut["forecasts"])
    return rows, cut


def print_summary(title: str, rows: Sequence[current_action.RemainingDuration], frame_s: float, unit: str,
                  groups: dict[str, tuple]) -> dict[str, object]:
    """Print the tables; returns :func:`summarize`'s dict."""
    summary = current_action.summarize(rows, {k: v[0] for k, v in groups.items()})
    print(f"\n### {title}: {len(rows)} forecasts (figures in {unit}; bias = estimate - truth, "
          f"negative = leaves the current action too early; all clipped at the horizon)\n")
    print("| group | n | true remaining | consensus bias | MAE | median-of-samples bias | MAE | "
          "grammar E[D-e|D>e] bias | MAE | forecast changes at the cut | truth changes at the cut |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")

    def line(label: str, s: dict[str, float]) -> None:
        print(f"| {label} | {int(s['n'])} | {s['truth_mean'] * frame_s:.2f} | "
              f"{s['predicted_bias'] * frame_s:+.2f} | {s['predicted_mae'] * frame_s:.2f} | "
              f"{s['sample_median_bias'] * frame_s:+.2f} | {s['sample_median_mae'] * frame_s:.2f} | "
              f"{s['grammar_bias'] * frame_s:+.2f} | {s['grammar_mae'] * frame_s:.2f} | "
              f"{100 * s['predicted_changes_at_cut']:.1f}% | {100 * s['truth_changes_at_cut']:.1f}% |")

    line("all", summary["all"])  # type: ignore[arg-type]
    for name, (_, order) in groups.items():
        table = summary[name]
        for key in order:
            if key in table:  # type: ignore[operator]
                line(f"{name} {key}", table[key])  # type: ignore[index]
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--demo-checkpoint", type=Path, default=None)
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--lta-checkpoint", type=Path, default=None)
    p.add_argument("--lta-data", type=Path, default=None, help="one-hot MS-TCN folder (make_dataset --kind onehot)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--consensus", default="mode", choices=("mode", "medoid"),
                   help="how the K samples become the scored forecast (the deployed rule is mode)")
    p.add_argument("--alphas", type=float, nargs="+", default=None,
                   help="LTA: observed ratios (default 0.2 0.3, the protocol's; more give more forecasts)")
    p.add_argument("--subset", default="test", choices=("test", "train"),
                   help="LTA: score the test split or the training split (is a bias learned or a generalisation gap?)")
    p.add_argument("--median-filter", type=int, default=None, help="LTA: default the checkpoint's")
    p.add_argument("--source", default="decoder", choices=("decoder", "encoder"),
                   help="LTA: forecast with the decoder's samples or the encoder's argmax")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="write the summaries here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    if args.demo_checkpoint is None and args.lta_checkpoint is None:
        print("give --demo-checkpoint and/or --lta-checkpoint with --lta-data", file=sys.stderr)
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_cad_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, object] = {}
    if args.demo_checkpoint is not None:
        outcomes: dict[str, dict[str, dict[str, int]]] = {}
        rows = demo_rows(args.demo_checkpoint, args.episodes, args.first_seed, args.num_samples, work,
                         args.consensus, outcomes)
        print(f"\n### demo world: why look-ahead frames are wrong (share of scored ticks; 'first:' = episode "
              f"{args.first_seed} alone, the others = all {args.episodes} episodes)\n")
        print("| who | look-ahead | n | " + " | ".join(current_action.LOOKAHEAD_OUTCOMES) + " |")
        print("|---|---|---|" + "---|" * len(current_action.LOOKAHEAD_OUTCOMES))
        for who, cells in outcomes.items():
            for sec, counts in cells.items():
                n = sum(counts.values())
                print(f"| {who} | {sec} | {n} | " + " | ".join(f"{100 * counts.get(o, 0) / n:.1f}"
                                                             for o in current_action.LOOKAHEAD_OUTCOMES) + " |")
        out["demo_lookahead_outcomes"] = outcomes
        frame_s = 0.25
        e_bins = [current_action.bin_label(x, ELAPSED_EDGES_S) for x in ELAPSED_EDGES_S] + [f"< {ELAPSED_EDGES_S[0]:g}"]
        a_bins = [current_action.bin_label(x, ALPHA_EDGES) for x in ALPHA_EDGES]
        out["demo"] = print_summary(
            f"demo world, {args.episodes} unseen episodes, {args.num_samples} samples, {args.consensus} consensus",
            rows, frame_s, "seconds",
            {"elapsed s": (lambda r: current_action.bin_label(r.elapsed * frame_s, ELAPSED_EDGES_S), e_bins),
             "alpha": (lambda r: current_action.bin_label(r.alpha, ALPHA_EDGES), a_bins)})
    if args.lta_checkpoint is not None:
        if args.lta_data is None:
            print("--lta-checkpoint needs --lta-data", file=sys.stderr)
            return 2
        rows, cut = lta_rows(args.lta_checkpoint, args.lta_data, args.split, args.num_samples, args.seeds,
                             args.consensus, args.median_filter, args.source, args.alphas, args.subset)
        e_edges = (0, 25, 50, 100, 200)
        out["lta"] = print_summary(
            f"{args.lta_data.name} split {args.split} {args.subset}, r*N^O, {args.num_samples} samples x seeds "
            f"{args.seeds}, {args.consensus} consensus, {args.source}, median filter {args.median_filter}",
            rows, 1.0, "model frames",
            {"elapsed frames": (lambda r: current_action.bin_label(r.elapsed, e_edges),
                                [current_action.bin_label(x, e_edges) for x in e_edges]),
             "alpha": (lambda r: f"{r.alpha:g}", [f"{a:g}" for a in (args.alphas or (0.2, 0.3))])})
        print(f"\nobserved/mask boundary: the decoder's (median-filtered, sample-majority) label of the last observed "
              f"frame is wrong in {100 * cut['last_observed_wrong_share']:.1f}% of {cut['forecasts']} forecasts")
        out["lta_cut"] = cut
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
