"""The backend registry (actfusion_model.runtime.registry): one entry per backend, read by load_backend, the
node's parameter validation, the forecaster's option mapping and the builder; a new backend is one module plus
one entry."""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from actfusion_model.config import model_config
from actfusion_model.network import ActFusion
from actfusion_model.runtime import BACKENDS, BackendError, load_backend
from actfusion_model.runtime.registry import (
    EXPORT,
    BackendEntry,
    backend_entry,
    backend_names,
    canonical_backend,
    register,
    unregister,
)
from actfusion_ros.builder import build_anticipator
from actfusion_ros.node_params import ParameterError, spec, validate_values

MS = 1_000_000


def _problems(**values: Any) -> list[str]:
    with pytest.raises(ParameterError) as info:
        validate_values({"extractor": "color_layout", **values}, check_files=False)
    return info.value.problems


# ---------------------------------------------------------------------- the built-in entries
def test_the_built_in_backends_and_their_spellings() -> None:
    assert BACKENDS == backend_names() == ("torch", "onnxruntime", "tensorrt", "auto")
    assert [canonical_backend(k) for k in ("PyTorch", "ort", "onnx", "TRT", "jax")] == \
        ["torch", "onnxruntime", "onnxruntime", "tensorrt", None]
    assert backend_entry("tensorrt").default_device == "cuda" and backend_entry("onnx").default_device == "cpu"


def test_each_entry_lists_exactly_the_options_its_backend_takes() -> None:
    """The entry is the documentation of a backend's options: it must not drift from the constructor."""
    from actfusion_model.runtime.onnx_backend import OnnxRuntimeBackend
    from actfusion_model.runtime.tensorrt_backend import TensorRTBackend
    from actfusion_model.runtime.torch_backend import TorchBackend

    for name, cls in (("torch", TorchBackend), ("onnxruntime", OnnxRuntimeBackend), ("tensorrt", TensorRTBackend)):
        params = inspect.signature(cls).parameters.values()
        taken = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY and p.name not in
                 ("device", "class_names")}
        assert dict(backend_entry(name).options) == taken, name


# ---------------------------------------------------------------------- the registry refuses clearly
def test_an_unknown_backend_option_or_device_is_refused_with_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="unknown backend 'jax'; choose from torch, onnxruntime, tensorrt, auto"):
        load_backend("jax", tmp_path)
    with pytest.raises(BackendError, match="backend onnxruntime does not take option.s. intra_threads; "
                                           "it takes: providers, intra_op_threads"):
        load_backend("onnxruntime", tmp_path, intra_threads=2)
    with pytest.raises(BackendError, match="backend tensorrt runs on cuda, got 'cpu'"):
        load_backend("tensorrt", tmp_path, device="cpu")
    with pytest.raises(BackendError, match="takes class names from the export's manifest"):
        load_backend("onnxruntime", tmp_path, class_names=["a"])


def test_the_registry_drives_the_parameter_validation() -> None:
    assert spec("backend").choices == backend_names()
    assert "backend: 'jax' is not one of torch, onnxruntime, tensorrt, auto" in _problems(backend="jax")
    assert "device: backend tensorrt runs on cuda, got 'cpu'" in _problems(backend="tensorrt", onnx_dir="x",
                                                                           device="cpu")
    assert _problems(backend="onnxruntime")[0].startswith("onnx_dir: required by backend onnxruntime")


def test_an_entry_is_checked_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="runs must be 'checkpoint' or 'export'"):
        BackendEntry("x", "m:f", "model", ("cpu",), {})
    with pytest.raises(ValueError, match="setting 'threads' names option 'n', which is not among its options"):
        BackendEntry("x", "m:f", EXPORT, ("cpu",), {}, settings={"threads": "n"})
    with pytest.raises(ValueError, match="registered already"):
        register(BackendEntry("x", "m:f", EXPORT, ("cpu",), {}, aliases=("ORT",)))


# ---------------------------------------------------------------------- a new backend: one module, one entry
#: what the fake backend's loader was called with
CALLS: list[dict[str, Any]] = []


def load_fake_backend(source: Path, *, device: str = "cpu", chunks: int = 1) -> Any:
    """The fake backend's module is this test module: it runs a "directory" whose manifest names the classes
    and the feature size, with a tiny untrained ActFusion behind it."""
    manifest = json.loads((Path(source) / "manifest.json").read_text())
    CALLS.append({"source": Path(source), "device": device, "chunks": chunks})
    cfg = model_config("tiny", num_classes=len(manifest["classes"]), input_dim=manifest["input_dim"])
    return load_backend("torch", ActFusion(cfg).eval(), device=device, class_names=manifest["classes"])


@pytest.fixture
def fake_backend() -> Iterator[BackendEntry]:
    entry = register(BackendEntry("fake", f"{__name__}:load_fake_backend", EXPORT, ("cpu",), {"chunks": 1},
                                  settings={"sample_workers": "chunks"}, aliases=("imitation",)))
    CALLS.clear()
    try:
        yield entry
    finally:
        unregister("fake")
    assert "fake" not in backend_names()


def test_a_registered_backend_is_validated_built_and_run_without_touching_another_module(tmp_path: Path,
                                                                                         fake_backend) -> None:
    from actfusion_model.features import build_extractor

    dim = build_extractor("color_layout").dim
    (tmp_path / "manifest.json").write_text(json.dumps({"classes": ["reach", "pour"], "input_dim": dim}))
    assert spec("backend").choices == ("torch", "onnxruntime", "tensorrt", "auto", "fake")
    assert _problems(backend="fake")[0].startswith("onnx_dir: required by backend fake")
    assert "device: backend fake runs on cpu, got 'cuda'" in _problems(backend="fake", onnx_dir=str(tmp_path),
                                                                      device="cuda")
    settings = validate_values({"backend": "fake", "onnx_dir": str(tmp_path), "sample_workers": 3,
                                "min_observed_frames": 1, "extractor": "color_layout"})
    stream = build_anticipator(settings)
    assert CALLS == [{"source": tmp_path, "device": "cpu", "chunks": 3}]   # sample_workers -> the entry's chunks
    assert stream.forecaster.backend == "fake" and stream.class_names == ("reach", "pour")
    rgb = np.zeros((8, 8, 3), np.uint8)
    for k in range(4):
        stream.push_frame(k * 500 * MS, rgb)
    result = stream.tick(1500 * MS)
    assert result is not None and result.future_probs.shape[0] == 2
    with pytest.raises(BackendError, match="backend fake does not take option.s. threads; it takes: chunks"):
        load_backend("fake", tmp_path, threads=2)
