"""The replay's types: ground truth, one record per published forecast, the scores and the whole report.

:class:`TickRecord` is a :class:`~actfusion_ros.stream_types.ForecastResult` reduced to what the report needs
(labels instead of probabilities), so it can be written to and read back from the replay's series files
(:mod:`actfusion_ros.tools.replay.series`); :func:`complete_ticks`, :func:`final_record` and :func:`drawn_ticks`
say which records the scores and the timeline use.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from actfusion_ros.stream_types import ForecastResult


class ReplayError(ValueError):
    """The replay cannot run (bad inputs, mismatched model and extractor, no ground truth)."""


@dataclass
class GroundTruth:
    """Per-frame labels: the label at time t is that of the last frame stamped <= t."""

    stamps_ns: np.ndarray
    labels: np.ndarray  # class ids, -1 for labels outside the model's classes

    def at(self, times_ns: np.ndarray) -> np.ndarray:
        """Labels at ``times_ns``; -1 before the first frame or after the last one."""
        idx = np.searchsorted(self.stamps_ns, times_ns, side="right") - 1
        out = np.where(idx >= 0, self.labels[np.clip(idx, 0, None)], -1)
        return np.where(np.asarray(times_ns) > self.stamps_ns[-1], -1, out)


@dataclass
class TickRecord:
    """One published forecast, reduced to what the report needs.

    ``future_sample_labels``: the labels ``(K, H)`` of the tick's K sampled futures (each sample's argmax,
    what the next-action distribution counts), ``None`` when the forecast was one sample.
    """

    stamp_ns: int
    observed_stamps_ns: np.ndarray
    observed_labels: np.ndarray
    future_start_ns: int
    period_ns: int
    future_labels: np.ndarray
    partial: bool
    inference_s: float
    future_sample_labels: np.ndarray | None = None

    @classmethod
    def from_result(cls, r: ForecastResult) -> "TickRecord":
        samples = None if r.future_samples is None else np.asarray(r.future_samples).argmax(axis=1)
        return cls(r.stamp_ns, np.asarray(r.observed_stamps_ns), r.observed_probs.argmax(0),
                   int(r.stamp_ns) + int(r.feature_period_ns), int(r.feature_period_ns),
                   r.future_probs.argmax(0) if r.future_probs.shape[-1] else np.zeros(0, np.int64),
                   bool(r.partial), float(r.inference_s), samples)

    def sampled_futures(self) -> np.ndarray:
        """The tick's sampled futures as labels ``(K, H)``: the K samples, or the one forecast (K = 1)."""
        return self.future_labels[None, :] if self.future_sample_labels is None else self.future_sample_labels

    def future_times_ns(self) -> np.ndarray:
        return self.future_start_ns + self.period_ns * np.arange(self.future_labels.shape[0], dtype=np.int64)


@dataclass
class AnticipationScore:
    """MoC over the forecast windows (pooled per ground-truth class) and accuracy at look-ahead times."""

    moc: float
    lookahead_accuracy: dict[str, float | None]
    lookahead_counts: dict[str, int]


@dataclass
class ReplayReport:
    """Everything ``replay.json`` holds."""

    bag: str
    frames: int
    ticks: int
    published: int
    wall_s: float
    frames_per_s: float
    tas: dict[str, float]
    anticipation: dict[str, AnticipationScore]  # "model", "repeat_last_observed", grammar baselines
    latency_ms: dict[str, dict[str, float]]
    stream_stats: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    next_action: dict[str, Any] = field(default_factory=dict)  # next_action_report()


def complete_ticks(records: Sequence[TickRecord]) -> list[TickRecord]:
    """The ticks a replay scores: the complete ones (every tick when all of them are partial)."""
    return [r for r in records if not r.partial] or list(records)


def final_record(records: Sequence[TickRecord]) -> TickRecord:
    """The tick whose observation TAS scores: the last complete one (the last one if all are partial)."""
    complete = complete_ticks(records)
    if not complete:
        raise ReplayError("no forecast was published: the bag is too short for the configured start-up")
    return complete[-1]


def drawn_ticks(records: Sequence[TickRecord], max_forecasts: int = 5) -> list[TickRecord]:
    """The ticks whose forecasts the timeline draws (and the report's next-action section lists):
    ``max_forecasts`` spread over the complete ticks, the last ones kept."""
    complete = complete_ticks(records)
    step = max(1, len(complete) // max_forecasts)
    return complete[::step][-max_forecasts:]
