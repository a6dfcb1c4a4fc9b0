"""ModelForecaster: the Forecaster protocol over ActFusion (torch backend; runtime backends when present)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.checkpoint import save_checkpoint
from actfusion_model.features import build_extractor
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_model import BACKENDS, ForecasterError, ModelForecaster, tick_seed
from actfusion_ros.stream_types import Forecaster, StreamConfig

NAMES = ("idle", "reach", "pour")
DIM = 12
HAS_RUNTIME = importlib.util.find_spec("actfusion_model.runtime") is not None


def tiny(seed: int = 0, weight_seed: int = 0, steps: int | None = None) -> ModelForecaster:
    return ModelForecaster.random_weights(input_dim=DIM, class_names=NAMES, seed=seed,
                                          weight_seed=weight_seed, steps=steps)


def features(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((DIM, n)).astype(np.float32)


def test_protocol_and_shapes() -> None:
    fc = tiny()
    assert isinstance(fc, Forecaster)
    assert fc.num_classes == 3 and fc.class_names == NAMES and fc.input_dim == DIM
    assert fc.steps == fc.config.ddim_steps and fc.backend == "torch"
    for n, h in ((1, 4), (7, 28), (5, 0)):
        obs, fut, samples = fc(features(n), h)
        assert samples is None  # K = 1: the one sample is the forecast
        assert obs.shape == (3, n) and fut.shape == (3, h)
        assert obs.dtype == np.float32 and fut.dtype == np.float32
        assert np.isfinite(obs).all() and np.isfinite(fut).all()
        assert ((obs >= 0) & (obs <= 1)).all() and ((fut >= 0) & (fut <= 1)).all()
    assert fc.calls == 3


def test_reproducible_per_tick_noise() -> None:
    a, b = tiny(seed=5), tiny(seed=5)
    x = features(6)
    runs_a = [a(x, 12) for _ in range(3)]
    runs_b = [b(x, 12) for _ in range(3)]
    for (oa, fa, _), (ob, fb, _) in zip(runs_a, runs_b):
        np.testing.assert_array_equal(oa, ob)
        np.testing.assert_array_equal(fa, fb)
    # the ticks draw different noise, and another seed gives other noise
    assert not np.array_equal(runs_a[0][1], runs_a[1][1])
    other = tiny(seed=6)(x, 12)
    assert not np.array_equal(other[1], runs_a[0][1])


def test_tick_seed() -> None:
    seeds = {tick_seed(s, t) for s in range(4) for t in range(50)}
    assert len(seeds) == 200
    assert tick_seed(3, 7) == tick_seed(3, 7)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        tick_seed(-1, 0)


def test_global_rng_untouched() -> None:
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    fc = tiny(weight_seed=9)
    fc(features(4), 8)
    assert torch.equal(state, torch.get_rng_state())
    # weights are a function of weight_seed only
    w1 = tiny(weight_seed=9).model.state_dict()
    w2 = tiny(weight_seed=10).model.state_dict()
    assert all(torch.equal(v, fc.model.state_dict()[k]) for k, v in w1.items())
    assert any(not torch.equal(v, w2[k]) for k, v in w1.items())


def test_steps_override_and_validation() -> None:
    assert tiny(steps=2).steps == 2
    with pytest.raises(ForecasterError, match="ddim steps"):
        tiny(steps=5000)
    with pytest.raises(ForecasterError, match="seed"):
        tiny(seed=-1)
    fc = tiny()
    with pytest.raises(ValueError, match=rf"\({DIM}, N>=1\)"):
        fc(np.zeros((DIM + 1, 3), np.float32), 4)
    with pytest.raises(ValueError, match="horizon"):
        fc(features(3), -1)


def test_checkpoint_roundtrip(tmp_path: Path) -> None:
    ref = tiny(seed=3, weight_seed=4)
    save_checkpoint(tmp_path / "m.pt", ref.model, list(NAMES))
    fc = ModelForecaster.from_checkpoint(tmp_path / "m.pt", seed=3)
    assert fc.class_names == NAMES and fc.input_dim == DIM
    x = features(5)
    for (o1, f1, _), (o2, f2, _) in zip([ref(x, 10), ref(x, 3)], [fc(x, 10), fc(x, 3)]):
        np.testing.assert_allclose(o1, o2, rtol=0, atol=1e-6)
        np.testing.assert_allclose(f1, f2, rtol=0, atol=1e-6)


def test_bad_backend_and_device(tmp_path: Path) -> None:
    with pytest.raises(ForecasterError, match="unknown backend 'tflite'"):
        ModelForecaster(tiny().model, NAMES, backend="tflite")
    with pytest.raises(ForecasterError, match="2 class names for a model with 3 classes"):
        ModelForecaster(tiny().model, NAMES[:2])
    with pytest.raises(ForecasterError, match="needs an ActFusion model"):
        ModelForecaster(None, NAMES)
    save_checkpoint(tmp_path / "m.pt", tiny().model, list(NAMES))
    assert ModelForecaster.from_checkpoint(tmp_path / "m.pt", class_names=["a", "b", "c"]).class_names == \
        ("a", "b", "c")
    with pytest.raises(ForecasterError, match="4 class names"):
        ModelForecaster.from_checkpoint(tmp_path / "m.pt", class_names=["a", "b", "c", "d"])
    if not torch.cuda.is_available():
        with pytest.raises(ForecasterError, match="CUDA is not available"):
            ModelForecaster.random_weights(input_dim=DIM, device="cuda")
    assert BACKENDS == ("torch", "onnxruntime", "tensorrt", "auto")


@pytest.mark.skipif(HAS_RUNTIME, reason="actfusion_model.runtime is installed")
def test_runtime_backends_without_model_runtime(tmp_path: Path) -> None:
    with pytest.raises(ForecasterError, match="needs actfusion_model.runtime"):
        ModelForecaster.from_export(tmp_path, backend="onnxruntime")


def test_drives_the_stream() -> None:
    """End to end through StreamingAnticipator: the stream's horizon is the one the model runs."""
    extractor = build_extractor("color_layout", grid=1, bins=3)  # dim = 2*3 + 9 = 15
    fc = ModelForecaster.random_weights(input_dim=extractor.dim, class_names=NAMES, seed=1)
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=3.0, max_horizon_s=5.0, max_window_s=60.0,
                       min_observed_frames=2, stale_after_s=1e6)
    stream = StreamingAnticipator(cfg, extractor, fc, NAMES)
    t0, period = 10**18, 500_000_000
    rng = np.random.default_rng(0)
    for i in range(6):
        stream.push_frame(t0 + i * period, rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
    result = stream.tick(t0 + 6 * period)
    assert result is not None and result.num_observed == 6
    assert result.horizon == 10  # min(ceil(3 * 6), round(5 s * 2 Hz))
    assert result.future_probs.shape == (3, 10)
    assert {s.label for s in result.observed + result.future} <= set(NAMES)


def test_onnxruntime_backend_matches_torch(tmp_path: Path) -> None:
    """The same seed gives the same forecast through actfusion_model.runtime's onnxruntime backend."""
    if not HAS_RUNTIME:
        pytest.skip("actfusion_model.runtime is not installed")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    export = pytest.importorskip("actfusion_model.export", reason="actfusion_model.export not installed")
    ref = tiny(seed=11, weight_seed=2)
    export.export_onnx(ref.model, tmp_path / "onnx", class_names=list(NAMES), verify_length=None)
    fc = ModelForecaster.from_export(tmp_path / "onnx", backend="onnxruntime", seed=11, threads=1)
    assert (fc.backend, fc.class_names, fc.input_dim, fc.steps) == ("onnxruntime", NAMES, DIM, ref.steps)
    assert isinstance(fc, Forecaster) and fc.model is None
    x = features(9)
    for h in (20, 0, 5):
        (o1, f1, _), (o2, f2, _) = ref(x, h), fc(x, h)
        assert o2.shape == (3, 9) and f2.shape == (3, h) and o2.dtype == np.float32
        np.testing.assert_allclose(o2, o1, rtol=0, atol=2e-4)
        np.testing.assert_allclose(f2, f1, rtol=0, atol=2e-4)
    renamed = ModelForecaster.from_export(tmp_path / "onnx", class_names=["a", "b", "c"])
    assert renamed.class_names == ("a", "b", "c")
    with pytest.raises(ForecasterError, match="could not be loaded"):
        ModelForecaster.from_export(tmp_path / "missing", backend="onnxruntime")
    with pytest.raises(ForecasterError, match="not 'torch'"):
        ModelForecaster.from_export(tmp_path / "onnx", backend="torch")


def test_num_samples_returns_the_per_frame_consensus_of_k_samples() -> None:
    """K samples from one encoder pass; the probabilities are vote shares whose argmax is the per-frame mode."""
    from actfusion_model.consensus import consensus_probs, per_frame_mode
    from actfusion_model.forecast import forecast

    one = ModelForecaster.random_weights(input_dim=32, weight_seed=3, seed=5)
    many = ModelForecaster(one.model, one.class_names, seed=5, num_samples=6)
    observed = np.random.default_rng(0).normal(size=(32, 9)).astype(np.float32)
    obs_p, fut_p, _ = many(observed, 30)
    assert obs_p.shape == (one.num_classes, 9) and fut_p.shape == (one.num_classes, 30)
    np.testing.assert_allclose(fut_p.sum(axis=0), 1.0, atol=1e-5)
    # The same K samples drawn directly (same tick seed): the consensus' argmax is their per-frame mode.
    direct = forecast(one.runtime, observed, horizon=30, schedule=one.schedule, generator=many.generator(0),
                      num_samples=6)
    samples = direct.future_probs.numpy()
    np.testing.assert_array_equal(fut_p.argmax(axis=0), per_frame_mode(samples))
    np.testing.assert_allclose(fut_p, consensus_probs(samples), atol=1e-6)
    # Votes: a frame where 4 of 6 samples agree gets a share near 4/6.
    votes = (samples.argmax(axis=1) == fut_p.argmax(axis=0)).sum(axis=0) / 6
    np.testing.assert_allclose(fut_p.max(axis=0), votes, atol=0.1)
    with pytest.raises(ForecasterError, match="num_samples"):
        ModelForecaster(one.model, one.class_names, num_samples=0)


def test_num_samples_hands_back_the_k_samples_of_the_tick() -> None:
    """K > 1: the call returns the K futures it drew (the tick's seed), beside their consensus."""
    from actfusion_model.consensus import consensus_probs
    from actfusion_model.forecast import forecast
    from actfusion_ros.stream_types import ForecastOutput

    one = ModelForecaster.random_weights(input_dim=32, weight_seed=3, seed=5)
    many = ModelForecaster(one.model, one.class_names, seed=5, num_samples=4)
    observed = np.random.default_rng(0).normal(size=(32, 9)).astype(np.float32)
    many(observed, 5)                                   # tick 0
    out = many(observed, 12)                            # tick 1: its own generator
    assert isinstance(out, ForecastOutput) and out.future_samples.shape == (4, one.num_classes, 12)
    assert out.future_samples.dtype == np.float32
    direct = forecast(one.runtime, observed, horizon=12, schedule=one.schedule, generator=many.generator(1),
                      num_samples=4).future_probs.numpy()
    np.testing.assert_array_equal(out.future_samples, direct)
    np.testing.assert_array_equal(out.future_probs, consensus_probs(direct))
    assert one(observed, 12).future_samples is None     # K = 1: the forecast is the one sample
