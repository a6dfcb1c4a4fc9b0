"""Parameters of ``actfusion_node``: the one declaration table, their validation, and when they may change
(ROS-free).

:data:`PARAMETERS` lists every parameter the node declares (name, default, type, description, range,
choices). The node turns each :class:`ParamSpec` into an rclpy ``ParameterDescriptor``
(:func:`actfusion_ros.node.actfusion_node.parameter_descriptor`, with ``IntegerRange`` / ``FloatingPointRange``
where numeric); ``config/anticipate.yaml`` must name exactly these parameters (``tests/test_launch.py`` checks
it). :func:`validate_values` checks a full set
of values - types, ranges, choices, the cross-parameter rules and :class:`~actfusion_ros.stream.StreamConfig`
- and returns a :class:`NodeSettings`, or raises :class:`ParameterError` listing *every* problem, so a
bad YAML file is fixed in one go. :func:`parameter_change_refusal` is the rule the node applies to
``ros2 param set``: its parameters change only while it is unconfigured.

Nothing here imports rclpy, so it is testable (and the table printable as docs) without ROS.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from actfusion_model.runtime.registry import BACKENDS, CHECKPOINT, EXPORT, BackendError, backend_entry, backend_names
from actfusion_ros.frames import DEFAULT_MAX_IMAGE_PIXELS
from actfusion_ros.stream_types import STREAM_KEYS, WINDOW_POLICIES, StreamConfig

__all__ = ["BACKENDS", "DEVICE_PATTERN", "NodeSettings", "PARAMETERS", "PARAMETER_NAMES", "ParamSpec",
           "ParameterError", "QOS_RELIABILITY", "TimelineSettings", "declaration_problem", "defaults", "markdown_table",
           "parameter_change_refusal",
           "parse_extractor_kwargs",
           "read_params_file", "spec", "validate_values"]

QOS_RELIABILITY = ("best_effort", "reliable")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_TYPES = {bool: "bool", int: "int", float: "double", str: "string"}


class ParameterError(ValueError):
    """One or more node parameters are invalid; ``problems`` lists each as ``'name: what is wrong'``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        text = "\n  ".join(self.problems)
        super().__init__(f"{len(self.problems)} invalid parameter(s):\n  {text}")


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one parameter.

    ``default`` fixes the type (bool, int, float or str). ``minimum`` / ``maximum`` (inclusive) become
    the descriptor's range; :attr:`choices` are listed in its ``additional_constraints`` and checked by
    :func:`validate_values`: ``fixed_choices``, or, for values registered at run time (the backends),
    ``choices_from()`` read at each use.
    """

    name: str
    default: bool | int | float | str
    description: str
    minimum: float | int | None = None
    maximum: float | int | None = None
    fixed_choices: tuple[str, ...] | None = None
    choices_from: Callable[[], Sequence[str]] | None = None

    @property
    def choices(self) -> tuple[str, ...] | None:
        """The values it may take (None: any)."""
        if self.choices_from is not None:
            return tuple(self.choices_from())
        return self.fixed_choices

    @property
    def type(self) -> type:
        return type(self.default)

    @property
    def type_name(self) -> str:
        """ROS parameter type name: bool, int, double or string."""
        return _TYPES[self.type]

    @property
    def constraints(self) -> str:
        """Human-readable constraints (descriptor ``additional_constraints``)."""
        parts = []
        if self.minimum is not None or self.maximum is not None:
            parts.append(f"range [{self.minimum}, {self.maximum}]")
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        return "; ".join(parts)


def _p(name: str, default: Any, description: str, minimum: Any = None, maximum: Any = None,
       choices: tuple[str, ...] | Callable[[], Sequence[str]] | None = None) -> ParamSpec:
    if callable(choices):
        return ParamSpec(name, default, description, minimum, maximum, choices_from=choices)
    return ParamSpec(name, default, description, minimum, maximum, fixed_choices=choices)


_S = StreamConfig()  # the stream's own defaults, so the two never disagree

#: Every parameter of ``actfusion_node``, in documentation order. They are read by the lifecycle
#: transition ``configure`` and can be changed (``ros2 param set``) only while the node is unconfigured;
#: ``autostart`` is read once at start-up. ``use_sim_time`` is declared by rclpy.
PARAMETERS: tuple[ParamSpec, ...] = (
    # --- lifecycle
    _p("autostart", True,
       "At start-up configure and activate the node (a failure then ends the process with exit 2); "
       "false: stay unconfigured until 'ros2 lifecycle set <node> configure'."),
    # --- input
    _p("image_topic", "image",
       "Input image topic (relative names resolve in the node's namespace). The launch file keeps "
       "'image' and remaps it with its image_topic argument."),
    _p("compressed", False,
       "Subscribe to sensor_msgs/CompressedImage (jpeg/png) instead of sensor_msgs/Image "
       "(rgb8, bgr8 or 8UC3, rgba8, bgra8, mono8 or 8UC1, mono16; padded rows)."),
    _p("qos_reliability", "best_effort",
       "Reliability of the image subscription: best_effort (sensor-data QoS, matches every camera "
       "driver) or reliable (receives only from reliable publishers).",
       choices=QOS_RELIABILITY),
    _p("qos_depth", 1, "History depth (keep last N) of the image subscription.", 1, 1000),
    _p("queue_size", 8,
       "Frames waiting between the image callback and the feature worker; when full the oldest is "
       "dropped and counted (frames_dropped in /diagnostics).", 1, 10000),
    _p("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
       "Largest image accepted, in pixels (width * height), judged from the message or JPEG/PNG header "
       "before decoding; larger ones are skipped and counted (bad_images.too_large).", 1, 2**30),
    # --- model
    _p("checkpoint", "",
       "Path of an actfusion_ros checkpoint (weights, model config, class names) for backends auto and torch. "
       "Required there unless random_weights is true; not used by the other backends."),
    _p("random_weights", False,
       "Use a tiny randomly initialised model (tests and demos; the forecasts mean nothing), run by eager "
       "torch (backend auto too), on the CPU unless device names a GPU. Its input size follows the extractor, "
       "its classes the class_names_file (default 5)."),
    _p("backend", "auto",
       "Inference backend: auto (checkpoint: exports its ONNX graphs once at configure, cached, and runs the "
       "fastest path the machine has: TensorRT or CUDA on a GPU, ONNX Runtime on a CPU; the choice and its "
       "reason are logged and in /diagnostics), torch (checkpoint, eager), onnxruntime or tensorrt (onnx_dir).",
       choices=backend_names),
    _p("onnx_dir", "",
       "Directory written by actfusion-export (ONNX graphs + manifest with the model config and class "
       "names); required by the onnxruntime and tensorrt backends."),
    _p("engine_dir", "",
       "TensorRT engine cache (default: the tensorrt folder inside onnx_dir); engines are built there on "
       "first use."),
    _p("device", "auto",
       "Inference device: auto (a GPU if torch sees CUDA, else the CPU; backend auto then tries the GPU paths "
       "first, then the CPU ones), cpu, cuda or cuda:N (backend auto: only that device)."),
    _p("num_threads", 0, "CPU threads of torch (set once for the whole process at start-up, the extractor "
       "included) and of ONNX Runtime inference. 0: what the machine gives without oversubscription, "
       "max(1, CPUs - 2) (a core each for the feature worker and the executor): eager torch's threads, and "
       "ONNX Runtime's shared by the sample_workers (1 for narrow decoders).", 0, 256),
    _p("sample_workers", 1,
       "onnxruntime backend on the CPU: how many chunks of the K sampled futures run at once, each on its own "
       "thread (1: one after the other; other backends ignore it). On 2 idle cores 2 made K = 8 cost 3.7x one "
       "sample per tick instead of 6.8x, K = 4 2.0x instead of 3.5x (docs/sampling.md, Cost of K samples); "
       "leave cores for the camera and the extractor.", 1, 64),
    _p("ddim_steps", 0, "DDIM denoising steps per forecast (0: the checkpoint's value).", 0, 1000),
    _p("num_samples", 4,
       "Futures sampled per forecast (one encoder pass, K decoder samples); K > 1 publishes their "
       "per-frame consensus and the distribution of the next action over them (ActionForecast.next_actions). "
       "Costs about K times the decoder's work on a CPU; 4 gives most of the next action's calibration "
       "gain (docs/sampling.md, K x DDIM steps).", 1, 64),
    _p("seed", 0,
       "Seed of the diffusion noise; each tick draws from a generator seeded with (seed, tick number), "
       "so a replayed stream gives the same forecasts.", 0, 2**31 - 1),
    _p("class_names_file", "",
       "Optional class names: an MS-TCN mapping.txt (an 'id name' pair per line) or one name per line. "
       "Default: the names stored in the checkpoint."),
    # --- features
    _p("extractor", "color_layout", "Name of the causal frame-feature extractor (actfusion_model.features)."),
    _p("extractor_kwargs", "{}",
       "Keyword arguments of the extractor as a YAML/JSON mapping string, e.g. '{grid: 4, bins: 8}'."),
    _p("feature_rate_hz", float(_S.feature_rate_hz),
       "Feature rate of the model; camera frames are sampled to it by their stamps.", 0.001, 1000.0),
    # --- stream
    _p("tick_rate_hz", 2.0,
       "Forecasts per second (timer on the ROS clock, so it follows use_sim_time). A tick still "
       "running when the next is due skips that one (counted).", 0.001, 1000.0),
    _p("ratio", float(_S.ratio), "Anticipation ratio r: horizon = ceil(r * N_observed) feature frames.",
       0.0, 1000.0),
    _p("max_horizon_s", float(_S.max_horizon_s or 0.0),
       "Cap on the anticipated time in seconds (negative: no cap).", -1.0, 1.0e6),
    _p("max_window_s", float(_S.max_window_s),
       "Observed window kept, in seconds (the buffer holds ceil(max_window_s * feature_rate_hz) "
       "features).", 0.001, 1.0e6),
    _p("window_policy", _S.window_policy,
       "What happens when the window is full: drop_oldest, or downsample (halve the feature rate to "
       "cover twice the time, up to max_downsample_factor).", choices=WINDOW_POLICIES),
    _p("max_downsample_factor", int(_S.max_downsample_factor),
       "Largest rate reduction of the downsample policy (a power of two).", 1, 1024),
    _p("min_observed_frames", int(_S.min_observed_frames),
       "Features needed before a forecast is complete; fewer give partial results.", 1, 1_000_000),
    _p("publish_partial", bool(_S.publish_partial),
       "During start-up (fewer than min_observed_frames features) publish results flagged "
       "partial=true; if false publish nothing until then."),
    _p("stale_after_s", float(_S.stale_after_s),
       "No forecast when the newest frame is older than this (camera stalled), in seconds.",
       0.001, 1.0e6),
    _p("max_future_s", float(_S.max_future_s),
       "Frames stamped more than this ahead of the node's clock when they arrive are rejected and "
       "counted (future_frames), in seconds.", 0.001, 1.0e6),
    _p("episode_gap_s", float(_S.episode_gap_s),
       "A gap in frame stamps longer than this starts a new episode, in seconds.", 0.001, 1.0e6),
    _p("backward_jump_s", float(_S.backward_jump_s),
       "Frame stamps jumping back by more than this start a new episode (smaller steps back are "
       "dropped as out of order), in seconds.", 0.0, 1.0e6),
    # --- output
    _p("diagnostics_period_s", 1.0, "Period of the /diagnostics status, in seconds.", 0.01, 3600.0),
    _p("publish_marginals", False,
       "Also publish each forecast's per-frame class distribution on actfusion/future_marginals "
       "(actfusion_msgs/ForecastMarginals, classes x future frames, stamped like the forecast; with K > 1 "
       "samples the fraction voting for each class)."),
    # --- timeline image (~/timeline_image)
    _p("timeline_rate_hz", 2.0,
       "Most timeline images per second (node clock); drawn only after a tick and only while someone "
       "subscribes to ~/timeline_image. 0: never drawn.", 0.0, 100.0),
    _p("timeline_width", 640, "Width of the timeline image in pixels.", 160, 4096),
    _p("timeline_height", 240, "Height of the timeline image in pixels.", 48, 4096),
    _p("timeline_camera", True, "Draw the latest camera frame above the timeline."),
    _p("timeline_past_s", 30.0, "Seconds of observed segmentation left of 'now' in the timeline image.",
       0.001, 1.0e6),
    _p("timeline_future_s", 30.0, "Seconds of forecast right of 'now' in the timeline image.", 0.001, 1.0e6),
)

PARAMETER_NAMES: frozenset[str] = frozenset(p.name for p in PARAMETERS)
_BY_NAME = {p.name: p for p in PARAMETERS}


def spec(name: str) -> ParamSpec:
    """The declaration of ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown parameter {name!r}; known: {sorted(_BY_NAME)}") from None


