"""Feature provenance: which extractor (and settings) at which feature rate produced a model's inputs.

``actfusion-extract`` (and the demo) write it as ``pipeline.json`` at the dataset root; the trainer
copies it into every checkpoint's metadata (``metadata["pipeline"]``); the node and the replay compare
their own settings with it and refuse a mismatch, since a model fed features from another extractor
or rate gives confident nonsense.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from actfusion_model.io import atomic_write_text

FILENAME = "pipeline.json"
# Extractor options that change where or how fast features are computed, not what they are.
RUNTIME_OPTIONS = frozenset({"device", "batch_size", "weights", "allow_random_weights"})


class PipelineMismatch(ValueError):
    """Live or offline feature settings differ from those a dataset or model was made with."""


@dataclass(frozen=True)
class FeaturePipeline:
    """Extractor name, its keyword arguments and the feature rate (Hz)."""

    extractor: str
    feature_rate_hz: float
    extractor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, extractor: str, feature_rate_hz: float, kwargs: Mapping[str, Any] | None = None) -> "FeaturePipeline":
        """The record for an extractor built with ``kwargs`` (runtime-only options dropped)."""
        kept = {k: v for k, v in (kwargs or {}).items() if k not in RUNTIME_OPTIONS}
        return cls(extractor=extractor, feature_rate_hz=float(feature_rate_hz), extractor_kwargs=kept)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extractor_kwargs"] = dict(self.extractor_kwargs)
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "pipeline") -> "FeaturePipeline":
        try:
            return cls.of(str(values["extractor"]), float(values["feature_rate_hz"]),
                          dict(values.get("extractor_kwargs") or {}))
        except (KeyError, TypeError, ValueError) as err:
            raise PipelineMismatch(f"{where}: malformed feature pipeline record {dict(values)!r}: {err}") from None

    def differences(self, other: "FeaturePipeline") -> list[str]:
        """``name: mine != theirs`` for each setting that differs."""
        out = []
        if self.extractor != other.extractor:
            out.append(f"extractor: {self.extractor!r} != {other.extractor!r}")
        if not math.isclose(self.feature_rate_hz, other.feature_rate_hz, rel_tol=1e-9):
            out.append(f"feature_rate_hz: {self.feature_rate_hz:g} != {other.feature_rate_hz:g}")
        if dict(self.extractor_kwargs) != dict(other.extractor_kwargs):
            out.append(f"extractor_kwargs: {dict(self.extractor_kwargs)} != {dict(other.extractor_kwargs)}")
        return out


def read_dataset_pipeline(root: str | Path) -> FeaturePipeline | None:
    """``<root>/pipeline.json`` if present."""
    path = Path(root) / FILENAME
    if not path.is_file():
        return None
    try:
        return FeaturePipeline.from_dict(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as err:
        raise PipelineMismatch(f"{path}: not valid JSON: {err}") from None


def write_dataset_pipeline(root: str | Path, pipeline: FeaturePipeline) -> None:
    """Record ``pipeline`` for a dataset; refuse to mix features of two pipelines in one dataset."""
    existing = read_dataset_pipeline(root)
    if existing is not None and existing.differences(pipeline):
        raise PipelineMismatch(f"{Path(root) / FILENAME}: this dataset's features were made with another "
                               f"pipeline ({'; '.join(existing.differences(pipeline))}); use a new --out")
    atomic_write_text(Path(root) / FILENAME, json.dumps(pipeline.to_dict(), indent=2) + "\n")


def checkpoint_pipeline(metadata: Mapping[str, Any] | None) -> FeaturePipeline | None:
    """The pipeline recorded in a checkpoint's metadata, if any."""
    record = (metadata or {}).get("pipeline")
    return FeaturePipeline.from_dict(record, "checkpoint metadata") if isinstance(record, Mapping) else None


def check_pipeline(expected: FeaturePipeline | None, actual: FeaturePipeline, *, what: str) -> None:
    """Raise :class:`PipelineMismatch` naming every difference (no record: nothing to check)."""
    if expected is None:
        return
    diffs = expected.differences(actual)
    if diffs:
        raise PipelineMismatch(f"{what} was trained on features from another pipeline (trained != configured): "
                               + "; ".join(diffs) + ". Configure the same extractor, options and feature rate.")
