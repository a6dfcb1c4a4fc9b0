"""``actfusion-train``: train ActFusion on an MS-TCN layout dataset.

    actfusion-train --config training/configs/50salads.yaml --data-root DATA/50salads --split 1 --out runs/s1
                    [--resume] [--epochs N] [--time-budget MIN] [--device cpu|cuda] [--max-videos N]

Multi-GPU: ``torchrun --nproc_per_node=G -m actfusion_training.train ... --device cuda`` (see docs/training.md).
``--time-budget MIN`` stops after the optimizer step that ends past MIN minutes of wall-clock (of this
invocation: a ``--resume`` gets a fresh budget), validates, keeps the best checkpoint and saves.
Exit status: 0 finished or stopped on the time budget, 130 stopped by Ctrl-C / SIGTERM (a checkpoint of the last
completed step is written; continue with ``--resume``), 1 for configuration or data errors, 2 for bad arguments.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from actfusion_model.checkpoint import CheckpointError
from actfusion_model.config import ConfigError
from actfusion_training.cli import add_dataset_arguments, add_device_arguments, apply_threads
from actfusion_training.data import DatasetError
from actfusion_training.trainer import TrainingError, TrainOptions, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="actfusion-train", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True, type=Path, help="experiment YAML (training/configs/*.yaml)")
    add_dataset_arguments(p, bundle="train", out_help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--epochs", type=int, default=None, help="total epochs (overrides training.epochs)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="stop cleanly after MIN minutes of wall-clock (per invocation), validate and save")
    add_device_arguments(p)
    p.add_argument("--max-videos", type=int, default=None,
                   help="use only the first N training videos of the split (quick runs)")
    p.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                   help="progress bar (auto: only when stderr is a terminal)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if not apply_threads(args.threads):
        return 2
    if args.time_budget is not None and not args.time_budget > 0:
        print("error: --time-budget must be > 0 minutes", file=sys.stderr)
        return 2
    if args.max_videos is not None and args.max_videos < 1:
        print("error: --max-videos must be >= 1", file=sys.stderr)
        return 2
    options = TrainOptions(config=args.config, data_root=args.data_root, split=args.split, out=args.out,
                           resume=args.resume, epochs=args.epochs, device=args.device, max_videos=args.max_videos,
                           time_budget_minutes=args.time_budget,
                           progress={"auto": None, "on": True, "off": False}[args.progress])
    try:
        status, out = train(options)
    except (ConfigError, DatasetError, TrainingError, CheckpointError, ValueError, RuntimeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") == "0":
        print(f"{status}: {out}")
    return 0 if status in ("finished", "budget") else 130


if __name__ == "__main__":
    sys.exit(main())
