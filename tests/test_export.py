"""ONNX export: checker, I/O contract, TensorRT op coverage, and ONNX Runtime == eager torch.

The 50salads and Breakfast graphs are exported once per session, at one length (64), with random
weights; every comparison then runs at other lengths through the same files.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="the onnx package is needed to export and check graphs")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is needed to run the exported graphs")

from actfusion_model.checkpoint import save_checkpoint  # noqa: E402
from actfusion_model.config import config_to_dict, model_config  # noqa: E402
from actfusion_model.diffusion import sample_noise  # noqa: E402
from actfusion_model.export import export_onnx, main  # noqa: E402
from actfusion_model.export_manifest import GRAPHS, MANIFEST, ExportError, read_manifest, sha256_file  # noqa: E402
from actfusion_model.forecast import EagerBackend  # noqa: E402
from actfusion_model.network import ActFusion  # noqa: E402
from actfusion_model.onnx_graphs import EncoderGraph, term_names  # noqa: E402
from actfusion_model.runtime import forecast, load_backend  # noqa: E402
from tests.tensorrt_supported_ops import CONSTANT_INPUTS, SUPPORTED  # noqa: E402
from tests.torch_threads import one_torch_thread  # noqa: E402

PRESETS = {"50salads": 19, "breakfast": 48}
EXPORT_LENGTH = 64


pytestmark = pytest.mark.usefixtures("single_torch_thread_module")


def _model(preset: str) -> ActFusion:
    torch.manual_seed({"50salads": 11, "breakfast": 12}[preset])
    return ActFusion(model_config(preset, num_classes=PRESETS[preset])).eval()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[ActFusion, Path]]:
    """{preset: (eager model, export dir)}; exported once per test session at T=64."""
    out = {}
    with one_torch_thread():
        for preset in PRESETS:
            model = _model(preset)
            path = tmp_path_factory.mktemp(f"onnx_{preset}")
            export_onnx(model, path, class_names=[f"{preset}_{i}" for i in range(PRESETS[preset])],
                        length=EXPORT_LENGTH, verify_length=None)
            out[preset] = (model, path)
    return out


@pytest.fixture(scope="session")
def ort_backends(exported):
    return {p: load_backend("onnxruntime", path, intra_op_threads=1) for p, (_, path) in exported.items()}


@pytest.mark.parametrize("preset", PRESETS)
def test_graphs_pass_checker_and_have_a_dynamic_time_axis(exported, preset: str) -> None:
    _, path = exported[preset]
    cfg = exported[preset][0].cfg
    expected_inputs = {
        "encoder": {"features": ("float32", [1, cfg.input_dim, "T"]), "frame_mask": ("bool", [1, "T"])},
        "decoder_condition": {"condition": ("float32", [1, cfg.cond_dim, "T"])},
        "denoise_step": {"timestep": ("int64", [1]), "x01": ("float32", [1, cfg.num_classes, "T"]),
                         "cond_qk_0": ("float32", [1, "T", 2 * cfg.dec_dim]),
                         "slot_terms_7": ("float32", [1, "T", 2 * cfg.dec_kernel])},
    }
    for graph in GRAPHS:
        proto = onnx.load(str(path / f"{graph}.onnx"))
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == 17
        inputs = {}
        for value in proto.graph.input:
            tensor = value.type.tensor_type
            dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
            inputs[value.name] = (onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name, dims)
        for name, want in expected_inputs[graph].items():
            assert inputs[name] == want, f"{graph}.{name}: {inputs[name]} != {want}"
    step_inputs = [v.name for v in onnx.load(str(path / "denoise_step.onnx")).graph.input]
    assert step_inputs == term_names(cfg.dec_layers) + ["timestep", "x01"]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_op_is_in_tensorrts_onnx_support_matrix(exported, preset: str) -> None:
    _, path = exported[preset]
    problems = []
    for graph in GRAPHS:
        proto = onnx.load(str(path / f"{graph}.onnx"))
        ops = {n.op_type for n in proto.graph.node}
        unsupported = sorted(ops - SUPPORTED)
        if unsupported:
            problems.append(f"{graph}: not supported by TensorRT: {unsupported}")
        constants = {i.name for i in proto.graph.initializer}
        constants |= {o for n in proto.graph.node if n.op_type == "Constant" for o in n.output}
        for node in proto.graph.node:
            for idx in CONSTANT_INPUTS.get(node.op_type, ()):
                if idx < len(node.input) and node.input[idx] and node.input[idx] not in constants:
                    problems.append(f"{graph}: {node.op_type} {node.name} input {idx} ({node.input[idx]}) "
                                    f"must be a constant for TensorRT")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("preset", PRESETS)
def test_manifest_describes_the_export(exported, preset: str) -> None:
    model, path = exported[preset]
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["opset"] == 17 and manifest["export_length"] == EXPORT_LENGTH
    assert manifest["config"] == config_to_dict(model.cfg)
    assert manifest["class_names"] == [f"{preset}_{i}" for i in range(PRESETS[preset])]
    for graph in GRAPHS:
        entry = manifest["graphs"][graph]
        assert entry["sha256"] == sha256_file(path / entry["file"])
        assert all(isinstance(d, (int, str)) for io in entry["inputs"] + entry["outputs"] for d in io["shape"])
    assert [o["name"] for o in manifest["graphs"]["encoder"]["outputs"]] == ["logits", "condition"]
    assert [o["name"] for o in manifest["graphs"]["decoder_condition"]["outputs"]] == term_names(model.cfg.dec_layers)
    assert read_manifest(path)["graphs"].keys() == set(GRAPHS)


# Full 25-step forecasts at short lengths, fewer steps at long ones (the loop is the same code).
CASES = [(37, 25), (300, 25), (1500, 3), (4096, 2)]


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("length,steps", CASES)
def test_onnxruntime_forecast_equals_eager_torch(exported, ort_backends, preset: str, length: int,
                                                 steps: int) -> None:
    model, _ = exported[preset]
    n_obs = max(1, length // 5)
    feats = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(length))
    noise = sample_noise((1, model.cfg.num_classes, length), steps, generator=torch.Generator().manual_seed(7))
    ref = model.anticipate(feats, horizon=length - n_obs, steps=steps, noise=noise)
    got = forecast(ort_backends[preset], feats, horizon=length - n_obs, steps=steps, noise=noise)
    assert got.future_probs.shape == ref.future_probs.shape == (1, model.cfg.num_classes, length - n_obs)
    diff = max(float((got.observed_probs - ref.observed_probs).abs().max()),
               float((got.future_probs - ref.future_probs).abs().max()))
    assert diff < 1e-4, f"{preset} T={length} steps={steps}: max |ORT - torch| = {diff:.2e}"


def test_encoder_graph_runs_at_lengths_it_was_not_traced_at(exported) -> None:
    model, path = exported["50salads"]
    session = ort.InferenceSession(str(path / "encoder.onnx"), providers=["CPUExecutionProvider"])
    for length in (1, 2, EXPORT_LENGTH + 1, 777):
        feats = torch.randn(1, model.cfg.input_dim, length)
        mask = torch.rand(1, length) > 0.3
        logits, cond = session.run(None, {"features": feats.numpy(), "frame_mask": mask.numpy()})
        with torch.no_grad():
            ref_logits, ref_cond = model.encode(feats, mask)
        assert logits.shape == (1, model.cfg.num_classes, length)
        np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(cond, ref_cond.numpy(), atol=1e-4, rtol=0)


def test_graph_modules_equal_the_network_eagerly() -> None:
    # The time-major rewrite itself (no ONNX involved), incl. T=1 and a window wider than T.
    cfg = model_config("tiny", num_classes=5)
    torch.manual_seed(0)
    model = ActFusion(cfg).eval()
    for length in (1, 3, 40):
        feats, mask = torch.randn(1, cfg.input_dim, length), torch.rand(1, length) > 0.5
        with torch.no_grad():
            a = model.encode(feats, mask)
            b = EncoderGraph(model)(feats, mask)
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


def test_export_cli_from_a_checkpoint_verifies_and_writes_the_manifest(tmp_path: Path) -> None:
    cfg = model_config("tiny", num_classes=4)
    model = ActFusion(cfg).eval()
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model, ["reach", "grasp", "move", "place"])
    out = tmp_path / "onnx"
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--length", "16"]) == 0
    manifest = read_manifest(out)
    assert manifest["class_names"] == ["reach", "grasp", "move", "place"]
    assert manifest["verified_length"] == 97 and manifest["export_length"] == 16
    assert manifest["source"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert not list(out.glob(".*.tmp")), "atomic writes left temporaries behind"


def test_export_cli_reports_a_missing_checkpoint(tmp_path: Path, capsys) -> None:
    assert main(["--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_export_refuses_wrong_class_names(tmp_path: Path) -> None:
    model = ActFusion(model_config("tiny", num_classes=3)).eval()
    with pytest.raises(ExportError, match="2 class names"):
        export_onnx(model, tmp_path, class_names=["a", "b"])


@pytest.mark.parametrize("num_samples", [1, 3])
def test_decoder_input_condition_exports_and_equals_torch(tmp_path: Path, num_samples: int) -> None:
    """``model.dec_input_condition``: the condition graph emits ``cond_in`` and the denoise steps add it."""
    cfg = model_config("tiny", num_classes=6, dec_input_condition=True)
    torch.manual_seed(3)
    model = ActFusion(cfg).eval()
    export_onnx(model, tmp_path, class_names=[f"c{i}" for i in range(6)], length=40, verify_length=None)
    backend = load_backend("onnxruntime", tmp_path, intra_op_threads=1)
    feats = torch.randn(1, cfg.input_dim, 13, generator=torch.Generator().manual_seed(1))
    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(5)

    ref = forecast(EagerBackend(model), feats, horizon=29, num_samples=num_samples, generator=gen())
    got = forecast(backend, feats, horizon=29, num_samples=num_samples, generator=gen())
    for a, b in ((got.observed_probs, ref.observed_probs), (got.future_probs, ref.future_probs)):
        assert float((a - b).abs().max()) < 1e-4
    # The term matters: without it (zeroed input projection) the eager forecast changes.
    with torch.no_grad():
        model.decoder.cond_in.weight.zero_()
        model.decoder.cond_in.bias.zero_()
    changed = forecast(EagerBackend(model), feats, horizon=29, num_samples=num_samples, generator=gen())
    assert float((changed.future_probs - ref.future_probs).abs().max()) > 1e-3


# -- FP16 export (actfusion-export --precision fp16) ---------------------------------------------
@pytest.fixture(scope="session")
def exported_fp16(exported, tmp_path_factory: pytest.TempPathFactory) -> tuple[ActFusion, Path]:
    """The 50salads model of ``exported`` as an fp16 export (verified against eager fp32 at T=97)."""
    model, _ = exported["50salads"]
    path = tmp_path_factory.mktemp("onnx_50salads_fp16")
    with one_torch_thread():
        export_onnx(model, path, class_names=[f"50salads_{i}" for i in range(PRESETS["50salads"])],
                    length=EXPORT_LENGTH, precision="fp16")
    return model, path


def _value_types(path: Path) -> dict[str, str]:
    """Every value of a graph (inputs, initializers, intermediate and outputs) -> numpy dtype name."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    to_np = onnx.helper.tensor_dtype_to_np_dtype
    types = {t.name: to_np(t.data_type).name for t in proto.graph.initializer}
    for value in (*proto.graph.input, *proto.graph.value_info, *proto.graph.output):
        types[value.name] = to_np(value.type.tensor_type.elem_type).name
    for node in proto.graph.node:
        if node.op_type == "Constant":
            types[node.output[0]] = to_np(node.attribute[0].t.data_type).name
    return types


