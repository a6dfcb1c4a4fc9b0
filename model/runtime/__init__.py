"""Inference backends behind one small interface, and the one forecast function they share.

>>> backend = load_backend("onnxruntime", "exports/50salads", intra_op_threads=2)
>>> out = forecast(backend, observed_features, generator=torch.Generator().manual_seed(0))

Backends: ``torch`` (checkpoint or model; CPU/CUDA), ``onnxruntime`` (directory written by
``actfusion-export``), ``tensorrt`` (same directory; engines built and cached on first use or with
``actfusion-build-engine``). Which backends exist, what each runs, its devices and options: one entry each in
:mod:`actfusion_model.runtime.registry`, which imports a backend's module only when it is loaded, so optional
packages (onnxruntime, tensorrt) are only needed by the backend that uses them. ``auto``
(:mod:`actfusion_model.runtime.auto`, entry :data:`~actfusion_model.runtime.registry.AUTO`) picks the fastest of
them for a checkpoint and says why, exporting its graphs once into a cache.
"""
from __future__ import annotations

from actfusion_model.forecast import Backend, Forecast, forecast, schedule_for
from actfusion_model.runtime.base import describe, step_agreement
from actfusion_model.runtime.registry import BACKENDS, BackendError, load_backend

__all__ = ["BACKENDS", "Backend", "BackendError", "Forecast", "describe", "forecast", "load_backend",
           "schedule_for", "step_agreement"]
