"""Inference backends behind one small interface, and the one forecast function they share.

>>> backend = load_backend("onnxruntime", "exports/50salads", intra_op_threads=2)
>>> out = forecast(backend, observed_features, generator=torch.Generator().manual_seed(0))

Backends: ``torch`` (checkpoint or model; CPU/CUDA), ``onnxruntime`` (directory written by
``actfusion-export``), ``tensorrt`` (same directory; engines built and cached on first use or with
``actfusion-build-engine``). Backend modules are imported lazily, so optional packages (onnxruntime,
tensorrt) are only needed by the backend that uses them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from actfusion_model.backend_names import BACKENDS, canonical_backend
from actfusion_model.forecast import Backend, Forecast, forecast, schedule_for
from actfusion_model.runtime.base import BackendError, describe, step_agreement


def load_backend(kind: str, source: str | Path | Any, *, device: str | torch.device | None = None,
                 class_names: Sequence[str] | None = None, **options: Any) -> Backend:
    """Create a backend.

    ``kind``: 'torch' (``source``: checkpoint path or ActFusion model; default device 'cpu'),
    'onnxruntime' (``source``: export directory; default device 'cpu'), or 'tensorrt' (``source``:
    export directory; default device 'cuda'). ``options`` go to the backend's constructor, e.g.
    ``precision``/``compile``/``cuda_graphs`` (torch), ``intra_op_threads``/``sample_chunk``/``sample_workers``
    (onnxruntime),
    ``engine_dir``/``profile``/``fp16`` (tensorrt).
    """
    resolved = canonical_backend(kind)
    if resolved is None:
        raise BackendError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
    if resolved == "torch":
        from actfusion_model.runtime.torch_backend import load_torch_backend

        return load_torch_backend(source, device=device or "cpu", class_names=class_names, **options)
    if class_names is not None:
        raise BackendError(f"the {resolved} backend takes class names from the export's manifest")
    if resolved == "onnxruntime":
        from actfusion_model.runtime.onnx_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(source, device=device or "cpu", **options)
    from actfusion_model.runtime.tensorrt_backend import TensorRTBackend

    return TensorRTBackend(source, device=device or "cuda", **options)


__all__ = ["BACKENDS", "Backend", "BackendError", "Forecast", "describe", "forecast", "load_backend",
           "schedule_for", "step_agreement"]
