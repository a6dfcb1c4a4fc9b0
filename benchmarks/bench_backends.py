"""Tick latency per inference backend, and the accuracy/latency trade-off of fewer DDIM steps.

    python benchmarks/bench_backends.py [--quick] [--presets 50salads breakfast] [--lengths 256 1024 2048]
                                        [--threads 2] [--ort-threads auto 1 2] [--repeats 3] [--steps 25]
                                        [--agreement] [--checkpoint CKPT --features a.npy b.npy ...]
    python benchmarks/bench_backends.py --sampling [--presets 50salads | --checkpoint CKPT] [--sampling-length 1024]
                                        [--samples 1 4 8 16] [--step-grid 25 10 5] [--threads 1] [--ort-threads 1]
                                        [--sample-chunk auto all 1 2 4] [--repeats 3]

A tick is one :func:`actfusion_model.runtime.forecast`: the r*N^O input (N_O = T/5 observed frames, T - N_O mask
tokens), one encoder pass, the decoder condition terms once, ``--steps`` DDIM steps with the shared loop.
Every available backend is timed in the same process (eager torch on CPU with ``--threads`` is the
baseline of the ratio column; ONNX Runtime on CPU, one row per ``--ort-threads`` setting; on a CUDA
machine also torch CUDA fp32/fp16, ONNX Runtime's CUDA provider and TensorRT when installed). "best" is
the fastest of the timed ticks, the median is the one to quote on an otherwise idle machine. Random
weights unless ``--checkpoint``. ``--quick``: T in {256, 1024}, one timed run each. ``--agreement``:
for steps in {1, 2, 5, 10, 25}, tick latency and frame agreement of the N-step forecast with the 25-step
one (:func:`actfusion_model.runtime.step_agreement`); meaningful with a trained checkpoint and real features, a
mechanics check with random weights. ``--sampling`` (issue 13) instead times K sampled futures per tick
(one encoder pass, the decoder on a batch of K, :func:`actfusion_model.runtime.forecast` ``num_samples=K``) for every K
of ``--samples`` and DDIM steps of ``--step-grid`` at T = ``--sampling-length`` on eager torch (CPU) and ONNX
Runtime (CPU, one row per ``--ort-threads`` x ``--sample-chunk`` setting), for each preset's random weights
or the ``--checkpoint``'s model. The K of one setting are timed interleaved (round r: one tick of every K),
``--repeats`` rounds after a warm-up; medians of the wall-clock tick and of the process CPU time (which a
loaded machine inflates less); "x K=1" is over the K = 1 figure of the same backend and steps (the issue's
target: K = 8 at most 3x at 25 steps, ORT, T = 1024). The MoC side of the K x steps curve is
``benchmarks/bench_consensus.py``. The CPU may be shared: the load average is printed; compare rows of one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.config import model_config  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_model.runtime import Backend, BackendError, forecast, load_backend, step_agreement  # noqa: E402

CLASSES = {"50salads": 19, "breakfast": 48}


def random_model(preset: str) -> ActFusion:
    torch.manual_seed(0)
    return ActFusion(model_config(preset, num_classes=CLASSES[preset])).eval()


def make_backends(model: ActFusion, onnx_dir: Path | None, *, threads: int, ort_threads: Sequence[str],
                  sample_chunks: Sequence[str] = ("auto",), sample_workers: Sequence[int] = (1,)) -> dict[str, Backend]:
    """Every backend this machine can run, eager CPU torch first (the baseline); ONNX Runtime on the CPU
    once per ``ort_threads`` x ``sample_chunks`` x ``sample_workers`` setting (``sample_chunk`` of the backend,
    "all": None; ``sample_workers``: chunks run at once)."""
    backends: dict[str, Backend] = {f"torch-cpu ({threads}t)": load_backend("torch", model, threads=threads)}
    if onnx_dir is not None:
        for spec in ort_threads:
            for chunk in sample_chunks:
                for workers in sample_workers:
                    value = spec if spec == "auto" else int(spec)
                    chunk_value = None if chunk == "all" else chunk if chunk == "auto" else int(chunk)
                    backend = load_backend("onnxruntime", onnx_dir, intra_op_threads=value, sample_chunk=chunk_value,
                                           sample_workers=int(workers))
                    used = f"{backend.intra_op_threads}t" if backend.intra_op_threads else "ORT default"
                    label = "auto: " + used if spec == "auto" else used
                    label += f", chunk {chunk}" if len(sample_chunks) > 1 else ""
                    label += f", {workers} workers" if len(sample_workers) > 1 or workers != 1 else ""
                    backends[f"onnxruntime-cpu ({label})"] = backend
    if torch.cuda.is_available():
        import copy

        gpu_model = copy.deepcopy(model)
        backends["torch-cuda"] = load_backend("torch", gpu_model, device="cuda")
        backends["torch-cuda-fp16"] = load_backend("torch", gpu_model, device="cuda", precision="fp16")
        if onnx_dir is not None:
            for name, kind, opts in (("onnxruntime-cuda", "onnxruntime", {}), ("tensorrt", "tensorrt", {})):
                try:
                    backends[name] = load_backend(kind, onnx_dir, device="cuda", **opts)
                except BackendError as err:
                    print(f"# {name} skipped: {err}")
    return backends


def export_for(model: ActFusion, work: Path, preset: str) -> Path | None:
    try:
        from actfusion_model.export import export_onnx

        out = work / preset
        export_onnx(model, out, verify_length=None)
        return out
    except ImportError as err:
        print(f"# ONNX export skipped ({err}); onnxruntime rows omitted")
        return None


def tick_stats(backend: Backend, obs: torch.Tensor, horizon: int | None, *, steps: int,
               repeats: int, num_samples: int | None = None) -> dict[str, float]:
    """Median total / encode / prepare / sampling time of ``repeats`` ticks after one warm-up (+ best total);
    ``num_samples``: K sampled futures per tick (default: one, as the node today)."""
    runs: list[dict[str, float]] = []
    for i in range(repeats + 1):
        timings: dict[str, float] = {}
        forecast(backend, obs, horizon=horizon, steps=steps, generator=torch.Generator().manual_seed(i),
                 num_samples=num_samples, timings=timings)
        if i:
            runs.append(timings)
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["best_s"] = min(r["total_s"] for r in runs)
    return out


def latency_table(args: argparse.Namespace, work: Path) -> None:
    print("| preset | T | backend | tick median (s) | best (s) | encoder (s) | cond. terms (s) | per step (ms) "
          "| vs eager torch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        model = random_model(preset)
        backends = make_backends(model, export_for(model, work, preset), threads=args.threads,
                                 ort_threads=args.ort_threads)
        for length in args.lengths:
            n_obs = max(1, round(length / 5))
            obs = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(length))
            base = None
            for name, backend in backends.items():
                s = tick_stats(backend, obs, length - n_obs, steps=args.steps, repeats=args.repeats)
                base = base or s["total_s"]
                print(f"| {preset} | {length} | {name} | {s['total_s']:.3f} | {s['best_s']:.3f} | "
                      f"{s['encode_s']:.3f} | "
                      f"{s['prepare_s']:.3f} | {1000 * s['sample_s'] / args.steps:.1f} | "
                      f"{s['total_s'] / base:.2f}x |", flush=True)


def interleaved_ticks(backend: Backend, obs: torch.Tensor, horizon: int, *, steps: int, samples: Sequence[int],
                      repeats: int) -> dict[int, dict[str, float]]:
    """Per K of ``samples``: median tick (``total_s``), sampling part (``sample_s``: the DDIM loop), process CPU
    time (``cpu_s``: not inflated by other processes on a shared CPU) and ``encode_s`` (the noise draw of all
    K samples and steps, the input and the encoder pass) of ``repeats`` rounds, each round one
    tick of every K in turn (so a change of load hits every K alike), after one warm-up tick per K."""
    runs: dict[int, list[dict[str, float]]] = {k: [] for k in samples}
    for round_ in range(repeats + 1):
        for k in samples:
            timings: dict[str, float] = {}
            cpu = time.process_time()
            forecast(backend, obs, horizon=horizon, steps=steps, num_samples=k, timings=timings,
                     generator=torch.Generator().manual_seed(round_))
            timings["cpu_s"] = time.process_time() - cpu
            if round_:
                runs[k].append(timings)
    return {k: {key: statistics.median(r[key] for r in rs) for key in ("total_s", "sample_s", "cpu_s", "encode_s")}
            for k, rs in runs.items()}


def sampling_table(args: argparse.Namespace, work: Path) -> None:
    """K sampled futures x DDIM steps: tick latency and its ratio to one sample (see the module docstring)."""
    print("| model | T | backend | DDIM steps | K | tick median (ms) | tick x K=1 | CPU median (ms) | CPU x K=1 "
          "| encoder + noise (ms) | per step (ms) | per step x K=1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    length = args.sampling_length
    models = ([(Path(args.checkpoint).name, _checkpoint_model(args.checkpoint))] if args.checkpoint
              else [(preset, random_model(preset)) for preset in args.presets])
    for label, model in models:
        backends = make_backends(model, export_for(model, work, label), threads=args.threads,
                                 ort_threads=args.ort_threads, sample_chunks=args.sample_chunk,
                                 sample_workers=args.sample_workers)
        n_obs = max(1, round(length / 5))
        obs = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(length))
        for name, backend in backends.items():
            if "cuda" in name or name == "tensorrt":
                continue  # the question is the CPU cost of batching K samples
            for steps in args.step_grid:
                stats = interleaved_ticks(backend, obs, length - n_obs, steps=steps, samples=args.samples,
                                          repeats=args.repeats)
                one = stats.get(1)
                for k, s in stats.items():
                    print(f"| {label} | {length} | {name} | {steps} | {k} | {1000 * s['total_s']:.1f} | "
                          f"{_ratio(s, one, 'total_s')} | {1000 * s['cpu_s']:.1f} | {_ratio(s, one, 'cpu_s')} | "
                          f"{1000 * s['encode_s']:.1f} | {1000 * s['sample_s'] / steps:.2f} | "
                          f"{_ratio(s, one, 'sample_s')} |", flush=True)
                print(f"# load average {os.getloadavg()[0]:.2f} after {name}, {steps} steps", flush=True)


def _ratio(stats: dict[str, float], one: dict[str, float] | None, key: str) -> str:
    """``stats[key]`` over the K = 1 figure, or "-" without a K = 1 row."""
    return f"{stats[key] / one[key]:.2f}x" if one else "-"


def _checkpoint_model(path: str) -> ActFusion:
    from actfusion_model.checkpoint import load_checkpoint

    return load_checkpoint(path).model.eval()


def agreement_table(args: argparse.Namespace, work: Path) -> None:
    presets = args.presets
    print("\n| model | DDIM steps | tick (s) | future frames = 25-step | observed frames = 25-step | "
          "mean abs prob. diff (future) |")
    print("|---|---|---|---|---|---|")
    for preset in presets:
        if args.checkpoint:
            model = _checkpoint_model(args.checkpoint)
        else:
            model = random_model(preset)
        onnx_dir = export_for(model, work, f"{preset}_agreement")
        backend = (load_backend("onnxruntime", onnx_dir) if onnx_dir
                   else load_backend("torch", model, threads=args.threads))
        cfg = model.cfg
        if args.features:
            sequences = []
            for path in args.features:
                feats = np.load(path)[:, ::cfg.sample_rate].astype(np.float32)
                sequences.append(torch.from_numpy(feats[:, : max(1, round(0.3 * feats.shape[1]))]))
        else:
            sequences = [torch.randn(cfg.input_dim, 60, generator=torch.Generator().manual_seed(s)) for s in range(3)]
        for steps in (1, 2, 5, 10, 25):
            tick = tick_stats(backend, sequences[0], None, steps=steps, repeats=1)["total_s"]
            agree = step_agreement(backend, sequences, steps=steps, reference_steps=25, seeds=(0, 1))
            label = Path(args.checkpoint).name if args.checkpoint else preset
            print(f"| {label} | {steps} | {tick:.3f} | {agree['future_agreement']:.3f} | "
                  f"{agree['observed_agreement']:.3f} | {agree['future_mean_abs_diff']:.4f} |", flush=True)
        if args.checkpoint:
            break
    if not args.checkpoint:
        print("# random weights: agreement shows the mechanism only; pass --checkpoint and --features")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048])
    p.add_argument("--threads", type=int, default=2, help="eager torch intra-op threads")
    p.add_argument("--ort-threads", nargs="+", default=["auto"],
                   help="ONNX Runtime intra-op thread settings to time, e.g. auto 1 2 (one row each)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--quick", action="store_true", help="T in {256, 1024}, one timed run")
    p.add_argument("--agreement", action="store_true", help="also the fewer-steps agreement table")
    p.add_argument("--checkpoint", help="trained checkpoint for the agreement and --sampling tables "
                   "(else random weights of each preset)")
    p.add_argument("--features", nargs="*", default=[], help="(D, N) .npy feature files for --agreement")
    p.add_argument("--work", type=Path, default=None, help="where to export the graphs (default: temp dir)")
    p.add_argument("--sampling", action="store_true",
                   help="only the K samples x DDIM steps cost table (issue 13) instead of the latency table")
    p.add_argument("--samples", type=int, nargs="+", default=[1, 4, 8, 16], help="K values of --sampling "
                   "(list 1 first for the ratio column)")
    p.add_argument("--step-grid", type=int, nargs="+", default=[25, 10, 5], help="DDIM steps of --sampling")
    p.add_argument("--sampling-length", type=int, default=1024, help="T of --sampling (default 1024)")
    p.add_argument("--sample-chunk", nargs="+", default=["auto"],
                   help="ONNX Runtime sample_chunk settings of --sampling: auto, all (one call) or a count; "
                   "one row each")
    p.add_argument("--sample-workers", type=int, nargs="+", default=[1],
                   help="ONNX Runtime sample_workers settings of --sampling (chunks run at once); one row each")
    args = p.parse_args(argv)
    if any(w < 1 for w in args.sample_workers):
        p.error("--sample-workers values must be >= 1")
    if any(k < 1 for k in args.samples) or any(s < 1 for s in args.step_grid):
        p.error("--samples and --step-grid values must be >= 1")
    if args.quick:
        args.lengths, args.repeats = [256, 1024], 1
    torch.set_num_threads(args.threads)
    print(f"# bench_backends: torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, "
          + (f"K {args.samples} x DDIM steps {args.step_grid}, " if args.sampling else f"{args.steps} DDIM steps, ")
          + f"load average {os.getloadavg()[0]:.2f} before")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.sampling:
            sampling_table(args, work)
        else:
            latency_table(args, work)
        if args.agreement:
            agreement_table(args, work)
    print(f"# load average {os.getloadavg()[0]:.2f} after; {time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
