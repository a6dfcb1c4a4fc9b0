"""``backend: auto``, the node's default (issue 20 item 6): at configure the checkpoint's ONNX graphs are exported
once and cached, a second configure (the same node again, or a new one) reuses them; on this CPU machine it runs
ONNX Runtime, whose forecast it gives for the same seed; the choice and its reason are logged and in
/diagnostics. And the thread rule of ``num_threads: 0`` (:func:`actfusion_ros.builder.default_threads`).

Exports are counted (``export_onnx`` calls) and the cache's files compared, never timed."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime not installed")

from actfusion_model import export as export_module  # noqa: E402
from actfusion_model.checkpoint import save_checkpoint  # noqa: E402
from actfusion_model.config import model_config  # noqa: E402
from actfusion_model.features import build_extractor  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_ros import builder  # noqa: E402
from actfusion_ros.node_params import validate_values  # noqa: E402

NAMES = ["reach", "grasp", "pour"]
DIM = build_extractor("color_layout").dim
#: on a machine with a GPU backend auto would choose it: these tests are about the CPU choice
DEVICE = {"device": "cpu"} if torch.cuda.is_available() else {}


@pytest.fixture
def exports(monkeypatch, tmp_path: Path) -> list[Path]:
    """A cache directory of this test's own, and every ``export_onnx`` call's output directory."""
    monkeypatch.setenv("ACTFUSION_CACHE_DIR", str(tmp_path / "cache"))
    calls: list[Path] = []
    real = export_module.export_onnx

    def counting(model: Any, out_dir: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(Path(out_dir))
        return real(model, out_dir, *args, **kwargs)

    monkeypatch.setattr(export_module, "export_onnx", counting)
    return calls


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        save_checkpoint(path, ActFusion(model_config("tiny", num_classes=len(NAMES), input_dim=DIM)), NAMES)
    return path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The builder sets torch's process threads for eager torch: restore them (and the chosen count)."""
    from actfusion_model import torch_threads

    before, chosen = torch.get_num_threads(), torch_threads._chosen
    yield
    torch.set_num_threads(before)
    torch_threads._chosen = chosen