def test_fp16_export_keeps_the_fp32_interface_with_fp16_weights(exported, exported_fp16) -> None:
    from actfusion_model.onnx_graphs import FP16_KEEP_FP32

    _, path32 = exported["50salads"]
    _, path16 = exported_fp16
    m32, m16 = read_manifest(path32), read_manifest(path16)
    assert m32["precision"] == "fp32" and m32["fp32_ops"] == []
    assert m16["precision"] == "fp16" and m16["fp32_ops"] == sorted(FP16_KEEP_FP32)
    assert m16["verified_length"] == 97
    for graph in (*GRAPHS, "denoise_step_batch"):
        e32, e16 = m32["graphs"].get(graph) or m32["batch_graphs"][graph], \
            m16["graphs"].get(graph) or m16["batch_graphs"][graph]
        assert (e16["inputs"], e16["outputs"]) == (e32["inputs"], e32["outputs"]), graph  # same names, fp32
        weights16 = [t for t in onnx.load(str(path16 / e16["file"])).graph.initializer if len(t.dims) == 2]
        weights32 = [t for t in onnx.load(str(path32 / e32["file"])).graph.initializer if len(t.dims) == 2]
        assert weights16 and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights16), graph
        assert all(t.data_type == onnx.TensorProto.FLOAT for t in weights32), graph
        assert "float16" not in _value_types(path32 / e32["file"]).values(), graph


