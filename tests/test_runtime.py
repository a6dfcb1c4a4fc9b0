"""Backends and the shared forecasting loop: torch == model, torch == ONNX Runtime, seeds, horizon,
errors, K samples per forecast (= K single runs), the callers on the one loop, the TensorRT engine-cache
policy and sample profile (pure Python) and TensorRT itself where installed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.config import model_config
from actfusion_model.diffusion import sample_noise
from actfusion_model.network import ActFusion
from actfusion_model.runtime import BackendError, forecast, load_backend, schedule_for, step_agreement
from actfusion_model.runtime.engine_cache import (
    EngineKey,
    EngineMismatchError,
    ensure_engine,
    inspect_engine,
    sidecar_path,
)

CLASSES = ["idle", "reach", "grasp", "move", "place", "release"]


pytestmark = pytest.mark.usefixtures("single_torch_thread_module")


@pytest.fixture(scope="module")
def tiny() -> ActFusion:
    torch.manual_seed(3)
    return ActFusion(model_config("tiny", num_classes=len(CLASSES))).eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny: ActFusion, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from actfusion_model.export import export_onnx

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
    from actfusion_model.checkpoint import save_checkpoint

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
            load_backend("onnxruntime", tiny_onnx, device="cuda", providers="cuda")


# -- ONNX Runtime execution providers ----------------------------------------------------------------
def test_onnxruntime_providers_auto_gives_the_cpu_here_and_logs_it(tiny_onnx: Path, caplog) -> None:
    import onnxruntime

    if set(onnxruntime.get_available_providers()) & {"CUDAExecutionProvider", "TensorrtExecutionProvider"}:
        pytest.skip("this onnxruntime has a GPU provider")
    with caplog.at_level("INFO", logger="actfusion_model.runtime.onnx_backend"):
        backend = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)
    assert backend.provider == "CPUExecutionProvider" and backend.details()["provider"] == "CPUExecutionProvider"
    lines = [r.getMessage() for r in caplog.records if "provider CPUExecutionProvider" in r.getMessage()]
    assert len(lines) == 1 and "providers auto on cpu" in lines[0], lines
    caplog.clear()
    with caplog.at_level("INFO", logger="actfusion_model.runtime.onnx_backend"):
        on_cuda = load_backend("onnxruntime", tiny_onnx, device="cuda", intra_op_threads=1)
    assert on_cuda.provider == "CPUExecutionProvider"  # auto falls back, saying so
    assert any(r.levelname == "WARNING" and "no GPU provider started" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("forced", ["cuda", "tensorrt", ["CUDAExecutionProvider", "cpu"]])
def test_onnxruntime_refuses_a_forced_provider_it_lacks_in_one_line(tiny_onnx: Path, forced) -> None:
    import onnxruntime

    name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(
        forced if isinstance(forced, str) else "cuda")
    if name in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has {name}")
    with pytest.raises(BackendError) as err:
        load_backend("onnxruntime", tiny_onnx, providers=forced)
    message = str(err.value)
    assert "\n" not in message and name in message and "onnxruntime-gpu" in message
    assert "CPUExecutionProvider" in message  # what it offers instead


def test_provider_choice_order_names_and_profile_shapes() -> None:
    from actfusion_model.runtime.onnx_backend import choose_providers, tensorrt_profile_shapes

    everything = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    cuda, cpu = torch.device("cuda:1"), torch.device("cpu")
    assert choose_providers("auto", cuda, everything) == (everything, False)
    assert choose_providers("auto", cuda, everything[1:]) == (everything[1:], False)
    assert choose_providers(None, cuda, everything[2:]) == (everything[2:], False)
    assert choose_providers("auto", cpu, everything) == (["CPUExecutionProvider"], False)
    assert choose_providers(["trt", "CPU"], cpu, everything) == ([everything[0], everything[2]], True)
    with pytest.raises(BackendError, match="empty list"):
        choose_providers([], cpu, everything)
    low, opt, high = tensorrt_profile_shapes([{"name": "terms", "shape": [1, "T", 48]},
                                              {"name": "timestep", "shape": [1]},
                                              {"name": "x01", "shape": ["K", 19, "T"]}])
    assert (low, opt, high) == ("terms:1x1x48,x01:1x19x1", "terms:1x1024x48,x01:8x19x1024",
                                "terms:1x8192x48,x01:16x19x8192")


def test_a_forced_provider_that_falls_back_at_session_start_is_refused(tiny_onnx: Path, monkeypatch,
                                                                       caplog) -> None:
    """ONNX Runtime moves on to the next provider when one fails to start (e.g. CUDA without a driver): auto
    says so, a forced provider is refused. Here a stand-in onnxruntime offers CUDA whose sessions run on the CPU."""
    import types

    import onnxruntime

    from actfusion_model.runtime import onnx_backend

    def session(path, options, providers):
        return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    fake = types.SimpleNamespace(SessionOptions=onnxruntime.SessionOptions, __version__="fake",
                                 GraphOptimizationLevel=onnxruntime.GraphOptimizationLevel,
                                 get_available_providers=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                 InferenceSession=session)
    monkeypatch.setattr(onnx_backend, "_import_ort", lambda: fake)
    with pytest.raises(BackendError, match="asked for CUDAExecutionProvider, the sessions got CPUExecutionProvider"):
        load_backend("onnxruntime", tiny_onnx, device="cuda", providers="cuda")
    with caplog.at_level("WARNING", logger="actfusion_model.runtime.onnx_backend"):
        backend = load_backend("onnxruntime", tiny_onnx, device="cuda", intra_op_threads=1)
    assert backend.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert backend.provider == "CPUExecutionProvider" and "no GPU provider started" in caplog.text


def test_tensorrt_backend_without_tensorrt_is_a_clear_error(tiny_onnx: Path) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed; the missing-package path cannot be exercised")
    with pytest.raises(BackendError, match="needs NVIDIA TensorRT"):
        load_backend("tensorrt", tiny_onnx)
    from actfusion_model.build_engine import main

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
    from actfusion_model.runtime.tensorrt_backend import LengthProfile

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


def test_onnxruntime_runs_k_samples_in_chunks_that_equal_one_call(tiny_onnx: Path, tiny: ActFusion) -> None:
    obs = _observed(tiny, 10, seed=3)
    whole = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1, sample_chunk=None)
    chunked = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1, sample_chunk=2)
    calls: list[tuple[str, int]] = []
    for name, session in chunked._sessions.items():
        def spy(outputs, feed, _run=session.run, _name=name):
            calls.append((_name, int(feed["x01"].shape[0])))
            return _run(outputs, feed)
        if name.startswith("denoise_step"):
            session.run = spy  # type: ignore[method-assign]
    runs = [forecast(b, obs, horizon=11, num_samples=5, steps=2, generator=torch.Generator().manual_seed(2))
            for b in (whole, chunked)]
    assert calls == [("denoise_step_batch", 2), ("denoise_step_batch", 2), ("denoise_step", 1)] * 2
    torch.testing.assert_close(runs[1].future_probs, runs[0].future_probs, atol=1e-5, rtol=0)
    torch.testing.assert_close(runs[1].observed_probs, runs[0].observed_probs, atol=1e-5, rtol=0)
    auto = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1)
    assert auto.sample_chunk == "auto" and auto.chunk_size(16, 1024) == 2 and auto.chunk_size(16, 256) == 8
    assert auto.chunk_size(3, 5000) == 1 and auto.chunk_size(3, 256) == 3 and whole.chunk_size(16, 1024) == 16
    with pytest.raises(BackendError, match="sample_chunk"):
        load_backend("onnxruntime", tiny_onnx, sample_chunk=0)


def test_onnxruntime_sample_workers_run_chunks_at_once_with_the_same_result(tiny_onnx: Path, tiny: ActFusion) -> None:
    """``sample_workers=2``: the chunks of one denoise step run concurrently (the first two calls meet at a
    barrier, which calls one after the other never pass) and the forecast equals the sequential one."""
    import itertools
    import threading

    obs = _observed(tiny, 10, seed=3)
    one = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1, sample_chunk=2)
    two = load_backend("onnxruntime", tiny_onnx, intra_op_threads=1, sample_chunk=2, sample_workers=2)
    meet, order, threads = threading.Barrier(2, timeout=30.0), itertools.count(), set()
    for name, session in two._sessions.items():
        def spy(outputs, feed, _run=session.run):
            threads.add(threading.get_ident())
            if next(order) < 2:
                meet.wait()  # BrokenBarrierError unless two calls are in flight together
            return _run(outputs, feed)
        if name.startswith("denoise_step"):
            session.run = spy  # type: ignore[method-assign]
    runs = [forecast(b, obs, horizon=11, num_samples=5, steps=2, generator=torch.Generator().manual_seed(2))
            for b in (one, two)]
    assert len(threads) == 2 and two.details()["sample_workers"] == 2
    torch.testing.assert_close(runs[1].future_probs, runs[0].future_probs, atol=0, rtol=0)
    torch.testing.assert_close(runs[1].observed_probs, runs[0].observed_probs, atol=0, rtol=0)
    for bad in (0, 1.5, True):
        with pytest.raises(BackendError, match="sample_workers"):
            load_backend("onnxruntime", tiny_onnx, sample_workers=bad)


def test_onnxruntime_batch_equals_torch_batch(tiny_onnx: Path, tiny: ActFusion) -> None:
    obs = _observed(tiny, 9, seed=5)
    runs = [forecast(load_backend(kind, src, **opts), obs, num_samples=3, generator=torch.Generator().manual_seed(1))
            for kind, src, opts in (("torch", tiny, {}), ("onnxruntime", tiny_onnx, {"intra_op_threads": 1}))]
    torch.testing.assert_close(runs[1].future_probs, runs[0].future_probs, atol=1e-4, rtol=0)
    torch.testing.assert_close(runs[1].encoder_logits, runs[0].encoder_logits, atol=1e-4, rtol=0)


def test_an_export_without_the_batch_graph_runs_one_sample_and_refuses_more(tiny_onnx: Path, tiny: ActFusion,
                                                                              tmp_path: Path) -> None:
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
    from actfusion_model.onnx_graphs import ConditionGraph, DenoiseStepGraph

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
    from actfusion_training.inference import predict_lta

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


def test_tensorrt_profile_shapes_name_the_sample_axis() -> None:
    from actfusion_model.runtime.engine_cache import EngineKey
    from actfusion_model.runtime.tensorrt_backend import LengthProfile

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

    obs, fut, samples = ModelForecaster(tiny, CLASSES)(np.zeros((tiny.cfg.input_dim, 3), np.float32), 5)
    assert samples is None  # one sample: no sample array
    assert obs.dtype == fut.dtype == np.float32 and obs.shape == (len(CLASSES), 3) and fut.shape == (len(CLASSES), 5)


def test_build_engine_refuses_the_gone_fp16_flag_naming_the_fp16_export(tiny_onnx: Path, capsys) -> None:
    from actfusion_model.build_engine import main

    assert main(["--onnx-dir", str(tiny_onnx), "--out", str(tiny_onnx / "trt"), "--fp16"]) == 2
    assert "actfusion-export --precision fp16" in capsys.readouterr().err


# -- backend auto ---------------------------------------------------------------------------------
def _cpu_machine():
    from actfusion_model.runtime.auto import Machine

    return Machine(cuda=False, tensorrt=None, onnxruntime=True, ort_providers=("CPUExecutionProvider",))


def _export_files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(directory.iterdir()) if p.is_file()}


def test_backend_auto_exports_once_then_reuses_the_export_across_restarts(tiny: ActFusion, tmp_path: Path,
                                                                          monkeypatch) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    import actfusion_model.export as export_module
    from actfusion_model.checkpoint import save_checkpoint
    from actfusion_model.runtime.auto import choose_backend
    from actfusion_model.runtime.onnx_backend import OnnxRuntimeBackend

    calls = []
    real_export = export_module.export_onnx
    monkeypatch.setattr(export_module, "export_onnx", lambda *a, **k: calls.append(k) or real_export(*a, **k))
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny, CLASSES)
    cache = tmp_path / "cache"
    first = choose_backend(ckpt, cache_dir=cache, machine=_cpu_machine(), threads=1)
    assert isinstance(first.backend, OnnxRuntimeBackend) and (first.kind, first.device) == ("onnxruntime", "cpu")
    assert first.exported and len(calls) == 1 and first.export_dir is not None
    assert first.reason.startswith("onnxruntime on cpu: no CUDA GPU") and "exported to" in first.reason
    before = _export_files(first.export_dir)
    again = choose_backend(ckpt, cache_dir=cache, machine=_cpu_machine(), threads=1)  # a restart
    assert not again.exported and again.export_dir == first.export_dir and "reused from" in again.reason
    assert len(calls) == 1 and _export_files(first.export_dir) == before  # not one file rewritten
    same_model = choose_backend(tiny, class_names=CLASSES, cache_dir=cache, machine=_cpu_machine())
    assert not same_model.exported and same_model.export_dir == first.export_dir  # keyed by content, not path
    fp16 = choose_backend(ckpt, cache_dir=cache, machine=_cpu_machine(), precision="fp16")
    assert fp16.exported and fp16.export_dir != first.export_dir and len(calls) == 2
    assert fp16.backend.details()["precision"] == "fp16"
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.export_dir.name, fp16.export_dir.name])
    obs = _observed(tiny, 11, seed=4)
    a = forecast(again.backend, obs, generator=torch.Generator().manual_seed(2))
    b = forecast(load_backend("torch", tiny), obs, generator=torch.Generator().manual_seed(2))
    assert float((a.future_probs - b.future_probs).abs().max()) < 1e-4


def test_a_broken_or_interrupted_export_cache_is_never_used(tiny: ActFusion, tmp_path: Path, monkeypatch,
                                                            caplog) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    import actfusion_model.export as export_module
    from actfusion_model.runtime.auto import cached_export

    cache = tmp_path / "cache"
    real_export = export_module.export_onnx

    def crash(model, out_dir, **kwargs):
        real_export(model, out_dir, **{**kwargs, "verify_length": None})
        (Path(out_dir) / "manifest.json").unlink()
        raise KeyboardInterrupt  # killed mid-export

    monkeypatch.setattr(export_module, "export_onnx", crash)
    with pytest.raises(KeyboardInterrupt):
        cached_export(tiny, CLASSES, cache)
    assert list(cache.iterdir()) == []  # no half export left, under its final name or any other
    monkeypatch.setattr(export_module, "export_onnx", real_export)
    path, exported = cached_export(tiny, CLASSES, cache)
    assert exported
    data = bytearray((path / "encoder.onnx").read_bytes())
    data[-1] ^= 0xFF
    (path / "encoder.onnx").write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="actfusion_model.runtime.auto"):
        again, exported = cached_export(tiny, CLASSES, cache)
    assert again == path and exported and "unusable" in caplog.text
    assert cached_export(tiny, CLASSES, cache) == (path, False)


def test_backend_auto_plans_the_fastest_path_first() -> None:
    from actfusion_model.runtime.auto import Machine, plan

    def kinds(machine: Machine, device: str = "auto") -> list[tuple[str, str]]:
        return [(c.backend, c.device) for c in plan(machine, device)]

    cpu_ort, gpu_ort = ("CPUExecutionProvider",), ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert kinds(Machine(True, "10.3.0", True, gpu_ort)) == [
        ("tensorrt", "cuda"), ("onnxruntime", "cuda"), ("torch", "cuda"), ("onnxruntime", "cpu"), ("torch", "cpu")]
    assert kinds(Machine(True, None, True, gpu_ort), "cuda:1") == [("onnxruntime", "cuda:1"), ("torch", "cuda:1")]
    assert kinds(Machine(True, None, True, cpu_ort))[0] == ("torch", "cuda")
    assert kinds(Machine(True, "11.4.0", True, gpu_ort), "cpu") == [("onnxruntime", "cpu"), ("torch", "cpu")]
    assert kinds(Machine(False, None, True, cpu_ort)) == [("onnxruntime", "cpu"), ("torch", "cpu")]
    assert kinds(Machine(False, None, False)) == [("torch", "cpu")]
    assert "onnxruntime is not installed" in plan(Machine(False, None, False))[0].why
    with pytest.raises(BackendError, match="torch sees no CUDA GPU"):
        plan(Machine(False, None, True, cpu_ort), "cuda")
    with pytest.raises(BackendError, match="device must be auto, cpu or cuda"):
        plan(Machine(False, None, True, cpu_ort), "tpu")


def test_backend_auto_moves_on_when_a_faster_path_fails_to_start(tiny: ActFusion, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from actfusion_model.runtime.auto import Machine, choose_backend

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here: the GPU paths would start")
    claimed = Machine(cuda=True, tensorrt="10.3.0", onnxruntime=True, ort_providers=("CPUExecutionProvider",))
    choice = choose_backend(tiny, class_names=CLASSES, cache_dir=tmp_path, machine=claimed)
    assert (choice.kind, choice.device) == ("onnxruntime", "cpu")
    assert "tensorrt on cuda failed" in choice.reason and "torch on cuda failed" in choice.reason


def test_backend_auto_through_the_registry(tiny: ActFusion, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    from actfusion_model.checkpoint import save_checkpoint
    from actfusion_model.runtime import describe
    from actfusion_model.runtime.registry import AUTO, backend_entry

    monkeypatch.setenv("ACTFUSION_CACHE_DIR", str(tmp_path / "cache"))
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny, CLASSES)
    entry = backend_entry("AUTO")  # a built-in backend (the node's default)
    assert entry is AUTO
    assert entry.default_device == "auto" and entry.options_from(threads=1, engine_dir="") == {"threads": 1}
    backend = load_backend("auto", ckpt)
    info = describe(backend)
    assert info["backend"] == info["auto"]["chosen"] == ("onnxruntime" if not torch.cuda.is_available()
                                                          else info["backend"])
    assert info["auto"]["export_dir"].startswith(str(tmp_path / "cache" / "exports"))
    assert backend.class_names == CLASSES


def test_tensorrt_engines_are_keyed_and_named_by_the_exports_precision(tiny: ActFusion, tmp_path: Path,
                                                                      monkeypatch) -> None:
    """Without TensorRT: a stand-in module and builder, to check what build_engines keys and names."""
    import types

    from actfusion_model.export import export_onnx
    from actfusion_model.runtime import tensorrt_backend
    from actfusion_model.runtime.engine_cache import sidecar_path

    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: types.SimpleNamespace(__version__="11.4.0"))
    monkeypatch.setattr(tensorrt_backend, "gpu_identity", lambda device: ("NVIDIA H100", "9.0"))
    monkeypatch.setattr(tensorrt_backend, "build_engine",
                        lambda onnx_path, path, **kwargs: Path(path).write_bytes(Path(onnx_path).read_bytes()[:64]))
    engines = tmp_path / "engines"
    profile = tensorrt_backend.LengthProfile(min_length=4, opt_length=64, max_length=512)
    for precision in ("fp32", "fp16"):
        export_onnx(tiny, tmp_path / precision, length=24, verify_length=None, precision=precision)
        built = tensorrt_backend.build_engines(tmp_path / precision, engines, profile=profile)
        for graph, (path, action) in built.items():
            assert action == "built" and path.name == f"{graph}.{precision}.engine"
            key = json.loads(sidecar_path(path).read_text())["key"]
            assert key["fp16"] == (precision == "fp16") and key["tensorrt_version"] == "11.4.0"
    assert len(list(engines.glob("*.engine"))) == 6


def test_strongly_typed_network_flags_for_both_majors() -> None:
    import types

    from actfusion_model.runtime.tensorrt_backend import network_flags, tensorrt_major

    flag = types.SimpleNamespace(STRONGLY_TYPED=1)
    ten = types.SimpleNamespace(__version__="10.3.0", NetworkDefinitionCreationFlag=flag)
    eleven = types.SimpleNamespace(__version__="11.4.0.106")  # no flag needed (nor looked up)
    assert (tensorrt_major(ten), tensorrt_major(eleven)) == (10, 11)
    assert network_flags(ten) == 1 << 1 and network_flags(eleven) == 0
