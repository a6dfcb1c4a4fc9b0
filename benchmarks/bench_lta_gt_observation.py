"""LTA with ground-truth observations on real MS-TCN labels: model vs the label-only baselines.

    python benchmarks/bench_lta_gt_observation.py [--source ../shared/data/50salads] [--split 1]
                                                  [--config training/configs/cpu_hour.yaml] [--sample-rate SR]
                                                  [--time-budget MIN | --epochs N] [--checkpoint CKPT]
                                                  [--steps-sweep 25 10 5 2] [--seeds 0 1 2] [--num-samples K]
                                                  [--threads 1] [--work DIR] [--baselines-only]

Features are the one-hot ground-truth labels (``actfusion_training.make_dataset --kind onehot``), so observing means
knowing the true actions so far and the task is pure forecasting. A small model is trained on the training
split (validation carved from it), then evaluated on the test split with ``actfusion-eval`` (offset 0 only)
under both horizon protocols: the literature's ground-truth length and the deployable r*N^O rule (r = 4).
The baselines (:mod:`actfusion_training.baselines`: "repeat the last observed action" and segment grammars of order 1
and 2 fitted on the training split's labels) predict the ground truth up to the last observed frame and
forecast after it, over exactly the frames the model's forecast covers, at the model's sample rate; they are
scored by the same ``actfusion_training.metrics.moc_scores`` (and their prediction files are written under
``WORK/baselines/``, for ``python -m actfusion_training.evaluate``). The model's forecasts are stochastic (DDIM with
eta = 1 from noise), so its MoC is averaged over ``--seeds``. ``--steps-sweep`` re-evaluates the same
checkpoint with fewer DDIM steps (accuracy vs forecast latency). ``--baselines-only`` trains nothing and
reads only ``groundTruth/`` of ``--source`` (sample rate: ``--sample-rate``, else the config's).
``--time-budget MIN`` trains for MIN minutes of wall-clock (``actfusion-train --time-budget``);
``--checkpoint`` scores an already trained model instead of training; ``--sample-rate`` also overrides the
config's ``model.sample_rate`` for training; ``--num-samples K`` scores the per-frame consensus of K samples.

Duration diagnostic (r*N^O layout, alpha 0.2 and 0.3, the first noise seed): how many future frames the
forecast keeps the current action before it first leaves it, against the truth and against the order-1
grammar's ``E[D - e | D > e]`` (:mod:`actfusion_training.current_action`; all clipped at the horizon): the
median of each, and the share of forecasts that leave it earlier than the truth does.
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

from actfusion_model.config import load_experiment_config  # noqa: E402
from actfusion_model.labels import ClassMapping  # noqa: E402
from actfusion_training.baselines import fit_baselines, score_baselines  # noqa: E402
from actfusion_training.data import read_split_labels  # noqa: E402
from actfusion_training.eval_model import run_evaluation, write_baseline_predictions  # noqa: E402
from actfusion_training.inference import PROTOCOLS  # noqa: E402
from actfusion_training.make_dataset import make_dataset  # noqa: E402
from actfusion_training.scoring import ALPHAS, BETAS  # noqa: E402
from actfusion_training.trainer import TrainOptions, train  # noqa: E402

PROTOCOL_NAMES = {"gt": "GT length", "rn": "r*N^O, r=4"}

Table = dict[str, dict[str, float | None]]  # {alpha: {beta: MoC}}


def baselines(data: Path, split: int, sample_rate: int, out: Path) -> dict[str, dict[str, Table]]:
    """``{baseline: {protocol: {alpha: {beta: MoC}}}}`` on the test split, fitted on the training split's
    labels (``groundTruth/`` only); writes their prediction files under ``out``."""
    mapping = ClassMapping.from_file(data / "mapping.txt")
    train_labels = read_split_labels(data, split, "train", mapping)
    test = list(read_split_labels(data, split, "test", mapping).items())
    run = score_baselines(fit_baselines(train_labels.values(), sample_rate), test, sample_rate)
    write_baseline_predictions(out, run, mapping.names)
    return {name: m["lta"] for name, m in run.metrics.items()}


def print_cell_tables(tables: dict[str, dict[str, Table]]) -> None:
    """MoC of everyone cell by cell, both protocols, with each row's mean and the best per cell."""
    print("\n| protocol | who | alpha | " + " | ".join(f"b={b:g}" for b in BETAS) + " | mean |")
    print("|---|---|---|" + "---|" * (len(BETAS) + 1))
    for protocol in PROTOCOLS:
        for who, table in tables.items():
            for alpha in ALPHAS:
                vals = [table[protocol][f"{alpha:g}"][f"{b:g}"] for b in BETAS]
                print(f"| {PROTOCOL_NAMES[protocol]} | {who.replace('_', ' ')} | {alpha:g} | "
                      + " | ".join(f"{v:.1f}" for v in vals) + f" | {np.mean(vals):.1f} |")
    print("\n| who | mean MoC, GT length | mean MoC, r*N^O | cells won |")
    print("|---|---|---|---|")
    wins = {who: 0 for who in tables}
    for protocol in PROTOCOLS:
        for alpha in ALPHAS:
            for b in BETAS:
                cell = {who: t[protocol][f"{alpha:g}"][f"{b:g}"] for who, t in tables.items()}
                wins[max(cell, key=lambda w: cell[w])] += 1  # ties: the first listed
    for who, table in tables.items():
        means = [np.mean([v for row in table[p].values() for v in row.values()]) for p in PROTOCOLS]
        print(f"| {who.replace('_', ' ')} | {means[0]:.1f} | {means[1]:.1f} | {wins[who]} / "
              f"{len(PROTOCOLS) * len(ALPHAS) * len(BETAS)} |")


