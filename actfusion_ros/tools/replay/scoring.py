"""The replay's scores: what each tick's forecast got right, against the ground truth and the label-only baselines.

* :func:`score`: TAS of the final observation (its online segmentation against the labels at the feature
  stamps, :mod:`actfusion_training.metrics`); MoC over the forecast window and accuracy at fixed look-ahead
  times of every complete tick's forecast, and of the baselines of :mod:`actfusion_training.baselines` made
  from the same tick's observed labels over the same future frames (:func:`fit_replay_baselines` fits the
  segment grammars on training labels);
* :func:`tick_next_actions`, :func:`tick_next_action_truth`, :func:`score_tick_next_actions`: each tick's
  distribution of the action after the current one (:mod:`actfusion_model.consensus`), what really followed,
  and the probabilistic scores (:mod:`actfusion_training.prob_metrics`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actfusion_model.consensus import (
    FutureSamples,
    NextActionDistribution,
    next_action_distribution,
    next_action_outcome,
    outcome_vector,
)
from actfusion_ros.tools.replay.records import (
    AnticipationScore,
    GroundTruth,
    ReplayError,
    TickRecord,
    complete_ticks,
    final_record,
)
from actfusion_training.baselines import GrammarForecaster, LabelForecaster, RepeatLast, resample_labels
from actfusion_training.metrics import MocCounts, tas_metrics

DEFAULT_LOOKAHEAD_S = (1.0, 2.0, 5.0, 10.0)


def score(records: Sequence[TickRecord], truth: GroundTruth, *, lookahead_s: Sequence[float] = DEFAULT_LOOKAHEAD_S,
          background: Sequence[int] = (), baselines: Sequence[LabelForecaster] = ()
          ) -> tuple[dict[str, float], dict[str, AnticipationScore]]:
    """TAS of the final observation; anticipation scores of the model, "repeat the last action" and ``baselines``.

    Every baseline forecasts from each tick's *observed* (online-segmented) labels over the same future
    frames, so they differ from the model only in how they anticipate.
    """
    complete = complete_ticks(records)
    final = final_record(records)
    gt_final = truth.at(final.observed_stamps_ns)
    known = gt_final >= 0
    tas = tas_metrics([(final.observed_labels[known], gt_final[known])], background=background)
    scores = {"model": _anticipation_score(complete, truth, lookahead_s, lambda r: r.future_labels)}
    for baseline in (RepeatLast(), *baselines):
        scores[baseline.name] = _anticipation_score(complete, truth, lookahead_s, _baseline_future(baseline))
    return tas, scores


def _baseline_future(forecaster: LabelForecaster) -> Any:
    """A tick's future labels as ``forecaster`` predicts them (video length unknown: r*N^O durations)."""
    return lambda r: forecaster.forecast(r.observed_labels, r.future_labels.shape[0])


def fit_replay_baselines(paths: Sequence[Path], class_names: Sequence[str], *, split: int = 1,
                         labels_hz: float | None = None, feature_rate_hz: float,
                         orders: Sequence[int] = (1, 2)) -> list[GrammarForecaster]:
    """Segment grammars fitted on training labels (:func:`actfusion_training.data.read_label_sequences`) at the
    stream's feature rate: labels are one per feature frame (as ``actfusion-extract`` writes them) unless
    ``labels_hz`` gives their rate, then they are resampled to ``feature_rate_hz``."""
    from actfusion_training.data import read_label_sequences

    try:
        seqs = read_label_sequences(paths, class_names, split=split)
        if labels_hz is not None:
            seqs = [resample_labels(s, labels_hz, feature_rate_hz) for s in seqs]
        return [GrammarForecaster.fit(seqs, order=k) for k in orders]
    except ValueError as err:
        raise ReplayError(f"--baseline-labels {' '.join(map(str, paths))}: {err}") from None


