"""ActFusion behind the stream's :class:`~actfusion_ros.stream.Forecaster` protocol.

:class:`ModelForecaster` turns ``(observed (D, N_O) float32, horizon)`` into frame probabilities
``(C, N_O)`` and ``(C, H)`` with one of three backends:

* ``torch``: :meth:`model.network.ActFusion.anticipate` with ``horizon`` given explicitly (the stream
  applies the r*N^O rule and its cap; the model only executes it).
* ``onnxruntime`` / ``tensorrt``: ``model.runtime.load_backend`` + ``model.runtime.forecast``,
  imported only when asked for.

Randomness: the DDIM noise of tick ``k`` comes from a ``torch.Generator`` seeded with
:func:`tick_seed` ``(seed, k)``, so a replayed stream gives the same forecasts run after run, and the
ticks' noises are independent of each other. Nothing global is seeded.
"""
from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from model.checkpoint import load_checkpoint
from model.config import ModelConfig, model_config
from model.network import ActFusion

__all__ = ["BACKENDS", "ForecasterError", "ModelForecaster", "tick_seed"]

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_RANDOM_CLASSES = ("reach", "grasp", "pour", "stir", "place")


class ForecasterError(RuntimeError):
    """The forecaster cannot be built (unknown backend, missing runtime, mismatching sizes...)."""


