"""Run a model over videos (TAS and LTA under both horizon protocols) and score it with actfusion_training.metrics.

Used by ``actfusion-eval`` and by the trainer's model selection on the validation videos. All metric
arithmetic is :mod:`actfusion_training.metrics` (MoC, TAS) and :mod:`actfusion_training.prob_metrics` (next-action
scores of the K sampled forecasts); this module only predicts and collects.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from actfusion_model.consensus import outcome_vector
from actfusion_model.network import ActFusion
from actfusion_training.data import VideoRecord
from actfusion_training.inference import (
    PROTOCOLS,
    LtaPrediction,
    TasPrediction,
    check_sampling,
    predict_lta,
    predict_tas,
)
from actfusion_training.metrics import moc_scores, summary_score, tas_metrics
from actfusion_training.prob_metrics import lta_next_action_case, next_action_summary, outcome_index

ALPHAS: tuple[float, ...] = (0.2, 0.3)
BETAS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)


@dataclass(frozen=True)
class ScoringOptions:
    """What to predict and how; ``protocols=()`` skips LTA."""

    steps: int | None = None  # DDIM steps (None: the model config's)
    seed: int = 0
    median_filter: int = 0
    aggregate_offsets: bool = True
    protocols: tuple[str, ...] = PROTOCOLS
    alphas: tuple[float, ...] = ALPHAS
    betas: tuple[float, ...] = BETAS
    ratio: float = 4.0
    background: tuple[str, ...] = ("background",)
    exact_f1: bool = False  # F1 with the exact last-segment end (default: the reference eval.py's N-1)
    num_samples: int = 1  # K sampled futures per LTA forecast (actfusion_training.inference)
    consensus: str = "mode"  # how the K samples become the scored forecast (actfusion_training.inference.consensus_ids)
    reliability_bins: int = 10

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"unknown LTA protocol(s) {bad}; choose from {PROTOCOLS}")
        check_sampling(self.num_samples, self.consensus)
        if self.reliability_bins < 1:
            raise ValueError(f"reliability_bins must be >= 1, got {self.reliability_bins}")


@dataclass
class VideoPredictions:
    """Everything predicted for one video."""

    name: str
    labels: np.ndarray
    tas: TasPrediction
    lta: dict[tuple[str, float], LtaPrediction] = field(default_factory=dict)


@dataclass
class ScoredRun:
    """Per-video predictions and the metrics dictionary (see :func:`score_predictions`)."""

    videos: list[VideoPredictions]
    metrics: dict


def lta_key(protocol: str, alpha: float) -> str:
    """Directory / result key of one LTA setting, e.g. ``lta_gt_a0.2``."""
    return f"lta_{protocol}_a{alpha:g}"


def video_key(name: str) -> int:
    """A stable per-video integer for noise seeds (the CRC-32 of the name), independent of list order."""
    return zlib.crc32(name.encode("utf-8"))


def predict_video(model: ActFusion, video: VideoRecord, options: ScoringOptions) -> VideoPredictions:
    """TAS and every (protocol, alpha) forecast of one video."""
    common = dict(video_index=video_key(video.name), seed=options.seed, steps=options.steps,
                  median_filter=options.median_filter, aggregate_offsets=options.aggregate_offsets)
    out = VideoPredictions(video.name, video.labels, predict_tas(model, video.features, **common))
    for protocol in options.protocols:
        for alpha in options.alphas:
            out.lta[(protocol, alpha)] = predict_lta(model, video.features, alpha, protocol, ratio=options.ratio,
                                                     num_samples=options.num_samples,
                                                     consensus=options.consensus, **common)
    return out


def _background_ids(class_names: Sequence[str], background: Sequence[str]) -> list[int]:
    return [class_names.index(b) for b in background if b in class_names]


def _nan_to_none(x: float) -> float | None:
    return None if x != x else float(x)


def moc_tables(pairs_of: Callable[[str, float], Sequence[tuple[np.ndarray, np.ndarray]]],
               protocols: Sequence[str], alphas: Sequence[float], betas: Sequence[float],
               ) -> tuple[dict[str, dict[str, dict[str, float | None]]], dict[str, float | None]]:
    """``({protocol: {alpha: {beta: MoC}}}, {protocol: mean MoC})`` of the ``(pred, gt)`` pairs of each cell.

    ``pairs_of(protocol, alpha)`` gives one raw-rate ``(prediction, ground truth)`` pair per video; MoC is
    :func:`actfusion_training.metrics.moc_scores` (None where no frame was scored), the mean skips such cells.
    """
    lta: dict[str, dict[str, dict[str, float | None]]] = {}
    means: dict[str, float | None] = {}
    for protocol in protocols:
        per_alpha: dict[str, dict[str, float | None]] = {}
        values: list[float] = []
        for alpha in alphas:
            moc, _ = moc_scores(pairs_of(protocol, alpha), alpha, betas)
            per_alpha[f"{alpha:g}"] = {f"{b:g}": _nan_to_none(m) for b, m in moc.items()}
            values += [m for m in moc.values() if m == m]
        lta[protocol] = per_alpha
        means[protocol] = float(np.mean(values)) if values else None
    return lta, means


def model_next_action_events(videos: Sequence[VideoPredictions], num_classes: int, options: ScoringOptions
                             ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{protocol: (probs (N, C + 1), truth (N,), current correct (N,) bool)}`` of the model's forecasts.

    One event per video and alpha, as :func:`actfusion_training.prob_metrics.lta_next_action_case` (and so the
    baselines) place it; the stated distribution is the K-sample one of each forecast
    (:attr:`actfusion_training.inference.LtaPrediction.next_action`). "Current correct": the model's current action
    (its segmentation of the last observed frame) is the ground truth's. A prediction without a distribution
    (``next_action`` None, the field's default) states none and is left out; a protocol without any is omitted.
    """
    out = {}
    for protocol in options.protocols:
        probs, truth, current = [], [], []
        for v in videos:
            for alpha in options.alphas:
                pred = v.lta[(protocol, alpha)]
                if pred.next_action is None:
                    continue
                case = lta_next_action_case(v.labels, pred.sample_rate, alpha, protocol, options.ratio)
                probs.append(outcome_vector(pred.next_action.as_mapping(), num_classes))
                truth.append(outcome_index(case.truth, num_classes))
                current.append(pred.next_action.current == case.current)
        if not probs:
            continue
        out[protocol] = (np.stack(probs), np.asarray(truth, dtype=np.int64), np.asarray(current, dtype=bool))
    return out


