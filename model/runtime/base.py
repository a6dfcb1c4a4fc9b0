"""What the runtime backends share: a description for logs, class names, and the accuracy side of the
fewer-DDIM-steps trade-off. Their error is :class:`~actfusion_model.runtime.registry.BackendError`; the
interface they implement (:class:`actfusion_model.forecast.Backend`) and the forecast function that drives
them (:func:`actfusion_model.forecast.forecast`) live in :mod:`actfusion_model.forecast`.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch

from actfusion_model.config import ModelConfig
from actfusion_model.forecast import Backend, forecast
from actfusion_model.runtime.registry import BackendError


def describe(backend: Backend) -> Mapping[str, Any]:
    """A small JSON-able summary (for logs and diagnostics)."""
    info = {"backend": backend.name, "device": str(backend.device), "classes": backend.config.num_classes}
    extra = getattr(backend, "details", None)
    if callable(extra):
        info.update(extra())
    choice = getattr(backend, "auto_choice", None)  # set by backend auto (actfusion_model.runtime.auto)
    if choice is not None:
        info["auto"] = choice.summary()
    return info


def default_class_names(config: ModelConfig, names: Sequence[str] | None) -> list[str]:
    """``names`` checked against ``config.num_classes``, or ``class_0 ... class_{C-1}``."""
    if names is None:
        return [f"class_{i}" for i in range(config.num_classes)]
    names = [str(n) for n in names]
    if len(names) != config.num_classes:
        raise BackendError(f"{len(names)} class names for a model with {config.num_classes} classes")
    return names


def step_agreement(backend: Backend, observed: Sequence[np.ndarray | torch.Tensor], *, steps: int,
                   reference_steps: int = 25, seeds: Sequence[int] = (0,), horizon: int | None = None,
                   ratio: float = 4.0, max_horizon: int | None = None) -> dict[str, float]:
    """How much a ``steps``-step forecast agrees with a ``reference_steps``-step one (the accuracy side of
    the fewer-DDIM-steps latency trade-off; no ground truth needed).

    For every observed sequence and seed, both forecasts are drawn from a generator seeded alike.
    Returns frame-level argmax agreement on the observed and the future frames (pooled over all
    sequences and seeds) and the mean absolute probability difference on the future frames.
    """
    agree_obs = agree_fut = n_obs = n_fut = 0
    abs_diff = 0.0
    for feats in observed:
        for seed in seeds:
            first, second = (forecast(backend, feats, horizon=horizon, ratio=ratio, max_horizon=max_horizon,
                                      steps=s, generator=torch.Generator().manual_seed(int(seed)))
                             for s in (steps, reference_steps))
            o1, f1, o2, f2 = first.observed_probs, first.future_probs, second.observed_probs, second.future_probs
            agree_obs += int((o1.argmax(-2) == o2.argmax(-2)).sum())
            agree_fut += int((f1.argmax(-2) == f2.argmax(-2)).sum())
            n_obs += int(o1.shape[-1])
            n_fut += int(f1.shape[-1])
            abs_diff += float((f1 - f2).abs().sum())
    classes = backend.config.num_classes
    return {"steps": float(steps), "reference_steps": float(reference_steps),
            "observed_agreement": agree_obs / max(n_obs, 1), "future_agreement": agree_fut / max(n_fut, 1),
            "future_mean_abs_diff": abs_diff / max(n_fut * classes, 1)}
