"""Learning-rate schedule and the exponential moving average (EMA) of the weights.

* :func:`lr_factor`: the multiplier of ``training.lr`` at optimizer step ``step`` (0-based) of ``total``:
  linear warm-up over ``warmup_iters`` steps (``(step + 1) / warmup_iters``), then constant, or cosine from
  1 down to ``min_lr_ratio`` at ``total``. ``total`` is the run's number of optimizer steps (epochs x steps
  per epoch), or under a time budget the estimate of :func:`budget_total_steps`.
* :class:`WeightAverage`: ``ema = d ema + (1 - d) w`` after every optimizer step, with the warm-up
  ``d = min(ema_decay, (1 + n) / (10 + n))`` (n = updates so far) so early averages are not dominated by
  the random initial weights. Its state round-trips through the trainer state for an exact ``--resume``.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn

from actfusion_model.config import TrainingConfig


def lr_factor(cfg: TrainingConfig, step: int, total: int) -> float:
    """Multiplier of the base learning rate for optimizer step ``step`` (see module docstring)."""
    if cfg.warmup_iters > 0 and step < cfg.warmup_iters:
        return (step + 1) / cfg.warmup_iters
    if cfg.lr_schedule == "constant":
        return 1.0
    span = max(1, total - cfg.warmup_iters)
    progress = min(1.0, max(0.0, (step - cfg.warmup_iters) / span))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def budget_total_steps(steps_done: int, steps_timed: int, seconds_timed: float, seconds_left: float,
                       cap: int) -> int:
    """Steps the run will reach under a time budget: done + time left / measured seconds per step (<= cap)."""
    per_step = seconds_timed / max(1, steps_timed)
    if per_step <= 0:
        return cap
    return max(steps_done + 1, min(cap, steps_done + int(seconds_left / per_step)))


class WeightAverage:
    """EMA of a model's floating-point state (see module docstring)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
        self.updates += 1

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """Run the body with the averaged weights in ``model``; the trained weights are put back after."""
        saved = {k: v.detach().clone() for k, v in model.state_dict().items() if k in self.shadow}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(saved, strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
