"""K sampled futures -> marginals, a consensus forecast, the next-action distribution and confidences.

ActFusion samples its future: K DDIM runs from one encoder pass give K plausible futures of the same
``T`` frames. This module aggregates them; it is numpy only (no torch, no ROS), so the node, replay and
eval all use the same rules.

Inputs are the K futures as frame probabilities ``(K, C, T)`` (each sample's argmax is its label) or as
labels ``(K, T)``, see :class:`FutureSamples`. Future frame ``t`` is the ``t``-th frame after the last
observed one (``t = 0`` follows the observation cut directly).

* **Marginals** ``(C, T)`` (:func:`frame_marginals`): by default the *votes*, the fraction of samples whose
  argmax is class ``c`` at frame ``t`` (the mean of the samples' one-hot argmax); ``source="probs"`` is the
  mean of the samples' probabilities instead (only for probability input). Votes are what the consensus,
  the confidences and the next-action distribution use: the sampled labels are the model's answer, the
  decoder's softmax is typically over-confident or flat.
* **Consensus forecast**, two methods (:data:`CONSENSUS_METHODS`):

  - ``"mode"`` (:func:`per_frame_mode`): each frame takes its most voted class. Ties go to the class of the
    highest mean probability (probability input), then to the lowest class id. It may cut a segment where
    the samples disagree on a boundary (short fragments).
  - ``"medoid"`` (:func:`medoid_index`): the one sample that agrees most with the others, i.e. with the
    smallest summed frame disagreement (Hamming distance) to all other samples; ties go to the lowest
    sample index. It is a real sample, so its segment sequence and durations are coherent (no
    fragments from voting), and it is the sample nearest to the others in the frame-wise sense that MoC
    scores.

* **Segment confidence** (:func:`consensus_segments`): for a consensus segment of label ``l`` over
  ``[start, end)``, the fraction of samples that agree with ``l``, averaged over the span's frames: the mean
  of the vote marginal of ``l`` over the span (= the mean over samples of the fraction of the span where
  the sample says ``l``). 1 when every sample has ``l`` on the whole span.
* **Next action** (:func:`next_action_distribution`): the current action is the label of the last observed
  frame. In each sample, the next action is the first future label that differs from it and its start is
  that frame's index (0: the current action ends at the cut). Samples in which the current action lasts the
  whole horizon form their own bucket, "no change within horizon" (:data:`NO_CHANGE`). Per next label:
  probability = its share of the K samples, expected start = mean start over those samples, start interval
  = the 10% and 90% quantiles of those starts (numpy's linear interpolation; a single sample gives a point).
  The probabilities of the alternatives and of the no-change bucket sum to 1.

:func:`aggregate_samples` does all of it at once (:class:`SampleAggregate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from actfusion_model.labels import Segment, segments_from_labels

#: Outcome key of "the current action does not end within the horizon" (never a class id).
NO_CHANGE = -1

#: Names of the consensus methods of :func:`consensus_labels`.
CONSENSUS_METHODS: tuple[str, ...] = ("mode", "medoid")

#: Names of the marginal sources of :func:`frame_marginals`.
MARGINAL_SOURCES: tuple[str, ...] = ("votes", "probs")

#: Slack on the [0, 1] range of input probabilities (float32 softmax rounding).
PROB_TOLERANCE = 1e-4

#: Default start interval of the next action: its 10% and 90% quantiles.
DEFAULT_INTERVAL: tuple[float, float] = (0.1, 0.9)


# ---------------------------------------------------------------------------------------------- input


@dataclass(frozen=True, eq=False)
class FutureSamples:
    """K sampled futures of ``T`` frames over ``C`` classes.

    ``labels`` (K, T) int64 in ``[0, C)``; ``probs`` (K, C, T) float64 when the samples came as
    probabilities (``labels`` is then their argmax over classes), else ``None``. Build with :meth:`of`.
    """

    labels: np.ndarray
    num_classes: int
    probs: np.ndarray | None = None

    @classmethod
    def of(cls, samples: "np.ndarray | FutureSamples", num_classes: int | None = None) -> "FutureSamples":
        """Validate probabilities ``(K, C, T)`` or labels ``(K, T)`` (then ``num_classes`` is required)."""
        if isinstance(samples, FutureSamples):
            if num_classes is not None and int(num_classes) != samples.num_classes:
                raise ValueError(f"samples have {samples.num_classes} classes, num_classes={num_classes}")
            return samples
        arr = np.asarray(samples)
        if arr.ndim == 3:
            if not np.issubdtype(arr.dtype, np.floating):
                raise ValueError(f"sample probabilities (K, C, T) must be floating point, got dtype {arr.dtype}")
            k, c, _ = arr.shape
            if k < 1 or c < 1:
                raise ValueError(f"sample probabilities need K >= 1 samples and C >= 1 classes, got {arr.shape}")
            if num_classes is not None and int(num_classes) != c:
                raise ValueError(f"sample probabilities have {c} classes, num_classes={num_classes}")
            if not np.all(np.isfinite(arr)):
                raise ValueError("sample probabilities contain NaN or infinite values")
            if arr.size and (arr.min() < -PROB_TOLERANCE or arr.max() > 1 + PROB_TOLERANCE):
                raise ValueError(f"sample probabilities must lie in [0, 1], got [{arr.min():.4g}, {arr.max():.4g}] "
                                 "(logits? apply a softmax over classes first)")
            probs = arr.astype(np.float64)
            return cls(np.argmax(probs, axis=1).astype(np.int64), c, probs)
        if arr.ndim == 2:
            if not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
                raise ValueError(f"sample labels (K, T) must hold integer class ids, got dtype {arr.dtype}")
            if num_classes is None or int(num_classes) < 1:
                raise ValueError("sample labels (K, T) need num_classes >= 1")
            if arr.shape[0] < 1:
                raise ValueError(f"sample labels need K >= 1 samples, got shape {arr.shape}")
            labels = arr.astype(np.int64)
            if labels.size and (labels.min() < 0 or labels.max() >= int(num_classes)):
                raise ValueError(f"sample labels must lie in [0, {int(num_classes)}), "
                                 f"got [{labels.min()}, {labels.max()}]")
            return cls(labels, int(num_classes), None)
        raise ValueError(f"samples must be probabilities (K, C, T) or labels (K, T), got shape {arr.shape}")

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.labels.shape[1])


def _check_class(label: int, num_classes: int, what: str) -> int:
    label = int(label)
    if not 0 <= label < num_classes:
        raise ValueError(f"{what} {label} out of range [0, {num_classes})")
    return label


def current_label(observed: np.ndarray) -> int:
    """The action in progress: the label of the last observed frame.

    ``observed`` is the observed segmentation as labels ``(N_O,)``, probabilities ``(C, N_O)`` or K sampled
    probabilities ``(K, C, N_O)`` (then the most voted class of the last frame, ties as in
    :func:`per_frame_mode`).
    """
    arr = np.asarray(observed)
    if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.integer):
        return int(arr[-1])
    if arr.ndim == 2 and arr.shape[0] >= 1 and arr.shape[1] >= 1:
        return int(np.argmax(arr[:, -1]))
    if arr.ndim == 3 and min(arr.shape) >= 1:
        return int(per_frame_mode(arr[:, :, -1:])[0])
    raise ValueError("observed must be labels (N_O,), probabilities (C, N_O) or (K, C, N_O) with N_O >= 1, "
                     f"got shape {arr.shape} dtype {arr.dtype}")


# ---------------------------------------------------------------------------------------------- marginals


def frame_marginals(samples: np.ndarray | FutureSamples, num_classes: int | None = None,
                    source: str = "votes") -> np.ndarray:
    """``(C, T)`` float64 per-frame class distribution over the samples (see the module docstring)."""
    s = FutureSamples.of(samples, num_classes)
    if source == "votes":
        counts = np.zeros((s.num_classes, s.horizon), dtype=np.float64)
        np.add.at(counts, (s.labels, np.broadcast_to(np.arange(s.horizon), s.labels.shape)), 1.0)
        return counts / s.num_samples
    if source == "probs":
        if s.probs is None:
            raise ValueError("source='probs' needs sample probabilities (K, C, T), got labels")
        return s.probs.mean(axis=0)
    raise ValueError(f"unknown marginal source {source!r}; expected one of {MARGINAL_SOURCES}")


def mode_scores(samples: np.ndarray | FutureSamples, num_classes: int | None = None) -> np.ndarray:
    """``(C, T)`` float64 scores of the per-frame mode: each class's vote count plus half its mean probability
    (probability input; < 1, so it only breaks ties between equal counts). The mode is their argmax (ties
    left: the lowest id); :func:`consensus_probs` normalises them."""
    s = FutureSamples.of(samples, num_classes)
    score = frame_marginals(s) * s.num_samples  # integer vote counts
    if s.probs is not None:
        score = score + 0.5 * s.probs.mean(axis=0)
    return score


def per_frame_mode(samples: np.ndarray | FutureSamples, num_classes: int | None = None) -> np.ndarray:
    """``(T,)`` int64: each frame's most voted class; ties -> highest mean probability, then lowest id."""
    return np.argmax(mode_scores(samples, num_classes), axis=0).astype(np.int64)