def tick_seed(seed: int, tick: int) -> int:
    """A well-mixed 63-bit seed for tick ``tick`` of a run seeded ``seed`` (both ints >= 0)."""
    if seed < 0 or tick < 0:
        raise ValueError(f"seed and tick must be >= 0, got seed={seed}, tick={tick}")
    state = np.random.SeedSequence([int(seed), int(tick)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _check_device(device: str) -> torch.device:
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ForecasterError(f"device {device!r} requested but CUDA is not available "
                              f"(torch {torch.__version__}); use device 'cpu'")
    return dev


class ModelForecaster:
    """Forecaster protocol implementation over an ActFusion model (see the module docstring).

    Build it with :meth:`from_checkpoint` or :meth:`random_weights`. ``num_classes``,
    ``class_names`` and ``input_dim`` describe the model; ``calls`` counts forecasts (the tick
    number used for seeding). Calls are serialised by an internal lock.
    """

    def __init__(self, model: ActFusion, class_names: Sequence[str], *, steps: int | None = None,
                 seed: int = 0, device: str = "cpu", backend: str = "torch",
                 runtime: Any = None) -> None:
        if backend not in BACKENDS:
            raise ForecasterError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        cfg: ModelConfig = model.cfg
        if len(class_names) != cfg.num_classes:
            raise ForecasterError(f"{len(class_names)} class names for a model with {cfg.num_classes} classes")
        if steps is not None and not 1 <= int(steps) <= cfg.num_timesteps:
            raise ForecasterError(f"ddim steps must be in [1, {cfg.num_timesteps}], got {steps}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ForecasterError(f"seed must be an int >= 0, got {seed!r}")
        self.device = _check_device(device)
        self.model = model.to(self.device).eval()
        self.config = cfg
        self.class_names = tuple(str(n) for n in class_names)
        self.num_classes = cfg.num_classes
        self.input_dim = cfg.input_dim
        self.steps = int(steps) if steps else cfg.ddim_steps
        self.seed = int(seed)
        self.backend = backend
        self._runtime = runtime
        self.calls = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | Path, *, backend: str = "torch", device: str = "cpu",
                        steps: int | None = None, seed: int = 0, engine_dir: str | Path | None = None,
                        expected_config: ModelConfig | None = None) -> "ModelForecaster":
        """Load ``path`` (:func:`model.checkpoint.load_checkpoint`) and prepare ``backend``.

        ``engine_dir``: the exported ONNX model / TensorRT engines for those backends.
        """
        if backend not in BACKENDS:
            raise ForecasterError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        ckpt = load_checkpoint(path, expected_config=expected_config)
        runtime = None
        if backend != "torch":
            runtime = _load_runtime(backend, checkpoint=Path(path), model=ckpt.model,
                                    engine_dir=engine_dir, device=device)
        return cls(ckpt.model, ckpt.class_names, steps=steps, seed=seed, device=device,
                   backend=backend, runtime=runtime)

    @classmethod
    def random_weights(cls, *, input_dim: int, class_names: Sequence[str] = DEFAULT_RANDOM_CLASSES,
                       preset: str = "tiny", weight_seed: int = 0, steps: int | None = None,
                       seed: int = 0, device: str = "cpu") -> "ModelForecaster":
        """An untrained model of ``preset`` (default the few-thousand-parameter ``tiny``) for tests.

        Weights are drawn from a forked RNG seeded ``weight_seed``: deterministic, and the global
        torch RNG is left as it was.
        """
        cfg = model_config(preset, num_classes=len(class_names), input_dim=int(input_dim))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(weight_seed))
            model = ActFusion(cfg)
        return cls(model, class_names, steps=steps, seed=seed, device=device)

    # ------------------------------------------------------------------ inference
    def generator(self, tick: int) -> torch.Generator:
        """The CPU generator of tick ``tick`` (noise is drawn on the CPU for every device)."""
        return torch.Generator().manual_seed(tick_seed(self.seed, tick))

    def __call__(self, observed: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame probabilities ``(C, N_O)`` and ``(C, horizon)`` float32 for ``observed (D, N_O)``."""
        obs = np.asarray(observed, dtype=np.float32)
        if obs.ndim != 2 or obs.shape[0] != self.input_dim or obs.shape[1] < 1:
            raise ValueError(f"observed must be ({self.input_dim}, N>=1) float32, got {obs.shape}")
        horizon = int(horizon)
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        with self._lock:
            tick = self.calls
            self.calls += 1
            gen = self.generator(tick)
            if self.backend == "torch":
                return self._torch(obs, horizon, gen)
            return self._runtime_forecast(obs, horizon, gen)

    def _torch(self, obs: np.ndarray, horizon: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(obs)).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.model.anticipate(x, horizon=horizon, steps=self.steps, generator=gen)
        return (out.observed_probs[0].float().cpu().numpy(), out.future_probs[0].float().cpu().numpy())

    def _runtime_forecast(self, obs: np.ndarray, horizon: int,
                          gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        runtime_mod = _runtime_module(self.backend)
        out = runtime_mod.forecast(self._runtime, torch.from_numpy(np.ascontiguousarray(obs)).unsqueeze(0),
                                   horizon=horizon, steps=self.steps, generator=gen)
        obs_p, fut_p = _split_output(out)
        return _to_numpy(obs_p), _to_numpy(fut_p)

    def __repr__(self) -> str:
        return (f"ModelForecaster(backend={self.backend!r}, device={str(self.device)!r}, "
                f"classes={self.num_classes}, input_dim={self.input_dim}, steps={self.steps}, "
                f"seed={self.seed})")


# ---------------------------------------------------------------------- model.runtime glue
def _runtime_module(backend: str) -> Any:
    try:
        return importlib.import_module("model.runtime")
    except ModuleNotFoundError as err:
        if err.name not in ("model.runtime", "model"):
            raise ForecasterError(f"backend {backend!r}: model.runtime needs a package that is not "
                                  f"installed: {err}") from None
        raise ForecasterError(f"backend {backend!r} needs model.runtime, which this installation does "
                              "not have yet; use backend 'torch'") from None


def _load_runtime(backend: str, *, checkpoint: Path, model: ActFusion, engine_dir: str | Path | None,
                  device: str) -> Any:
    runtime_mod = _runtime_module(backend)
    try:
        return runtime_mod.load_backend(backend, checkpoint=checkpoint, model=model,
                                        engine_dir=None if not engine_dir else Path(engine_dir),
                                        device=device)
    except (ImportError, OSError, ValueError, RuntimeError) as err:
        raise ForecasterError(f"backend {backend!r} could not be loaded: {err}") from err


def _split_output(out: Any) -> tuple[Any, Any]:
    if hasattr(out, "observed_probs") and hasattr(out, "future_probs"):
        return out.observed_probs, out.future_probs
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        return out[0], out[1]
    raise ForecasterError(f"model.runtime.forecast returned {type(out).__name__}; expected "
                          "(observed_probs, future_probs)")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float32)
    return x[0] if x.ndim == 3 else x
