"""Backends and the shared forecasting loop: torch == model, torch == ONNX Runtime, seeds, horizon,
errors, the TensorRT engine-cache policy (pure Python) and TensorRT itself where installed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from model.config import model_config
from model.diffusion import sample_noise
from model.network import ActFusion
from model.runtime import BackendError, forecast, load_backend, step_agreement
from model.runtime.engine_cache import (EngineKey, EngineMismatchError, ensure_engine, inspect_engine,
                                        sidecar_path)

CLASSES = ["idle", "reach", "grasp", "move", "place", "release"]


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny() -> ActFusion:
    torch.manual_seed(3)
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


# -- the shared loop -------------------------------------------------------------------------
def test_torch_backend_forecast_is_bit_identical_to_model_anticipate(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny, class_names=CLASSES)
    obs = _observed(tiny, 9)
    for kwargs in ({"horizon": 14}, {"ratio": 4.0}, {"ratio": 2.5, "max_horizon": 11}):
        a = forecast(backend, obs, generator=torch.Generator().manual_seed(5), **kwargs)
        b = tiny.anticipate(obs[None], generator=torch.Generator().manual_seed(5), **kwargs)
        assert torch.equal(a.observed_probs, b.observed_probs[0])
        assert torch.equal(a.future_probs, b.future_probs[0])


def test_same_seed_same_forecast_on_torch_and_onnxruntime(tiny: ActFusion, tiny_onnx: Path) -> None:
    torch_backend = load_backend("torch", tiny)
    ort_backend = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)
    obs = _observed(tiny, 13, seed=1)

    def run(backend, seed):
        return forecast(backend, obs, generator=torch.Generator().manual_seed(seed))

    a, b = run(torch_backend, 42), run(ort_backend, 42)
    assert a.future_probs.shape == (len(CLASSES), 52)
    assert float((a.future_probs - b.future_probs).abs().max()) < 1e-4
    assert float((a.observed_probs - b.observed_probs).abs().max()) < 1e-4
    assert torch.equal(run(ort_backend, 42).future_probs, b.future_probs)  # deterministic
    assert not torch.allclose(run(ort_backend, 43).future_probs, b.future_probs, atol=1e-3)


def test_forecast_shapes_horizon_rules_and_batch_dim(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    obs = _observed(tiny, 10)
    assert forecast(backend, obs, steps=2).future_probs.shape == (6, 40)  # r = 4
    assert forecast(backend, obs, ratio=4.0, max_horizon=7, steps=2).future_probs.shape == (6, 7)
    seg = forecast(backend, obs, horizon=0, steps=2)
    assert seg.future_probs.shape == (6, 0) and seg.observed_probs.shape == (6, 10)
    batched = forecast(backend, obs[None].numpy(), horizon=3, steps=2)
    assert batched.observed_probs.shape == (1, 6, 10) and batched.future_probs.shape == (1, 6, 3)
    torch.testing.assert_close(batched.observed_probs.sum(1), torch.ones(1, 10))


def test_forecast_errors_name_the_problem(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    with pytest.raises(ValueError, match=r"\(32, N\)"):
        forecast(backend, torch.randn(31, 5))
    with pytest.raises(ValueError, match="at least one frame"):
        forecast(backend, torch.randn(32, 0))
    with pytest.raises(ValueError, match="noise has shape"):
        forecast(backend, torch.randn(32, 5), horizon=5, steps=3, noise=torch.randn(3, 1, 6, 9))


def test_explicit_noise_is_the_only_randomness(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    obs = _observed(tiny, 6)
    noise = sample_noise((1, 6, 10), 4, generator=torch.Generator().manual_seed(9))
    a = forecast(backend, obs, horizon=4, steps=4, noise=noise)
    torch.manual_seed(123)  # global RNG state must not matter
    b = forecast(backend, obs, horizon=4, steps=4, noise=noise)
    assert torch.equal(a.future_probs, b.future_probs)


def test_timings_are_reported(tiny: ActFusion) -> None:
    timings: dict[str, float] = {}
    forecast(load_backend("torch", tiny), _observed(tiny, 5), steps=2, timings=timings)
    assert set(timings) == {"encode_s", "prepare_s", "sample_s", "total_s"}
    assert timings["total_s"] >= timings["sample_s"] >= 0


def test_step_agreement_is_one_against_itself_and_in_range_otherwise(tiny: ActFusion) -> None:
    backend = load_backend("torch", tiny)
    obs = [_observed(tiny, 7, seed=s) for s in range(2)]
    same = step_agreement(backend, obs, steps=5, reference_steps=5, seeds=(0, 1))
    assert same["future_agreement"] == same["observed_agreement"] == 1.0 and same["future_mean_abs_diff"] == 0
    fewer = step_agreement(backend, obs, steps=1, reference_steps=5, seeds=(0,))
    assert 0.0 <= fewer["future_agreement"] <= 1.0 and fewer["future_mean_abs_diff"] > 0


# -- backend construction errors ---------------------------------------------------------------
def test_unknown_backend_and_cpu_only_options_are_refused(tiny: ActFusion) -> None:
    with pytest.raises(BackendError, match="unknown backend 'jax'"):
        load_backend("jax", tiny)
    with pytest.raises(BackendError, match="CUDA only"):
        load_backend("torch", tiny, precision="fp16")
    with pytest.raises(BackendError, match="CUDA only"):
        load_backend("torch", tiny, cuda_graphs=True)


def test_torch_backend_loads_our_checkpoints(tiny: ActFusion, tmp_path: Path) -> None:
    from model.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "m.pt", tiny, CLASSES)
    backend = load_backend("torch", tmp_path / "m.pt")
    assert backend.class_names == CLASSES
    with pytest.raises(BackendError, match="checkpoint not found"):
        load_backend("torch", tmp_path / "missing.pt")


def test_onnxruntime_backend_reads_the_manifest_and_refuses_tampered_graphs(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)
    assert backend.class_names == CLASSES and backend.config.num_classes == 6
    copy = tmp_path / "copy"
    shutil.copytree(tiny_onnx, copy)
    data = bytearray((copy / "denoise_step.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "denoise_step.onnx").write_bytes(bytes(data))
    with pytest.raises(BackendError, match="denoise_step.onnx: sha256"):
        load_backend("onnxruntime", copy)
    with pytest.raises(BackendError, match="no manifest.json"):
        load_backend("onnxruntime", tmp_path)
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(BackendError, match="CUDAExecutionProvider"):
            load_backend("onnxruntime", tiny_onnx, device="cuda")


def test_tensorrt_backend_without_tensorrt_is_a_clear_error(tiny_onnx: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed; the missing-package path cannot be exercised")
    with pytest.raises(BackendError, match="needs NVIDIA TensorRT"):
        load_backend("tensorrt", tiny_onnx)
    from model.build_engine import main

    assert main(["--onnx-dir", str(tiny_onnx), "--out", str(tiny_onnx / "trt")]) == 1


# -- engine cache policy (no TensorRT needed) ----------------------------------------------------
def _key(**changes) -> EngineKey:
    base = dict(onnx_sha256="a" * 64, tensorrt_version="10.15.1", gpu_name="NVIDIA Jetson AGX Orin",
                compute_capability="8.7", min_length=16, opt_length=1024, max_length=8192, fp16=False)
    base.update(changes)
    return EngineKey(**base)


class _Builder:
    """Fake engine builder: writes distinct bytes and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> None:
        self.calls += 1
        path.write_bytes(f"engine #{self.calls}".encode())