def consensus_probs(samples: np.ndarray) -> np.ndarray:
    """``(K, C, T)`` sample probabilities -> ``(C, T)`` float32 frame probabilities whose argmax is the per-frame
    mode (:func:`per_frame_mode`, its tie-break included): the :func:`mode_scores` normalised per frame (each
    frame sums to 1; mostly the vote share). What the node publishes as the forecast of K samples."""
    score = mode_scores(samples, np.shape(samples)[1])
    return (score / score.sum(axis=0, keepdims=True)).astype(np.float32)


def medoid_index(samples: np.ndarray | FutureSamples, num_classes: int | None = None) -> int:
    """Index of the sample with the smallest summed frame disagreement to the others (ties: lowest index)."""
    s = FutureSamples.of(samples, num_classes)
    disagree = (s.labels[:, None, :] != s.labels[None, :, :]).sum(axis=(1, 2))
    return int(np.argmin(disagree))


def consensus_labels(samples: np.ndarray | FutureSamples, num_classes: int | None = None,
                     method: str = "mode") -> tuple[np.ndarray, int | None]:
    """The consensus future ``(T,)`` by ``method`` and, for ``"medoid"``, the chosen sample's index."""
    s = FutureSamples.of(samples, num_classes)
    if method == "mode":
        return per_frame_mode(s), None
    if method == "medoid":
        k = medoid_index(s)
        return s.labels[k].copy(), k
    raise ValueError(f"unknown consensus method {method!r}; expected one of {CONSENSUS_METHODS}")