def defaults() -> dict[str, Any]:
    """``{name: default}`` for every parameter."""
    return {p.name: p.default for p in PARAMETERS}


def parameter_change_refusal(names: Sequence[str], state: str) -> str | None:
    """Why the node's parameters ``names`` cannot be set in lifecycle ``state`` (None: they can). They are
    read by ``configure``, so they change only while unconfigured; ``autostart`` (read once, at start-up)
    and parameters that are not the node's (``use_sim_time``, ...) always can."""
    ours = sorted(n for n in names if n in PARAMETER_NAMES and n != "autostart")
    if not ours or state == "unconfigured":
        return None
    return (f"{', '.join(ours)}: can be changed only while the node is unconfigured (it is {state}); "
            f"deactivate and clean it up first, the values apply at the next configure")


@dataclass(frozen=True)
class TimelineSettings:
    """The ``timeline_*`` parameters: rate (0: no picture), size, span and whether the camera frame is drawn."""

    rate_hz: float
    width: int
    height: int
    camera: bool
    past_s: float
    future_s: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "TimelineSettings":
        """From (validated) parameter values: ``timeline_<field>`` for each field."""
        return cls(**{f: values[f"timeline_{f}"] for f in cls.__dataclass_fields__})

    @property
    def enabled(self) -> bool:
        return self.rate_hz > 0