@pytest.mark.parametrize("keep", [(), ("norm",), ("attention",), ("slot_terms",)])
def test_fp32_islands_of_an_fp16_graph_compute_in_fp32(tmp_path: Path, keep: tuple[str, ...]) -> None:
    model = ActFusion(model_config("tiny", num_classes=4)).eval()
    export_onnx(model, tmp_path, length=24, verify_length=None, precision="fp16", keep_fp32=keep)
    types = _value_types(tmp_path / "encoder.onnx")
    proto = onnx.load(str(tmp_path / "encoder.onnx"))
    island_ops = {"norm": "Sqrt", "attention": "Softmax", "slot_terms": "Log"}
    for island, op in island_ops.items():
        dtypes = {types[n.input[0]] for n in proto.graph.node if n.op_type == op}
        want = "float32" if island in keep else "float16"
        assert dtypes == {want}, f"{op} ({island}) runs on {dtypes}, expected {want} with keep_fp32={keep}"


def test_fp16_forecast_agrees_with_fp32_in_onnxruntime(exported, ort_backends, exported_fp16) -> None:
    model, path16 = exported_fp16
    fp16 = load_backend("onnxruntime", path16, intra_op_threads=1)
    assert fp16.details()["precision"] == "fp16"
    length, n_obs = 600, 120
    feats = torch.randn(1, model.cfg.input_dim, n_obs, generator=torch.Generator().manual_seed(4))
    noise = sample_noise((1, model.cfg.num_classes, length), 25, generator=torch.Generator().manual_seed(8))
    ref = forecast(ort_backends["50salads"], feats, horizon=length - n_obs, noise=noise)
    got = forecast(fp16, feats, horizon=length - n_obs, noise=noise)
    diff = float((got.future_probs - ref.future_probs).abs().max())
    agree = float((got.future_probs.argmax(1) == ref.future_probs.argmax(1)).float().mean())
    logit_error = float((got.encoder_logits - ref.encoder_logits).abs().max())
    assert 0 < logit_error < 0.05, logit_error  # fp16 rounding: present, and small
    assert diff < 0.05 and agree > 0.99, (diff, agree)


