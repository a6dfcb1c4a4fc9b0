"""Seeded forecasts of a tiny random-weight model through every caller of the forecast path.

``compute_forecasts(onnx_dir)`` runs the same observations and seeds through
:func:`actfusion_model.runtime.forecast` (torch and ONNX Runtime), :class:`actfusion_ros.stream_model.ModelForecaster`
(torch and ONNX Runtime) and :mod:`actfusion_training.inference` (TAS and both LTA protocols) and returns the
probabilities as nested lists. ``tests/data/seeded_forecasts.json`` holds the values recorded before the
single-inference-path refactor; ``tests/test_forecast_fixture.py`` compares against them. Re-record only
on purpose (a deliberate change of the maths):

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python -m tests.forecast_fixture tests/data/seeded_forecasts.json
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from actfusion_model.config import model_config
from actfusion_model.io import atomic_write_text
from actfusion_model.network import ActFusion
from actfusion_model.runtime import forecast, load_backend
from actfusion_ros.stream_model import ModelForecaster
from actfusion_training.inference import predict_lta, predict_tas

CLASSES = ("idle", "reach", "grasp", "pour")
FIXTURE = Path(__file__).parent / "data" / "seeded_forecasts.json"
LENGTHS = (6, 11)  # observed frames
SEEDS = (0, 7)
DECIMALS = 7


def tiny_model() -> ActFusion:
    """The tiny preset with 4 classes and sample rate 2, weights from seed 123 (global RNG untouched)."""
    cfg = model_config("tiny", num_classes=len(CLASSES), sample_rate=2, ddim_steps=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        return ActFusion(cfg).eval()


def observation(model: ActFusion, n: int) -> np.ndarray:
    return np.random.default_rng(n).standard_normal((model.cfg.input_dim, n)).astype(np.float32)


def _round(x: Any) -> list:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.round(arr.astype(np.float64), DECIMALS).tolist()


def compute_forecasts(onnx_dir: Path | None) -> dict[str, Any]:
    """All recorded cases; ``onnx_dir``: an export of :func:`tiny_model` (None: skip ONNX Runtime)."""
    model = tiny_model()
    backends = {"torch": load_backend("torch", model, class_names=CLASSES)}
    if onnx_dir is not None:
        backends["onnxruntime"] = load_backend("onnxruntime", onnx_dir, intra_op_threads=1)
    out: dict[str, Any] = {}
    for name, backend in backends.items():
        for n in LENGTHS:
            for seed in SEEDS:
                for rule, kwargs in (("h9", {"horizon": 9}), ("r2", {"ratio": 2.0}), ("cap5", {"max_horizon": 5})):
                    got = forecast(backend, observation(model, n), generator=torch.Generator().manual_seed(seed),
                                   **kwargs)
                    out[f"forecast/{name}/n{n}/s{seed}/{rule}"] = [_round(got.observed_probs),
                                                                  _round(got.future_probs)]
    forecasters = {"torch": ModelForecaster(model, CLASSES, seed=5)}
    if onnx_dir is not None:
        forecasters["onnxruntime"] = ModelForecaster.from_export(onnx_dir, seed=5, threads=1)
    for name, fc in forecasters.items():
        for tick, (n, h) in enumerate(((6, 12), (11, 0), (11, 7))):
            obs, fut, _ = fc(observation(model, n), h)
            out[f"forecaster/{name}/tick{tick}"] = [_round(obs), _round(fut)]
    video = observation(model, 23)
    for seed in SEEDS:
        out[f"inference/tas/s{seed}"] = _round(predict_tas(model, video, seed=seed, video_index=3).probs)
        for protocol in ("gt", "rn"):
            pred = predict_lta(model, video, 0.3, protocol, seed=seed, video_index=3)
            out[f"inference/lta/{protocol}/s{seed}"] = pred.labels.tolist()
    return out


def export_tiny(out_dir: Path) -> Path:
    from actfusion_model.export import export_onnx

    export_onnx(tiny_model(), out_dir, class_names=list(CLASSES), length=16, verify_length=None)
    return out_dir


def main(argv: list[str]) -> int:
    target = Path(argv[0]) if argv else FIXTURE
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        values = compute_forecasts(export_tiny(Path(tmp) / "onnx"))
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, json.dumps(values, separators=(",", ":")) + "\n")
    print(f"{target}: {len(values)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
