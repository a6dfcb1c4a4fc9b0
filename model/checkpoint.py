"""Our checkpoint format: weights, the full model config and class names in one file, written atomically.

Files are read with ``torch.load(weights_only=True)``: nothing a user hands us is ever unpickled.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from actfusion_model.config import ConfigError, ModelConfig, config_to_dict, model_config_from_dict
from actfusion_model.io import atomic_open
from actfusion_model.network import ActFusion

FORMAT = "actfusion_ros/checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of another format, or does not match the expected model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its config, class names and free-form metadata."""

    model: ActFusion
    config: ModelConfig
    class_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: ActFusion, class_names: list[str] | tuple[str, ...],
                    metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``model`` with its config and class names; a crash mid-write leaves the old file intact."""
    if len(class_names) != model.cfg.num_classes:
        raise CheckpointError(f"{len(class_names)} class names for a model with {model.cfg.num_classes} classes")
    payload = {
        "format": FORMAT,
        "config": config_to_dict(model.cfg),
        "class_names": list(class_names),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def read_payload(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with clear errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {err}") from None
    except Exception as err:  # weights_only refuses pickled objects with UnpicklingError
        raise CheckpointError(f"{path}: refused to load (only plain tensors/containers are allowed): {err}") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(payload).__name__}")
    return payload


def state_dict_mismatches(expected: Mapping[str, torch.Tensor], given: Mapping[str, Any]) -> list[str]:
    """Human-readable list of missing, unexpected and wrongly shaped tensors."""
    problems = [f"missing: {k} {tuple(v.shape)}" for k, v in expected.items() if k not in given]
    problems += [f"unexpected: {k}" for k in given if k not in expected]
    for k, v in expected.items():
        g = given.get(k)
        if isinstance(g, torch.Tensor) and tuple(g.shape) != tuple(v.shape):
            problems.append(f"shape: {k} is {tuple(g.shape)} in the file, model expects {tuple(v.shape)}")
        elif k in given and not isinstance(g, torch.Tensor):
            problems.append(f"not a tensor: {k}")
    return problems


def config_differences(a: ModelConfig, b: ModelConfig) -> list[str]:
    """Fields where two model configs differ, as ``name: a != b``."""
    da, db = config_to_dict(a), config_to_dict(b)
    return [f"{k}: {da[k]!r} != {db[k]!r}" for k in da if da[k] != db.get(k)]


def load_checkpoint(path: str | Path, *, expected_config: ModelConfig | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load one of our checkpoints; refuse it, naming the differences, if it does not match.

    ``expected_config``: when given (e.g. from the node's YAML), the architecture fields must agree;
    diffusion-sampling fields (``ddim_steps``, ``ddim_eta``) may differ and the expected values win.
    """
    payload = read_payload(path)
    if payload.get("format") != FORMAT:
        hint = " (an authors' checkpoint? convert it with actfusion-convert)" if "state_dict" not in payload else ""
        raise CheckpointError(f"{path}: unknown format {payload.get('format')!r}, expected {FORMAT!r}{hint}")
    try:
        cfg = model_config_from_dict(payload["config"])
    except (ConfigError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: invalid config in checkpoint: {err}") from None
    if expected_config is not None:
        sampling = {"ddim_steps", "ddim_eta"}
        diffs = [d for d in config_differences(cfg, expected_config) if d.split(":")[0] not in sampling]
        if diffs:
            raise CheckpointError(f"{path}: checkpoint was trained with another model config; differences "
                                  f"(file != expected): " + "; ".join(diffs))
        cfg = expected_config
    names = payload.get("class_names")
    if not isinstance(names, list) or len(names) != cfg.num_classes:
        raise CheckpointError(f"{path}: class_names must list {cfg.num_classes} names, got {names!r:.200}")
    model = ActFusion(cfg)
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state_dict")
    problems = state_dict_mismatches(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path}: weights do not match the config ({len(problems)} problems): "
                              + "; ".join(problems[:20]))
    model.load_state_dict(state)
    model.to(map_location).eval()
    return Checkpoint(model, cfg, [str(n) for n in names], dict(payload.get("metadata") or {}))
