"""LTA with ground-truth observations on the real 50 Salads labels: model vs "repeat the last observed action".

    python benchmarks/bench_lta_gt_observation.py [--source ../shared/data/50salads] [--split 1] [--epochs 20]
                                                  [--config training/configs/50salads_onehot.yaml]
                                                  [--steps-sweep 25 10 5 2] [--seeds 0 1 2] [--threads 1]
                                                  [--work DIR]

Features are the one-hot ground-truth labels (``training.make_dataset --kind onehot``), so observing means
knowing the true actions so far and the task is pure forecasting. A small model is trained on the training
split (validation carved from it), then evaluated on the test split with ``actfusion-eval`` (offset 0 only)
under both horizon protocols: the literature's ground-truth length and the deployable r*N^O rule (r = 4).
The baseline predicts the ground truth up to the last observed frame and repeats that frame's action after it,
over exactly the frames the model's forecast covers; it is scored by the same ``training.metrics.moc_scores``
(and its prediction files are written, for ``python -m training.evaluate``). The model's forecasts are
stochastic (DDIM with eta = 1 from noise), so its MoC is averaged over ``--seeds``. ``--steps-sweep``
re-evaluates the same checkpoint with fewer DDIM steps (accuracy vs forecast latency).
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

from model.io import atomic_write_text  # noqa: E402
from training.data import MsTcnDataset  # noqa: E402
from training.eval_model import MISSING_NAME, run_evaluation  # noqa: E402
from training.inference import NO_PREDICTION, PROTOCOLS, frame_labels_to_names, lta_layout  # noqa: E402
from training.make_dataset import make_dataset  # noqa: E402
from training.metrics import moc_scores  # noqa: E402
from training.scoring import ALPHAS, BETAS, lta_key  # noqa: E402
from training.trainer import TrainOptions, train  # noqa: E402


def repeat_last_observed(gt: np.ndarray, sample_rate: int, alpha: float, protocol: str) -> np.ndarray:
    """Ground truth over the observed frames, then the last observed frame's label over the forecast window."""
    n = gt.size
    layout = lta_layout(n, sample_rate, alpha, protocol)
    observed = min(n, layout.observed * sample_rate)
    last_seen = gt[min(n - 1, (layout.observed - 1) * sample_rate)]  # offset 0 sees frames 0, sr, 2sr, ...
    covered = min(n, layout.total * sample_rate)
    out = np.full(n, NO_PREDICTION, dtype=np.int64)
    out[:observed] = gt[:observed]
    out[observed:covered] = last_seen
    return out


def baseline(data: Path, split: int, sample_rate: int, out: Path) -> dict[str, dict[str, dict[str, float]]]:
    """MoC of the baseline per protocol / alpha / beta; writes its prediction files under ``out``."""
    ds = MsTcnDataset(data, split, "test")
    videos = [(name, ds.load_labels(name)) for name in ds.names]
    result: dict[str, dict[str, dict[str, float]]] = {}
    for protocol in PROTOCOLS:
        result[protocol] = {}
        for alpha in ALPHAS:
            pairs = []
            for name, gt in videos:
                pred = repeat_last_observed(gt, sample_rate, alpha, protocol)
                pairs.append((pred, gt))
                names = frame_labels_to_names(pred, ds.mapping.names, MISSING_NAME)
                atomic_write_text(out / lta_key(protocol, alpha) / f"{name}.txt", "".join(f"{x}\n" for x in names))
            moc, _ = moc_scores(pairs, alpha, BETAS)
            result[protocol][f"{alpha:g}"] = {f"{b:g}": v for b, v in moc.items()}
    return result


