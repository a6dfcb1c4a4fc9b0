"""FP16 accuracy on the CPU: the fp16 export against the fp32 export of trained checkpoints.

    python benchmarks/bench_fp16.py --checkpoint /tmp/runs/s50_s1/split1/best.pt --data /tmp/runs/s50_s1/data \\
        [--checkpoint CKPT --data ROOT ...] [--split 1] [--lengths 37 1024 4096 8192] [--moc-videos N]
        [--islands] [--threads 1] [--work DIR]

For every checkpoint (with the MS-TCN dataset it was trained on, ``--data`` in the same order) both exports are
written (``actfusion-export``, fp32 and ``--precision fp16``) and compared two ways:

- **ONNX Runtime (CPU)**: the fp16 graphs as exported. ONNX Runtime's CPU provider has few fp16 kernels; it
  runs the fp16 regions in fp32 between casts at their borders, so this measures fp16 weights and the fp16
  tensors between regions, not fp16 arithmetic (a 1000 x 1000 product of fp16 tensors comes out 1e6 there,
  inf on a GPU).
- **torch fp16 (emulation)**: the same graph modules (:mod:`actfusion_model.onnx_graphs`, the same fp32
  islands) run eagerly in torch with fp16 tensors: every op's result is rounded to fp16 and overflows as it
  would on a GPU (matrix products accumulate in fp32, as GPU tensor cores do). The closer stand-in for a
  TensorRT fp16 engine.

At each T (frames at the model's rate, N_O = T / 5 observed, the first test video's features, repeated when
shorter): the max abs logit error of each graph on identical inputs (the encoder; the condition terms from
the fp32 condition; the denoise step on the fp32 terms and the x01 inputs the fp32 forecast fed it, at its
first, middle and last DDIM step) and the argmax agreement of the full 25-step forecast with the same noise
(all frames and the future frames). Then MoC (%) on the test split (both horizon protocols, alpha 0.2 and 0.3,
the mean over beta 0.1-0.5; offset 0, noise seed 0, one sample). ``--islands`` adds the sweep that chose which
ops stay in fp32 (torch fp16, every subset of :data:`~actfusion_model.onnx_graphs.FP32_ISLANDS`).
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from actfusion_model.checkpoint import load_checkpoint  # noqa: E402
from actfusion_model.diffusion import sample_noise  # noqa: E402
from actfusion_model.export import export_onnx  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_model.onnx_graphs import (  # noqa: E402
    FP16_KEEP_FP32,
    FP32_ISLANDS,
    ConditionGraph,
    DenoiseStepGraph,
    EncoderGraph,
    GraphPrecision,
)
from actfusion_model.runtime import Backend, forecast, load_backend  # noqa: E402


class GraphModulesBackend:
    """The export's graph modules run eagerly on the CPU in one :class:`GraphPrecision` (fp16: the emulation
    of an fp16 engine described in the module docstring)."""

    def __init__(self, model: ActFusion, precision: GraphPrecision) -> None:
        self.name = f"graphs-{precision.name}"
        self.config = model.cfg
        self.device = torch.device("cpu")
        self.class_names = [f"class_{i}" for i in range(model.cfg.num_classes)]
        self.encoder = EncoderGraph(model, precision).eval()
        self.condition = ConditionGraph(model, precision).eval()
        self.step = DenoiseStepGraph(model, batched=True, precision=precision).eval()

    @torch.no_grad()
    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(features.float(), frame_mask.bool())

    @torch.no_grad()
    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> list[torch.Tensor]:
        return list(self.condition(torch.as_tensor(condition).float()))

    @torch.no_grad()
    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        terms = [torch.as_tensor(v) for v in (state.values() if isinstance(state, dict) else state)]
        return self.step(*terms, torch.tensor([int(t)]), x01.float())

    def synchronize(self) -> None:
        """Nothing in flight on the CPU."""


class _Recorder:
    """Wraps a backend and keeps every ``(t, x01)`` its denoise step got."""

    def __init__(self, backend: Backend) -> None:
        self.backend, self.calls = backend, []
        self.name, self.config, self.device = backend.name, backend.config, backend.device
        self.class_names = backend.class_names

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.backend.encode(features, frame_mask)

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> Any:
        return self.backend.prepare(condition, num_samples)

    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        self.calls.append((int(t), x01.clone()))
        return self.backend.denoise(state, t, x01)

    def synchronize(self) -> None:
        self.backend.synchronize()


def _max_abs(a: Any, b: Any) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def _terms(state: Any) -> list[np.ndarray]:
    values = state.values() if isinstance(state, dict) else state
    return [np.asarray(torch.as_tensor(v).numpy() if isinstance(v, torch.Tensor) else v) for v in values]


def observed_features(video_features: np.ndarray, sample_rate: int, n_obs: int) -> torch.Tensor:
    """The first ``n_obs`` frames of a video at the model's rate, the video repeated when it is shorter."""
    feats = video_features[:, ::sample_rate]
    reps = -(-n_obs // feats.shape[1])
    return torch.from_numpy(np.ascontiguousarray(np.tile(feats, (1, reps))[:, :n_obs], dtype=np.float32))


def graph_errors(reference: Backend, candidate: Backend, obs: torch.Tensor, length: int,
                 seed: int = 0) -> dict[str, float]:
    """Per-graph max abs errors on identical inputs, and the forecasts' argmax agreement (module docstring)."""
    cfg = reference.config
    n_obs = obs.shape[1]
    padded = torch.cat([obs[None], obs.new_zeros(1, cfg.input_dim, length - n_obs)], dim=2)
    mask = torch.zeros(1, length, dtype=torch.bool)
    mask[:, :n_obs] = True
    logits32, cond32 = reference.encode(padded, mask)
    logits16, cond16 = candidate.encode(padded, mask)
    state32 = reference.prepare(cond32, 1)
    state16 = candidate.prepare(cond32, 1)
    noise = sample_noise((1, cfg.num_classes, length), cfg.ddim_steps, generator=torch.Generator().manual_seed(seed))
    recorder = _Recorder(reference)
    ref = forecast(recorder, obs, horizon=length - n_obs, noise=noise)
    got = forecast(candidate, obs, horizon=length - n_obs, noise=noise)
    picks = sorted({0, len(recorder.calls) // 2, len(recorder.calls) - 1})
    step_error = 0.0
    for i in picks:
        t, x01 = recorder.calls[i]
        step_error = max(step_error, _max_abs(reference.denoise(state32, t, x01), candidate.denoise(state32, t, x01)))
    ref_all = torch.cat([ref.observed_probs, ref.future_probs], dim=-1).argmax(0)
    got_all = torch.cat([got.observed_probs, got.future_probs], dim=-1).argmax(0)
    return {"encoder_logits": _max_abs(logits32, logits16), "condition": _max_abs(cond32, cond16),
            "terms": max(_max_abs(a, b) for a, b in zip(_terms(state32), _terms(state16))),
            "step_logits": step_error, "logit_scale": float(np.abs(np.asarray(logits32)).max()),
            "agree_all": float((ref_all == got_all).float().mean()),
            "agree_future": float((ref_all[n_obs:] == got_all[n_obs:]).float().mean()),
            "finite": bool(torch.isfinite(got.future_probs).all())}


def headroom(model: ActFusion, obs: torch.Tensor, length: int) -> dict[str, float]:
    """The largest magnitudes an fp16 graph meets, from the fp32 graph modules on one forecast's inputs: the
    instance norm's squared deviations ``(x - mean)^2`` and their sum over the T frames (what the variance's
    accumulator holds), the attention's ``q.k`` sums (fp16 overflows at 65504), and the residual stream."""
    from actfusion_model import onnx_graphs

    seen = {"norm (x-mean)^2": 0.0, "norm sum over T of (x-mean)^2": 0.0, "attention q.k": 0.0, "residual": 0.0}
    norm, attend = onnx_graphs._instance_norm, onnx_graphs._Window.attend

    def norm_probe(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        centred = x - x.mean(dim=-2, keepdim=True)
        squares = centred * centred
        seen["norm (x-mean)^2"] = max(seen["norm (x-mean)^2"], float(squares.max()))
        total = float(squares.sum(dim=-2).max())  # what a variance's accumulator holds before the division
        seen["norm sum over T of (x-mean)^2"] = max(seen["norm sum over T of (x-mean)^2"], total)
        return norm(x, *args, **kwargs)

    def attend_probe(self: Any, q: torch.Tensor, k: torch.Tensor, xs: Any, terms: torch.Tensor) -> torch.Tensor:
        dots = torch.cat([(q * key).sum(dim=-1, keepdim=True) for key in self.slices(k)], dim=-1)
        seen["attention q.k"] = max(seen["attention q.k"], float(dots.abs().max()))
        seen["residual"] = max(seen["residual"], float(max(x.abs().max() for x in xs)))
        return attend(self, q, k, xs, terms)

    onnx_graphs._instance_norm, onnx_graphs._Window.attend = norm_probe, attend_probe
    try:
        backend = GraphModulesBackend(model, GraphPrecision())
        noise = sample_noise((1, model.cfg.num_classes, length), model.cfg.ddim_steps,
                             generator=torch.Generator().manual_seed(0))
        forecast(backend, obs, horizon=length - obs.shape[1], noise=noise)
    finally:
        onnx_graphs._instance_norm, onnx_graphs._Window.attend = norm, attend
    return seen


def moc_means(backend: Backend, records: Sequence[Any], class_names: Sequence[str], median_filter: int
              ) -> dict[str, float]:
    """``{protocol: mean MoC}`` on ``records`` (offset 0, seed 0, one sample)."""
    from actfusion_training.inference import PROTOCOLS
    from actfusion_training.scoring import ScoringOptions, score_model

    options = ScoringOptions(protocols=PROTOCOLS, aggregate_offsets=False, median_filter=median_filter)
    run = score_model(backend, records, class_names, options)  # type: ignore[arg-type]  (any backend)
    return {p: float(v) for p, v in run.metrics["lta_mean"].items() if v is not None}


def _export(model: ActFusion, names: Sequence[str], out: Path, precision: str,
            keep_fp32: Sequence[str] | None = None) -> Path:
    if not (out / "manifest.json").is_file():
        export_onnx(model, out, class_names=names, precision=precision, keep_fp32=keep_fp32)
    return out


def _row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def run_checkpoint(checkpoint: Path, data: Path, split: int, lengths: Sequence[int], work: Path,
                   moc_videos: int | None, islands: bool, emit: Callable[[str], None]) -> None:
    from actfusion_training.data import MsTcnDataset
    from actfusion_training.eval_model import default_median_filter

    ckpt = load_checkpoint(checkpoint)
    model, cfg = ckpt.model.eval(), ckpt.config
    tag = f"{checkpoint.parent.parent.name}-{checkpoint.stem}"
    dir32 = _export(model, ckpt.class_names, work / f"{tag}-fp32", "fp32")
    dir16 = _export(model, ckpt.class_names, work / f"{tag}-fp16", "fp16")
    pairs = {"ONNX Runtime": (load_backend("onnxruntime", dir32, intra_op_threads=1),
                              load_backend("onnxruntime", dir16, intra_op_threads=1)),
             "torch fp16": (GraphModulesBackend(model, GraphPrecision()),
                            GraphModulesBackend(model, GraphPrecision.of("fp16")))}
    dataset = MsTcnDataset(data, split, "test")
    records = list(dataset)
    video = records[0]
    emit(f"\n## {checkpoint} ({data}, split {split}; fp32 islands of the fp16 export: "
         f"{', '.join(FP16_KEEP_FP32)}; logits of the first test video {video.name})\n")
    emit(_row(["T", "path", "encoder logits", "condition", "decoder terms", "denoise step logits",
               "|logits| max", "argmax agreement, all / future", "finite"]))
    emit(_row(["---"] * 9))
    for length in lengths:
        n_obs = max(1, round(length / 5))
        obs = observed_features(video.features, cfg.sample_rate, n_obs)
        for label, (ref, cand) in pairs.items():
            e = graph_errors(ref, cand, obs, length)
            emit(_row([length, label, f"{e['encoder_logits']:.2e}", f"{e['condition']:.2e}", f"{e['terms']:.2e}",
                       f"{e['step_logits']:.2e}", f"{e['logit_scale']:.1f}",
                       f"{100 * e['agree_all']:.2f} / {100 * e['agree_future']:.2f}", e["finite"]]))
    emit("\nLargest magnitudes in the fp32 graphs over one forecast (fp16's largest finite number is 65504):\n")
    emit(_row(["T", "norm (x-mean)^2", "norm: sum over T of (x-mean)^2", "attention q.k", "residual stream"]))
    emit(_row(["---"] * 5))
    for length in lengths:
        obs = observed_features(video.features, cfg.sample_rate, max(1, round(length / 5)))
        h = headroom(model, obs, length)
        emit(_row([length, *(f"{v:.3g}" for v in h.values())]))
    if moc_videos != 0:
        chosen = records[:moc_videos] if moc_videos else records
        filt = default_median_filter(ckpt.metadata)
        emit(f"\nMoC (%) on {len(chosen)} test videos (offset 0, seed 0, 1 sample, median filter {filt}):\n")
        emit(_row(["path", "GT length fp32", "fp16", "difference", "r*N^O fp32", "fp16", "difference"]))
        emit(_row(["---"] * 7))
        for label, (ref, cand) in pairs.items():
            a = moc_means(ref, chosen, ckpt.class_names, filt)
            b = moc_means(cand, chosen, ckpt.class_names, filt)
            emit(_row([label, f"{a['gt']:.2f}", f"{b['gt']:.2f}", f"{b['gt'] - a['gt']:+.2f}",
                       f"{a['rn']:.2f}", f"{b['rn']:.2f}", f"{b['rn'] - a['rn']:+.2f}"]))
    if islands:
        emit("\nWhich ops stay fp32 (torch fp16 emulation; max abs error of encoder logits / denoise step "
             "logits, future argmax agreement %):\n")
        emit(_row(["T", *("+".join(k) or "none" for k in _island_sets())]))
        emit(_row(["---"] * (1 + len(_island_sets()))))
        reference = GraphModulesBackend(model, GraphPrecision())
        for length in lengths:
            obs = observed_features(video.features, cfg.sample_rate, max(1, round(length / 5)))
            cells = []
            for keep in _island_sets():
                e = graph_errors(reference, GraphModulesBackend(model, GraphPrecision.of("fp16", keep)), obs,
                                 length)
                cells.append(f"{e['encoder_logits']:.1e} / {e['step_logits']:.1e} / {100 * e['agree_future']:.1f}")
            emit(_row([length, *cells]))


def _island_sets() -> list[tuple[str, ...]]:
    return [k for n in range(len(FP32_ISLANDS) + 1) for k in itertools.combinations(FP32_ISLANDS, n)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, action="append", required=True, help="checkpoint (repeatable)")
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="its MS-TCN dataset root (one per --checkpoint, same order)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--lengths", type=int, nargs="+", default=[37, 1024, 4096, 8192])
    p.add_argument("--moc-videos", type=int, default=None, help="test videos for MoC (default all; 0: no MoC)")
    p.add_argument("--islands", action="store_true", help="also sweep which ops stay fp32")
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    p.add_argument("--work", type=Path, default=None, help="export directory (kept; default a temporary one)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if len(args.data) != len(args.checkpoint):
        raise SystemExit("bench_fp16: give one --data per --checkpoint")
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        for checkpoint, data in zip(args.checkpoint, args.data):
            run_checkpoint(checkpoint, data, args.split, args.lengths, work, args.moc_videos, args.islands,
                           lambda line: print(line, flush=True))
    print(f"\n# bench_fp16: {time.perf_counter() - start:.0f} s, torch {torch.__version__}, {args.threads} thread(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