@dataclass(frozen=True)
class NodeSettings:
    """Validated settings of the node (see :data:`PARAMETERS` for the meaning of each)."""

    image_topic: str
    compressed: bool
    qos_reliability: str
    qos_depth: int
    queue_size: int
    max_image_pixels: int
    checkpoint: str
    random_weights: bool
    backend: str
    onnx_dir: str
    engine_dir: str
    device: str
    num_threads: int
    sample_workers: int
    ddim_steps: int | None
    num_samples: int
    seed: int
    class_names_file: str
    extractor: str
    extractor_kwargs: dict[str, Any] = field(hash=False)
    tick_rate_hz: float
    diagnostics_period_s: float
    stream: StreamConfig
    publish_marginals: bool
    autostart: bool = True
    timeline: TimelineSettings = field(default_factory=lambda: TimelineSettings.from_values(defaults()))


def parse_extractor_kwargs(text: str) -> dict[str, Any]:
    """Parse the ``extractor_kwargs`` string (a YAML/JSON mapping; empty = ``{}``)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string holding a YAML mapping, got {type(text).__name__}")
    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"not valid YAML: {err}".replace("\n", " ")) from None
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"must be a mapping with string keys like '{{grid: 4}}', got {text!r}")
    return value


def declaration_problem(p: ParamSpec, given: Any, err: BaseException, *, wrong_type: bool,
                        out_of_range: bool) -> str:
    """The ``'name: what is wrong'`` line for a parameter that rclpy refused to declare with the value
    ``given``: of the wrong type, outside its descriptor's range, or refused for another reason ``err``."""
    if wrong_type:
        hint = " (write e.g. 2.0 for a double)" if p.type is float and isinstance(given, int) else ""
        return f"{p.name}: expected {p.type_name}, got {type(given).__name__} {given!r}{hint}"
    if out_of_range and p.constraints:
        return f"{p.name}: {given!r} is outside the allowed {p.constraints}"
    return f"{p.name}: {err}"


