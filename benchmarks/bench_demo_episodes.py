"""The demo's model on many unseen episodes of the demo world: model vs the label-only baselines, by replay.

    python benchmarks/bench_demo_episodes.py [--checkpoint demo_output/model.pt] [--episodes 24]
                                             [--first-seed 1000] [--num-samples 8] [--work DIR]

One episode (``make demo``'s) is a small sample: its action durations may run long or short. This renders
``--episodes`` unseen episodes (seeds from ``--first-seed``; the demo trains on seeds 0-159), writes each to a
bag and replays it through the streaming pipeline exactly as ``actfusion-replay`` does (same scoring code),
then prints the per-episode and mean MoC and look-ahead accuracies of the model, "repeat the last observed
action" and the segment grammars fitted on the demo's training labels (``--baseline-labels``, if the
demo's dataset folder is next to the checkpoint). The bags and replays go to a temporary folder that is
removed at the end (about 1 MB per episode), or to ``--work DIR``, which is kept. Run it in the project's
venv (``. .venv/bin/activate`` or ``.venv/bin/python benchmarks/bench_demo_episodes.py``).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_ros.tools.demo import IMAGE_TOPIC, LABEL_TOPIC, write_episode_bag  # noqa: E402
from actfusion_ros.tools.replay.cli import main as replay_main  # noqa: E402
from actfusion_ros.tools.world import ActivityWorld  # noqa: E402

LOOKAHEADS = ("1s", "2s", "5s")
#: One episode's scores: ``{who: [MoC, acc @ LOOKAHEADS...]}`` (None where nothing was scored).
Scores = dict[str, list[float | None]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=REPO / "demo_output" / "model.pt")
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--first-seed", type=int, default=1000)
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--work", type=Path, default=None,
                   help="keep the bags and replays here (default: a temporary folder, removed at the end)")
    return p


def report_scores(report: dict) -> Scores:
    """The anticipation scores of one ``replay.json``."""
    return {who: [score["moc"], *(score["lookahead_accuracy"].get(k) for k in LOOKAHEADS)]
            for who, score in report["anticipation"].items()}


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def per_episode_lines(seeds: Sequence[int], rows: Sequence[Scores]) -> list[str]:
    """Markdown: one row per episode, the MoC and look-ahead accuracies of every forecaster."""
    names = list(rows[0])
    lines = ["| seed | " + " | ".join(f"{who.replace('_', ' ')}: MoC / " + " / ".join(LOOKAHEADS)
                                     for who in names) + " |",
             "|---|" + "---|" * len(names)]
    for seed, row in zip(seeds, rows):
        lines.append(f"| {seed} | " + " | ".join(" / ".join(_cell(v) for v in row[who]) for who in names) + " |")
    return lines


def mean_lines(rows: Sequence[Scores]) -> list[str]:
    """Markdown: the means over the episodes, and on how many episodes the model's MoC beats each baseline."""
    names = list(rows[0])
    lines = ["| who | MoC | " + " | ".join(f"acc @ {k}" for k in LOOKAHEADS)
             + " | episodes where the model's MoC is higher |",
             "|---|---|" + "---|" * (len(LOOKAHEADS) + 1)]
    for who in names:
        means = [np.mean(vals) if (vals := [r[who][i] for r in rows if r[who][i] is not None]) else None
                 for i in range(1 + len(LOOKAHEADS))]
        wins = "" if who == "model" else f"{sum(r['model'][0] > r[who][0] for r in rows)} / {len(rows)}"
        lines.append(f"| {who.replace('_', ' ')} | " + " | ".join(_cell(m) for m in means) + f" | {wins} |")
    return lines


def run(args: argparse.Namespace, work: Path) -> int:
    world = ActivityWorld()
    dataset = args.checkpoint.parent / "dataset"
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    rows: list[Scores] = []
    for seed in seeds:
        bag = write_episode_bag(world, world.episode(seed), work / f"bag{seed}")
        out = work / f"replay{seed}"
        cmd = [str(bag), "--checkpoint", str(args.checkpoint), "--out", str(out), "--image-topic", IMAGE_TOPIC,
               "--label-topic", LABEL_TOPIC, "--max-horizon-s", "60", "--num-samples", str(args.num_samples),
               "--threads", "1"] + (["--baseline-labels", str(dataset)] if dataset.is_dir() else [])
        with contextlib.redirect_stdout(io.StringIO()):
            rc = replay_main(cmd)
        if rc != 0:
            print(f"replay of episode {seed} failed (exit {rc})", file=sys.stderr)
            return 1
        rows.append(report_scores(json.loads((out / "replay.json").read_text())))
        print(f"episode {seed}: " + ", ".join(f"{who.replace('_', ' ')} MoC {_cell(v[0])}"
                                              for who, v in rows[-1].items()), flush=True)
    print(f"\n{args.episodes} unseen episodes (seeds {seeds[0]}-{seeds[-1]}), {args.checkpoint}, "
          f"{args.num_samples} samples per forecast\n\nPer episode:\n")
    print("\n".join(per_episode_lines(seeds, rows)))
    print("\nMean over the episodes:\n")
    print("\n".join(mean_lines(rows)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1:
        print("bench_demo_episodes: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    if not args.checkpoint.is_file():
        print(f"bench_demo_episodes: error: no checkpoint at {args.checkpoint} (run `make demo` first)",
              file=sys.stderr)
        return 2
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        rc = run(args, args.work)
        print(f"\nbags and replays kept in {args.work}")
        return rc
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:   # removed however run() ends
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
