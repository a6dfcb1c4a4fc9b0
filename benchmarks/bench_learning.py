"""Does training learn? Train on synthetic features made from the real GTEA labels and print TAS per split.

    python benchmarks/bench_learning.py [--source ../shared/data/gtea] [--config training/configs/tiny.yaml]
                                        [--splits 1 2 3 4] [--epochs 20] [--threads 1] [--work DIR]

For every split: ``actfusion_training.make_dataset`` features (synthetic: class prototypes + noise, jittered boundaries,
ambiguous stretches; written once to ``--work``), ``actfusion-train`` on the training split (validation
carved from it), ``actfusion-eval`` of ``best.pt`` on the test split (TAS only unless ``--lta``). Prints one
line per split and the mean, as JSON lines and a markdown table. Not a timed test: a few minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_training.eval_model import run_evaluation  # noqa: E402
from actfusion_training.make_dataset import make_dataset  # noqa: E402
from actfusion_training.trainer import TrainOptions, train  # noqa: E402

KEYS = ("acc", "edit", "f1@10", "f1@25", "f1@50")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "gtea",
                   help="MS-TCN root with the real labels (default ../shared/data/gtea)")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "tiny.yaml")
    p.add_argument("--splits", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--dim", type=int, default=32, help="synthetic feature dimension")
    p.add_argument("--noise", type=float, default=1.0, help="synthetic noise norm (relative to prototypes)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps at evaluation (default: the config's)")
    p.add_argument("--median-filter", type=int, default=None,
                   help="post-processing window at evaluation (default: the config's)")
    p.add_argument("--lta", action="store_true", help="also forecast (both horizon protocols)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="keep data and runs here (default: a temp dir)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_learning_"))
    data = work / "data"
    if not (data / "features").is_dir():
        make_dataset(args.source, data, "synthetic", dim=args.dim, seed=0, noise=args.noise)
    rows = []
    for split in args.splits:
        run_dir = work / f"split{split}"
        t0 = time.perf_counter()
        status, _ = train(TrainOptions(config=args.config, data_root=data, split=split, out=run_dir,
                                       epochs=args.epochs, progress=False,
                                       resume=(run_dir / "trainer_state.pt").exists()))
        train_s = time.perf_counter() - t0
        ckpt = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
        res = run_evaluation(ckpt, data, split, work / f"eval{split}", steps=args.steps, lta=args.lta,
                             median_filter=args.median_filter, max_plots=2)
        row = {"split": split, "status": status, "train_s": round(train_s, 1), "checkpoint": ckpt.name,
               **{k: round(res["tas"][k], 2) for k in KEYS}, "lta_mean": res["lta_mean"],
               "tas_latency_s": round(res["latency_s"]["tas_per_video"], 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    mean = {k: round(float(np.mean([r[k] for r in rows])), 2) for k in KEYS}
    print(json.dumps({"split": "mean", **mean}))
    print("\n| split | Acc | Edit | F1@10 | F1@25 | F1@50 | train s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['split']} | " + " | ".join(f"{r[k]:.1f}" for k in KEYS) + f" | {r['train_s']:.0f} |")
    print("| mean | " + " | ".join(f"{mean[k]:.1f}" for k in KEYS) + " | |")
    print(f"\nwork directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
