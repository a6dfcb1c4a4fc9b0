"""Scores of probabilistic next-action forecasts: top-k accuracy, Brier score and calibration.

An *event* is one forecast: a probability vector over the ``C + 1`` outcomes (the ``C`` classes, then "no
change within the horizon" at index ``C``, see :func:`actfusion_model.consensus.outcome_vector`) and the outcome that
happened (:func:`outcome_index`; the truth is :func:`actfusion_model.consensus.next_action_outcome` of the ground
truth over the same horizon).

* **Top-k accuracy** (percent, like Acc and MoC): the true outcome is among the ``k`` most probable
  outcomes of the event. Ranking ties go to the lower outcome index (no change last); an outcome with
  probability 0 is never in the top k, so a forecaster that names one outcome gets no credit for the
  other ``k - 1`` places.
* **Brier score** (multi-class, in ``[0, 2]``, lower is better): the mean over events of
  ``sum_o (p_o - [o = truth])^2``.
* **Reliability** (:func:`reliability_table`): pairs (stated probability, did it happen) in equal-width
  bins over ``[0, 1]`` (the last bin includes 1); per bin the count, the mean stated probability and the
  observed frequency; **ECE** = ``sum_b count_b / N * |observed_b - stated_b|`` (probability units). Two
  ways to make the pairs: ``"top"`` (each event's most probable outcome: the usual top-label
  calibration) and ``"stated"`` (every outcome an event gives a probability > 0: the alternatives a
  robot is told about). Outcomes stated with probability 0 are left out (the Brier score counts them).

Offline events (:func:`lta_next_action_case`) sit where the LTA forecast goes
(:func:`actfusion_training.inference.lta_layout`), at the model's sampled rate from offset 0 (raw frames 0, sr,
2sr, ...), the rate at which the model and the baselines forecast: the current action is the last observed sampled
label, the truth the first different label among the next ``horizon`` sampled ground-truth labels (fewer
where the video ends first), else "no change". :func:`score_forecaster_next_actions` scores any forecaster
with a ``next_action_distribution`` (the baselines of :mod:`actfusion_training.baselines`) on those events.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from actfusion_model.consensus import NO_CHANGE, next_action_outcome, outcome_vector
from actfusion_training.inference import PROTOCOLS, lta_layout

#: Ways of pairing stated probabilities with outcomes for :func:`reliability_pairs`.
RELIABILITY_MODES: tuple[str, ...] = ("top", "stated")


def outcome_index(outcome: int, num_classes: int) -> int:
    """Class id -> its index in an outcome vector; :data:`~actfusion_model.consensus.NO_CHANGE` -> ``num_classes``."""
    outcome = int(outcome)
    if outcome == NO_CHANGE:
        return int(num_classes)
    if not 0 <= outcome < int(num_classes):
        raise ValueError(f"outcome {outcome} out of range [0, {int(num_classes)}) (or NO_CHANGE)")
    return outcome


def _check_events(probs: np.ndarray, truth: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(truth)
    if p.ndim != 2 or p.shape[1] < 1:
        raise ValueError(f"probabilities must be (events, outcomes), got shape {p.shape}")
    if t.shape != (p.shape[0],) or (t.size and not np.issubdtype(t.dtype, np.integer)):
        raise ValueError(f"truth must be {p.shape[0]} integer outcome indices, got shape {t.shape} dtype {t.dtype}")
    if p.shape[0] == 0:
        raise ValueError("no events to score")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("probabilities must be finite and >= 0")
    if np.any(np.abs(p.sum(axis=1) - 1.0) > 1e-6):
        bad = int(np.flatnonzero(np.abs(p.sum(axis=1) - 1.0) > 1e-6)[0])
        raise ValueError(f"event {bad}: probabilities sum to {p[bad].sum():.6g}, not 1")
    t = t.astype(np.int64)
    if t.min() < 0 or t.max() >= p.shape[1]:
        raise ValueError(f"truth indices must lie in [0, {p.shape[1]})")
    return p, t


def topk_accuracy(probs: np.ndarray, truth: Sequence[int] | np.ndarray, k: int) -> float:
    """Percent of events whose true outcome is among their ``k`` most probable (see the module docstring)."""
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    p, t = _check_events(probs, truth)
    order = np.argsort(-p, axis=1, kind="stable")[:, :int(k)]
    hit = (order == t[:, None]) & (np.take_along_axis(p, order, axis=1) > 0)
    return float(hit.any(axis=1).mean() * 100.0)


def brier_score(probs: np.ndarray, truth: Sequence[int] | np.ndarray) -> float:
    """Mean multi-class Brier score ``sum_o (p_o - [o = truth])^2`` over the events, in ``[0, 2]``."""
    p, t = _check_events(probs, truth)
    onehot = np.zeros_like(p)
    onehot[np.arange(t.size), t] = 1.0
    return float(((p - onehot) ** 2).sum(axis=1).mean())


def reliability_pairs(probs: np.ndarray, truth: Sequence[int] | np.ndarray,
                      mode: str = "top") -> tuple[np.ndarray, np.ndarray]:
    """``(stated probabilities, happened as bool)`` of the events by ``mode`` (``"top"`` or ``"stated"``)."""
    p, t = _check_events(probs, truth)
    if mode == "top":
        top = np.argmax(p, axis=1)  # ties: the lower outcome index, as in the top-k ranking
        return p[np.arange(t.size), top], top == t
    if mode == "stated":
        events, outcomes = np.nonzero(p > 0)
        return p[events, outcomes], outcomes == t[events]
    raise ValueError(f"unknown reliability mode {mode!r}; expected one of {RELIABILITY_MODES}")


@dataclass(frozen=True)
class ReliabilityBin:
    """Stated probabilities in ``[lower, upper)`` (the last bin includes 1) and how often they happened."""

    lower: float
    upper: float
    count: int
    mean_stated: float | None
    observed: float | None


@dataclass(frozen=True)
class ReliabilityTable:
    """Reliability bins of ``count`` (stated, happened) pairs and their expected calibration error."""

    bins: tuple[ReliabilityBin, ...]
    count: int
    ece: float
    mode: str = ""

    def to_dict(self) -> dict:
        """JSON-ready form for eval reports."""
        return {"mode": self.mode, "count": self.count, "ece": self.ece,
                "bins": [{"lower": b.lower, "upper": b.upper, "count": b.count, "mean_stated": b.mean_stated,
                          "observed": b.observed} for b in self.bins]}


def reliability_table(stated: Sequence[float] | np.ndarray, happened: Sequence[bool] | np.ndarray,
                      num_bins: int = 10, mode: str = "") -> ReliabilityTable:
    """Bin (stated probability, happened) pairs into ``num_bins`` equal-width bins; ECE over all pairs."""
    s = np.asarray(stated, dtype=np.float64).reshape(-1)
    h = np.asarray(happened, dtype=bool).reshape(-1)
    if s.shape != h.shape:
        raise ValueError(f"{s.size} stated probabilities but {h.size} outcomes")
    if int(num_bins) < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    if s.size and (not np.all(np.isfinite(s)) or s.min() < 0 or s.max() > 1):
        raise ValueError("stated probabilities must lie in [0, 1]")
    n = int(num_bins)
    index = np.minimum((s * n).astype(np.int64), n - 1)
    bins = []
    ece = 0.0
    for b in range(n):
        members = index == b
        count = int(members.sum())
        if count:
            mean_stated, observed = float(s[members].mean()), float(h[members].mean())
            ece += count / s.size * abs(observed - mean_stated)
        else:
            mean_stated = observed = None
        bins.append(ReliabilityBin(b / n, (b + 1) / n, count, mean_stated, observed))
    return ReliabilityTable(tuple(bins), int(s.size), float(ece), mode)


@dataclass(frozen=True)
class NextActionScores:
    """Top-k accuracies (percent), Brier score and reliability of ``count`` next-action events."""

    count: int
    topk: dict[int, float]
    brier: float
    reliability: ReliabilityTable

    def to_dict(self) -> dict:
        return {"count": self.count, **{f"top{k}": v for k, v in self.topk.items()}, "brier": self.brier,
                "reliability": self.reliability.to_dict()}


def score_next_actions(probs: np.ndarray, truth: Sequence[int] | np.ndarray, *, ks: Sequence[int] = (1, 3),
                       num_bins: int = 10, mode: str = "top") -> NextActionScores:
    """All next-action scores of events ``probs (N, C + 1)`` with true outcome indices ``truth (N,)``."""
    p, t = _check_events(probs, truth)
    stated, happened = reliability_pairs(p, t, mode)
    return NextActionScores(int(t.size), {int(k): topk_accuracy(p, t, k) for k in ks}, brier_score(p, t),
                            reliability_table(stated, happened, num_bins, mode))


def next_action_summary(probs: np.ndarray, truth: Sequence[int] | np.ndarray, *, ks: Sequence[int] = (1, 3),
                        num_bins: int = 10) -> dict:
    """The eval-report form of :func:`score_next_actions`: ``count``, ``top{k}``, ``brier``, ``ece_top`` (ECE
    of the top-label probabilities), ``ece_stated`` and ``reliability`` (the table of every stated
    probability > 0, :data:`RELIABILITY_MODES` ``"stated"``)."""
    stated = score_next_actions(probs, truth, ks=ks, num_bins=num_bins, mode="stated")
    top = reliability_table(*reliability_pairs(probs, truth, "top"), num_bins=num_bins, mode="top")
    return {**stated.to_dict(), "ece_top": top.ece, "ece_stated": stated.reliability.ece}


# ---------------------------------------------------------------------------------------------- offline events


@runtime_checkable
class NextActionForecaster(Protocol):
    """Anything that states a next-action distribution from observed frame labels."""

    name: str

    def next_action_distribution(self, observed_labels: np.ndarray, horizon: int, *,
                                 video_length: int | None = None) -> Mapping[int, float]:
        """``{class id or NO_CHANGE: probability}`` of the action after the current one within ``horizon``."""
        ...


@dataclass(frozen=True, eq=False)
class NextActionCase:
    """One video's next-action question at the sampled rate: what is observed, and what came next.

    ``video_length`` is the sampled video length under the GT-length protocol, ``None`` under r*N^O (as the
    baselines' ``forecast`` takes it); ``truth`` is a class id or :data:`~actfusion_model.consensus.NO_CHANGE`.
    """

    observed: np.ndarray
    horizon: int
    video_length: int | None
    current: int
    truth: int


def lta_next_action_case(gt: np.ndarray, sample_rate: int, alpha: float, protocol: str,
                         ratio: float = 4.0) -> NextActionCase:
    """The next-action event of raw-rate ground truth ``gt`` (N,) at ``alpha`` (see the module docstring)."""
    gt = np.asarray(gt, dtype=np.int64).reshape(-1)
    if gt.size == 0:
        raise ValueError("ground truth of an empty video")
    layout = lta_layout(gt.size, sample_rate, alpha, protocol, ratio)
    sampled = gt[::sample_rate]
    observed = sampled[:layout.observed]
    current = int(observed[-1])
    future = sampled[layout.observed:layout.observed + layout.horizon]
    return NextActionCase(observed, layout.horizon, layout.full_len if protocol == "gt" else None, current,
                          next_action_outcome(future, current))


def forecaster_next_action_events(forecaster: NextActionForecaster, videos: Sequence[tuple[str, np.ndarray]],
                                  num_classes: int, sample_rate: int, *, protocols: Sequence[str] = PROTOCOLS,
                                  alphas: Sequence[float] = (0.2, 0.3), ratio: float = 4.0
                                  ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{protocol: (probs (N, C + 1), truth (N,))}``: the events of every ``(name, raw-rate gt)`` video and
    alpha (:func:`lta_next_action_case`) with ``forecaster``'s stated distributions."""
    out = {}
    for protocol in protocols:
        probs, truth = [], []
        for _, gt in videos:
            for alpha in alphas:
                case = lta_next_action_case(gt, sample_rate, alpha, protocol, ratio)
                dist = forecaster.next_action_distribution(case.observed, case.horizon,
                                                           video_length=case.video_length)
                probs.append(outcome_vector(dist, num_classes))
                truth.append(outcome_index(case.truth, num_classes))
        out[protocol] = (np.stack(probs), np.asarray(truth, dtype=np.int64))
    return out


def score_forecaster_next_actions(forecaster: NextActionForecaster, videos: Sequence[tuple[str, np.ndarray]],
                                  num_classes: int, sample_rate: int, *, protocols: Sequence[str] = PROTOCOLS,
                                  alphas: Sequence[float] = (0.2, 0.3), ratio: float = 4.0, num_bins: int = 10,
                                  mode: str = "top") -> dict[str, NextActionScores]:
    """``{protocol: scores}`` of ``forecaster`` over every ``(name, raw-rate gt)`` video and every alpha."""
    events = forecaster_next_action_events(forecaster, videos, num_classes, sample_rate, protocols=protocols,
                                           alphas=alphas, ratio=ratio)
    return {protocol: score_next_actions(probs, truth, num_bins=num_bins, mode=mode)
            for protocol, (probs, truth) in events.items()}
