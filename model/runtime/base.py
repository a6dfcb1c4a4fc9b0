"""The backend interface every inference backend implements (torch, ONNX Runtime, TensorRT).

A backend runs the network: ``encode`` once per forecast, ``prepare`` once per forecast (the decoder's
condition terms), ``denoise`` once per DDIM step over a batch of K samples. The forecasting loop that
drives them is :func:`model.runtime.loop.forecast`, the same for every backend and every caller.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch

from model.config import ModelConfig


class BackendError(RuntimeError):
    """A backend cannot be created or run (missing package or device, bad files, wrong shapes)."""


@runtime_checkable
class Backend(Protocol):
    """What :func:`model.runtime.loop.forecast` needs from an inference backend.

    The encoder runs on one observation (batch 1); the decoder on a batch of K noisy samples of it,
    its per-forecast condition terms broadcast along the batch. Tensors crossing this interface are
    torch tensors on ``device``; ``encode`` also accepts CPU tensors and moves them. ``state`` is
    backend-private (the decoder's condition terms).
    """

    name: str
    device: torch.device
    config: ModelConfig
    class_names: list[str]

    def encode(self, features: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``features (1, D, T) float32``, ``frame_mask (1, T) bool`` -> (logits (1, C, T), condition)."""
        ...

    def prepare(self, condition: torch.Tensor, num_samples: int = 1) -> Any:
        """Per-forecast decoder state from the encoder's condition (computed once, reused by every step)
        for ``denoise`` calls on batches of ``num_samples``."""
        ...

    def denoise(self, state: Any, t: int, x01: torch.Tensor) -> torch.Tensor:
        """One decoder pass at diffusion step ``t`` on K noisy labels in [0, 1] ``(K, C, T)`` -> x0 logits
        ``(K, C, T)``."""
        ...

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on CPU); used only for timing."""
        ...


def describe(backend: Backend) -> Mapping[str, Any]:
    """A small JSON-able summary (for logs and diagnostics)."""
    info = {"backend": backend.name, "device": str(backend.device), "classes": backend.config.num_classes}
    extra = getattr(backend, "details", None)
    if callable(extra):
        info.update(extra())
    return info


def default_class_names(config: ModelConfig, names: Sequence[str] | None) -> list[str]:
    """``names`` checked against ``config.num_classes``, or ``class_0 ... class_{C-1}``."""
    if names is None:
        return [f"class_{i}" for i in range(config.num_classes)]
    names = [str(n) for n in names]
    if len(names) != config.num_classes:
        raise BackendError(f"{len(names)} class names for a model with {config.num_classes} classes")
    return names
