"""One command for a CUDA machine: every GPU path, checked against the CPU forecast and timed.

    python benchmarks/gpu_check.py [--presets 50salads breakfast] [--lengths 1024 2048] [--samples 1 8]
                                   [--checkpoint CKPT] [--wheels DIR] [--budget-s 450] [--json OUT] [--dry-run]

Paths (each skipped, saying why, when it cannot start): torch CUDA eager in fp32, fp16 and bf16 autocast,
torch CUDA graphs of the decoder step (fp32), ``--compile``: torch.compile; ONNX Runtime's CUDA provider on the
fp32 and the fp16 export (``actfusion-export --precision fp16``); TensorRT fp32 and fp16 engines (strongly
typed, from those exports) when ``tensorrt`` imports. The K samples of a forecast run in the batch dimension.

For each preset (random weights unless ``--checkpoint``), T (frames: N_O = T / 5 observed) and K samples:
median and p95 of one decoder step, one encoder pass and one 25-step forecast (encoder + condition terms +
25 steps + the DDIM arithmetic), after a warm-up; and, at T = 1024 with K = 1, agreement of the full forecast
with eager torch on the CPU given the same noise (max |delta p|, argmax agreement). Then the targets at T = 2048,
K = 8: at most 1 ms per decoder step, 30 ms per forecast, and K = 8 in at most 1.5x the K = 1 forecast.

Runs in one command of at most ~8 minutes (``--budget-s``, default 450 s: what does not fit is reported as
skipped). Needs no network: ``--wheels DIR`` installs the wheels of DIR (``onnxruntime-gpu``, optionally
``tensorrt-cu12``) into a folder of the work directory first, with ``pip --no-index``; fill DIR beforehand on a
machine with network with ``--prepare-wheels DIR [--with-tensorrt]`` (for that machine's Python). Without CUDA
it says so and exits 0 (``--dry-run`` lists what a GPU run measures; ``--cpu-smoke`` runs its CPU parts: the
exports and the CPU reference forecast).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.config import model_config  # noqa: E402
from actfusion_model.diffusion import sample_noise  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_model.runtime import Backend, forecast, load_backend  # noqa: E402

CLASSES = {"50salads": 19, "breakfast": 48}
TORCH_PATHS = ("torch-cuda-fp32", "torch-cuda-fp16", "torch-cuda-bf16", "torch-cuda-graphs")
EXPORT_PATHS = ("onnxruntime-cuda-fp32", "onnxruntime-cuda-fp16", "tensorrt-fp32", "tensorrt-fp16")
#: Issue 20's targets on an H100-class GPU, at T = 2048 with K = 8.
TARGET_LENGTH, TARGET_SAMPLES = 2048, 8
TARGET_STEP_MS, TARGET_FORECAST_MS, TARGET_K_RATIO = 1.0, 30.0, 1.5
AGREEMENT_LENGTH = 1024


@dataclass
class Budget:
    """Wall-clock budget of the run: ``left()`` seconds remain; work that does not fit is skipped."""

    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(CLASSES), choices=list(CLASSES))
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048], help="T, frames (N_O = T / 5)")
    p.add_argument("--samples", type=int, nargs="+", default=[1, 8], help="K, samples per forecast")
    p.add_argument("--step-repeats", type=int, default=50, help="timed decoder steps per setting")
    p.add_argument("--forecast-repeats", type=int, default=10, help="timed forecasts (and encoder passes)")
    p.add_argument("--budget-s", type=float, default=450.0, help="stop timing after this many seconds")
    p.add_argument("--paths", nargs="+", default=None, choices=[*TORCH_PATHS, "torch-cuda-compile", *EXPORT_PATHS],
                   help="only these paths (default: all but torch-cuda-compile)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile of the decoder step")
    p.add_argument("--checkpoint", help="a trained checkpoint (its preset and classes) instead of random weights")
    p.add_argument("--work", type=Path, default=None, help="exports, engines, installed wheels (default: temp dir)")
    p.add_argument("--wheels", type=Path, default=None, help="install these wheels first (pip --no-index)")
    p.add_argument("--prepare-wheels", type=Path, default=None, metavar="DIR",
                   help="(on a machine with network) download the wheels a GPU run needs into DIR, then exit")
    p.add_argument("--with-tensorrt", action="store_true", help="with --prepare-wheels: also tensorrt-cu12")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.add_argument("--dry-run", action="store_true", help="list what would be measured, then exit")
    p.add_argument("--cpu-smoke", action="store_true", help="without CUDA: run the CPU parts (exports, reference)")
    return p


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse settings that cannot be measured (parser.error: exit 2 with one line)."""
    if any(t < 5 for t in args.lengths):
        parser.error("--lengths: each T must be >= 5 (N_O = T / 5 observed frames)")
    if any(k < 1 for k in args.samples):
        parser.error("--samples: each K must be >= 1")
    if args.step_repeats < 1 or args.forecast_repeats < 1:
        parser.error("--step-repeats and --forecast-repeats must be >= 1")
    if args.budget_s <= 0:
        parser.error("--budget-s must be > 0")
    if args.wheels is not None and not args.wheels.is_dir():
        parser.error(f"--wheels: no directory {args.wheels}")


