"""Next-action scores of the label-only baselines on real MS-TCN labels (what K-sample forecasts must beat).

    python benchmarks/bench_next_action.py [--source ../shared/data/50salads] [--split 1] [--sample-rate SR]
                                           [--config training/configs/50salads_onehot.yaml]
                                           [--alphas 0.2 0.3] [--bins 10] [--work DIR]

The question (issue 13): after the current action, which action comes next within the horizon, or none?
Events sit where the LTA forecast goes (:func:`actfusion_training.prob_metrics.lta_next_action_case`: observed = the
ground truth's first ``alpha`` at the sampled rate, offset 0; truth = the first different label within the
horizon of each protocol, else "no change"), one per test video and alpha. The baselines of
:mod:`actfusion_training.baselines` are fitted on the training split's labels (``groundTruth/`` only, sampled the same
way) and state their next-action distributions; they are scored by :mod:`actfusion_training.prob_metrics`: top-1 and
top-3 accuracy, Brier score, ECE of the top-label and of all stated probabilities, and a reliability diagram
PNG of the stated probabilities per forecaster and protocol under ``WORK/``. No model yet: the model's
K-sample distribution (:func:`actfusion_model.consensus.next_action_distribution`) plugs into the same scores.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.config import load_experiment_config  # noqa: E402
from actfusion_model.consensus import NO_CHANGE  # noqa: E402
from actfusion_model.labels import ClassMapping  # noqa: E402
from actfusion_training.baselines import fit_baselines  # noqa: E402
from actfusion_training.data import read_split_labels  # noqa: E402
from actfusion_training.inference import PROTOCOLS  # noqa: E402
from actfusion_training.plots import plot_reliability  # noqa: E402
from actfusion_training.prob_metrics import lta_next_action_case, score_forecaster_next_actions  # noqa: E402

PROTOCOL_NAMES = {"gt": "GT length", "rn": "r*N^O, r=4"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "50salads")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "50salads_onehot.yaml",
                   help="experiment config whose sample rate is used unless --sample-rate is given")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--sample-rate", type=int, default=None)
    p.add_argument("--alphas", type=float, nargs="+", default=[0.2, 0.3], help="observed fractions (one event "
                   "per test video and alpha)")
    p.add_argument("--bins", type=int, default=10, help="reliability bins")
    p.add_argument("--work", type=Path, default=None, help="write the reliability PNGs here (default: a temp dir)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sr = args.sample_rate or load_experiment_config(args.config).model.sample_rate
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_next_action_"))
    mapping = ClassMapping.from_file(args.source / "mapping.txt")
    train = read_split_labels(args.source, args.split, "train", mapping)
    test = list(read_split_labels(args.source, args.split, "test", mapping).items())
    forecasters = fit_baselines(train.values(), sr)
    print(f"{args.source.name} split {args.split}: {len(test)} test videos x alphas {args.alphas}, sample rate {sr}, "
          f"baselines fitted on {len(train)} training videos")
    print("\n| protocol | who | events | no change (truth) | top-1 % | top-3 % | Brier | ECE top | ECE stated |")
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[str, dict] = {}
    for f in forecasters:
        top = score_forecaster_next_actions(f, test, mapping.num_classes, sr, alphas=args.alphas, num_bins=args.bins)
        stated = score_forecaster_next_actions(f, test, mapping.num_classes, sr, alphas=args.alphas,
                                               num_bins=args.bins, mode="stated")
        results[f.name] = {p: {"top": top[p].to_dict(), "stated": stated[p].reliability.to_dict()} for p in PROTOCOLS}
        for p in PROTOCOLS:
            s = top[p]
            no_change = _no_change_truths(test, sr, args.alphas, p)
            print(f"| {PROTOCOL_NAMES[p]} | {f.name.replace('_', ' ')} | {s.count} | {no_change} | {s.topk[1]:.1f} | "
                  f"{s.topk[3]:.1f} | {s.brier:.3f} | {s.reliability.ece:.3f} | {stated[p].reliability.ece:.3f} |")
            plot_reliability(work / f"reliability_{f.name}_{p}.png", stated[p].reliability,
                             f"{args.source.name} split {args.split}, {f.name}, {PROTOCOL_NAMES[p]}")
    print(json.dumps({"sample_rate": sr, "alphas": args.alphas, "results": results}))
    print(f"\nreliability diagrams: {work}")
    return 0


def _no_change_truths(videos: Sequence, sample_rate: int, alphas: Sequence[float], protocol: str) -> int:
    """How many events' truth is "no change within the horizon"."""
    return sum(lta_next_action_case(gt, sample_rate, a, protocol).truth == NO_CHANGE
               for _, gt in videos for a in alphas)


if __name__ == "__main__":
    sys.exit(main())
