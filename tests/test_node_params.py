"""The node's parameter table and its validation (ROS-free)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from actfusion_ros.node_params import (
    PARAMETER_NAMES,
    PARAMETERS,
    NodeSettings,
    ParameterError,
    defaults,
    markdown_table,
    parse_extractor_kwargs,
    read_params_file,
    spec,
    validate_values,
)
from actfusion_ros.stream_types import StreamConfig

REPO = Path(__file__).resolve().parents[1]
OK = {"random_weights": True}


def problems(**values) -> list[str]:
    with pytest.raises(ParameterError) as info:
        validate_values(values, check_files=True)
    return info.value.problems


def one_problem(**values) -> str:
    found = problems(**values)
    assert len(found) == 1, found
    return found[0]


def test_table_is_consistent() -> None:
    assert len(PARAMETER_NAMES) == len(PARAMETERS), "duplicate parameter names"
    for p in PARAMETERS:
        assert p.description.strip(), p.name
        assert p.type in (bool, int, float, str), p.name
        if p.minimum is not None or p.maximum is not None:
            assert p.type in (int, float) and p.minimum is not None and p.maximum is not None, p.name
            assert p.minimum <= p.default <= p.maximum, p.name
            assert type(p.minimum) is p.type and type(p.maximum) is p.type, f"{p.name}: range type"
        if p.choices:
            assert p.default in p.choices, p.name
    with pytest.raises(KeyError, match="unknown parameter 'nope'"):
        spec("nope")


def test_stream_defaults_come_from_stream_config() -> None:
    s = validate_values(OK)
    base = StreamConfig()
    for f in dataclasses.fields(StreamConfig):
        assert getattr(s.stream, f.name) == getattr(base, f.name), f.name


def test_valid_settings() -> None:
    s = validate_values({**OK, "ratio": 2, "max_horizon_s": -1.0, "ddim_steps": 0,
                         "extractor_kwargs": "{grid: 2, bins: 4}", "device": "cuda:1"})
    assert isinstance(s, NodeSettings)
    assert s.stream.ratio == 2.0 and isinstance(s.stream.ratio, float)  # an int is fine for a double here
    assert s.stream.max_horizon_s is None  # negative: no cap
    assert s.ddim_steps is None  # 0: the checkpoint's value
    assert s.extractor_kwargs == {"grid": 2, "bins": 4}
    assert s.device == "cuda:1" and s.backend == "auto" and s.qos_depth == 1  # backend auto: the default
    assert validate_values({**OK, "ddim_steps": 7}).ddim_steps == 7


@pytest.mark.parametrize("name, value, expected", [
    ("tick_rate_hz", 0.0, "tick_rate_hz: 0.0 is outside [0.001, 1000.0]"),
    ("tick_rate_hz", float("nan"), "tick_rate_hz: must be finite"),
    ("ratio", -1.0, "ratio: -1.0 is outside [0.0, 1000.0]"),
    ("qos_depth", 0, "qos_depth: 0 is outside [1, 1000]"),
    ("qos_depth", True, "qos_depth: expected int, got bool"),
    ("qos_depth", 2.0, "qos_depth: expected int, got float"),
    ("compressed", "yes", "compressed: expected bool, got str 'yes'"),
    ("feature_rate_hz", "2", "feature_rate_hz: expected double, got str"),
    ("backend", "tflite", "backend: 'tflite' is not one of torch, onnxruntime, tensorrt, auto"),
    ("qos_reliability", "best-effort", "qos_reliability: 'best-effort' is not one of best_effort, reliable"),
    ("window_policy", "keep", "window_policy: 'keep' is not one of drop_oldest, downsample"),
    ("device", "gpu", "device: 'gpu' is not cpu, cuda or cuda:N"),
    ("extractor", "resnet9000", "extractor: unknown 'resnet9000'; available: color_layout"),
    ("extractor_kwargs", "[1, 2]", "extractor_kwargs: must be a mapping"),
    ("extractor_kwargs", "{grid: [", "extractor_kwargs: not valid YAML"),
    ("max_downsample_factor", 3, "max_downsample_factor must be a power of two"),
    ("image_topic", " ", "image_topic: must not be empty"),
    ("class_names_file", "/no/such/classes.txt", "class_names_file: file not found: /no/such/classes.txt"),
])
def test_bad_values_give_clear_messages(name: str, value, expected: str) -> None:
    found = one_problem(**{**OK, name: value})
    assert found.startswith(expected), found


def test_image_size_limit_and_future_frames_parameters() -> None:
    s = validate_values(OK)
    assert s.max_image_pixels == 4096 * 4096 and s.stream.max_future_s == 5.0
    s = validate_values({**OK, "max_image_pixels": 640 * 480, "max_future_s": 0.5})
    assert s.max_image_pixels == 640 * 480 and s.stream.max_future_s == 0.5
    assert one_problem(**{**OK, "max_image_pixels": 0}).startswith("max_image_pixels: 0 is outside [1, ")
    assert one_problem(**{**OK, "max_future_s": 0.0}).startswith("max_future_s: 0.0 is outside [0.001, ")


def test_cross_parameter_rules(tmp_path: Path) -> None:
    assert one_problem().startswith("checkpoint: required by backend auto")
    assert one_problem(checkpoint="/no/model.pt").startswith("checkpoint: file not found: /no/model.pt")
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    validate_values({"checkpoint": str(ckpt)})
    assert "give one of them" in one_problem(random_weights=True, checkpoint=str(ckpt))
    found = problems(random_weights=True, backend="onnxruntime")
    assert any("only with backend torch" in p for p in found), found
    assert one_problem(backend="onnxruntime").startswith("onnx_dir: required by backend onnxruntime")
    assert one_problem(backend="onnxruntime", onnx_dir=str(tmp_path / "none")).startswith(
        "onnx_dir: directory not found")
    assert one_problem(backend="tensorrt", onnx_dir=str(tmp_path), device="cpu").startswith(
        "device: backend tensorrt runs on cuda")
    validate_values({"backend": "tensorrt", "onnx_dir": str(tmp_path)})  # device auto: the GPU, at configure
    s = validate_values({"backend": "tensorrt", "onnx_dir": str(tmp_path), "device": "cuda",
                         "engine_dir": str(tmp_path / "engines")})
    assert (s.backend, s.onnx_dir, s.engine_dir) == ("tensorrt", str(tmp_path), str(tmp_path / "engines"))
    validate_values({"backend": "onnxruntime", "onnx_dir": str(tmp_path)})  # no checkpoint needed
    # files are not checked when asked not to
    validate_values({"checkpoint": "/no/model.pt"}, check_files=False)


def test_stream_config_rules_are_reported() -> None:
    found = one_problem(**OK, max_window_s=1.0, feature_rate_hz=2.0, min_observed_frames=4)
    assert found.startswith("max_window_s must be >= 2 s"), found


def test_all_problems_reported_at_once() -> None:
    found = problems(tick_rate_hz=-1.0, device="tpu", extractor="x", typo_param=1)
    assert any(p.startswith("unknown parameter(s) ['typo_param']") for p in found)
    for prefix in ("tick_rate_hz:", "device:", "extractor:", "checkpoint: required"):
        assert any(p.startswith(prefix) for p in found), (prefix, found)
    text = str(ParameterError(found))
    assert text.startswith(f"{len(found)} invalid parameter(s):")


def test_parse_extractor_kwargs() -> None:
    assert parse_extractor_kwargs("") == {} and parse_extractor_kwargs("{}") == {}
    assert parse_extractor_kwargs('{"grid": 3}') == {"grid": 3}
    assert parse_extractor_kwargs("grid: 3\nbins: 4") == {"grid": 3, "bins": 4}
    with pytest.raises(ValueError, match="string keys"):
        parse_extractor_kwargs("{1: 2}")


def test_shipped_params_file_is_valid() -> None:
    values = read_params_file(REPO / "config" / "anticipate.yaml")
    assert set(values) == PARAMETER_NAMES
    assert values == defaults(), "config/anticipate.yaml should show the declared defaults"
    validate_values({**values, "random_weights": True})


def test_read_params_file_precedence(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("/**:\n  ros__parameters:\n    ratio: 1.0\n    seed: 3\n"
                    "actfusion_node:\n  ros__parameters:\n    ratio: 2.0\n")
    assert read_params_file(path) == {"ratio": 2.0, "seed": 3}
    path.write_text("actfusion_node:\n  ratio: 1.0\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        read_params_file(path)


def test_docs_table_is_current() -> None:
    doc = (REPO / "docs" / "node.md").read_text()
    assert markdown_table() in doc, "docs/node.md: regenerate the table with " \
        "python -c 'from actfusion_ros.node_params import markdown_table; print(markdown_table())'"


def test_the_stream_parameters_are_the_stream_config_fields() -> None:
    from dataclasses import fields

    from actfusion_ros.node_params import PARAMETER_NAMES, validate_values
    from actfusion_ros.stream_types import STREAM_KEYS, StreamConfig

    assert STREAM_KEYS == tuple(f.name for f in fields(StreamConfig))
    assert set(STREAM_KEYS) <= PARAMETER_NAMES
    values = {"random_weights": True, "extractor": "color_layout", "ratio": 1.5, "max_downsample_factor": 4,
              "window_policy": "downsample", "backward_jump_s": 0.5}
    stream = validate_values(values, check_files=False).stream
    assert (stream.ratio, stream.max_downsample_factor, stream.window_policy, stream.backward_jump_s) == \
        (1.5, 4, "downsample", 0.5)