def selected_paths(args: argparse.Namespace) -> list[str]:
    if args.paths:
        return list(args.paths)
    return [*TORCH_PATHS, *(["torch-cuda-compile"] if args.compile else []), *EXPORT_PATHS]


def plan_lines(args: argparse.Namespace) -> list[str]:
    """What a GPU run measures, one line per preset and path."""
    lines = []
    for preset in args.presets:
        for path in selected_paths(args):
            lines.append(f"{preset} {path}: T {' '.join(map(str, args.lengths))} x K "
                         f"{' '.join(map(str, args.samples))}: {args.step_repeats} decoder steps, "
                         f"{args.forecast_repeats} encoder passes and forecasts each")
    lines.append(f"agreement with eager torch on the CPU at T = {AGREEMENT_LENGTH}, K = 1; targets at "
                 f"T = {TARGET_LENGTH}, K = {TARGET_SAMPLES}: step <= {TARGET_STEP_MS} ms, forecast <= "
                 f"{TARGET_FORECAST_MS} ms, K = {TARGET_SAMPLES} <= {TARGET_K_RATIO}x K = 1")
    return lines


def prepare_wheels(directory: Path, with_tensorrt: bool) -> int:
    """Download the wheels of a GPU run (for this Python) into ``directory``."""
    packages = ["onnxruntime-gpu"] + (["tensorrt-cu12"] if with_tensorrt else [])
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary", ":all:", "-d", str(directory),
                           *packages])
    print(f"gpu_check: wheels for {', '.join(packages)} in {directory} (copy it to the GPU machine, then "
          f"--wheels {directory})" if done.returncode == 0 else "gpu_check: pip download failed")
    return done.returncode


def install_wheels(directory: Path, target: Path) -> None:
    """Install every package of ``directory`` into ``target`` (no index) and put it first on sys.path."""
    names = sorted({w.name.split("-")[0].replace("_", "-") for w in directory.glob("*.whl")})
    wanted = [n for n in names if n in ("onnxruntime-gpu", "tensorrt-cu12", "tensorrt")]
    if not wanted:
        print(f"# --wheels {directory}: no onnxruntime-gpu or tensorrt wheel there")
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(directory),
                    "--target", str(target), "--quiet", *wanted], check=True)
    sys.path.insert(0, str(target))
    print(f"# installed {', '.join(wanted)} from {directory} into {target}")


def _sync(backend: Backend) -> None:
    backend.synchronize()


def _stats(times_s: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(times_s) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)), "n": int(ms.size)}


