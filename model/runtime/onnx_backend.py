"""ONNX Runtime backend over the graphs written by ``actfusion-export`` (read through
:mod:`actfusion_model.export_manifest`): fp32 or fp16 exports alike (both have fp32 inputs and outputs).

Execution providers (``providers``): ``"auto"`` (default) takes, on a CUDA device, TensorRT, then CUDA, then
the CPU, whichever the installed onnxruntime offers (and whichever starts: ONNX Runtime itself moves on to the
next provider when one fails to start), and on ``device="cpu"`` the CPU; the provider it got is logged at
construction and in :meth:`OnnxRuntimeBackend.details`. A provider named explicitly (``"cuda"``,
``"tensorrt"``, ``"cpu"``, a full ``...ExecutionProvider`` name, or a list in order of preference) is
required: missing from this onnxruntime, or not the one a session got, it is refused in one line. This is the
GPU path that needs no TensorRT install: ``pip install onnxruntime-gpu`` and ``device="cuda"``.

The DDIM loop runs on CPU torch tensors (a few element-wise ops on (1, C, T)); with a GPU provider the
per-tick decoder terms stay on the GPU through IOBinding, so only ``x01`` and the logits cross the bus each step.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from actfusion_model.config import ConfigError, model_config_from_dict
from actfusion_model.export_manifest import (
    BATCH_GRAPH,
    SAMPLE_AXIS,
    TIME_AXIS,
    ExportError,
    export_precision,
    graph_entries,
    read_manifest,
)
from actfusion_model.runtime.registry import BackendError
from actfusion_model.torch_threads import process_threads, set_process_threads

_LOG = logging.getLogger(__name__)
_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_TENSORRT = "TensorrtExecutionProvider"
#: ``providers="auto"`` on a CUDA device: the first of these that this onnxruntime offers, then the next ones.
AUTO_GPU_ORDER = (_TENSORRT, _CUDA, _CPU)
#: Short names accepted for ``providers``.
PROVIDER_NAMES = {"tensorrt": _TENSORRT, "trt": _TENSORRT, "cuda": _CUDA, "cpu": _CPU}
_GPU_PROVIDERS = (_TENSORRT, _CUDA)


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise BackendError("the onnxruntime backend needs the onnxruntime package "
                           "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from err
    return onnxruntime


class OnnxRuntimeBackend:
    """ONNX Runtime sessions: encoder, decoder_condition, denoise_step (one sample) and, where the export
    has it, denoise_step_batch (K samples of one observation).

    ``intra_op_threads``: threads per operator; ``"auto"`` (default) picks 1 for narrow decoders
    (``dec_dim < 64``, e.g. 50salads: its step is ~800 small ops, and handing each to a second thread
    cost more than it saved on the 2-core CPU we measured) and otherwise the CPUs this process may use,
    as an explicit count (``0``, ORT's default, also pins its threads to cores, which was slower on a
    shared machine). ``spinning``: let idle pool threads busy-wait between ops
    (off by default: on a CPU shared with the camera driver, the feature extractor and torch's own
    OpenMP threads, spinning threads starved the others and doubled the tick). ``loop_threads``: torch
    intra-op threads of this process for the DDIM arithmetic :func:`actfusion_model.runtime.forecast` runs around the
    graphs (1: the (1, C, T) element-wise ops gain nothing from OpenMP, whose spinning workers slowed ORT
    down; None leaves torch's setting alone), set here at construction unless the process already chose a
    count at start-up (:mod:`actfusion_model.torch_threads`: never per forecast). ``verify_hashes``: refuse
    graph files that differ from the manifest.
    ``sample_chunk``: the most samples one ``denoise_step_batch`` call takes on the CPU provider (K samples
    go through it in chunks; a chunk of one uses ``denoise_step``); ``"auto"`` (default) keeps a chunk's
    activations well inside the L2 cache, ``max(1, CHUNK_FRAMES // T)`` samples of T frames (2 at T = 1024,
    8 at T = 256): at T = 1024 all 16 samples in one call cost 15.3x one sample per tick, calls of 1, 2 or 4
    samples 12.9-13.2x; at T = 256 calls of 8 or more were best (docs/sampling.md). ``None``: all K in one
    call. Every sample is computed on its own in the graph, so chunks give the same result.
    ``sample_workers``: how many of those chunks run at once, each call on its own thread (ONNX Runtime
    releases the GIL and runs concurrent calls on one session); 1 (default): one after the other. On 2 idle
    cores, 2 workers made K = 8 at T = 1024 cost 3.7x one sample per tick instead of 6.8x (K = 4: 2.0x
    instead of 3.5x), where two intra-op threads per call made it 7.9x (docs/sampling.md, "Cost of K
    samples"). Same result: the chunks are the same calls. The CUDA provider runs all K in one call.
    """

    #: ``sample_chunk="auto"``: samples x frames per call (measured at T = 256 and 1024, 50salads preset).
    CHUNK_FRAMES = 2048

    name = "onnxruntime"

    def __init__(self, onnx_dir: str | Path, *, device: str | torch.device = "cpu",
                 providers: str | Sequence[str] | None = "auto", intra_op_threads: int | str | None = "auto",
                 inter_op_threads: int = 1, spinning: bool = False, loop_threads: int | None = 1,
                 verify_hashes: bool = True, sample_chunk: int | str | None = "auto",
                 sample_workers: int = 1) -> None:
        ort = _import_ort()
        self.onnx_dir = Path(onnx_dir)
        try:
            self.manifest = read_manifest(self.onnx_dir, verify_hashes=verify_hashes)
            self.config = model_config_from_dict(self.manifest["config"])
        except (ExportError, ConfigError, KeyError) as err:
            raise BackendError(f"{self.onnx_dir}: {err}") from None
        self.class_names = [str(n) for n in self.manifest.get("class_names", [])]
        requested = torch.device(device)
        available = list(ort.get_available_providers())
        self.providers, forced = choose_providers(providers, requested, available, version=ort.__version__)
        self._cuda_id = (requested.index or 0) if requested.type == "cuda" else 0
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if intra_op_threads == "auto":
            intra_op_threads = 1 if self.config.dec_dim < 64 else _usable_cpus()
        opts.intra_op_num_threads = int(intra_op_threads or 0)
        opts.inter_op_num_threads = int(inter_op_threads)
        opts.log_severity_level = 3
        if not spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.intra_op_threads = intra_op_threads
        self.loop_threads = loop_threads
        self.sample_chunk = _checked_sample_chunk(sample_chunk)
        self.sample_workers = _checked_sample_workers(sample_workers)
        self._pool: ThreadPoolExecutor | None = None
        if process_threads() is None:  # the process chose no count at start-up (e.g. the node's num_threads)
            set_process_threads(loop_threads)
        self._sessions = {}
        self.precision = export_precision(self.manifest)
        for name, entry in graph_entries(self.manifest).items():
            path = self.onnx_dir / entry["file"]
            session_providers = [(p, self._provider_options(p, entry)) for p in self.providers]
            try:
                self._sessions[name] = ort.InferenceSession(str(path), opts, providers=session_providers)
            except Exception as err:  # onnxruntime raises its own exception types
                raise BackendError(f"{path}: ONNX Runtime cannot load it: {err}") from None
        got = {session.get_providers()[0] for session in self._sessions.values()}
        self.provider = self._sessions["encoder"].get_providers()[0]
        if forced and got != {self.providers[0]}:
            raise BackendError(f"onnxruntime providers: asked for {self.providers[0]}, the sessions got "
                               f"{', '.join(sorted(got))} (it failed to start; see ONNX Runtime's log)")
        self._cuda = self.provider in _GPU_PROVIDERS
        fallback = requested.type == "cuda" and not self._cuda
        (_LOG.warning if fallback else _LOG.info)(
            "onnxruntime %s: provider %s (%s; onnxruntime %s offers %s), %s graphs%s", self.onnx_dir, self.provider,
            "asked for" if forced else f"providers auto on {requested}", ort.__version__, ", ".join(available),
            self.precision, "; no GPU provider started, so it runs on the CPU" if fallback else "")
        self._term_names = [o.name for o in self._sessions["decoder_condition"].get_outputs()]
        self.batched_samples = BATCH_GRAPH in self._sessions
        self.device = torch.device("cpu")

    # -- Backend protocol -----------------------------------------------------------------
    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = frame_mask if frame_mask.dtype == torch.bool else frame_mask > 0.5
        logits, condition = self._sessions["encoder"].run(
            None, {"features": _numpy(features, np.float32), "frame_mask": _numpy(mask, np.bool_)})
        return torch.from_numpy(logits), torch.from_numpy(condition)

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> dict[str, Any]:
        if num_samples > 1 and not self.batched_samples:
            raise BackendError(f"{self.onnx_dir}: this export's denoise step takes one sample; re-export with "
                               f"this version of actfusion-export for {num_samples} samples per forecast")
        session = self._sessions["decoder_condition"]
        cond = _numpy(condition, np.float32)
        if not self._cuda:
            return dict(zip(self._term_names, session.run(None, {"condition": cond})))
        binding = session.io_binding()
        binding.bind_cpu_input("condition", cond)
        for name in self._term_names:
            binding.bind_output(name, "cuda", self._cuda_id)
        session.run_with_iobinding(binding)
        return dict(zip(self._term_names, binding.get_outputs()))

    def chunk_size(self, num_samples: int, length: int) -> int:
        """Samples per denoise call for a batch of ``num_samples`` of ``length`` frames (see ``sample_chunk``)."""
        if self._cuda or self.sample_chunk is None:
            return num_samples
        chunk = max(1, self.CHUNK_FRAMES // max(1, length)) if self.sample_chunk == "auto" else self.sample_chunk
        return min(num_samples, int(chunk))

    def denoise(self, state: dict[str, Any], t: int, x01: torch.Tensor) -> torch.Tensor:
        timestep = np.array([int(t)], dtype=np.int64)
        x = _numpy(x01, np.float32)
        if not self._cuda:
            chunk = self.chunk_size(x.shape[0], x.shape[2])

            def run(start: int) -> np.ndarray:
                part = x[start:start + chunk]  # rows of a C-contiguous array: contiguous
                session = self._sessions["denoise_step" if part.shape[0] == 1 else BATCH_GRAPH]
                return session.run(["logits"], {**state, "timestep": timestep, "x01": part})[0]

            starts = range(0, x.shape[0], chunk)
            if self.sample_workers > 1 and len(starts) > 1:
                parts = list(self._workers().map(run, starts))  # in order, whichever call ends first
            else:
                parts = [run(start) for start in starts]
            return torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))
        session = self._sessions["denoise_step" if x01.shape[0] == 1 else BATCH_GRAPH]
        binding = session.io_binding()
        for name, value in state.items():
            binding.bind_ortvalue_input(name, value)
        binding.bind_cpu_input("timestep", timestep)
        binding.bind_cpu_input("x01", x)
        binding.bind_output("logits", "cpu")
        session.run_with_iobinding(binding)
        return torch.from_numpy(binding.copy_outputs_to_cpu()[0])

    def _provider_options(self, provider: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Options of ``provider`` for one graph (``entry``: its manifest entry): the GPU to use and, for
        TensorRT, an engine cache beside the graphs (a restart reuses the engines ONNX Runtime built) and one
        optimization profile over the dynamic axes (:func:`tensorrt_profile_shapes`), so a growing sequence
        does not rebuild engines tick after tick."""
        if provider == _CUDA:
            return {"device_id": self._cuda_id}
        if provider == _TENSORRT:
            low, opt, high = tensorrt_profile_shapes(entry.get("inputs", []))
            return {"device_id": self._cuda_id, "trt_engine_cache_enable": True,
                    "trt_engine_cache_path": str(self.onnx_dir / "ort_tensorrt_cache"),
                    "trt_fp16_enable": self.precision == "fp16", "trt_profile_min_shapes": low,
                    "trt_profile_opt_shapes": opt, "trt_profile_max_shapes": high}
        return {}

    def _workers(self) -> ThreadPoolExecutor:
        """The threads of ``sample_workers`` (started on the first forecast of more than one chunk)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.sample_workers, thread_name_prefix="ort-samples")
        return self._pool

    def synchronize(self) -> None:
        """Every call returns host arrays, so there is nothing left in flight."""

    def details(self) -> dict[str, Any]:
        return {"provider": self.provider, "providers": self.providers, "precision": self.precision,
                "intra_op_threads": self.intra_op_threads,
                "loop_threads": self.loop_threads, "sample_chunk": self.sample_chunk,
                "sample_workers": self.sample_workers,
                "onnx_dir": str(self.onnx_dir)}


#: The optimization profile ONNX Runtime's TensorRT provider gets: (min, opt, max) of each dynamic axis.
TENSORRT_EP_PROFILE = {TIME_AXIS: (1, 1024, 8192), SAMPLE_AXIS: (1, 8, 16)}


def tensorrt_profile_shapes(inputs: Sequence[dict[str, Any]]) -> tuple[str, str, str]:
    """The ``trt_profile_{min,opt,max}_shapes`` strings (``name:1x19x1024,...``) of a graph's manifest inputs
    that have a dynamic axis; dynamic axes from :data:`TENSORRT_EP_PROFILE`."""
    out = []
    for i in range(3):
        parts = []
        for desc in inputs:
            if not any(isinstance(d, str) for d in desc["shape"]):
                continue  # a static input (the timestep) needs no profile
            dims = [TENSORRT_EP_PROFILE[d][i] if isinstance(d, str) else int(d) for d in desc["shape"]]
            parts.append(f"{desc['name']}:{'x'.join(map(str, dims))}")
        out.append(",".join(parts))
    return out[0], out[1], out[2]


def choose_providers(providers: str | Sequence[str] | None, device: torch.device, available: Sequence[str], *,
                     version: str = "") -> tuple[list[str], bool]:
    """(the providers to give ONNX Runtime, in order; whether they were named, i.e. required).

    ``"auto"`` / None: on a CUDA device :data:`AUTO_GPU_ORDER` filtered to ``available``, else the CPU. Names
    (:data:`PROVIDER_NAMES` or full provider names; a string or a list) must all be ``available``: else one
    :class:`BackendError` line naming what is missing and what this onnxruntime offers."""
    if providers is None or providers == "auto":
        order = AUTO_GPU_ORDER if device.type == "cuda" else (_CPU,)
        return [p for p in order if p in available] or [_CPU], False
    names = [providers] if isinstance(providers, str) else list(providers)
    if not names:
        raise BackendError("onnxruntime providers: an empty list; give 'auto' or provider names")
    wanted = [PROVIDER_NAMES.get(str(n).lower(), str(n)) for n in names]
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendError(f"onnxruntime provider {', '.join(missing)} is not available in this onnxruntime "
                           f"{version} (it offers {', '.join(available)}); install the onnxruntime build that "
                           f"has it (onnxruntime-gpu for CUDA and TensorRT) or use providers 'auto'")
    return wanted, True


def _checked_sample_workers(value: Any) -> int:
    """``sample_workers`` as given if it is an int >= 1; else :class:`BackendError`."""
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise BackendError(f"sample_workers must be an int >= 1, got {value!r}")
    return value


def _checked_sample_chunk(value: Any) -> int | str | None:
    """``sample_chunk`` as given if it is ``"auto"``, ``None`` or an int >= 1; else :class:`BackendError`."""
    is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not (value is None or value == "auto" or is_count):
        raise BackendError(f"sample_chunk must be 'auto', None or an int >= 1, got {value!r}")
    return value


def _usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _numpy(tensor: torch.Tensor | np.ndarray, dtype: Any) -> np.ndarray:
    if isinstance(tensor, torch.Tensor):
        tensor = tensor.detach().cpu().numpy()
    return np.ascontiguousarray(tensor, dtype=dtype)