def _check_type(p: ParamSpec, value: Any) -> str | None:
    if p.type is bool:
        ok = isinstance(value, bool)
    elif p.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif p.type is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if ok:
        return None
    hint = " (write e.g. 2.0, not 2)" if p.type is float and isinstance(value, int) else ""
    return f"{p.name}: expected {p.type_name}, got {type(value).__name__} {value!r}{hint}"


def _check_range(p: ParamSpec, value: Any) -> str | None:
    if p.type is float and not math.isfinite(float(value)):
        return f"{p.name}: must be finite, got {value!r}"
    if p.minimum is not None and value < p.minimum or p.maximum is not None and value > p.maximum:
        return f"{p.name}: {value!r} is outside [{p.minimum}, {p.maximum}]"
    if p.choices is not None and value not in p.choices:
        return f"{p.name}: {value!r} is not one of {', '.join(p.choices)}"
    return None


def validate_values(values: Mapping[str, Any], *, check_files: bool = True,
                    available_extractors: Sequence[str] | None = None) -> NodeSettings:
    """Check a complete or partial set of parameter values (missing ones take their defaults).

    ``check_files``: also require ``checkpoint`` / ``class_names_file`` / ``engine_dir`` to exist.
    ``available_extractors``: names ``extractor`` may take (default: ``actfusion_model.features``' registry).
    Raises :class:`ParameterError` listing every problem found.
    """
    problems: list[str] = []
    unknown = sorted(set(values) - PARAMETER_NAMES)
    if unknown:
        problems.append(f"unknown parameter(s) {unknown}; known: {sorted(PARAMETER_NAMES)}")
    v = defaults()
    for name, value in values.items():
        if name not in PARAMETER_NAMES:
            continue
        p = _BY_NAME[name]
        problem = _check_type(p, value) or _check_range(p, value)
        if problem:
            problems.append(problem)
        else:
            v[name] = float(value) if p.type is float else value

    # --- cross-parameter and semantic checks
    if not str(v["image_topic"]).strip():
        problems.append("image_topic: must not be empty")
    if not DEVICE_PATTERN.match(v["device"]):
        problems.append(f"device: {v['device']!r} is not cpu, cuda or cuda:N, nor auto")
    problems += _backend_problems(v)
    if check_files:
        for name in ("checkpoint", "class_names_file"):
            if v[name] and not Path(v[name]).expanduser().is_file():
                problems.append(f"{name}: file not found: {v[name]}")
        if v["onnx_dir"] and _runs(v["backend"]) != CHECKPOINT and not Path(v["onnx_dir"]).expanduser().is_dir():
            problems.append(f"onnx_dir: directory not found: {v['onnx_dir']}")
    if available_extractors is None:
        from actfusion_model.features import available_extractors as _available
        available_extractors = _available()
    if v["extractor"] not in available_extractors:
        problems.append(f"extractor: unknown {v['extractor']!r}; available: {', '.join(available_extractors)}")
    try:
        kwargs = parse_extractor_kwargs(v["extractor_kwargs"])
    except ValueError as err:
        problems.append(f"extractor_kwargs: {err}")
        kwargs = {}
    stream_values = {k: v[k] for k in STREAM_KEYS}  # the stream parameters are StreamConfig's fields
    if stream_values["max_horizon_s"] < 0:
        stream_values["max_horizon_s"] = None
    stream: StreamConfig | None = None
    try:
        stream = StreamConfig(**stream_values)
    except ValueError as err:
        problems.append(str(err).replace("StreamConfig.", "", 1))
    if problems:
        raise ParameterError(problems)
    assert stream is not None
    return NodeSettings(
        image_topic=v["image_topic"], compressed=v["compressed"], qos_reliability=v["qos_reliability"],
        qos_depth=v["qos_depth"], queue_size=v["queue_size"], max_image_pixels=v["max_image_pixels"],
        checkpoint=v["checkpoint"],
        random_weights=v["random_weights"], backend=v["backend"], onnx_dir=v["onnx_dir"],
        engine_dir=v["engine_dir"],
        device=v["device"], num_threads=v["num_threads"], sample_workers=v["sample_workers"],
        ddim_steps=v["ddim_steps"] or None,
        num_samples=v["num_samples"], seed=v["seed"], class_names_file=v["class_names_file"], extractor=v["extractor"],
        extractor_kwargs=kwargs, tick_rate_hz=v["tick_rate_hz"],
        diagnostics_period_s=v["diagnostics_period_s"], stream=stream,
        publish_marginals=v["publish_marginals"], autostart=v["autostart"],
        timeline=TimelineSettings.from_values(v))