def test_the_norm_island_keeps_a_long_variance_from_overflowing_fp16() -> None:
    """The instance norm's variance sums T squared deviations: past 65504 in fp16 arithmetic, its island
    keeps it finite (torch's fp16 ops round every result like a GPU's; onnxruntime's CPU kernels do not)."""
    from actfusion_model.onnx_graphs import GraphPrecision, _instance_norm

    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0)) * 300  # squares ~ 9e4 > 65504
    ref = _instance_norm(x)
    fp16 = _instance_norm(x.half(), precision=GraphPrecision.of("fp16", ()))
    kept = _instance_norm(x.half(), precision=GraphPrecision.of("fp16", ("norm",)))
    assert kept.dtype == fp16.dtype == torch.float16
    assert float((kept.float() - ref).abs().max()) < 0.01
    assert not torch.isfinite(fp16).all() or float((fp16.float() - ref).abs().max()) > 0.5


def test_export_cli_writes_an_fp16_export_and_checks_its_options(tmp_path: Path, capsys) -> None:
    model = ActFusion(model_config("tiny", num_classes=3)).eval()
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model, ["a", "b", "c"])
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "o16"), "--length", "16",
                 "--precision", "fp16"]) == 0
    assert "fp16 (fp32 ops: norm)" in capsys.readouterr().out
    assert read_manifest(tmp_path / "o16")["precision"] == "fp16"
    assert main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--length", "16",
                 "--precision", "fp16", "--keep-fp32"]) == 0
    assert read_manifest(tmp_path / "o")["fp32_ops"] == []
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "x"), "--keep-fp32", "norm"])
    assert "--keep-fp32 goes with --precision fp16" in capsys.readouterr().err
