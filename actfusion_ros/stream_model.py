"""The model behind the stream: ActFusion as the stream's :class:`~actfusion_ros.stream_types.Forecaster`.

(The forecast itself, for every backend and caller, is :func:`actfusion_model.forecast.forecast`; this module
adapts it to the stream: seeds per tick, numpy in and out, the consensus of K samples.)

:class:`ModelForecaster` turns ``(observed (D, N_O) float32, horizon)`` into frame probabilities
``(C, N_O)`` and ``(C, H)`` (and, with ``num_samples`` K > 1, the K sampled futures ``(K, C, H)``: a
:class:`~actfusion_ros.stream_types.ForecastOutput`) by calling :func:`actfusion_model.runtime.forecast`, the
one forecast function that evaluation and replay also use, on a :mod:`actfusion_model.runtime` backend:
``torch`` (an ActFusion model; fp16 autocast, ``torch.compile`` and CUDA graphs through ``backend_options``),
``onnxruntime`` or ``tensorrt`` (an ``actfusion-export`` directory), or ``auto`` (an ActFusion model: the
fastest of them on this machine, its ONNX graphs exported once into a cache; :mod:`actfusion_model.runtime.auto`,
the choice and its reason kept as ``auto_choice``); what each backend runs and which settings it takes is its
entry in :mod:`actfusion_model.runtime.registry`. Device ``auto``: a CUDA GPU when torch sees one, else the CPU
(backend ``auto`` decides it itself). The stream applies the r*N^O rule and its
cap; the forecaster passes the resulting horizon on, and the forecast function checks it and the features once.

Randomness: the DDIM noise of tick ``k`` comes from a ``torch.Generator`` seeded with
:func:`tick_seed` ``(seed, k)``, so a replayed stream gives the same forecasts run after run, and the
ticks' noises are independent of each other. Nothing global is seeded.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from actfusion_model.checkpoint import Checkpoint, load_checkpoint
from actfusion_model.config import ModelConfig, model_config
from actfusion_model.consensus import consensus_probs
from actfusion_model.features.pipeline import FeaturePipeline, checkpoint_pipeline
from actfusion_model.network import ActFusion
from actfusion_model.runtime import Backend, BackendError, forecast, load_backend, schedule_for
from actfusion_model.runtime.registry import BACKENDS, CHECKPOINT, EXPORT, BackendEntry, backend_entry, backend_names
from actfusion_ros.stream_types import ForecastOutput

__all__ = ["BACKENDS", "ForecasterError", "ModelForecaster", "resolve_device", "tick_seed"]

DEFAULT_RANDOM_CLASSES = ("reach", "grasp", "pour", "stir", "place")


class ForecasterError(RuntimeError):
    """The forecaster cannot be built (unknown backend, missing runtime, mismatching sizes...)."""


def tick_seed(seed: int, tick: int) -> int:
    """A well-mixed 63-bit seed for tick ``tick`` of a run seeded ``seed`` (both ints >= 0)."""
    if seed < 0 or tick < 0:
        raise ValueError(f"seed and tick must be >= 0, got seed={seed}, tick={tick}")
    state = np.random.SeedSequence([int(seed), int(tick)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def resolve_device(device: Any, devices: Sequence[str] = ("cpu", "cuda")) -> Any:
    """``device`` for a backend that runs on the device kinds ``devices``: ``"auto"`` becomes ``"cuda"`` when
    torch sees a CUDA GPU (or the backend runs only there) and ``"cpu"`` otherwise, unless the backend takes
    ``auto`` itself (backend ``auto`` chooses its own device); any other value is returned as it is."""
    if str(device) != "auto" or "auto" in devices:
        return device
    if "cuda" in devices and (torch.cuda.is_available() or "cpu" not in devices):
        return "cuda"
    return "cpu"


def _check_device(device: str) -> torch.device:
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ForecasterError(f"device {device!r}: {err}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ForecasterError(f"device {device!r} requested but CUDA is not available "
                              f"(torch {torch.__version__}); use device 'cpu'")
    return dev


class ModelForecaster:
    """Forecaster protocol implementation over a :mod:`actfusion_model.runtime` backend (see the module docstring).

    Build it with :meth:`from_checkpoint` (torch), :meth:`from_export` (onnxruntime, tensorrt) or
    :meth:`random_weights`; or directly from an ActFusion ``model`` (torch) or a ready ``runtime`` backend.
    ``num_classes``, ``class_names`` and ``input_dim`` describe the model; ``runtime`` is the backend,
    ``model`` the ActFusion model of the torch backend (None otherwise); ``calls`` counts forecasts (the
    tick number used for seeding). Calls are serialised by a lock.

    Backend ``auto`` (a ``model`` and no ``runtime``; ``backend_options``: its entry's, e.g. ``threads``,
    ``sample_workers``, ``cache_dir``): the backend it chose runs the forecasts; ``backend`` and ``device``
    name that one, ``auto_choice`` (:class:`~actfusion_model.runtime.auto.AutoChoice`, None for the other
    backends) says why.
    """

    def __init__(self, model: ActFusion | None, class_names: Sequence[str], *, steps: int | None = None,
                 seed: int = 0, device: str = "cpu", backend: str = "torch", runtime: Backend | None = None,
                 backend_options: Mapping[str, Any] | None = None, num_samples: int = 1) -> None:
        entry = _entry(backend)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ForecasterError(f"seed must be an int >= 0, got {seed!r}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ForecasterError(f"num_samples must be an int >= 1, got {num_samples!r}")
        device = resolve_device(device, entry.devices)
        self.auto_choice: Any = None  # backend auto: its AutoChoice (what it chose, and why)
        if runtime is None:
            if entry.runs != CHECKPOINT:
                raise ForecasterError(f"backend {backend!r} needs an actfusion_model.runtime backend")
            if model is None:
                raise ForecasterError(f"backend {entry.name!r} needs an ActFusion model")
            if len(class_names) != model.cfg.num_classes:  # before a backend that may export the graphs
                raise ForecasterError(f"{len(class_names)} class names for a model with {model.cfg.num_classes} "
                                      f"classes")
            load_device = device if str(device) == "auto" else _check_device(device)
            options = {"class_names": list(class_names), **dict(backend_options or {})}
            runtime = _load(entry.name, model, device=load_device, **options)
            self.auto_choice = getattr(runtime, "auto_choice", None)
            if self.auto_choice is not None:  # the backend auto started: name that one
                entry, device = _entry(self.auto_choice.kind), self.auto_choice.device
        self.device = _check_device(device)
        cfg: ModelConfig = runtime.config
        if len(class_names) != cfg.num_classes:
            raise ForecasterError(f"{len(class_names)} class names for a model with {cfg.num_classes} classes")
        try:
            self.schedule = schedule_for(cfg, steps)  # built once, reused by every tick
        except ValueError as err:
            raise ForecasterError(str(err)) from None
        self.runtime = runtime
        self.model = getattr(runtime, "model", None) if entry.runs == CHECKPOINT else None
        self.config = cfg
        self.class_names = tuple(str(n) for n in class_names)
        # The feature pipeline the model was trained on, when its checkpoint records one.
        self.pipeline: FeaturePipeline | None = None
        self.num_classes = cfg.num_classes
        self.input_dim = cfg.input_dim
        self.steps = self.schedule.num_steps
        self.seed = int(seed)
        self.num_samples = int(num_samples)
        self.backend = entry.name
        self.calls = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path | Checkpoint, *, backend: str = "torch", device: str = "cpu",
                        steps: int | None = None, seed: int = 0, class_names: Sequence[str] | None = None,
                        expected_config: ModelConfig | None = None,
                        backend_options: Mapping[str, Any] | None = None,
                        num_samples: int = 1) -> "ModelForecaster":
        """A backend that runs a checkpoint (default ``torch``; ``auto``) over one
        (:func:`actfusion_model.checkpoint.load_checkpoint`; or a :class:`~actfusion_model.checkpoint.Checkpoint`
        already loaded).

        ``class_names`` replaces the names stored in the checkpoint (same count required).
        ``backend_options`` go to the backend, e.g. :class:`actfusion_model.runtime.torch_backend.TorchBackend`'s
        (``precision``, ``compile``, ``cuda_graphs``: CUDA only) or ``auto``'s (``threads``, ``sample_workers``,
        ``engine_dir``, ``cache_dir``; the export caches the checkpoint's class names, not ``class_names``).
        """
        ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path, expected_config=expected_config)
        names = list(class_names) if class_names is not None else list(ckpt.class_names)
        # the backend's own names are the checkpoint's (backend auto caches them with the export)
        options = {"class_names": list(ckpt.class_names), **dict(backend_options or {})}
        forecaster = cls(ckpt.model, names, steps=steps, seed=seed, device=device, backend=backend,
                         backend_options=options, num_samples=num_samples)
        forecaster.pipeline = checkpoint_pipeline(ckpt.metadata)
        return forecaster

    @classmethod
    def from_export(cls, onnx_dir: str | Path, *, backend: str = "onnxruntime", device: str | None = None,
                    steps: int | None = None, seed: int = 0, class_names: Sequence[str] | None = None,
                    engine_dir: str | Path | None = None, threads: int | None = None,
                    num_samples: int = 1, sample_workers: int = 1) -> "ModelForecaster":
        """A backend that runs an ``actfusion-export`` directory (``onnxruntime``, ``tensorrt``: its registry
        entry runs :data:`~actfusion_model.runtime.registry.EXPORT`).

        ``device``: default the entry's first device kind (cpu for onnxruntime, cuda for tensorrt; ``auto``:
        :func:`resolve_device`). The
        deployment settings go to the backends whose entry takes them (the entry names the option):
        ``engine_dir``: TensorRT engine cache (default ``<onnx_dir>/tensorrt``; engines are built there on
        first use); ``threads``: ONNX Runtime intra-op threads; ``sample_workers``: ONNX Runtime's concurrent
        sample chunks (:class:`~actfusion_model.runtime.onnx_backend.OnnxRuntimeBackend`). ``class_names``:
        replaces the export manifest's names.
        """
        entry = _entry(backend)
        if entry.runs != EXPORT:
            exports = [name for name in backend_names() if backend_entry(name).runs == EXPORT]
            raise ForecasterError(f"from_export serves {' and '.join(exports)}, not {backend!r}")
        device = resolve_device(device or entry.default_device, entry.devices)
        options = entry.options_from(threads=threads, engine_dir=engine_dir, sample_workers=sample_workers)
        try:
            runtime = load_backend(entry.name, Path(onnx_dir), device=device, **options)
        except (ImportError, OSError, ValueError, RuntimeError) as err:
            raise ForecasterError(f"backend {backend!r} could not be loaded from {onnx_dir}: {err}") from None
        names = list(class_names) if class_names is not None else list(getattr(runtime, "class_names", []))
        if not names:
            raise ForecasterError(f"{onnx_dir}: the export names no classes; give class_names")
        return cls(None, names, steps=steps, seed=seed, device=device, backend=entry.name, runtime=runtime,
                   num_samples=num_samples)

    @classmethod
    def random_weights(cls, *, input_dim: int, class_names: Sequence[str] = DEFAULT_RANDOM_CLASSES,
                       preset: str = "tiny", weight_seed: int = 0, steps: int | None = None,
                       seed: int = 0, device: str = "cpu", num_samples: int = 1) -> "ModelForecaster":
        """An untrained model of ``preset`` (default the few-thousand-parameter ``tiny``) for tests.

        Weights are drawn from a forked RNG seeded ``weight_seed``: deterministic, and the global
        torch RNG is left as it was.
        """
        cfg = model_config(preset, num_classes=len(class_names), input_dim=int(input_dim))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(weight_seed))
            model = ActFusion(cfg)
        return cls(model, class_names, steps=steps, seed=seed, device=device, num_samples=num_samples)

    # ------------------------------------------------------------------ inference
    def generator(self, tick: int) -> torch.Generator:
        """The CPU generator of tick ``tick`` (noise is drawn on the CPU for every device)."""
        return torch.Generator().manual_seed(tick_seed(self.seed, tick))

    def __call__(self, observed: np.ndarray, horizon: int) -> ForecastOutput:
        """Frame probabilities ``(C, N_O)`` and ``(C, horizon)`` float32 for ``observed (D, N_O)``.

        ``observed`` and ``horizon`` are checked by :func:`actfusion_model.runtime.forecast` (ValueError).
        With ``num_samples`` K > 1 one encoder pass feeds K DDIM samples: the probabilities returned are
        their per-frame consensus (:func:`actfusion_model.consensus.consensus_probs`), whose argmax is the
        per-frame mode, and ``future_samples`` holds the K futures ``(K, C, horizon)`` float32 (``None`` for
        K = 1). Each call returns its own arrays, so concurrent readers never see another tick's samples.
        """
        with self._lock:
            tick = self.calls
            self.calls += 1
            with torch.inference_mode():
                out = forecast(self.runtime, np.asarray(observed, dtype=np.float32), horizon=int(horizon),
                               schedule=self.schedule, generator=self.generator(tick),
                               num_samples=self.num_samples if self.num_samples > 1 else None)
        if self.num_samples == 1:
            return ForecastOutput(out.observed_probs.numpy(), out.future_probs.numpy(), None)
        future_samples = out.future_probs.numpy().astype(np.float32, copy=False)
        return ForecastOutput(consensus_probs(out.observed_probs.numpy()), consensus_probs(future_samples),
                              future_samples)

    def __repr__(self) -> str:
        return (f"ModelForecaster(backend={self.backend!r}, device={str(self.device)!r}, "
                f"classes={self.num_classes}, input_dim={self.input_dim}, steps={self.steps}, "
                f"seed={self.seed})")


def _entry(backend: str) -> BackendEntry:
    """The registry entry of ``backend``; :class:`ForecasterError` naming the registered ones."""
    try:
        return backend_entry(backend)
    except BackendError as err:
        raise ForecasterError(str(err)) from None


def _load(backend: str, source: Any, **options: Any) -> Backend:
    try:
        return load_backend(backend, source, **options)
    except BackendError as err:
        raise ForecasterError(str(err)) from None
