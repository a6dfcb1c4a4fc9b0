"""The one inference path: the DDIM schedule object, the forecast function over a batch of K samples
(torch and ONNX Runtime), one list of backend names, and the module boundaries of the exporter."""
from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from model.config import model_config
from model.diffusion import (DDIMSchedule, DDIMStepOutput, cosine_alphas_cumprod, ddim_coefficients,
                             ddim_sample, ddim_schedule, ddim_step, ddim_timesteps, sample_noise)
from model.network import ActFusion
from model.runtime import BACKENDS, forecast, load_backend, schedule_for

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["idle", "reach", "grasp", "pour", "place"]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> ActFusion:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(21)
        return ActFusion(model_config("tiny", num_classes=len(CLASSES))).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny: ActFusion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from model.export import export_onnx

    path = tmp_path_factory.mktemp("tiny_onnx")
    export_onnx(tiny, path, class_names=CLASSES, length=24)
    return path


def _observed(model: ActFusion, n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(model.cfg.input_dim, n, generator=torch.Generator().manual_seed(seed))


# -- DDIMSchedule ----------------------------------------------------------------------------------
def test_schedule_holds_the_pairs_and_coefficients_and_is_frozen() -> None:
    schedule = DDIMSchedule.create(25, num_timesteps=1000, eta=0.5, snr_scale=2.0)
    abar = cosine_alphas_cumprod(1000)
    assert schedule.pairs == tuple(ddim_timesteps(25, 1000)) and schedule.num_steps == 25
    assert schedule.coefficients == tuple(ddim_coefficients(abar, t, tp, 0.5) for t, tp in schedule.pairs)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.eta = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"ddim steps must be in \[1, 1000\], got 0"):
        DDIMSchedule.create(0)


def test_schedule_is_built_once_per_setting() -> None:
    cfg = model_config("tiny", num_classes=3)
    assert schedule_for(cfg) is schedule_for(cfg, cfg.ddim_steps, cfg.ddim_eta)
    assert schedule_for(cfg, 3) is ddim_schedule(3, cfg.num_timesteps, cfg.ddim_eta, cfg.snr_scale)
    assert schedule_for(cfg, 3) is not schedule_for(cfg, 4)


def test_step_returns_the_previous_sample_and_the_clamped_x0() -> None:
    schedule = DDIMSchedule.create(4, num_timesteps=100, eta=0.0, snr_scale=1.5)
    x_t = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1)), dim=1)
    out = schedule.step(0, x_t, probs, None)
    assert isinstance(out, DDIMStepOutput)
    torch.testing.assert_close(out.pred_x0, (probs * 2 - 1) * 1.5)
    assert float(out.pred_x0.abs().max()) <= 1.5
    assert torch.equal(out.prev_sample, ddim_step(x_t, out.pred_x0, schedule.coefficients[0], None))


def test_ddim_sample_runs_the_schedule_and_checks_the_noise() -> None:
    schedule = DDIMSchedule.create(3, num_timesteps=50, eta=1.0)
    seen: list[int] = []

    def denoise(t: int, x01: torch.Tensor) -> torch.Tensor:
        seen.append(t)
        assert float(x01.min()) >= 0 and float(x01.max()) <= 1
        return torch.zeros_like(x01)

    probs = ddim_sample(denoise, schedule, sample_noise((1, 4, 6), 3, generator=torch.Generator().manual_seed(2)))
    assert seen == [t for t, _ in schedule.pairs]
    torch.testing.assert_close(probs, torch.full((1, 4, 6), 0.25))
    with pytest.raises(ValueError, match="noise has shape"):
        ddim_sample(denoise, schedule, torch.zeros(2, 1, 4, 6))