def next_action_metrics(videos: Sequence[VideoPredictions], num_classes: int, options: ScoringOptions
                        ) -> dict[str, dict]:
    """``{protocol: summary}`` (:func:`actfusion_training.prob_metrics.next_action_summary`) of the model's next-action
    distributions, plus ``current_correct`` (percent of events whose current action the model got right)."""
    out = {}
    for protocol, (probs, truth, current) in model_next_action_events(videos, num_classes, options).items():
        out[protocol] = {**next_action_summary(probs, truth, num_bins=options.reliability_bins),
                         "current_correct": float(current.mean() * 100.0)}
    return out


def score_predictions(videos: Sequence[VideoPredictions], class_names: Sequence[str],
                      options: ScoringOptions) -> dict:
    """Metrics of the predictions: TAS (acc, edit, f1@k, score), MoC per protocol/alpha/beta, latencies,
    and with LTA ``next_action[protocol]`` (:func:`next_action_metrics`; empty when no prediction carries a
    next-action distribution).

    ``lta_mean[protocol]`` is the mean of its MoC values (the authors' LTA score), ``combined`` the mean of
    the TAS score and ``lta_mean['gt']`` (the authors' selection criterion) when LTA was run.
    """
    if not videos:
        raise ValueError("no videos to score")
    bg = _background_ids(class_names, options.background)
    tas = dict(tas_metrics([(v.tas.labels, v.labels) for v in videos], background=bg, exact_f1=options.exact_f1))
    tas["score"] = summary_score(tas)
    metrics: dict = {"videos": len(videos), "tas": tas, "lta": {}, "lta_mean": {}}
    latency = {"tas_per_video": float(np.mean([v.tas.seconds for v in videos]))}
    metrics["lta"], metrics["lta_mean"] = moc_tables(
        lambda protocol, alpha: [(v.lta[(protocol, alpha)].labels, v.labels) for v in videos],
        options.protocols, options.alphas, options.betas)
    if options.protocols:
        metrics["next_action"] = next_action_metrics(videos, len(class_names), options)
    for protocol in options.protocols:
        forecasts = [s for v in videos for a in options.alphas for s in v.lta[(protocol, a)].forecast_seconds]
        latency[f"lta_{protocol}_per_forecast"] = float(np.mean(forecasts))
        latency[f"lta_{protocol}_per_video"] = float(np.mean(
            [v.lta[(protocol, a)].seconds for v in videos for a in options.alphas]))
    if metrics["lta_mean"].get("gt") is not None:
        metrics["combined"] = float(np.mean([tas["score"], metrics["lta_mean"]["gt"]]))
    else:
        metrics["combined"] = tas["score"]
    metrics["latency_s"] = latency
    return metrics


def score_model(model: ActFusion, videos: Iterable[VideoRecord], class_names: Sequence[str],
                options: ScoringOptions,
                progress: Callable[[Iterable[VideoRecord]], Iterable[VideoRecord]] | None = None) -> ScoredRun:
    """Predict every video and score them."""
    iterable = progress(videos) if progress is not None else videos
    preds = [predict_video(model, v, options) for v in iterable]
    return ScoredRun(preds, score_predictions(preds, class_names, options))
