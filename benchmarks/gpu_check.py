"""One command for a CUDA machine: build what can be built, check it against the CPU, time it.

    python benchmarks/gpu_check.py [--presets 50salads breakfast] [--lengths 256 1024 2048 4096 8192]
                                   [--repeats 3] [--work DIR] [--compile] [--checkpoint CKPT]

1. Exports the ONNX graphs (random weights unless ``--checkpoint``) and, if ``tensorrt`` imports,
   builds fp32 and fp16 engines (profile 16 / 1024 / max length) through the engine cache.
2. Correctness at T = 1024 (205 observed frames): every GPU backend's full 25-step forecast against eager
   torch on the CPU with the same noise (max |delta p| and argmax agreement).
3. Tick latency (median of ``--repeats`` after a warm-up) per backend and length: torch CUDA fp32 / fp16 /
   bf16 autocast / CUDA graphs (/ torch.compile with ``--compile``), ONNX Runtime's CUDA provider,
   TensorRT fp32 / fp16; torch CPU for T <= 2048 as the reference.

Without CUDA it prints why and exits 0; a backend that cannot be built is reported and skipped.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.config import model_config  # noqa: E402
from actfusion_model.diffusion import sample_noise  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_model.runtime import Backend, forecast, load_backend  # noqa: E402

CLASSES = {"50salads": 19, "breakfast": 48}


def try_make(label: str, make: Callable[[], Backend]) -> Backend | None:
    try:
        start = time.perf_counter()
        backend = make()
        print(f"# {label}: ready in {time.perf_counter() - start:.1f} s")
        return backend
    except Exception as err:  # report and continue: this script builds what it can
        print(f"# {label}: skipped ({type(err).__name__}: {err})")
        return None


def gpu_backends(model: ActFusion, onnx_dir: Path | None, work: Path, *, max_length: int,
                 compile_step: bool) -> dict[str, Backend]:
    import copy

    gpu_model = copy.deepcopy(model)
    makers: list[tuple[str, Callable[[], Backend]]] = [
        ("torch-cuda-fp32", lambda: load_backend("torch", gpu_model, device="cuda")),
        ("torch-cuda-fp16", lambda: load_backend("torch", gpu_model, device="cuda", precision="fp16")),
        ("torch-cuda-bf16", lambda: load_backend("torch", gpu_model, device="cuda", precision="bf16")),
        ("torch-cuda-graphs", lambda: load_backend("torch", gpu_model, device="cuda", cuda_graphs=True)),
    ]
    if compile_step:
        makers.append(("torch-cuda-compile", lambda: load_backend("torch", gpu_model, device="cuda", compile=True)))
    if onnx_dir is not None:
        from actfusion_model.runtime.tensorrt_backend import LengthProfile

        profile = LengthProfile(min_length=16, opt_length=1024, max_length=max_length)
        makers.append(("onnxruntime-cuda", lambda: load_backend("onnxruntime", onnx_dir, device="cuda")))
        for fp16 in (False, True):
            makers.append((f"tensorrt-{'fp16' if fp16 else 'fp32'}",
                           lambda fp16=fp16: load_backend("tensorrt", onnx_dir, engine_dir=work / "engines",
                                                          profile=profile, fp16=fp16)))
    out = {}
    for label, make in makers:
        backend = try_make(label, make)
        if backend is not None:
            out[label] = backend
    return out


def median_tick(backend: Backend, obs: torch.Tensor, horizon: int, repeats: int) -> float:
    times = []
    for i in range(repeats + 1):
        timings: dict[str, Any] = {}
        forecast(backend, obs, horizon=horizon, generator=torch.Generator().manual_seed(i), timings=timings)
        if i:
            times.append(timings["total_s"])
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 2048, 4096, 8192])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--work", type=Path, default=None, help="export/engine directory (default: temp dir)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the decoder step")
    p.add_argument("--checkpoint", help="use a trained checkpoint (its preset) instead of random weights")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here (torch.cuda.is_available() is False); nothing to check.")
        return 0
    name, cc = torch.cuda.get_device_name(), ".".join(map(str, torch.cuda.get_device_capability()))
    print(f"# gpu_check: {name} (sm {cc}), torch {torch.__version__}, CUDA {torch.version.cuda}")
    for module in ("onnxruntime", "tensorrt"):
        try:
            mod = __import__(module)
            extra = f", providers {mod.get_available_providers()}" if module == "onnxruntime" else ""
            print(f"# {module} {mod.__version__}{extra}")
        except ImportError:
            print(f"# {module} not installed")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        check_rows, time_rows = [], []
        for preset in args.presets:
            if args.checkpoint:
                from actfusion_model.checkpoint import load_checkpoint

                model = load_checkpoint(args.checkpoint).model
            else:
                torch.manual_seed(0)
                model = ActFusion(model_config(preset, num_classes=CLASSES[preset])).eval()
            onnx_dir = None
            try:
                from actfusion_model.export import export_onnx

                onnx_dir = work / preset
                export_onnx(model, onnx_dir)
            except Exception as err:
                print(f"# ONNX export skipped: {type(err).__name__}: {err}")
            cpu = load_backend("torch", model)
            backends = gpu_backends(model, onnx_dir, work / preset, max_length=max(*args.lengths, 1024),
                                    compile_step=args.compile)
            # correctness
            n_obs, length = 205, 1024
            obs = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(1))
            noise = sample_noise((1, model.cfg.num_classes, length), model.cfg.ddim_steps,
                                 generator=torch.Generator().manual_seed(2))
            ref = forecast(cpu, obs, horizon=length - n_obs, noise=noise)
            ref_all = torch.cat([ref.observed_probs, ref.future_probs], dim=-1)
            for label, backend in backends.items():
                got = forecast(backend, obs, horizon=length - n_obs, noise=noise)
                got_all = torch.cat([got.observed_probs, got.future_probs], dim=-1)
                diff = float((got_all - ref_all).abs().max())
                agree = float((got_all.argmax(1) == ref_all.argmax(1)).float().mean())
                check_rows.append(f"| {preset} | {label} | {diff:.2e} | {agree:.4f} |")
            # latency
            for length in args.lengths:
                n_obs = max(1, round(length / 5))
                obs = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(length))
                row = {"torch-cpu": median_tick(cpu, obs, length - n_obs, 1) if length <= 2048 else None}
                for label, backend in backends.items():
                    try:
                        row[label] = median_tick(backend, obs, length - n_obs, args.repeats)
                    except Exception as err:
                        print(f"# {label} T={length}: {type(err).__name__}: {err}")
                        row[label] = None
                time_rows.append((preset, length, row))
        print("\n| preset | backend | max abs diff vs torch CPU (probs, T=1024, 25 steps) | argmax agreement |")
        print("|---|---|---|---|")
        print("\n".join(check_rows))
        labels = sorted({k for _, _, r in time_rows for k in r}, key=lambda k: (k != "torch-cpu", k))
        print("\n| preset | T | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for preset, length, row in time_rows:
            cells = [f"{row[k]:.3f}" if row.get(k) is not None else "-" for k in labels]
            print(f"| {preset} | {length} | " + " | ".join(cells) + " |")
        print("# tick latency in seconds: encoder + condition terms + 25 DDIM steps + the DDIM arithmetic")
    return 0


if __name__ == "__main__":
    sys.exit(main())