def config_with_sample_rate(config: Path, sample_rate: int | None, work: Path) -> Path:
    """``config`` itself, or a copy under ``work`` with ``model.sample_rate`` replaced."""
    if sample_rate is None:
        return config
    import yaml

    values = yaml.safe_load(config.read_text())
    values.setdefault("model", {})["sample_rate"] = int(sample_rate)
    out = work / f"{config.stem}_sr{sample_rate}.yaml"
    out.write_text(yaml.safe_dump(values, sort_keys=False))
    return out


def config_sample_rate(config: Path, data: Path, split: int) -> int:
    """The config's ``model.sample_rate``, with ``auto`` resolved from the training split's label lengths."""
    import yaml

    from actfusion_model.labels import ClassMapping
    from actfusion_training.run_config import AUTO, auto_sample_rate

    stated = (yaml.safe_load(config.read_text()) or {}).get("model", {}).get("sample_rate")
    if stated != AUTO:
        return int(load_experiment_config(config).model.sample_rate)
    labels = read_split_labels(data, split, "train", ClassMapping.from_file(data / "mapping.txt"))
    return auto_sample_rate(float(np.median([x.size for x in labels.values()])))


def training_facts(checkpoint: Path) -> str:
    """How the checkpoint was trained, from its metadata: steps, epochs, batch size, wall-clock, budget."""
    from actfusion_model.checkpoint import load_checkpoint

    meta = load_checkpoint(checkpoint).metadata
    exp = meta.get("experiment", {}).get("training", {})
    parts = [f"{meta.get(k)} {k}" for k in ("epoch", "step") if meta.get(k) is not None]
    parts.append(f"batch {exp.get('batch_size', 1)}")
    if meta.get("train_seconds") is not None:
        parts.append(f"{float(meta['train_seconds']) / 60:.1f} min of training")
    if meta.get("time_budget_minutes") is not None:
        parts.append(f"budget {meta['time_budget_minutes']:g} min (stopped on it: {meta.get('stopped_on_budget')})")
    return ", ".join(parts)