def _backend_problems(v: Mapping[str, Any]) -> list[str]:
    """The rules between ``backend`` and the parameters its registry entry needs: a checkpoint backend a
    ``checkpoint`` (or ``random_weights``), an export backend an ``onnx_dir``; ``device`` one of its device
    kinds. An unknown backend gives none (the ``backend`` choices said so)."""
    try:
        entry = backend_entry(v["backend"])
    except BackendError:
        return []
    problems = []
    if entry.runs == CHECKPOINT:
        if v["random_weights"] and v["checkpoint"]:
            problems.append("checkpoint / random_weights: give one of them, not both")
        elif not v["random_weights"] and not v["checkpoint"]:
            problems.append(f"checkpoint: required by backend {entry.name} (path of a model checkpoint), or set "
                            "random_weights: true for a tiny untrained test model")
    if entry.runs == EXPORT:
        if v["random_weights"]:
            checkpoint_backends = [n for n in backend_names() if backend_entry(n).runs == CHECKPOINT]
            problems.append(f"random_weights: only with backend {' or '.join(checkpoint_backends)}, got backend "
                            f"{v['backend']!r}")
        if not v["onnx_dir"]:
            problems.append(f"onnx_dir: required by backend {entry.name} (a directory written by "
                            "actfusion-export)")
    # device auto: the backend's own choice (auto) or a GPU if torch sees one, else the CPU, decided at configure
    device_problem = entry.device_problem(v["device"]) \
        if DEVICE_PATTERN.match(v["device"]) and v["device"] != "auto" else None
    if device_problem is not None:
        problems.append(f"device: {device_problem}")
    return problems