def test_engine_is_built_once_then_reused(tmp_path: Path) -> None:
    build, path = _Builder(), tmp_path / "step.engine"
    assert ensure_engine(path, _key(), build) == (path, "built")
    assert ensure_engine(path, _key(), build) == (path, "reused")
    assert build.calls == 1
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["key"]["onnx_sha256"] == "a" * 64 and sidecar["engine_bytes"] == len(b"engine #1")


@pytest.mark.parametrize("change", [{"onnx_sha256": "b" * 64}, {"tensorrt_version": "10.16.0"},
                                    {"max_length": 4096}, {"opt_length": 512}, {"fp16": True}])
def test_any_build_input_change_triggers_a_rebuild(tmp_path: Path, change: dict) -> None:
    build, path = _Builder(), tmp_path / "step.engine"
    ensure_engine(path, _key(), build)
    status = inspect_engine(path, _key(**change))
    assert status.state == "stale" and next(iter(change)) in status.reason
    assert ensure_engine(path, _key(**change), build)[1] == "built"
    assert build.calls == 2 and path.read_bytes() == b"engine #2"
    assert ensure_engine(path, _key(**change), build)[1] == "reused"


def test_an_engine_from_another_gpu_is_refused_with_both_names(tmp_path: Path) -> None:
    build, path = _Builder(), tmp_path / "step.engine"
    ensure_engine(path, _key(), build)
    other = _key(gpu_name="NVIDIA H200", compute_capability="9.0")
    with pytest.raises(EngineMismatchError) as err:
        ensure_engine(path, other, build)
    assert "NVIDIA Jetson AGX Orin (sm 8.7)" in str(err.value) and "NVIDIA H200 (sm 9.0)" in str(err.value)
    assert build.calls == 1 and path.read_bytes() == b"engine #1"  # untouched
    assert ensure_engine(path, other, build, allow_gpu_change=True)[1] == "built"