def _anticipation_score(records: Sequence[TickRecord], truth: GroundTruth, lookahead_s: Sequence[float],
                        future_of: Any) -> AnticipationScore:
    moc = MocCounts()
    hits = {f"{s:g}s": [0, 0] for s in lookahead_s}
    for rec in records:
        future = future_of(rec)
        if future.size == 0:
            continue
        gt = truth.at(rec.future_times_ns())
        ok = gt >= 0
        if ok.any():
            moc.add(future[ok], gt[ok])
        for s in lookahead_s:
            k = int(round(s * 1e9 / rec.period_ns)) - 1
            if 0 <= k < future.size and gt[k] >= 0:
                hits[f"{s:g}s"][0] += int(future[k] == gt[k])
                hits[f"{s:g}s"][1] += 1
    return AnticipationScore(moc.moc(), {k: (100.0 * c / n if n else None) for k, (c, n) in hits.items()},
                             {k: n for k, (_, n) in hits.items()})


def tick_next_actions(records: Sequence[TickRecord], num_classes: int,
                      samples: Sequence[np.ndarray] | None = None) -> list[NextActionDistribution]:
    """Each tick's distribution of the action after its current one (the last observed label).

    ``samples[i]``: tick ``i``'s K sampled futures over its ``H`` future frames, as probabilities
    ``(K, C, H)`` or labels ``(K, H)`` (:class:`actfusion_model.consensus.FutureSamples`); default (``None``): the
    tick's one published forecast as a single sample. This is the hook for forecasters that provide K samples.
    """
    if samples is not None and len(samples) != len(records):
        raise ValueError(f"{len(samples)} sample arrays for {len(records)} ticks")
    out = []
    for i, rec in enumerate(records):
        futures = rec.future_labels[None, :] if samples is None else samples[i]
        k_samples = FutureSamples.of(futures, num_classes)
        if k_samples.horizon != rec.future_labels.shape[0]:
            raise ValueError(f"tick {i}: samples cover {k_samples.horizon} future frames, the forecast "
                             f"{rec.future_labels.shape[0]}")
        out.append(next_action_distribution(k_samples, int(rec.observed_labels[-1])))
    return out


def tick_next_action_truth(rec: TickRecord, truth: GroundTruth) -> tuple[int, int] | None:
    """``(current, outcome)`` of the ground truth at a tick: the label at its stamp and the first different
    label over its future frames up to the end of the recording (else :data:`~actfusion_model.consensus.NO_CHANGE`);
    ``None`` when the label at the stamp is unknown."""
    current = int(truth.at(np.asarray([rec.stamp_ns]))[0])
    if current < 0:
        return None
    future = truth.at(rec.future_times_ns())
    unknown = np.flatnonzero(future < 0)
    known = future[:unknown[0]] if unknown.size else future
    return current, next_action_outcome(known, current)


def score_tick_next_actions(records: Sequence[TickRecord], distributions: Sequence[NextActionDistribution],
                            truth: GroundTruth, num_classes: int, *, num_bins: int = 10) -> dict[str, Any] | None:
    """Next-action scores of the ticks (:func:`actfusion_training.prob_metrics.next_action_summary`) against what
    followed (:func:`tick_next_action_truth`), plus ``current_correct`` (percent of ticks whose current
    action was the truth's); ``None`` when no tick has a known current label."""
    from actfusion_training.prob_metrics import next_action_summary, outcome_index

    probs, outcomes, current_ok = [], [], []
    for rec, dist in zip(records, distributions):
        answer = tick_next_action_truth(rec, truth)
        if answer is None:
            continue
        probs.append(outcome_vector(dist.as_mapping(), num_classes))
        outcomes.append(outcome_index(answer[1], num_classes))
        current_ok.append(dist.current == answer[0])
    if not probs:
        return None
    summary = next_action_summary(np.stack(probs), np.asarray(outcomes, dtype=np.int64), num_bins=num_bins)
    return {**summary, "current_correct": 100.0 * float(np.mean(current_ok))}
