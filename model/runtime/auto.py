"""``backend: auto``: the fastest path this machine has for a checkpoint, and why it was chosen.

    choice = choose_backend("model.pt")                # or an ActFusion model; cache_dir=..., device=...
    print(choice.reason)                               # "onnxruntime on the CPU: ..."
    out = forecast(choice.backend, observed_features)

The checkpoint's ONNX graphs are exported once (:func:`cached_export`): into a directory named by the model's
content hash and the export options, written to a temporary directory and renamed into place (so a reader never
sees half an export, and two processes racing both end with one), verified on reuse (the manifest's sha256 of
every graph) and reused across restarts. Then :func:`plan` lists what to try, fastest first:

- a CUDA GPU (``torch.cuda.is_available()``): TensorRT engines from the export (the ``tensorrt`` package is
  importable; engines cached beside the export), else ONNX Runtime's CUDA (or TensorRT) provider (an
  onnxruntime build that offers one), else eager torch on CUDA;
- then, and on a machine without one: ONNX Runtime on the CPU (measured 298 ms against 1836 ms for eager
  torch per 50salads T = 1024 tick on the 2-core CPU of issue 20), else eager torch on the CPU.

A candidate that fails to start (a TensorRT build error, a provider that does not start) is reported in the
reason and the next one is tried. ``device="cpu"`` restricts the plan to the CPU, ``"cuda[:N]"`` to that GPU
(then the CPU candidates are not tried). Eager torch stays available by name (backend ``torch``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from actfusion_model.config import config_to_dict
from actfusion_model.export_manifest import FORMAT, MANIFEST, PRECISIONS, ExportError, read_manifest
from actfusion_model.forecast import Backend
from actfusion_model.network import ActFusion
from actfusion_model.runtime.registry import BackendError, load_backend

_LOG = logging.getLogger(__name__)

#: The graphs' example (tracing) length and the verification length of a cached export.
EXPORT_LENGTH, VERIFY_LENGTH = 64, 97
_GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


@dataclass(frozen=True)
class Machine:
    """What :func:`plan` decides from: a CUDA GPU for torch, the TensorRT version importable (None: none), and
    whether onnxruntime imports and which providers it offers."""

    cuda: bool
    tensorrt: str | None
    onnxruntime: bool
    ort_providers: tuple[str, ...] = ()

    @classmethod
    def probe(cls) -> "Machine":
        """This machine (imports tensorrt and onnxruntime if they are installed)."""
        try:
            import tensorrt

            trt_version: str | None = str(tensorrt.__version__)
        except ImportError:
            trt_version = None
        try:
            import onnxruntime

            has_ort, providers = True, tuple(onnxruntime.get_available_providers())
        except ImportError:
            has_ort, providers = False, ()
        return cls(torch.cuda.is_available(), trt_version, has_ort, providers)


@dataclass(frozen=True)
class Candidate:
    """One path to try: a registered backend on a device, and why it is on the list."""

    backend: str
    device: str
    why: str


@dataclass
class AutoChoice:
    """The backend :func:`choose_backend` started, and how it came to be."""

    backend: Backend
    kind: str  # the registered backend it is: tensorrt, onnxruntime or torch
    device: str
    reason: str
    export_dir: Path | None
    exported: bool  # True when this call exported the graphs, False when it reused them (or needed none)

    def summary(self) -> dict[str, Any]:
        """JSON-able, for logs and /diagnostics."""
        return {"chosen": self.kind, "device": self.device, "reason": self.reason,
                "export_dir": str(self.export_dir) if self.export_dir else None, "exported": self.exported}


def default_cache_dir() -> Path:
    """``$ACTFUSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/actfusion_ros`` (``~/.cache/actfusion_ros``), + exports."""
    root = os.environ.get("ACTFUSION_CACHE_DIR")
    if root:
        return Path(root) / "exports"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "actfusion_ros" / "exports"


def model_digest(model: ActFusion, class_names: Sequence[str]) -> str:
    """sha256 of what the graphs are made of: the model config, the class names and every weight (name, dtype,
    shape, bytes), so a checkpoint file and the model loaded from it have the same digest."""
    h = hashlib.sha256()
    h.update(json.dumps({"config": config_to_dict(model.cfg), "class_names": list(class_names)},
                        sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.numpy().tobytes() if value.dtype != torch.bfloat16 else value.float().numpy().tobytes())
    return h.hexdigest()


def export_key(digest: str, *, precision: str, opset: int, length: int) -> str:
    """The cache key of an export: model digest + export options + manifest format."""
    options = {"model": digest, "precision": precision, "opset": opset, "length": length, "format": FORMAT}
    return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:20]


def cached_export(model: ActFusion, class_names: Sequence[str], cache_dir: str | Path | None = None, *,
                  precision: str = "fp32", opset: int | None = None,
                  source: dict[str, Any] | None = None) -> tuple[Path, bool]:
    """``(export directory, exported now?)``: the graphs of ``model`` in ``precision``, exported once.

    The directory ``<cache_dir>/<key>`` (:func:`export_key`) is reused when its manifest reads back with every
    graph's sha256 intact; otherwise the export is written to a temporary directory beside it and renamed into
    place (an unusable old one is removed first). ``cache_dir``: default :func:`default_cache_dir`.
    """
    from actfusion_model.export import DEFAULT_OPSET, export_onnx

    if precision not in PRECISIONS:
        raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    opset = DEFAULT_OPSET if opset is None else int(opset)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    digest = model_digest(model, class_names)
    final = cache / export_key(digest, precision=precision, opset=opset, length=EXPORT_LENGTH)
    if (final / MANIFEST).is_file():
        try:
            read_manifest(final)
            return final, False
        except ExportError as err:
            _LOG.warning("cached export %s is unusable (%s); exporting again", final, err)
            shutil.rmtree(final, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=cache))
    try:
        export_onnx(model, staging, class_names=list(class_names), opset=opset, length=EXPORT_LENGTH,
                    verify_length=VERIFY_LENGTH, precision=precision,
                    source={**(source or {}), "model_sha256": digest})
        try:
            os.rename(staging, final)
        except OSError:  # another process renamed its export into place first: use that one
            if not (final / MANIFEST).is_file():
                raise
            shutil.rmtree(staging, ignore_errors=True)
            return final, False
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _LOG.info("exported %s graphs of model %s to %s", precision, digest[:12], final)
    return final, True


def plan(machine: Machine, device: str = "auto") -> list[Candidate]:
    """The candidates to try in order, fastest first (module docstring); ``device``: auto, cpu or cuda[:N]."""
    kind = str(device).split(":", 1)[0]
    if kind not in ("auto", "cpu", "cuda"):
        raise BackendError(f"backend auto: device must be auto, cpu or cuda[:N], got {device!r}")
    gpu = "cuda" if kind == "auto" else str(device)
    out: list[Candidate] = []
    if kind in ("auto", "cuda"):
        if not machine.cuda:
            if kind == "cuda":
                raise BackendError(f"backend auto: device {device} asked for, but torch sees no CUDA GPU")
        else:
            if machine.tensorrt is not None and machine.onnxruntime:
                out.append(Candidate("tensorrt", gpu, f"a CUDA GPU and TensorRT {machine.tensorrt}"))
            elif machine.tensorrt is not None:
                out.append(Candidate("tensorrt", gpu, f"a CUDA GPU and TensorRT {machine.tensorrt} "
                                                      "(onnxruntime, which exports the graphs, is missing)"))
            ort_gpu = [p for p in _GPU_PROVIDERS if p in machine.ort_providers]
            if ort_gpu:
                out.append(Candidate("onnxruntime", gpu, f"a CUDA GPU and onnxruntime's {ort_gpu[0]}"))
            out.append(Candidate("torch", gpu, "a CUDA GPU (eager torch)"))
    if kind in ("auto", "cpu"):
        why = "no CUDA GPU" if not machine.cuda and kind == "auto" else f"device {device}"
        if machine.onnxruntime:
            out.append(Candidate("onnxruntime", "cpu", f"{why}; onnxruntime runs the exported graphs on the CPU "
                                                      f"about 6x faster than eager torch"))
        out.append(Candidate("torch", "cpu", f"{why}; onnxruntime is not installed" if not machine.onnxruntime
                             else f"{why}; the faster paths failed"))
    return out


def choose_backend(source: str | Path | ActFusion, *, device: str | torch.device | None = "auto",
                   class_names: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                   precision: str = "fp32", threads: int | None = None, sample_workers: int = 1,
                   engine_dir: str | Path | None = None, machine: Machine | None = None,
                   loader: Callable[..., Backend] = load_backend) -> AutoChoice:
    """Start the fastest backend for ``source`` (a checkpoint path or an ActFusion model) that this machine
    has; :class:`AutoChoice` says which and why (module docstring).

    ``cache_dir``: where exports are cached (:func:`cached_export`). ``precision``: the export's (fp32 or
    fp16; the torch candidates run fp32). ``threads``: ONNX Runtime intra-op threads on the CPU (None: its
    ``auto``), ``sample_workers``: its concurrent sample chunks; ``engine_dir``: TensorRT engine cache
    (default inside the export). ``machine``: what to decide from (default :meth:`Machine.probe`).
    """
    model, names, source_info = _model_of(source, class_names)
    machine = machine or Machine.probe()
    candidates = plan(machine, "auto" if device is None else str(device))
    failures: list[str] = []
    export: tuple[Path, bool] | None = None
    for candidate in candidates:
        try:
            if candidate.backend == "torch":
                backend = loader("torch", model, device=candidate.device, class_names=names)
                exported = False
                export_dir = None
            else:
                if export is None:
                    export = cached_export(model, names, cache_dir, precision=precision, source=source_info)
                export_dir, exported = export
                options: dict[str, Any] = {}
                if candidate.backend == "onnxruntime":
                    options = {"sample_workers": sample_workers}
                    if threads:
                        options["intra_op_threads"] = int(threads)
                elif engine_dir is not None:
                    options = {"engine_dir": engine_dir}
                backend = loader(candidate.backend, export_dir, device=candidate.device, **options)
                provider = getattr(backend, "provider", None)
                if candidate.device != "cpu" and provider is not None and provider not in _GPU_PROVIDERS:
                    raise BackendError(f"its GPU providers did not start (it got {provider})")
        except Exception as err:  # any failure to start moves on to the next candidate, and is reported
            failures.append(f"{candidate.backend} on {candidate.device} failed: {type(err).__name__}: {err}")
            _LOG.warning("backend auto: %s", failures[-1])
            continue
        reason = f"{candidate.backend} on {candidate.device}: {candidate.why}"
        if export_dir is not None:
            reason += f"; graphs {'exported to' if exported else 'reused from'} {export_dir}"
        if failures:
            reason += " (after: " + "; ".join(failures) + ")"
        choice = AutoChoice(backend, candidate.backend, candidate.device, reason, export_dir, exported)
        _LOG.info("backend auto: %s", reason)
        return choice
    raise BackendError("backend auto: no backend started: " + "; ".join(failures))


def load_auto_backend(source: str | Path | ActFusion, *, device: str | torch.device | None = "auto",
                      class_names: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                      precision: str = "fp32", threads: int | None = None, sample_workers: int = 1,
                      engine_dir: str | Path | None = None) -> Backend:
    """The registry's loader of ``auto``: :func:`choose_backend`'s backend, carrying the choice as its
    ``auto_choice`` attribute (:func:`actfusion_model.runtime.describe` reports it)."""
    choice = choose_backend(source, device=device, class_names=class_names, cache_dir=cache_dir,
                            precision=precision, threads=threads, sample_workers=sample_workers,
                            engine_dir=engine_dir)
    choice.backend.auto_choice = choice  # type: ignore[attr-defined]
    return choice.backend


def _model_of(source: str | Path | ActFusion, class_names: Sequence[str] | None
              ) -> tuple[ActFusion, list[str], dict[str, Any]]:
    if isinstance(source, ActFusion):
        names = list(class_names) if class_names is not None else \
            [f"class_{i}" for i in range(source.cfg.num_classes)]
        return source.eval(), names, {}
    from actfusion_model.checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(source)
    except CheckpointError as err:
        raise BackendError(str(err)) from None
    names = list(class_names) if class_names is not None else list(ckpt.class_names)
    return ckpt.model.eval(), names, {"checkpoint": str(Path(source).resolve())}