# -- the forecast function ----------------------------------------------------------------------------
def test_forecast_checks_schedule_against_steps_and_the_sample_count(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    schedule = schedule_for(tiny.cfg, 3)
    a = forecast(backend, _observed(tiny, 6), horizon=4, schedule=schedule, generator=torch.Generator().manual_seed(0))
    b = forecast(backend, _observed(tiny, 6), horizon=4, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.future_probs, b.future_probs)
    with pytest.raises(ValueError, match="contradict the given schedule"):
        forecast(backend, _observed(tiny, 6), schedule=schedule, steps=5)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        forecast(backend, _observed(tiny, 6), num_samples=0)


def test_one_sample_by_default_is_the_k1_batch_bit_for_bit(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    obs = _observed(tiny, 7)
    single = forecast(backend, obs, horizon=9, generator=torch.Generator().manual_seed(4))
    batch = forecast(backend, obs, horizon=9, num_samples=1, generator=torch.Generator().manual_seed(4))
    assert batch.future_probs.shape == (1, len(CLASSES), 9) and single.future_probs.shape == (len(CLASSES), 9)
    assert torch.equal(batch.future_probs[0], single.future_probs)
    assert torch.equal(batch.observed_probs[0], single.observed_probs)


def _batch_equals_single_runs(backend, obs: torch.Tensor, k: int, atol: float) -> None:
    cfg = backend.config
    horizon = 11
    noise = sample_noise((k, cfg.num_classes, obs.shape[1] + horizon), cfg.ddim_steps,
                         generator=torch.Generator().manual_seed(8))
    batch = forecast(backend, obs, horizon=horizon, num_samples=k, noise=noise)
    assert batch.observed_probs.shape == (k, cfg.num_classes, obs.shape[1])
    assert batch.future_probs.shape == (k, cfg.num_classes, horizon)
    for i in range(k):
        one = forecast(backend, obs, horizon=horizon, noise=noise[:, i:i + 1])
        torch.testing.assert_close(batch.observed_probs[i], one.observed_probs, atol=atol, rtol=0)
        torch.testing.assert_close(batch.future_probs[i], one.future_probs, atol=atol, rtol=0)
    assert not torch.allclose(batch.future_probs[0], batch.future_probs[1], atol=1e-3)  # samples differ


def test_batch_of_k_equals_k_single_runs_torch(tiny: ActFusion) -> None:
    _batch_equals_single_runs(load_backend("torch", tiny), _observed(tiny, 10, seed=3), 4, atol=1e-6)


def test_batch_of_k_equals_k_single_runs_onnxruntime(tiny_onnx: Path, tiny: ActFusion) -> None:
    _batch_equals_single_runs(load_backend("onnxruntime", tiny_onnx, intra_op_threads=1),
                              _observed(tiny, 10, seed=3), 4, atol=1e-5)


def test_onnxruntime_batch_equals_torch_batch(tiny_onnx: Path, tiny: ActFusion) -> None:
    obs = _observed(tiny, 9, seed=5)
    runs = [forecast(load_backend(kind, src, **opts), obs, num_samples=3, generator=torch.Generator().manual_seed(1))
            for kind, src, opts in (("torch", tiny, {}), ("onnxruntime", tiny_onnx, {"intra_op_threads": 1}))]
    torch.testing.assert_close(runs[1].future_probs, runs[0].future_probs, atol=1e-4, rtol=0)
    torch.testing.assert_close(runs[1].encoder_logits, runs[0].encoder_logits, atol=1e-4, rtol=0)


def test_an_export_without_the_batch_graph_runs_one_sample_and_refuses_more(tiny_onnx: Path, tiny: ActFusion,
                                                                              tmp_path: Path) -> None:
    from model.runtime import BackendError

    old = tmp_path / "old"
    shutil.copytree(tiny_onnx, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["batch_graphs"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "denoise_step_batch.onnx").unlink()
    backend = load_backend("onnxruntime", old, intra_op_threads=1)
    assert forecast(backend, _observed(tiny, 4), horizon=2).future_probs.shape == (len(CLASSES), 2)
    with pytest.raises(BackendError, match="takes one sample; re-export"):
        forecast(backend, _observed(tiny, 4), horizon=2, num_samples=2)


def test_batched_step_graph_equals_the_single_step_graph_eagerly(tiny: ActFusion) -> None:
    from model.onnx_graphs import ConditionGraph, DenoiseStepGraph

    cond = torch.randn(1, tiny.cfg.cond_dim, 13, generator=torch.Generator().manual_seed(0))
    x01 = torch.rand(3, len(CLASSES), 13, generator=torch.Generator().manual_seed(1))
    step = torch.tensor([321])
    with torch.no_grad():
        terms = ConditionGraph(tiny)(cond)
        batch = DenoiseStepGraph(tiny, batched=True)(*terms, step, x01)
        single = [DenoiseStepGraph(tiny)(*terms, step, x01[i:i + 1]) for i in range(3)]
        eager = tiny.denoise(cond.expand(3, -1, -1), 321, x01)
    torch.testing.assert_close(batch, torch.cat(single), atol=1e-5, rtol=0)
    torch.testing.assert_close(batch, eager, atol=1e-5, rtol=0)


def test_anticipate_is_the_forecast_function(tiny: ActFusion) -> None:
    obs = _observed(tiny, 8)
    out = tiny.anticipate(obs[None], ratio=2.0, generator=torch.Generator().manual_seed(3))
    ref = forecast(load_backend("torch", tiny), obs[None], ratio=2.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(out.future_probs, ref.future_probs) and torch.equal(out.encoder_logits, ref.encoder_logits)
    assert out.horizon == 16


def test_evaluation_runs_any_backend(tiny: ActFusion, tiny_onnx: Path) -> None:
    from training.inference import predict_lta

    video = _observed(tiny, 30, seed=9).numpy()
    a = predict_lta(tiny, video, 0.3, "rn", seed=2)
    b = predict_lta(load_backend("onnxruntime", tiny_onnx, intra_op_threads=1), video, 0.3, "rn", seed=2)
    assert a.layout == b.layout and (a.labels == b.labels).mean() > 0.95


def test_forecaster_passes_backend_options_to_the_torch_backend(tiny: ActFusion) -> None:
    from actfusion_ros.forecaster import ForecasterError, ModelForecaster

    with pytest.raises(ForecasterError, match="CUDA only"):
        ModelForecaster(tiny, CLASSES, backend_options={"precision": "fp16"})
    fc = ModelForecaster(tiny, CLASSES, steps=3)
    assert fc.runtime.name == "torch" and fc.model is tiny and fc.schedule.num_steps == fc.steps == 3


# -- one list of backend names; module boundaries ---------------------------------------------------
def test_one_list_of_backend_names() -> None:
    from actfusion_ros import forecaster, node_params
    from model import backend_names

    assert BACKENDS is backend_names.BACKENDS is node_params.BACKENDS is forecaster.BACKENDS
    assert node_params.spec("backend").choices == BACKENDS
    source = (ROOT / "actfusion_ros" / "replay.py").read_text()
    assert "choices=BACKENDS" in source and '"onnxruntime", "tensorrt")' not in source


def test_runtime_backends_import_the_manifest_reader_not_the_exporter() -> None:
    code = ("import sys, model.runtime.onnx_backend, model.runtime.tensorrt_backend, model.runtime.torch_backend; "
            "print([m for m in ('model.export', 'model.onnx_graphs') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_runtime_modules_import_no_private_names() -> None:
    offenders = []
    for path in sorted((ROOT / "model" / "runtime").glob("*.py")) + [ROOT / "model" / "export.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("model"):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_tensorrt_profile_shapes_name_the_sample_axis() -> None:
    from model.runtime.engine_cache import EngineKey
    from model.runtime.tensorrt_backend import LengthProfile

    profile = LengthProfile(min_length=4, opt_length=64, max_length=512, opt_samples=8, max_samples=16)
    assert profile.shapes((-1, 19, -1), ["K", 19, "T"]) == [(1, 19, 4), (8, 19, 64), (16, 19, 512)]
    assert profile.shapes((1, -1, 48), [1, "T", 48]) == [(1, 4, 48), (1, 64, 48), (1, 512, 48)]
    with pytest.raises(ValueError, match="opt_samples <= max_samples"):
        LengthProfile(opt_samples=4, max_samples=2)
    old_sidecar_key = dict(onnx_sha256="a" * 64, tensorrt_version="10", gpu_name="g", compute_capability="9.0",
                           min_length=1, opt_length=2, max_length=3, fp16=False)
    assert EngineKey.from_dict(old_sidecar_key).max_samples == 1
    with pytest.raises(ValueError, match="lacks"):
        EngineKey.from_dict({k: v for k, v in old_sidecar_key.items() if k != "fp16"})


def test_forecaster_output_is_numpy_float32(tiny: ActFusion) -> None:
    from actfusion_ros.forecaster import ModelForecaster

    obs, fut = ModelForecaster(tiny, CLASSES)(np.zeros((tiny.cfg.input_dim, 3), np.float32), 5)
    assert obs.dtype == fut.dtype == np.float32 and obs.shape == (len(CLASSES), 3) and fut.shape == (len(CLASSES), 5)