def _cache_files(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(cache.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- the thread rule
@pytest.mark.parametrize("cpus, threads", [(1, 1), (2, 1), (3, 1), (4, 2), (16, 14)])
def test_default_threads_leave_a_core_each_to_the_feature_worker_and_the_executor(cpus: int, threads: int) -> None:
    assert builder.default_threads(cpus) == threads


def test_onnxruntime_threads_share_the_budget_among_the_sample_workers() -> None:
    wide, narrow = builder.ORT_NARROW_DEC_DIM, builder.ORT_NARROW_DEC_DIM - 1
    assert builder.onnxruntime_threads(0, sample_workers=1, dec_dim=wide, cpu_count=16) == 14
    assert builder.onnxruntime_threads(0, sample_workers=2, dec_dim=wide, cpu_count=16) == 7
    assert builder.onnxruntime_threads(0, sample_workers=4, dec_dim=None, cpu_count=6) == 1
    assert builder.onnxruntime_threads(0, sample_workers=1, dec_dim=narrow, cpu_count=16) == 1  # as ORT's auto
    assert builder.onnxruntime_threads(3, sample_workers=2, dec_dim=wide, cpu_count=16) == 3    # num_threads set


def test_num_threads_0_gives_eager_torch_and_onnxruntime_the_rule(monkeypatch, exports, checkpoint: Path,
                                                                 one_thread) -> None:
    """Through the builder, with a fake 6-CPU machine: eager torch on 4 threads, ONNX Runtime (chosen by
    backend auto, a decoder wide enough for more than one thread) on 4 // 2 sample workers."""
    monkeypatch.setattr(builder, "usable_cpus", lambda: 6)
    torch_settings = validate_values({"backend": "torch", "checkpoint": str(checkpoint),
                                      "extractor": "color_layout", "device": "cpu"})
    torch.set_num_threads(1)
    assert builder.build_forecaster(torch_settings, DIM, None).backend == "torch"
    assert torch.get_num_threads() == 4
    wide = checkpoint.parent / "wide.pt"
    save_checkpoint(wide, ActFusion(model_config("tiny", num_classes=3, input_dim=DIM, dec_dim=64)), NAMES)
    settings = validate_values({"checkpoint": str(wide), "extractor": "color_layout", "sample_workers": 2,
                                **DEVICE})
    forecaster = builder.build_forecaster(settings, DIM, None)
    assert forecaster.backend == "onnxruntime" and forecaster.runtime.intra_op_threads == 2


# ---------------------------------------------------------------------- the builder: log line, cache, forecast
def test_backend_auto_exports_once_logs_its_choice_and_forecasts_as_onnxruntime(exports, checkpoint: Path,
                                                                                tmp_path: Path) -> None:
    from actfusion_model.runtime.onnx_backend import OnnxRuntimeBackend
    from actfusion_ros.stream_model import ModelForecaster

    settings = validate_values({"checkpoint": str(checkpoint), "extractor": "color_layout", "seed": 7,
                                "num_samples": 3, "ddim_steps": 3, **DEVICE})
    assert settings.backend == "auto"                                   # the default
    lines: list[str] = []
    first = builder.build_anticipator(settings, log=lines.append).forecaster
    assert len(exports) == 1
    choice = first.auto_choice
    assert (first.backend, str(first.device), choice.kind, choice.exported) == ("onnxruntime", "cpu",
                                                                                  "onnxruntime", True)
    assert isinstance(first.runtime, OnnxRuntimeBackend) and first.model is None
    assert choice.export_dir.parent == tmp_path / "cache" / "exports"
    [line] = [t for t in lines if t.startswith("backend auto:")]
    assert line == f"backend auto: {choice.reason}"
    assert line.startswith("backend auto: onnxruntime on cpu: ") and f"graphs exported to {choice.export_dir}" in line
    cached = _cache_files(tmp_path / "cache")

    lines.clear()
    again = builder.build_anticipator(settings, log=lines.append).forecaster   # a restart: the cache is reused
    assert len(exports) == 1 and not again.auto_choice.exported
    assert again.auto_choice.export_dir == choice.export_dir and _cache_files(tmp_path / "cache") == cached
    assert any(t.startswith("backend auto: onnxruntime on cpu: ") and f"reused from {choice.export_dir}" in t
               for t in lines), lines

    # the same forecast as ONNX Runtime on the same graphs with the same seed (and close to eager torch's)
    ort = ModelForecaster.from_export(choice.export_dir, backend="onnxruntime", seed=7, num_samples=3, steps=3,
                                      threads=first.runtime.intra_op_threads)
    rng = np.random.default_rng(0)
    for n in (5, 23):
        observed = rng.standard_normal((DIM, n)).astype(np.float32)
        got, want = first(observed, 2 * n), ort(observed, 2 * n)
        np.testing.assert_array_equal(got.observed_probs, want.observed_probs)
        np.testing.assert_array_equal(got.future_probs, want.future_probs)
        np.testing.assert_array_equal(got.future_samples, want.future_samples)
    torch_fc = ModelForecaster.from_checkpoint(checkpoint, seed=7, num_samples=3, steps=3)  # eager, same seed
    observed = rng.standard_normal((DIM, 11)).astype(np.float32)
    np.testing.assert_allclose(again(observed, 20).future_samples, torch_fc(observed, 20).future_samples,
                               atol=1e-4)


# ---------------------------------------------------------------------- the node
def _node(ros_context: Any, name: str, **params: Any) -> Any:
    from rclpy.parameter import Parameter

    from actfusion_ros.node.actfusion_node import ActFusionNode

    values = {"autostart": False, "extractor": "color_layout", "num_threads": 1, "ddim_steps": 2, **DEVICE,
              **params}
    return ActFusionNode(context=ros_context, node_name=name,
                         parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])


def test_the_node_exports_at_its_first_configure_and_reuses_the_export_after(ros_context, exports,
                                                                            checkpoint: Path, tmp_path: Path) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = _node(ros_context, "auto_first", checkpoint=str(checkpoint))
    try:
        assert node.trigger_configure() == R.SUCCESS
        assert len(exports) == 1
        fc = node.pipeline.stream.forecaster
        assert (fc.backend, fc.auto_choice.exported) == ("onnxruntime", True)
        level, _, values = node.diagnostics_values()
        assert values["lifecycle_state"] == "inactive"
        assert (values["backend"], values["backend_device"]) == ("onnxruntime", "cpu")
        assert values["backend_auto"] == fc.auto_choice.reason
        assert values["backend_auto"].startswith("onnxruntime on cpu: ")
        cached = _cache_files(tmp_path / "cache")

        assert node.trigger_cleanup() == R.SUCCESS and node.trigger_configure() == R.SUCCESS   # reconfigure
        assert len(exports) == 1 and not node.pipeline.stream.forecaster.auto_choice.exported
        assert "reused from" in node.diagnostics_values()[2]["backend_auto"]
    finally:
        node.destroy_node()
    second = _node(ros_context, "auto_second", checkpoint=str(checkpoint))   # a new node (a restart)
    try:
        assert second.trigger_configure() == R.SUCCESS
        assert len(exports) == 1 and _cache_files(tmp_path / "cache") == cached
        assert second.pipeline.stream.forecaster.auto_choice.export_dir == fc.auto_choice.export_dir
    finally:
        second.destroy_node()


def test_eager_torch_stays_available_by_name_and_random_weights_need_no_export(ros_context, exports,
                                                                              checkpoint: Path, one_thread) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = _node(ros_context, "torch_by_name", checkpoint=str(checkpoint), backend="torch")
    try:
        assert node.trigger_configure() == R.SUCCESS
        values = node.diagnostics_values()[2]
        assert values["backend"] == "torch" and "backend_auto" not in values
        assert node.pipeline.stream.forecaster.model is not None
    finally:
        node.destroy_node()
    node = _node(ros_context, "auto_random", random_weights=True, device="auto")
    try:
        assert node.trigger_configure() == R.SUCCESS
        values = node.diagnostics_values()[2]
        assert (values["backend"], values["backend_device"]) == ("torch", "cpu")
        assert values["backend_auto"].startswith("torch on cpu: random_weights")
    finally:
        node.destroy_node()
    assert exports == []


def test_device_auto_is_accepted_and_resolved() -> None:
    from actfusion_ros.stream_model import resolve_device

    gpu = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == gpu and resolve_device("cuda:1") == "cuda:1"
    assert resolve_device("auto", ("cuda",)) == "cuda"                  # tensorrt: the GPU or its own error
    assert resolve_device("auto", ("auto", "cpu", "cuda")) == "auto"    # backend auto decides itself
    assert validate_values({"random_weights": True, "extractor": "color_layout"}).device == "auto"


# ---------------------------------------------------------------------- the replay shares the builder
def test_replay_takes_backend_auto_with_a_checkpoint(exports, checkpoint: Path, tmp_path: Path, capsys) -> None:
    pytest.importorskip("rosbags", reason="rosbags not installed")
    import json

    from actfusion_ros.tools.bags import write_bag
    from actfusion_ros.tools.replay.cli import main

    frames = [(int(i * 0.25e9), np.full((4, 4, 3), 40 * (i // 4), np.uint8)) for i in range(12)]
    bag = write_bag(tmp_path / "bag", images=frames, labels=[(0, "reach")])
    args = [str(bag), "--backend", "auto", "--out", str(tmp_path / "out"), "--label-topic", "/action/label",
            "--extractor", "color_layout", "--feature-rate", "4", "--min-observed", "2", "--steps", "2"]
    assert main(args) == 2 and "backend auto needs --checkpoint" in capsys.readouterr().err   # not --onnx-dir
    assert main([*args, "--checkpoint", str(checkpoint)]) == 0
    assert len(exports) == 1                                    # backend auto exported the graphs (into the cache)
    assert json.loads((tmp_path / "out" / "replay.json").read_text())["ticks"] > 0