def duration_diagnostic(checkpoint: Path, data: Path, split: int, seed: int) -> dict[str, dict[str, float]]:
    """``{alpha: {figure: value}}``: frames the model and the order-1 grammar keep the current action after the
    cut vs the truth (medians) and the share of forecasts leaving it earlier than the truth (r*N^O, 1 sample)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_current_action_duration import lta_rows

    out: dict[str, dict[str, float]] = {}
    for alpha in (0.2, 0.3):
        rows, _ = lta_rows(checkpoint, data, split, 1, [seed], "mode", alphas=(alpha,))
        truth = np.array([r.truth for r in rows], dtype=np.float64)
        model = np.array([r.predicted for r in rows], dtype=np.float64)
        grammar = np.array([r.grammar for r in rows], dtype=np.float64)
        out[f"{alpha:g}"] = {
            "forecasts": float(len(rows)), "truth_median": float(np.median(truth)),
            "model_median": float(np.median(model)), "grammar_median": float(np.median(grammar)),
            "model_earlier_share": float(np.mean(model < truth) * 100.0),
            "grammar_earlier_share": float(np.mean(grammar < truth) * 100.0),
            "model_first_frame_current_share": float(np.mean([not r.changes_at_cut for r in rows]) * 100.0)}
    return out


def print_duration_diagnostic(diag: dict[str, dict[str, float]]) -> None:
    print("\nHow long the forecast keeps the current action after the cut (r*N^O, model-rate frames, medians; "
          "earlier = leaves it before the truth does):")
    print("| alpha | forecasts | truth | model | grammar order 1 | model earlier | grammar earlier | "
          "model's first future frame = current |")
    print("|---|---|---|---|---|---|---|---|")
    for alpha, d in diag.items():
        print(f"| {alpha} | {d['forecasts']:.0f} | {d['truth_median']:.0f} | {d['model_median']:.0f} | "
              f"{d['grammar_median']:.0f} | {d['model_earlier_share']:.0f}% | {d['grammar_earlier_share']:.0f}% | "
              f"{d['model_first_frame_current_share']:.0f}% |")


def mean_tables(tables: list[dict[str, dict[str, float | None]]]) -> dict[str, dict[str, float]]:
    """Element-wise mean of ``{alpha: {beta: MoC}}`` tables (one per noise seed)."""
    return {a: {b: float(np.mean([t[a][b] for t in tables])) for b in tables[0][a]} for a in tables[0]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=REPO.parent / "shared" / "data" / "50salads")
    p.add_argument("--config", type=Path, default=REPO / "training" / "configs" / "cpu_hour.yaml")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the config's)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN", help="training wall-clock budget")
    p.add_argument("--checkpoint", type=Path, default=None, help="score this checkpoint; train nothing")
    p.add_argument("--num-samples", type=int, default=1, help="futures per forecast (their consensus is scored)")
    p.add_argument("--device", default="cpu", help="training and evaluation device (cpu, cuda)")
    p.add_argument("--steps-sweep", type=int, nargs="+", default=[25, 10, 5, 2],
                   help="DDIM steps to evaluate (the first is the headline)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="noise seeds to average the model's MoC over (forecasts are stochastic)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="keep data and runs here (default: a temp dir)")
    p.add_argument("--baselines-only", action="store_true",
                   help="no model: score the label-only baselines on --source's labels alone (seconds)")
    p.add_argument("--sample-rate", type=int, default=None,
                   help="sample rate to train and forecast at (default: the config's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_lta_"))
    if args.baselines_only:
        sr = args.sample_rate or config_sample_rate(args.config, args.source, args.split)
        tables = baselines(args.source, args.split, sr, work / "baselines")
        print(f"{args.source.name} split {args.split}, ground-truth observation, label-only baselines fitted on the "
              f"training split, forecasts at sample rate {sr}, offset 0")
        print_cell_tables(tables)
        print(json.dumps({"baselines": tables}))
        print(f"\nwork directory: {work}")
        return 0
    data = work / "data"
    if not (data / "features").is_dir():
        make_dataset(args.source, data, "onehot")
    run_dir = work / f"split{args.split}"
    t0 = time.perf_counter()
    if args.checkpoint:
        ckpt, status = args.checkpoint, "given"
    else:
        status, _ = train(TrainOptions(config=config_with_sample_rate(args.config, args.sample_rate, work),
                                       data_root=data, split=args.split, out=run_dir, epochs=args.epochs,
                                       time_budget_minutes=args.time_budget, progress=False, device=args.device,
                                       resume=(run_dir / "trainer_state.pt").exists()))
        ckpt = run_dir / "best.pt" if (run_dir / "best.pt").exists() else run_dir / "last.pt"
    train_s = time.perf_counter() - t0
    trained = training_facts(ckpt)
    sweep: dict[int, list[dict]] = {}
    for steps in args.steps_sweep:
        sweep[steps] = []
        for seed in args.seeds:
            first = steps == args.steps_sweep[0] and seed == args.seeds[0]
            res = run_evaluation(ckpt, data, args.split, work / f"eval_steps{steps}_seed{seed}", steps=steps,
                                 seed=seed, aggregate_offsets=False, max_plots=3 if first else 0,
                                 num_samples=args.num_samples, device=args.device)
            sweep[steps].append(res)
            print(json.dumps({"steps": steps, "seed": seed, "tas_acc": res["tas"]["acc"], "lta_mean": res["lta_mean"],
                              "latency_s": res["latency_s"]}), flush=True)
    head = sweep[args.steps_sweep[0]]
    sr = head[0]["sample_rate"]
    base = baselines(data, args.split, sr, work / "baselines")
    print(f"\n{args.source.name} split {args.split}, one-hot ground-truth observation, {head[0]['videos']} test "
          f"videos; model {ckpt} ({status}): {trained}; "
          f"{args.steps_sweep[0]} DDIM steps, {args.num_samples} sample(s) per forecast, offset 0, median filter "
          f"{head[0]['median_filter']}; model MoC = mean over noise seeds {args.seeds} (the baselines are "
          f"deterministic); this invocation took {train_s:.0f} s to train")
    model_table = {p: mean_tables([r["lta"][p] for r in head]) for p in PROTOCOLS}
    print_cell_tables({"model": model_table, **base})
    base_mean = {name: {p: float(np.mean([v for t in tb[p].values() for v in t.values()])) for p in PROTOCOLS}
                 for name, tb in base.items()}
    print("\n| DDIM steps | TAS Acc | MoC mean (GT length) | MoC mean (r*N^O) | s / forecast (gt) "
          "| s / forecast (rn) |")
    print("|---|---|---|---|---|---|")
    for steps, results in sweep.items():
        def stat(values: list[float]) -> str:
            return f"{np.mean(values):.1f} ± {np.std(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"
        lat = {k: float(np.mean([r["latency_s"][k] for r in results])) for k in results[0]["latency_s"]}
        print(f"| {steps} | {stat([r['tas']['acc'] for r in results])} | "
              f"{stat([r['lta_mean']['gt'] for r in results])} | {stat([r['lta_mean']['rn'] for r in results])} | "
              f"{lat['lta_gt_per_forecast']:.3f} | {lat['lta_rn_per_forecast']:.3f} |")
    for name, means in base_mean.items():
        print(f"| {name.replace('_', ' ')} | | {means['gt']:.1f} | {means['rn']:.1f} | | |")
    diag = duration_diagnostic(ckpt, data, args.split, args.seeds[0])
    print_duration_diagnostic(diag)
    print(json.dumps({"baseline": base, "model": {str(s): [r["lta"] for r in rs] for s, rs in sweep.items()},
                      "duration": diag}))
    print(f"\nwork directory: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