def test_a_modified_engine_or_missing_sidecar_is_never_reused(tmp_path: Path) -> None:
    build, path = _Builder(), tmp_path / "step.engine"
    ensure_engine(path, _key(), build)
    path.write_bytes(b"truncated")
    assert inspect_engine(path, _key()).state == "corrupt"
    assert ensure_engine(path, _key(), build)[1] == "built"
    sidecar_path(path).unlink()
    assert inspect_engine(path, _key()).state == "missing"
    assert ensure_engine(path, _key(), build)[1] == "built" and build.calls == 3


def test_building_can_be_disabled_and_forced(tmp_path: Path) -> None:
    build, path = _Builder(), tmp_path / "step.engine"
    with pytest.raises(EngineMismatchError, match="building is disabled"):
        ensure_engine(path, _key(), build, may_build=False)
    ensure_engine(path, _key(), build)
    assert ensure_engine(path, _key(), build, may_build=False)[1] == "reused"
    assert ensure_engine(path, _key(), build, force=True)[1] == "built" and build.calls == 2


# -- TensorRT itself (GPU machines only) -------------------------------------------------------
def test_tensorrt_forecast_matches_onnxruntime(tiny: ActFusion, tiny_onnx: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (GPU machines only)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")
    from model.runtime.tensorrt_backend import LengthProfile

    trt_backend = load_backend("tensorrt", tiny_onnx, engine_dir=tmp_path / "engines",
                               profile=LengthProfile(min_length=4, opt_length=64, max_length=512))
    ort_backend = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)
    obs = _observed(tiny, 20, seed=2)
    a = forecast(trt_backend, obs, generator=torch.Generator().manual_seed(1))
    b = forecast(ort_backend, obs, generator=torch.Generator().manual_seed(1))
    assert float((a.future_probs - b.future_probs).abs().max()) < 1e-3
    again = load_backend("tensorrt", tiny_onnx, engine_dir=tmp_path / "engines",
                         profile=LengthProfile(min_length=4, opt_length=64, max_length=512))
    assert set(again.details()["engines"].values()) == {"reused"}


def test_backends_accept_numpy_and_float_masks_in_encode(tiny: ActFusion, tiny_onnx: Path) -> None:
    feats = np.random.default_rng(0).standard_normal((1, 32, 10)).astype(np.float32)
    mask = np.ones((1, 10), dtype=np.float32)
    mask[:, 6:] = 0
    with torch.no_grad():
        ref, _ = tiny.encode(torch.from_numpy(feats), torch.from_numpy(mask > 0.5))
    for backend in (load_backend("torch", tiny), load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)):
        logits, _ = backend.encode(feats, mask)
        assert float((logits - ref).abs().max()) < 1e-4, backend.name
