"""Run a model over videos (TAS and LTA under both horizon protocols) and score it with training.metrics.

Used by ``actfusion-eval`` and by the trainer's model selection on the validation videos. All metric
arithmetic is :mod:`training.metrics`; this module only predicts and collects.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from model.network import ActFusion
from training.data import VideoRecord
from training.inference import (PROTOCOLS, LtaPrediction, TasPrediction, predict_lta, predict_tas)
from training.metrics import moc_scores, summary_score, tas_metrics

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

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad:
            raise ValueError(f"unknown LTA protocol(s) {bad}; choose from {PROTOCOLS}")


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
    common = dict(video_index=video_key(video.name), seed=options.seed, steps=options.steps, median_filter=options.median_filter,
                  aggregate_offsets=options.aggregate_offsets)
    out = VideoPredictions(video.name, video.labels, predict_tas(model, video.features, **common))
    for protocol in options.protocols:
        for alpha in options.alphas:
            out.lta[(protocol, alpha)] = predict_lta(model, video.features, alpha, protocol, ratio=options.ratio,
                                                     **common)
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
    :func:`training.metrics.moc_scores` (None where no frame was scored), the mean skips such cells.
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


def score_predictions(videos: Sequence[VideoPredictions], class_names: Sequence[str],
                      options: ScoringOptions) -> dict:
    """Metrics of the predictions: TAS (acc, edit, f1@k, score), MoC per protocol/alpha/beta, latencies.

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
