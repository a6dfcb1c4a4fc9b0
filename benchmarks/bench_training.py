"""Training throughput per batch size: iterations/s and frames/s of the real trainer loop.

    python benchmarks/bench_training.py [--data /tmp/h5data] [--config training/configs/50salads_onehot.yaml]
                                        [--batch-sizes 1 4 16] [--seconds 60] [--threads 2] [--split 1]

``--data`` is an MS-TCN dataset, e.g. the 50 Salads one-hot features made with
``python -m actfusion_training.make_dataset --kind onehot --source ../shared/data/50salads --out /tmp/h5data``
(written there when missing and ``--source`` is given). For each batch size B the config is run with
``training.batch_size: B`` through :class:`actfusion_training.trainer.Trainer`; after 2 warm-up iterations the loop is
timed for about ``--seconds`` (then stopped the way Ctrl-C stops it). frames/s counts the videos' own frames
at the model's sample rate (padding excluded). Prints one JSON line per batch size and a markdown table.
Not a timed test: the figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_training.make_dataset import make_dataset  # noqa: E402
from actfusion_training.trainer import Trainer, TrainOptions  # noqa: E402

WARMUP_ITERATIONS = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=Path("/tmp/h5data"))
    p.add_argument("--source", type=Path, default=None,
                   help="make --data from these labels (one-hot) when it does not exist")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "50salads_onehot.yaml")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=60.0, help="timed wall-clock per batch size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--device", default="cpu")
    return p


def measure(config: Path, data: Path, split: int, batch_size: int, seconds: float, device: str) -> dict:
    """Run the trainer with ``batch_size`` for about ``seconds`` after warm-up; return the throughput."""
    doc = yaml.safe_load(config.read_text()) or {}
    doc.setdefault("training", {})["batch_size"] = batch_size
    frames: list[int] = []
    videos: list[int] = []
    marks: dict[str, float] = {}

    def on_iteration(trainer: Trainer, iteration: int) -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        now = time.perf_counter()
        if iteration == WARMUP_ITERATIONS:
            marks["start"] = now
        elif iteration > WARMUP_ITERATIONS:
            frames.append(trainer.last_batch.frames)
            videos.append(len(trainer.last_batch.lengths))
            marks["end"] = now
            if now - marks["start"] >= seconds:
                trainer.stop.requested = True

    with tempfile.TemporaryDirectory() as tmp:
        cfg_path = Path(tmp) / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(doc))
        trainer = Trainer(TrainOptions(config=cfg_path, data_root=data, split=split, out=Path(tmp) / "run",
                                       device=device, progress=False, on_iteration=on_iteration))
        trainer.run()
        trainer.close()
    iterations = len(frames)
    elapsed = marks.get("end", 0.0) - marks.get("start", 0.0)
    if iterations == 0 or elapsed <= 0:
        raise RuntimeError(f"batch {batch_size}: an epoch ended before any timed iteration; lower the batch size")
    return {"batch_size": batch_size, "iterations": iterations, "seconds": round(elapsed, 2),
            "iterations_per_s": round(iterations / elapsed, 3), "videos_per_s": round(sum(videos) / elapsed, 3),
            "frames_per_s": round(sum(frames) / elapsed, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.data.is_dir():
        if args.source is None:
            print(f"error: {args.data} does not exist; pass --source to make it", file=sys.stderr)
            return 2
        make_dataset(args.source, args.data, "onehot")
    rows = []
    for b in args.batch_sizes:
        row = measure(args.config, args.data, args.split, b, args.seconds, args.device)
        row["threads"] = args.threads
        print(json.dumps(row), flush=True)
        rows.append(row)
    print("\n| B | iterations/s | videos/s | frames/s |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['iterations_per_s']} | {r['videos_per_s']} | {r['frames_per_s']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