# ---------------------------------------------------------------------------------------------- segments


@dataclass(frozen=True)
class ConsensusSegment(Segment):
    """A :class:`~actfusion_model.labels.Segment` of the consensus future plus its sample agreement.

    ``[start, end)`` counts future frames; ``confidence`` is the mean vote for ``label`` over them.
    """

    confidence: float


def consensus_segments(labels: np.ndarray, votes: np.ndarray) -> tuple[ConsensusSegment, ...]:
    """Segments of ``labels (T,)``, each with the mean over its span of its label's vote ``votes (C, T)``."""
    labels = np.asarray(labels)
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or labels.shape != (votes.shape[1],):
        raise ValueError(f"labels (T,) and votes (C, T) disagree: {labels.shape} vs {votes.shape}")
    return tuple(ConsensusSegment(seg.label, seg.start, seg.end,
                                  float(votes[seg.label, seg.start:seg.end].mean()))
                 for seg in segments_from_labels(labels))


# ---------------------------------------------------------------------------------------------- next action


def first_change(future_labels: Sequence[int] | np.ndarray, current: int) -> tuple[int, int] | None:
    """``(label, frame)`` of the first future label that is not ``current``; ``None`` if there is none.

    The same rule scores the truth: the ground truth's next action is ``first_change(gt_future, gt_current)``.
    """
    arr = np.asarray(future_labels).reshape(-1)
    hits = np.flatnonzero(arr != int(current))
    if hits.size == 0:
        return None
    return int(arr[hits[0]]), int(hits[0])


def next_action_outcome(future_labels: Sequence[int] | np.ndarray, current: int) -> int:
    """The next action's class id after ``current`` in ``future_labels``, or :data:`NO_CHANGE`."""
    change = first_change(future_labels, current)
    return NO_CHANGE if change is None else change[0]


@dataclass(frozen=True)
class NextAction:
    """One possible next action: its share of the samples and its start, in future frames from the cut."""

    class_id: int
    probability: float
    count: int
    expected_start: float
    start_low: float
    start_high: float