def _runs(backend: str) -> str | None:
    """What ``backend`` runs (its registry entry's ``runs``), None when no backend has that name."""
    try:
        return backend_entry(backend).runs
    except BackendError:
        return None


def read_params_file(path: str | Path, node_name: str = "actfusion_node") -> dict[str, Any]:
    """The ``ros__parameters`` a ROS 2 params YAML gives ``node_name`` (``/**`` entries first).

    Accepts the keys ``/**``, ``**``, ``<node_name>`` and ``/<node_name>``; later, more specific ones
    override earlier ones, as rcl does for a node in the root namespace.
    """
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping of node names")
    out: dict[str, Any] = {}
    for key in ("/**", "**", node_name, f"/{node_name}"):
        entry = data.get(key)
        if entry is None:
            continue
        params = entry.get("ros__parameters") if isinstance(entry, dict) else None
        if not isinstance(params, dict):
            raise ValueError(f"{path}: '{key}' has no 'ros__parameters' mapping")
        out.update(params)
    return out


def markdown_table() -> str:
    """The parameter table of ``docs/node.md``."""
    rows = ["| name | type | default | range / choices | description |", "|---|---|---|---|---|"]
    for p in PARAMETERS:
        default = repr(p.default) if isinstance(p.default, str) else str(p.default).lower() \
            if isinstance(p.default, bool) else str(p.default)
        rows.append(f"| `{p.name}` | {p.type_name} | `{default}` | {p.constraints} | "
                    f"{p.description.replace('|', '/')} |")
    return "\n".join(rows)