def time_calls(call: Callable[[], Any], backend: Backend, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median and p95 (ms) of ``repeats`` calls, each followed by a device synchronisation."""
    for _ in range(warmup):
        call()
        _sync(backend)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        _sync(backend)
        times.append(time.perf_counter() - start)
    return _stats(times)


def measure(backend: Backend, length: int, samples: int, *, step_repeats: int,
            forecast_repeats: int) -> dict[str, dict[str, float]]:
    """Decoder step, encoder pass and full forecast timings of one backend at ``length`` x ``samples``."""
    cfg = backend.config
    n_obs = max(1, length // 5)
    obs = torch.randn(1, cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(length))
    padded = torch.cat([obs, obs.new_zeros(1, cfg.input_dim, length - n_obs)], dim=2).to(backend.device)
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[:, :n_obs] = True
    mask = mask.to(backend.device)
    encode = time_calls(lambda: backend.encode(padded, mask), backend, forecast_repeats)
    _, condition = backend.encode(padded, mask)
    state = backend.prepare(condition, samples)
    x01 = torch.rand(samples, cfg.num_classes, length, generator=torch.Generator().manual_seed(1)).to(backend.device)
    step = time_calls(lambda: backend.denoise(state, cfg.num_timesteps // 2, x01), backend, step_repeats)
    seeds = iter(range(10**6))
    whole = time_calls(lambda: forecast(backend, obs, horizon=length - n_obs, num_samples=samples,
                                        generator=torch.Generator().manual_seed(next(seeds))),
                       backend, forecast_repeats)
    return {"step": step, "encode": encode, "forecast": whole}


def agreement(backend: Backend, reference: Backend, length: int = AGREEMENT_LENGTH) -> dict[str, float]:
    """Max |delta p| and argmax agreement of the full forecast against ``reference`` (same noise)."""
    cfg = reference.config
    n_obs = length // 5
    obs = torch.randn(1, cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(11))
    noise = sample_noise((1, cfg.num_classes, length), cfg.ddim_steps, generator=torch.Generator().manual_seed(12))
    ref = forecast(reference, obs, horizon=length - n_obs, noise=noise)
    got = forecast(backend, obs, horizon=length - n_obs, noise=noise)
    a = torch.cat([ref.observed_probs, ref.future_probs], dim=-1)
    b = torch.cat([got.observed_probs, got.future_probs], dim=-1)
    return {"max_abs_dp": float((a - b).abs().max()), "argmax_agreement": float((a.argmax(1) == b.argmax(1))
                                                                                 .float().mean())}


def make_model(preset: str, checkpoint: str | None) -> tuple[ActFusion, list[str]]:
    if checkpoint:
        from actfusion_model.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint)
        return ckpt.model.eval(), list(ckpt.class_names)
    torch.manual_seed(0)
    model = ActFusion(model_config(preset, num_classes=CLASSES[preset])).eval()
    return model, [f"class_{i}" for i in range(CLASSES[preset])]


def export_both(model: ActFusion, names: list[str], work: Path) -> dict[str, Path | str]:
    """The fp32 and fp16 exports (or why one failed)."""
    from actfusion_model.export import export_onnx

    out: dict[str, Path | str] = {}
    for precision in ("fp32", "fp16"):
        try:
            start = time.perf_counter()
            export_onnx(model, work / precision, class_names=names, precision=precision)
            out[precision] = work / precision
            print(f"# export {precision}: {time.perf_counter() - start:.1f} s")
        except Exception as err:  # reported, and the paths that need it are skipped
            out[precision] = f"{type(err).__name__}: {err}"
            print(f"# export {precision} failed: {out[precision]}")
    return out


def start_path(path: str, model: ActFusion, exports: dict[str, Path | str], work: Path,
               max_length: int, max_samples: int) -> Backend:
    """The backend of one path (raises when it cannot start)."""
    import copy

    if path.startswith("torch-"):
        options = {"torch-cuda-fp32": {}, "torch-cuda-fp16": {"precision": "fp16"},
                   "torch-cuda-bf16": {"precision": "bf16"}, "torch-cuda-graphs": {"cuda_graphs": True},
                   "torch-cuda-compile": {"compile": True}}[path]
        return load_backend("torch", copy.deepcopy(model), device="cuda", **options)
    precision = path.rsplit("-", 1)[1]
    export = exports.get(precision)
    if not isinstance(export, Path):
        raise RuntimeError(f"no {precision} export ({export})")
    if path.startswith("onnxruntime-"):
        return load_backend("onnxruntime", export, device="cuda", providers="cuda")
    from actfusion_model.runtime.tensorrt_backend import LengthProfile

    profile = LengthProfile(min_length=16, opt_length=min(1024, max_length), max_length=max_length,
                            opt_samples=max_samples, max_samples=max_samples)
    return load_backend("tensorrt", export, engine_dir=work / f"engines-{precision}", profile=profile)


def targets(rows: list[dict[str, Any]]) -> list[str]:
    """PASS/FAIL lines of the T = 2048, K = 8 targets, per preset and path that was measured there."""
    index = {(r["preset"], r["path"], r["T"], r["K"]): r for r in rows}
    out = []
    for (preset, path, length, k), row in sorted(index.items()):
        if (length, k) != (TARGET_LENGTH, TARGET_SAMPLES):
            continue
        one = index.get((preset, path, length, 1))
        step, fc = row["step"]["median_ms"], row["forecast"]["median_ms"]
        ratio = fc / one["forecast"]["median_ms"] if one else float("nan")
        ok = step <= TARGET_STEP_MS and fc <= TARGET_FORECAST_MS and ratio <= TARGET_K_RATIO
        out.append(f"{'PASS' if ok else 'FAIL'} {preset} {path}: step {step:.3f} ms (<= {TARGET_STEP_MS}), forecast "
                   f"{fc:.1f} ms (<= {TARGET_FORECAST_MS}), K={k}/K=1 {ratio:.2f}x (<= {TARGET_K_RATIO})")
    return out


def cpu_smoke(args: argparse.Namespace, work: Path) -> int:
    """Without CUDA: the exports and the CPU reference forecast of each preset (the parts a GPU run does first)."""
    for preset in args.presets:
        model, names = make_model(preset, args.checkpoint)
        exports = export_both(model, names, work / preset)
        reference = load_backend("torch", model)
        for precision, export in exports.items():
            if isinstance(export, Path):
                ort = load_backend("onnxruntime", export, intra_op_threads=1)
                a = agreement(ort, reference, length=min(args.lengths))
                print(f"# {preset} onnxruntime-cpu-{precision} vs torch CPU at T={min(args.lengths)}: "
                      f"max |dp| {a['max_abs_dp']:.2e}, argmax agreement {a['argmax_agreement']:.4f}")
    print("gpu_check: CPU parts ran; the timings need a CUDA GPU")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    if args.prepare_wheels is not None:
        return prepare_wheels(args.prepare_wheels, args.with_tensorrt)
    if args.dry_run:
        print("\n".join(plan_lines(args)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        if args.wheels is not None:
            install_wheels(args.wheels, work / "site")
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False): nothing to time. "
                  "--dry-run lists what a GPU run measures, --cpu-smoke runs its CPU parts.")
            return cpu_smoke(args, work) if args.cpu_smoke else 0
        return run_gpu(args, work)


def run_gpu(args: argparse.Namespace, work: Path) -> int:
    budget = Budget(args.budget_s)
    name, cc = torch.cuda.get_device_name(), ".".join(map(str, torch.cuda.get_device_capability()))
    header = f"{name} (sm {cc}), torch {torch.__version__}, CUDA {torch.version.cuda}"
    for module in ("onnxruntime", "tensorrt"):
        try:
            mod = __import__(module)
            extra = f", providers {mod.get_available_providers()}" if module == "onnxruntime" else ""
            header += f"; {module} {mod.__version__}{extra}"
        except ImportError:
            header += f"; {module} not installed"
    print(f"# gpu_check: {header}")
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    skipped: list[str] = []
    for preset in args.presets:
        model, names = make_model(preset, args.checkpoint)
        exports = export_both(model, names, work / preset)
        reference = load_backend("torch", model)
        for path in selected_paths(args):
            if budget.left() <= 0:
                skipped.append(f"{preset} {path}: over the {args.budget_s:.0f} s budget")
                continue
            try:
                start = time.perf_counter()
                backend = start_path(path, model, exports, work / preset, max(*args.lengths, AGREEMENT_LENGTH),
                                     max(args.samples))
                print(f"# {preset} {path}: ready in {time.perf_counter() - start:.1f} s")
            except Exception as err:  # this script measures what it can
                skipped.append(f"{preset} {path}: {type(err).__name__}: {err}")
                print(f"# {preset} {path}: skipped ({type(err).__name__}: {err})")
                continue
            try:
                checks.append({"preset": preset, "path": path, **agreement(backend, reference)})
                for length in args.lengths:
                    for k in args.samples:
                        if budget.left() <= 0:
                            skipped.append(f"{preset} {path} T={length} K={k}: over budget")
                            continue
                        rows.append({"preset": preset, "path": path, "T": length, "K": k,
                                     **measure(backend, length, k, step_repeats=args.step_repeats,
                                               forecast_repeats=args.forecast_repeats)})
            except Exception as err:
                skipped.append(f"{preset} {path}: failed while measuring: {type(err).__name__}: {err}")
                print(f"# {preset} {path}: {skipped[-1]}")
            del backend
            torch.cuda.empty_cache()
    print(f"\n## {header}\n")
    print(f"| preset | path | max abs dp vs torch CPU (T={AGREEMENT_LENGTH}, 25 steps) | argmax agreement |")
    print("|---|---|---|---|")
    for c in checks:
        print(f"| {c['preset']} | {c['path']} | {c['max_abs_dp']:.2e} | {c['argmax_agreement']:.4f} |")
    print("\n| preset | path | T | K | decoder step ms, median / p95 | encoder ms | 25-step forecast ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [f"{r[k]['median_ms']:.3f} / {r[k]['p95_ms']:.3f}" for k in ("step", "encode", "forecast")]
        print(f"| {r['preset']} | {r['path']} | {r['T']} | {r['K']} | " + " | ".join(cells) + " |")
    verdicts = targets(rows)
    print("\n" + "\n".join(verdicts or [f"(T = {TARGET_LENGTH}, K = {TARGET_SAMPLES} not measured: no target)"]))
    for line in skipped:
        print(f"# skipped: {line}")
    print(f"# gpu_check: {time.perf_counter() - budget.start:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"device": header, "agreement": checks, "timings": rows,
                                         "targets": verdicts, "skipped": skipped}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
