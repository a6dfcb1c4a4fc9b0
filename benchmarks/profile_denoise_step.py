"""Where the decoder step's time goes at K = 1 and K samples: ONNX Runtime per-node profile (issue 13, "Cost").

    python benchmarks/profile_denoise_step.py [--preset 50salads | --onnx-dir EXPORT] [--length 1024]
                                              [--samples 8] [--runs 15] [--threads 1]
    python benchmarks/profile_denoise_step.py --torch [--preset 50salads] [--length 1024] [--samples 8]
    python benchmarks/profile_denoise_step.py --session-options [--preset 50salads] [--length 1024] [--samples 8]

Runs ``denoise_step`` on one sample and ``denoise_step_batch`` on K samples (and on one, for its own
K = 1 cost) in three profiled ONNX Runtime sessions (``enable_profiling``; one intra-op thread by
default), ``--runs`` times each after a warm-up, on the condition terms of a random condition of
``--length`` frames. Prints, per op type: kernel time per run (microseconds, the sum of the profile's
``*_kernel_time`` events over the runs divided by the runs), nodes per run, and the K-sample over the
one-sample time; then the GEMM FLOPs per run (2 M K N of every MatMul / Gemm / FusedMatMul / FusedGemm
node, from the shapes the profile records) and the rate they ran at. The graphs are exported from the
preset's random weights into a temp dir unless ``--onnx-dir``. Kernel times exclude the Python call and
the executor's own per-node work, so the sum is a little below the wall-clock step of
``bench_backends.py --sampling``. ``--torch``: the same question for the eager decoder step
(``Decoder.forward_prepared`` of the preset's random weights, ``torch.profiler``, self CPU time per aten op
and run, K = 1 vs K). ``--session-options``: no profile; the step's CPU time (median of ``--runs`` rounds,
each round every variant once) at K = 1 (``denoise_step``) and K (``denoise_step_batch``, one call) under
ONNX Runtime session-option variants (optimisation level, memory pattern, CPU arena, denormals as zero).
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.export_manifest import BATCH_GRAPH, read_manifest  # noqa: E402

GEMM_OPS = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")


def export_preset(preset: str, out: Path) -> Path:
    import torch

    from actfusion_model.config import model_config
    from actfusion_model.export import export_onnx
    from actfusion_model.network import ActFusion

    torch.manual_seed(0)
    classes = {"50salads": 19, "breakfast": 48}.get(preset, 19)
    export_onnx(ActFusion(model_config(preset, num_classes=classes)).eval(), out, verify_length=None)
    return out


def _session(path: Path, threads: int, profile_prefix: str | None, **options: Any) -> Any:
    """A CPU session; ``options``: ``level`` (GraphOptimizationLevel name), ``mem_pattern``, ``arena``,
    ``denormal_as_zero`` (the backend's settings unless given)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, options.get("level", "ORT_ENABLE_ALL"))
    opts.enable_mem_pattern = options.get("mem_pattern", True)
    opts.enable_cpu_mem_arena = options.get("arena", True)
    if options.get("denormal_as_zero"):
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def gemm_flops(args: dict[str, Any]) -> float:
    """2 M K N of one MatMul/Gemm node from its profiled shapes: the profile lists the data input A
    (M x K elements, transposed or not; the weights are initializers and not listed) and the output (.., N)."""
    inputs, outputs = args.get("input_type_shape", []), args.get("output_type_shape", [])
    if not inputs or not outputs:
        return 0.0
    a, out = next(iter(inputs[0].values())), next(iter(outputs[0].values()))
    return 2.0 * math.prod(a) * out[-1]


def profile(session: Any, feed: dict[str, np.ndarray], runs: int) -> tuple[dict[str, float], dict[str, float], float]:
    """(kernel microseconds per run by op type, nodes per run by op type, GEMM FLOPs per run)."""
    for _ in range(2):
        session.run(None, feed)  # warm-up: also profiled, subtracted below by counting runs
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    total = runs + 2
    micros: dict[str, float] = collections.defaultdict(float)
    nodes: dict[str, float] = collections.defaultdict(float)
    flops = 0.0
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            micros[op] += e["dur"] / total
            nodes[op] += 1 / total
            if op in GEMM_OPS:
                flops += gemm_flops(e["args"]) / total
    return micros, nodes, flops


def torch_profile(preset: str, length: int, samples: int, runs: int, threads: int) -> None:
    """Self CPU time per aten op and run of the eager decoder step at K = 1 and K = ``samples``."""
    import torch
    from torch.profiler import ProfilerActivity, profile as torch_prof

    from actfusion_model.config import model_config
    from actfusion_model.network import ActFusion

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ActFusion(model_config(preset, num_classes={"50salads": 19, "breakfast": 48}.get(preset, 19))).eval()
    cfg = model.cfg
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        terms = model.decoder.condition_terms(torch.randn(1, cfg.cond_dim, length, generator=gen))
        per_k = {}
        for k in (1, samples):
            x01 = torch.rand(k, cfg.num_classes, length, generator=gen)
            steps = torch.full((k,), cfg.num_timesteps // 2, dtype=torch.long)
            for _ in range(2):
                model.decoder.forward_prepared(terms, steps, x01)
            with torch_prof(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(runs):
                    model.decoder.forward_prepared(terms, steps, x01)
            per_k[k] = {e.key: (e.self_cpu_time_total / runs, e.count / runs) for e in prof.key_averages()}
    print(f"# eager torch decoder step, {preset}, T = {length}, {threads} thread(s), {runs} runs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"| aten op | K=1 self CPU (us) | calls | K={samples} self CPU (us) | K={samples} / K=1 |")
    print("|---|---|---|---|---|")
    totals = {k: sum(v[0] for v in d.values()) for k, d in per_k.items()}
    ops = sorted(per_k[samples], key=lambda o: -per_k[samples][o][0])
    shown = [op for op in ops if per_k[samples][op][0] >= 0.01 * totals[samples]]  # the ops of >= 1% of K's time
    for op in shown:
        one, many = per_k[1].get(op, (0.0, 0.0)), per_k[samples][op]
        growth = f"{many[0] / one[0]:.1f}" if one[0] else "-"
        print(f"| {op} | {one[0]:.0f} | {one[1]:.0f} | {many[0]:.0f} | {growth} |")
    rest = [sum(per_k[k].get(op, (0.0, 0.0))[0] for op in ops if op not in shown) for k in (1, samples)]
    print(f"| {len(ops) - len(shown)} other ops | {rest[0]:.0f} | | {rest[1]:.0f} | "
          f"{rest[1] / max(rest[0], 1e-9):.1f} |")
    print(f"| all | {totals[1]:.0f} | | {totals[samples]:.0f} | {totals[samples] / totals[1]:.1f} |")


SESSION_VARIANTS: dict[str, dict[str, Any]] = {
    "backend default (ORT_ENABLE_ALL)": {}, "ORT_ENABLE_EXTENDED": {"level": "ORT_ENABLE_EXTENDED"},
    "ORT_ENABLE_BASIC": {"level": "ORT_ENABLE_BASIC"}, "memory pattern off": {"mem_pattern": False},
    "CPU arena off": {"arena": False}, "denormals as zero": {"denormal_as_zero": True}}


def session_options_table(onnx_dir: Path, feeds: dict[int, dict[str, np.ndarray]], runs: int, threads: int) -> None:
    """CPU-time medians of the step per session-option variant, all variants interleaved round by round."""
    import time

    calls = {}
    for label, options in SESSION_VARIANTS.items():
        for k, feed in feeds.items():
            graph = "denoise_step" if k == 1 else BATCH_GRAPH
            session = _session(onnx_dir / f"{graph}.onnx", threads, None, **options)
            calls[(label, k)] = (session, feed)
    times: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    for round_ in range(runs + 1):
        for key, (session, feed) in calls.items():
            start = time.process_time()
            session.run(None, feed)
            if round_:
                times[key].append(time.process_time() - start)
    ks = sorted(feeds)
    print(f"# session options, CPU time per step (ms), median of {runs} interleaved rounds, "
          f"load average {os.getloadavg()[0]:.2f}")
    print("| variant | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for label in SESSION_VARIANTS:
        print(f"| {label} | " + " | ".join(f"{1000 * statistics.median(times[(label, k)]):.2f}" for k in ks) + " |")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="50salads")
    p.add_argument("--onnx-dir", type=Path, default=None, help="an actfusion-export directory (else the preset's)")
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--torch", action="store_true", help="profile the eager torch decoder step instead")
    p.add_argument("--session-options", action="store_true", help="time session-option variants instead")
    args = p.parse_args(argv)
    if args.torch:
        torch_profile(args.preset, args.length, args.samples, args.runs, args.threads)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        onnx_dir = args.onnx_dir or export_preset(args.preset, Path(tmp) / "export")
        cfg = read_manifest(onnx_dir)["config"]
        cond = _session(onnx_dir / "decoder_condition.onnx", args.threads, None)
        condition = np.random.default_rng(0).standard_normal(
            (1, cfg["enc_dim"] * len(cfg["cond_layers"]), args.length), dtype=np.float32)
        terms = dict(zip([o.name for o in cond.get_outputs()], cond.run(None, {"condition": condition})))
        x01 = np.random.default_rng(1).random((args.samples, cfg["num_classes"], args.length), dtype=np.float32)
        step = np.array([cfg["num_timesteps"] // 2], dtype=np.int64)
        if args.session_options:
            feeds = {k: {**terms, "timestep": step, "x01": x01[:k]} for k in sorted({1, args.samples})}
            session_options_table(onnx_dir, feeds, args.runs, args.threads)
            return 0
        results = {}
        runs = (("one", "denoise_step", 1), ("batch1", BATCH_GRAPH, 1), ("batchK", BATCH_GRAPH, args.samples))
        for tag, graph, k in runs:
            session = _session(onnx_dir / f"{graph}.onnx", args.threads, str(Path(tmp) / f"profile_{tag}"))
            results[tag] = profile(session, {**terms, "timestep": step, "x01": x01[:k]}, args.runs)
    k = args.samples
    print(f"# {args.onnx_dir or args.preset}: T = {args.length}, {args.threads} intra-op thread(s), {args.runs} runs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"| op type | denoise_step K=1 (us) | nodes | {BATCH_GRAPH} K=1 (us) | {BATCH_GRAPH} K={k} (us) | nodes "
          f"| K={k} / K=1 |")
    print("|---|---|---|---|---|---|---|")
    ops = sorted(set().union(*(r[0] for r in results.values())), key=lambda o: -results["batchK"][0].get(o, 0.0))
    for op in ops:
        one, b1, bk = (results[t][0].get(op, 0.0) for t in ("one", "batch1", "batchK"))
        ratio = f"{bk / one:.1f}" if one > 0 else "-"
        print(f"| {op} | {one:.0f} | {results['one'][1].get(op, 0):.0f} | {b1:.0f} | {bk:.0f} | "
              f"{results['batchK'][1].get(op, 0):.0f} | {ratio} |")
    totals = {t: sum(r[0].values()) for t, r in results.items()}
    print(f"| all | {totals['one']:.0f} | {sum(results['one'][1].values()):.0f} | {totals['batch1']:.0f} | "
          f"{totals['batchK']:.0f} | {sum(results['batchK'][1].values()):.0f} | "
          f"{totals['batchK'] / totals['one']:.1f} |")
    for tag, label in (("one", "denoise_step K=1"), ("batchK", f"{BATCH_GRAPH} K={k}")):
        micros, _, flops = results[tag]
        gemm_us = sum(micros.get(op, 0.0) for op in GEMM_OPS)
        print(f"# {label}: GEMM {flops / 1e9:.4f} GFLOP per run in {gemm_us / 1000:.2f} ms "
              f"({flops / max(gemm_us, 1e-9) / 1e3:.0f} GFLOP/s); other nodes {(totals[tag] - gemm_us) / 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