def mean_tables(tables: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float]]:
    """Element-wise mean of ``{alpha: {beta: MoC}}`` tables (one per noise seed)."""
    return {a: {b: float(np.mean([t[a][b] for t in tables])) for b in tables[0][a]} for a in tables[0]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "50salads")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "50salads_onehot.yaml")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--steps-sweep", type=int, nargs="+", default=[25, 10, 5, 2],
                   help="DDIM steps to evaluate (the first is the headline)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="noise seeds to average the model's MoC over (forecasts are stochastic)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="keep data and runs here (default: a temp dir)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_lta_"))
    data = work / "data"
    if not (data / "features").is_dir():
        make_dataset(args.source, data, "onehot")
    run_dir = work / f"split{args.split}"
    t0 = time.perf_counter()
    status, _ = train(TrainOptions(config=args.config, data_root=data, split=args.split, out=run_dir,
                                   epochs=args.epochs, progress=False,
                                   resume=(run_dir / "trainer_state.pt").exists()))
    train_s = time.perf_counter() - t0
    ckpt = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
    sweep: dict[int, list[dict]] = {}
    for steps in args.steps_sweep:
        sweep[steps] = []
        for seed in args.seeds:
            first = steps == args.steps_sweep[0] and seed == args.seeds[0]
            res = run_evaluation(ckpt, data, args.split, work / f"eval_steps{steps}_seed{seed}", steps=steps,
                                 seed=seed, aggregate_offsets=False, max_plots=3 if first else 0)
            sweep[steps].append(res)
            print(json.dumps({"steps": steps, "seed": seed, "tas_acc": res["tas"]["acc"], "lta_mean": res["lta_mean"],
                              "latency_s": res["latency_s"]}), flush=True)
    head = sweep[args.steps_sweep[0]]
    sr = head[0]["sample_rate"]
    base = baseline(data, args.split, sr, work / "baseline")
    print(f"\n50 Salads split {args.split}, one-hot ground-truth observation, {head[0]['videos']} test videos, "
          f"trained {args.epochs} epochs in {train_s:.0f} s ({status}, {ckpt.name}); "
          f"{args.steps_sweep[0]} DDIM steps, offset 0, median filter {head[0]['median_filter']}; "
          f"model MoC = mean over noise seeds {args.seeds} (the baseline is deterministic)")
    print("\n| protocol | alpha | " + " | ".join(f"b={b:g}" for b in BETAS) + " | mean |")
    print("|---|---|" + "---|" * (len(BETAS) + 1))
    names = {"gt": "GT length", "rn": "r*N^O, r=4"}
    for protocol in PROTOCOLS:
        model_table = mean_tables([r["lta"][protocol] for r in head])
        for who, table in (("model", model_table), ("repeat last", base[protocol])):
            for alpha in ALPHAS:
                vals = [table[f"{alpha:g}"][f"{b:g}"] for b in BETAS]
                print(f"| {names[protocol]}: {who} | {alpha:g} | " + " | ".join(f"{v:.1f}" for v in vals)
                      + f" | {np.mean(vals):.1f} |")
    base_mean = {p: float(np.mean([v for t in base[p].values() for v in t.values()])) for p in PROTOCOLS}
    print("\n| DDIM steps | TAS Acc | MoC mean (GT length) | MoC mean (r*N^O) | s / forecast (gt) | s / forecast (rn) |")
    print("|---|---|---|---|---|---|")
    for steps, results in sweep.items():
        def stat(values: list[float]) -> str:
            return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"
        lat = {k: float(np.mean([r["latency_s"][k] for r in results])) for k in results[0]["latency_s"]}
        print(f"| {steps} | {stat([r['tas']['acc'] for r in results])} | "
              f"{stat([r['lta_mean']['gt'] for r in results])} | {stat([r['lta_mean']['rn'] for r in results])} | "
              f"{lat['lta_gt_per_forecast']:.3f} | {lat['lta_rn_per_forecast']:.3f} |")
    print(f"| repeat last | | {base_mean['gt']:.1f} | {base_mean['rn']:.1f} | | |")
    print(json.dumps({"baseline": base, "model": {str(s): [r["lta"] for r in rs] for s, rs in sweep.items()}}))
    print(f"\nwork directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
