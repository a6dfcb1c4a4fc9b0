"""The demo's model on many unseen episodes of the demo world: model vs the label-only baselines, by replay.

    python benchmarks/bench_demo_episodes.py [--checkpoint demo_output/model.pt] [--episodes 24]
                                             [--first-seed 1000] [--num-samples 8] [--work DIR]

One episode (``make demo``'s) is a small sample: its action durations may run long or short. This renders
``--episodes`` unseen episodes (seeds from ``--first-seed``; the demo trains on seeds 0-159), writes each to a
bag and replays it through the streaming pipeline exactly as ``actfusion-replay`` does (same scoring code),
then prints the per-episode and mean MoC and look-ahead accuracies of the model, "repeat the last observed
action" and the segment grammars fitted on the demo's training labels (``--baseline-labels``, if the
demo's dataset folder is next to the checkpoint).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_ros.demo import IMAGE_TOPIC, LABEL_TOPIC, write_episode_bag  # noqa: E402
from actfusion_ros.replay import main as replay_main  # noqa: E402
from actfusion_ros.world import ActivityWorld  # noqa: E402

LOOKAHEADS = ("1s", "2s", "5s")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "demo_output" / "model.pt")
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--work", type=Path, default=None)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_demo_"))
    world = ActivityWorld()
    dataset = args.checkpoint.parent / "dataset"
    rows: list[dict[str, list[float | None]]] = []
    for seed in range(args.first_seed, args.first_seed + args.episodes):
        bag = write_episode_bag(world, world.episode(seed), work / f"bag{seed}")
        out = work / f"replay{seed}"
        cmd = [str(bag), "--checkpoint", str(args.checkpoint), "--out", str(out), "--image-topic", IMAGE_TOPIC,
               "--label-topic", LABEL_TOPIC, "--max-horizon-s", "60", "--num-samples", str(args.num_samples),
               "--threads", "1"] + (["--baseline-labels", str(dataset)] if dataset.is_dir() else [])
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            if replay_main(cmd) != 0:
                print(f"replay of episode {seed} failed", file=sys.stderr)
                return 1
        report = json.loads((out / "replay.json").read_text())
        rows.append({who: [score["moc"], *(score["lookahead_accuracy"].get(k) for k in LOOKAHEADS)]
                     for who, score in report["anticipation"].items()})
    names = list(rows[0])
    print(f"{args.episodes} unseen episodes (seeds {args.first_seed}-{args.first_seed + args.episodes - 1}), "
          f"{args.checkpoint}, {args.num_samples} samples per forecast; mean over episodes")
    print("\n| who | MoC | " + " | ".join(f"acc @ {k}" for k in LOOKAHEADS) + " | episodes where the model's MoC is higher |")
    print("|---|---|" + "---|" * (len(LOOKAHEADS) + 1))
    for who in names:
        means = [np.mean([r[who][i] for r in rows if r[who][i] is not None]) for i in range(1 + len(LOOKAHEADS))]
        wins = "" if who == "model" else f"{sum(r['model'][0] > r[who][0] for r in rows)} / {len(rows)}"
        print(f"| {who.replace('_', ' ')} | " + " | ".join(f"{m:.1f}" for m in means) + f" | {wins} |")
    print(f"\nwork directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
