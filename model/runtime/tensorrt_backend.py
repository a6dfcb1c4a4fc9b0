"""TensorRT backend: engines built from the exported ONNX graphs, run on torch CUDA tensors.

One build for both TensorRT majors a fleet runs: 10.x (JetPack 6 on Jetson Orin ships 10.3) and 11.x (the
desktop ``pip install tensorrt``; 11 does not support JetPack). Networks are **strongly typed**: the
``STRONGLY_TYPED`` creation flag on 10.x, the only kind of network on 11.x, which removed weak typing and with
it ``BuilderFlag.FP16``. So the precision of an engine is the precision of its ONNX graphs: an fp32 export
gives fp32 engines, ``actfusion-export --precision fp16`` gives fp16 ones (graph inputs and outputs stay fp32
either way, so this backend feeds both alike). Every TensorRT name used here outside a version guard
(:func:`tensorrt_major`) exists in 10.3 and in 11.x: ``tests/test_tensorrt_api.py`` checks the source
against the names the PyPI bindings wheels of both export.

The API used: ``trt.Builder`` + ``OnnxParser`` + ``BuilderConfig`` with one optimization profile over the time
axis (min/opt/max length) and, for the batched denoise step, the sample axis (1/opt/max samples), a timing
cache, ``build_serialized_network``; ``Runtime.deserialize_cuda_engine``, one execution context per engine,
``set_input_shape`` / ``set_tensor_address`` (torch tensors' ``data_ptr``) and ``execute_async_v3`` on
torch's current CUDA stream, so the DDIM arithmetic that follows in torch is ordered after it.

``tensorrt`` is imported only inside this module's functions; without it every entry point raises
:class:`actfusion_model.runtime.base.BackendError` saying so. Engines are cached with
:mod:`actfusion_model.runtime.engine_cache` (keyed by ONNX sha256, TensorRT version, GPU, profile, precision).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from actfusion_model.config import ConfigError, model_config_from_dict
from actfusion_model.export_manifest import (
    BATCH_GRAPH,
    GRAPHS,
    SAMPLE_AXIS,
    ExportError,
    export_precision,
    graph_entries,
    input_axes,
    read_manifest,
    samples_batched,
)
from actfusion_model.io import atomic_write_bytes
from actfusion_model.runtime.engine_cache import EngineKey, EngineMismatchError, ensure_engine
from actfusion_model.runtime.registry import BackendError

if TYPE_CHECKING:  # annotations only: tensorrt is imported at run time by import_tensorrt()
    import tensorrt

_LOG = logging.getLogger(__name__)


def import_tensorrt() -> Any:
    """``import tensorrt`` or a :class:`BackendError` that says what is missing."""
    try:
        import tensorrt
    except ImportError as err:
        raise BackendError("the tensorrt backend needs NVIDIA TensorRT's Python package (pip install tensorrt "
                           "on x86 with CUDA, or the JetPack python3-libnvinfer on Jetson) and a CUDA GPU; "
                           f"import failed: {err}") from err
    return tensorrt


def tensorrt_major(trt: Any) -> int:
    """The major version of the imported TensorRT module (10 on JetPack 6, 11 on a desktop)."""
    return int(str(trt.__version__).split(".", 1)[0])


def network_flags(trt: Any) -> int:
    """``create_network`` flags of a strongly typed network on this TensorRT."""
    if tensorrt_major(trt) < 11:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0  # 11.x: every network is strongly typed


@dataclass(frozen=True, kw_only=True)
class LengthProfile:
    """The optimization profile over the time axis T (frames at the model's feature rate) and the sample
    axis K of the batched denoise step (``max_samples`` 1: that engine is not built)."""

    min_length: int = 1  # the node's first ticks see N_O + H = 1 + ceil(r)
    opt_length: int = 1024
    max_length: int = 8192
    opt_samples: int = 1
    max_samples: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_length <= self.opt_length <= self.max_length:
            raise ValueError(f"need 1 <= min_length <= opt_length <= max_length, got "
                             f"{self.min_length}, {self.opt_length}, {self.max_length}")
        if not 1 <= self.opt_samples <= self.max_samples:
            raise ValueError(f"need 1 <= opt_samples <= max_samples, got {self.opt_samples}, {self.max_samples}")

    def contains(self, length: int) -> bool:
        return self.min_length <= length <= self.max_length

    def shapes(self, dims: Sequence[int], names: Sequence[int | str]) -> list[tuple[int, ...]]:
        """(min, opt, max) shapes of an input with engine dims ``dims`` (-1: dynamic) whose manifest shape is
        ``names``: the sample axis gets 1/opt/max samples, every other dynamic axis the lengths."""
        ranges = {SAMPLE_AXIS: (1, self.opt_samples, self.max_samples)}
        lengths = (self.min_length, self.opt_length, self.max_length)
        return [tuple(d if d >= 0 else ranges.get(str(name), lengths)[i] for d, name in zip(dims, names))
                for i in range(3)]


def gpu_identity(device: str | torch.device = "cuda") -> tuple[str, str]:
    """(GPU name, "major.minor" compute capability) of a CUDA device, via torch."""
    if not torch.cuda.is_available():
        raise BackendError("TensorRT needs a CUDA GPU, but torch.cuda.is_available() is False")
    device = torch.device(device)
    major, minor = torch.cuda.get_device_capability(device)
    return torch.cuda.get_device_name(device), f"{major}.{minor}"


def engine_file(engine_dir: str | Path, graph: str, precision: str) -> Path:
    """Where the engine of ``graph`` from an export of ``precision`` (fp32 / fp16) is cached."""
    return Path(engine_dir) / f"{graph}.{precision}.engine"


def _timing_cache_file(engine_dir: Path, key: EngineKey) -> Path:
    tag = re.sub(r"[^A-Za-z0-9]+", "-", f"{key.gpu_name}-sm{key.compute_capability}-trt{key.tensorrt_version}")
    return engine_dir / f"timing-{tag.strip('-')}.cache"


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, profile: LengthProfile,
                 workspace_bytes: int | None = None, timing_cache: str | Path | None = None,
                 axes: Mapping[str, Sequence[int | str]] | None = None) -> None:
    """Parse one ONNX graph into a strongly typed network (its tensors keep the graph's types: fp16 where an
    fp16 export has them), build a serialized engine with ``profile`` over every dynamic axis, write it.

    ``axes``: the manifest's input shapes (:func:`actfusion_model.export_manifest.input_axes`), naming which dynamic
    axis is the sample axis; without it every dynamic axis is a time axis."""
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))  # explicit batch: the only kind since 10.0
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    opt = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = tuple(tensor.shape)
        if any(d < 0 for d in dims):
            names = (axes or {}).get(tensor.name, [-1] * len(dims))
            opt.set_shape(tensor.name, *profile.shapes(dims, names))
    config.add_optimization_profile(opt)
    cache_bytes = b""
    if timing_cache is not None and Path(timing_cache).is_file():
        cache_bytes = Path(timing_cache).read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    if timing_cache is not None:
        atomic_write_bytes(timing_cache, bytes(memoryview(cache.serialize())))  # updated by the build


def build_engines(onnx_dir: str | Path, engine_dir: str | Path, *, profile: LengthProfile,
                  device: str | torch.device = "cuda", force: bool = False, allow_gpu_change: bool = False,
                  build_missing: bool = True, workspace_bytes: int | None = None) -> dict[str, tuple[Path, str]]:
    """Make sure an up-to-date engine exists for each exported graph; ``{graph: (path, 'reused'|'built')}``.

    The engines' precision is the export's (:func:`actfusion_model.export_manifest.export_precision`); it is
    in their file names and cache keys."""
    trt = import_tensorrt()
    onnx_dir, engine_dir = Path(onnx_dir), Path(engine_dir)
    try:
        manifest = read_manifest(onnx_dir)  # verifies every graph's sha256
        precision = export_precision(manifest)
    except ExportError as err:
        raise BackendError(str(err)) from None
    gpu_name, capability = gpu_identity(device)
    engine_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str]] = {}
    batch = profile.max_samples > 1
    if batch and not samples_batched(manifest):
        raise BackendError(f"{onnx_dir}: this export has no {BATCH_GRAPH} graph (max_samples "
                           f"{profile.max_samples} asked for); re-export with this version of actfusion-export")
    for graph in GRAPHS + ((BATCH_GRAPH,) if batch else ()):
        entry = graph_entries(manifest)[graph]
        samples = (profile.opt_samples, profile.max_samples) if graph == BATCH_GRAPH else (1, 1)
        key = EngineKey(onnx_sha256=entry["sha256"], tensorrt_version=str(trt.__version__), gpu_name=gpu_name,
                        compute_capability=capability, min_length=profile.min_length,
                        opt_length=profile.opt_length, max_length=profile.max_length, fp16=precision == "fp16",
                        opt_samples=samples[0], max_samples=samples[1])
        onnx_path = onnx_dir / entry["file"]
        cache_file = _timing_cache_file(engine_dir, key)

        def build(path: Path, onnx_path: Path = onnx_path, cache_file: Path = cache_file,
                  axes: Mapping[str, Sequence[int | str]] = input_axes(manifest, graph)) -> None:
            _LOG.info("building TensorRT engine %s from %s", path, onnx_path)
            build_engine(onnx_path, path, profile=profile, workspace_bytes=workspace_bytes,
                         timing_cache=cache_file, axes=axes)

        out[graph] = ensure_engine(engine_file(engine_dir, graph, precision), key, build, force=force,
                                   allow_gpu_change=allow_gpu_change, may_build=build_missing)
    return out


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
             trt.bool: torch.bool, trt.int8: torch.int8}
    if hasattr(trt, "int64"):
        table[trt.int64] = torch.int64
    if hasattr(trt, "bfloat16"):
        table[trt.bfloat16] = torch.bfloat16
    if dtype not in table:
        raise BackendError(f"TensorRT tensor dtype {dtype} has no torch equivalent here")
    return table[dtype]


class _Engine:
    """One deserialized engine and its execution context; runs on torch CUDA tensors."""

    def __init__(self, trt: Any, runtime: tensorrt.Runtime, path: Path, device: torch.device) -> None:
        self.path = path
        self.engine: tensorrt.ICudaEngine = runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BackendError(f"TensorRT could not deserialize {path} (built by another TensorRT version?)")
        self.context: tensorrt.IExecutionContext = self.engine.create_execution_context()
        self.device = device
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, torch.dtype] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
            self.dtypes[name] = _torch_dtype(trt, self.engine.get_tensor_dtype(name))

    def run(self, feeds: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keep = []
        for name in self.inputs:
            tensor = feeds[name].to(self.device, self.dtypes[name]).contiguous()
            keep.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f"{self.path.name}: input {name} shape {tuple(tensor.shape)} is outside the "
                                   f"engine's optimization profile")
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            outputs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            self.context.set_tensor_address(name, outputs[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError(f"{self.path.name}: execute_async_v3 failed")
        return outputs  # inputs in `keep` are freed after enqueue; torch's allocator orders reuse on this stream


class TensorRTBackend:
    """TensorRT engines (encoder, decoder_condition, denoise_step; denoise_step_batch when
    ``profile.max_samples > 1``) from one ONNX export.

    Engines live in ``engine_dir`` (default ``<onnx_dir>/tensorrt``) and are (re)built as
    :func:`build_engines` decides; ``build=False`` refuses to build (use ``actfusion-build-engine``).
    Sequences longer than ``profile.max_length`` (or shorter than the minimum) are refused. The engines'
    precision is the export's (``precision``): point ``onnx_dir`` at an ``actfusion-export --precision fp16``
    directory for fp16 engines.
    """

    name = "tensorrt"

    def __init__(self, onnx_dir: str | Path, *, engine_dir: str | Path | None = None,
                 device: str | torch.device = "cuda", profile: LengthProfile | None = None,
                 build: bool = True, allow_gpu_change: bool = False, workspace_bytes: int | None = None) -> None:
        trt = import_tensorrt()
        self.device = torch.device(device)
        if self.device.type != "cuda":
            raise BackendError(f"the tensorrt backend runs on CUDA devices only, got {self.device}")
        self.onnx_dir = Path(onnx_dir)
        self.engine_dir = Path(engine_dir) if engine_dir is not None else self.onnx_dir / "tensorrt"
        self.profile = profile or LengthProfile()
        try:
            manifest = read_manifest(self.onnx_dir)
            self.config = model_config_from_dict(manifest["config"])
            self.precision = export_precision(manifest)
        except (ExportError, ConfigError, KeyError) as err:
            raise BackendError(f"{self.onnx_dir}: {err}") from None
        self.class_names = [str(n) for n in manifest.get("class_names", [])]
        try:
            self.engines_built = build_engines(self.onnx_dir, self.engine_dir, profile=self.profile,
                                               device=self.device, allow_gpu_change=allow_gpu_change,
                                               build_missing=build, workspace_bytes=workspace_bytes)
        except EngineMismatchError as err:
            raise BackendError(str(err)) from None
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        with torch.cuda.device(self.device):
            self._engines = {g: _Engine(trt, self._runtime, path, self.device)
                             for g, (path, _) in self.engines_built.items()}

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = int(features.shape[-1])
        if not self.profile.contains(length):
            raise BackendError(f"sequence length {length} is outside the engines' profile "
                               f"[{self.profile.min_length}, {self.profile.max_length}]; rebuild with a wider "
                               f"--min-length/--max-length or cap the horizon")
        out = self._engines["encoder"].run({"features": features, "frame_mask": frame_mask.to(torch.bool)})
        return out["logits"].float(), out["condition"]

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> dict[str, torch.Tensor]:
        if not 1 <= num_samples <= self.profile.max_samples:
            raise BackendError(f"{num_samples} samples per forecast, but the engines' profile allows 1 to "
                               f"{self.profile.max_samples} (build with a larger max_samples)")
        return self._engines["decoder_condition"].run({"condition": condition})

    def denoise(self, state: dict[str, torch.Tensor], t: int, x01: torch.Tensor) -> torch.Tensor:
        feeds = dict(state)
        feeds["timestep"] = torch.full((1,), int(t), dtype=torch.int64, device=self.device)
        feeds["x01"] = x01
        engine = self._engines["denoise_step" if x01.shape[0] == 1 else BATCH_GRAPH]
        return engine.run(feeds)["logits"].float()

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def details(self) -> dict[str, Any]:
        return {"engine_dir": str(self.engine_dir), "precision": self.precision,
                "profile": [self.profile.min_length, self.profile.opt_length, self.profile.max_length],
                "samples": [self.profile.opt_samples, self.profile.max_samples],
                "engines": {g: action for g, (_, action) in self.engines_built.items()}}
