"""Resolve a training YAML against a dataset: ``num_classes`` from ``mapping.txt``, ``input_dim`` from features,
and ``model.sample_rate: auto`` and ``masking.window_*: auto`` (:func:`auto_windows`) from the videos' lengths.

A YAML may leave ``num_classes``/``input_dim`` out (they are then taken from the data, overriding the preset's
defaults) or state them; a stated value that disagrees with the data is a
:class:`~actfusion_model.config.ConfigError` naming both.

``sample_rate: auto`` is :func:`auto_sample_rate` of the training videos' median length: the power of two
nearest to ``sqrt(median) / 16``. Longer recordings are both longer in time and, usually, denser in frames,
so the model-rate length grows as the square root of the raw one: a compromise between temporal resolution
and the encoder's reach. It gives the rates measured best with the CPU recipe: 2 for GTEA (median 1058
frames at 15 fps), 8 for 50 Salads (11769 at 30 fps) and 2 for Breakfast (940 at 15 fps).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml

from actfusion_model.config import ConfigError, ExperimentConfig, load_experiment_config
from actfusion_model.labels import ClassMapping
from actfusion_training.data import DatasetError, MsTcnDataset

AUTO = "auto"


@dataclass(frozen=True)
class DataFacts:
    """What the data dictates about the model: class count and names, feature dimension, video lengths."""

    mapping: ClassMapping
    input_dim: int
    source: str  # where input_dim was read, for error messages
    median_frames: float | None = None  # median length of the videos at the raw rate (for sample_rate: auto)


def auto_sample_rate(median_frames: float) -> int:
    """``model.sample_rate: auto``: the power of two nearest (in log) to ``sqrt(median_frames) / 16``, at least 1
    (see the module docstring for why and what it gives on the standard datasets)."""
    if not median_frames > 0:
        raise ConfigError(f"sample_rate: auto needs videos with frames, got a median length of {median_frames}")
    return 2 ** max(0, int(round(np.log2(np.sqrt(float(median_frames)) / 16.0))))


def data_facts(dataset: MsTcnDataset) -> DataFacts:
    """Class mapping of ``dataset`` and the feature dimension of its first video (header read only)."""
    if len(dataset) == 0:
        raise DatasetError(f"{dataset.root}: split {dataset.split} ({dataset.subset}) lists no videos")
    path = dataset.feature_path(dataset.names[0])
    try:
        feats = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read {path}: {err}") from None
    if feats.ndim != 2:
        raise DatasetError(f"{path}: features must be 2-D (D, T), got shape {feats.shape}")
    median = float(np.median([dataset.load_labels(n).size for n in dataset.names]))
    return DataFacts(dataset.mapping, int(feats.shape[0]), str(path), median)


def auto_windows(median_frames: float, sample_rate: int) -> tuple[int, int]:
    """``masking.window_observed/window_future: auto``: ``(o, 2 o)`` with ``o`` the power of two nearest (in log)
    to half the median video's length at the model rate: the window holds a typical video's observed part and
    the future that the benchmarks score (up to half a video past the cut) while bounding the long ones. It
    gives 256 / 512 for Breakfast and GTEA (median 470 and 529 model frames) and 1024 / 2048 for 50 Salads
    (1471), where shorter windows cut the scored horizon."""
    if not median_frames > 0 or sample_rate < 1:
        raise ConfigError(f"window: auto needs videos with frames and a sample rate >= 1, got a median length "
                          f"of {median_frames} and sample rate {sample_rate}")
    observed = 2 ** max(0, int(round(np.log2(max(1.0, float(median_frames) / sample_rate / 2.0)))))
    return observed, 2 * observed


def _yaml_section(path: Path, name: str) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    section = data.get(name) if isinstance(data, dict) else None
    return section if isinstance(section, Mapping) else {}


def _yaml_model_section(path: Path) -> Mapping[str, Any]:
    return _yaml_section(path, "model")


def resolve_config(path: str | Path, facts: DataFacts) -> ExperimentConfig:
    """Load the YAML at ``path`` with ``num_classes``/``input_dim`` from the data (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    stated = _yaml_model_section(path)
    from_data = {"num_classes": facts.mapping.num_classes, "input_dim": facts.input_dim}
    where = {"num_classes": "the class mapping (mapping.txt)", "input_dim": f"the features ({facts.source})"}
    for key, actual in from_data.items():
        if key in stated and stated[key] != actual:
            raise ConfigError(f"{path}: model.{key} = {stated[key]!r} in the config, but {where[key]} "
                              f"gives {actual}; remove model.{key} from the config to take it from the data")
    if stated.get("sample_rate") == AUTO:
        if facts.median_frames is None:
            raise ConfigError(f"{path}: model.sample_rate: auto needs the videos' lengths")
        from_data["sample_rate"] = auto_sample_rate(facts.median_frames)
    elif isinstance(stated.get("sample_rate"), str):
        raise ConfigError(f"{path}: model.sample_rate must be a positive integer or 'auto', got "
                          f"{stated['sample_rate']!r}")
    masking = _yaml_section(path, "masking")
    windows = {k: masking.get(k) for k in ("window_observed", "window_future")}
    if AUTO not in windows.values():
        return load_experiment_config(path, **from_data)
    if any(v != AUTO for v in windows.values()) or facts.median_frames is None:
        raise ConfigError(f"{path}: masking.window_observed and window_future are 'auto' together (and need the "
                          f"videos' lengths), got {windows}")
    config = load_experiment_config(path, **from_data, masking_overrides={"window_observed": 0, "window_future": 0})
    observed, future = auto_windows(facts.median_frames, config.model.sample_rate)
    return dataclasses.replace(config, masking=dataclasses.replace(config.masking, window_observed=observed,
                                                                   window_future=future))