@dataclass(frozen=True)
class NextActionDistribution:
    """What follows the current action, over ``num_samples`` sampled futures of ``horizon`` frames.

    ``alternatives``: most probable first (ties: earlier expected start, then lowest class id).
    ``no_change``: the share of samples in which the current action lasts the whole horizon.
    """

    current: int
    alternatives: tuple[NextAction, ...]
    no_change: float
    no_change_count: int
    num_samples: int
    horizon: int
    interval: tuple[float, float] = DEFAULT_INTERVAL

    def probability_of(self, class_id: int) -> float:
        """Probability of ``class_id`` (or of :data:`NO_CHANGE`) as the next outcome; 0 if never sampled."""
        return self.as_mapping().get(int(class_id), 0.0)

    def as_mapping(self) -> dict[int, float]:
        """``{class id or NO_CHANGE: probability}`` over the outcomes that occurred in some sample."""
        out = {a.class_id: a.probability for a in self.alternatives}
        if self.no_change_count:
            out[NO_CHANGE] = self.no_change
        return out


def next_action_distribution(samples: np.ndarray | FutureSamples, current: int,
                             num_classes: int | None = None,
                             interval: tuple[float, float] = DEFAULT_INTERVAL) -> NextActionDistribution:
    """The distribution of the action after ``current`` over the samples (see the module docstring)."""
    s = FutureSamples.of(samples, num_classes)
    current = _check_class(current, s.num_classes, "current label")
    low_q, high_q = (float(q) for q in interval)
    if not 0.0 <= low_q <= high_q <= 1.0:
        raise ValueError(f"interval must be quantiles 0 <= low <= high <= 1, got {interval}")
    starts: dict[int, list[int]] = {}
    no_change = 0
    for row in s.labels:
        change = first_change(row, current)
        if change is None:
            no_change += 1
        else:
            starts.setdefault(change[0], []).append(change[1])
    k = s.num_samples
    alternatives = []
    for label, frames in starts.items():
        f = np.asarray(frames, dtype=np.float64)
        alternatives.append(NextAction(label, len(frames) / k, len(frames), float(f.mean()),
                                       float(np.quantile(f, low_q)), float(np.quantile(f, high_q))))
    alternatives.sort(key=lambda a: (-a.count, a.expected_start, a.class_id))
    return NextActionDistribution(current, tuple(alternatives), no_change / k, no_change, k, s.horizon,
                                  (low_q, high_q))


# ---------------------------------------------------------------------------------------------- all at once


@dataclass(frozen=True, eq=False)
class SampleAggregate:
    """The aggregate of K sampled futures (:func:`aggregate_samples`).

    ``labels`` (T,) the consensus future by ``method``; ``segments`` its segments with their confidence;
    ``marginals`` (C, T) by ``marginal_source``; ``chosen`` the medoid's sample index (``None`` for mode).
    """

    labels: np.ndarray
    segments: tuple[ConsensusSegment, ...]
    marginals: np.ndarray
    next_action: NextActionDistribution
    method: str
    marginal_source: str
    chosen: int | None

    @property
    def num_samples(self) -> int:
        return self.next_action.num_samples


def aggregate_samples(samples: np.ndarray | FutureSamples, current: int, num_classes: int | None = None, *,
                      method: str = "mode", marginal_source: str = "votes",
                      interval: tuple[float, float] = DEFAULT_INTERVAL) -> SampleAggregate:
    """Consensus, confidences, marginals and next-action distribution of K futures after ``current``."""
    s = FutureSamples.of(samples, num_classes)
    votes = frame_marginals(s)
    labels, chosen = consensus_labels(s, method=method)
    marginals = votes if marginal_source == "votes" else frame_marginals(s, source=marginal_source)
    return SampleAggregate(labels, consensus_segments(labels, votes), marginals,
                           next_action_distribution(s, current, interval=interval), method, marginal_source,
                           chosen)


def outcome_vector(distribution: Mapping[int, float], num_classes: int) -> np.ndarray:
    """``{class id or NO_CHANGE: p}`` -> ``(C + 1,)`` float64: classes first, no change last (index ``C``).

    Probabilities must be >= 0 and sum to 1 (within 1e-6); class ids must lie in ``[0, C)``.
    """
    out = np.zeros(int(num_classes) + 1, dtype=np.float64)
    for key, p in distribution.items():
        p = float(p)
        if not (np.isfinite(p) and p >= 0.0):
            raise ValueError(f"probability of outcome {key} must be finite and >= 0, got {p}")
        index = int(num_classes) if int(key) == NO_CHANGE else _check_class(key, int(num_classes), "class id")
        out[index] += p
    if abs(out.sum() - 1.0) > 1e-6:
        raise ValueError(f"outcome probabilities must sum to 1, got {out.sum():.6g}")
    return out
