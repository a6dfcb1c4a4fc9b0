"""``actfusion-replay BAG --checkpoint CKPT --out DIR``: evaluate the whole streaming pipeline on a rosbag.

``actfusion-replay BAG --params PARAMS.yaml --out DIR`` replays the deployment a node params file describes:
the pipeline is assembled by :func:`actfusion_ros.builder.build_anticipator`, as ``actfusion_node`` does
(without ``--params``, the flags stand for the node's parameters, with the extractor and feature rate
the checkpoint records). The bag's frames drive the same
:class:`~actfusion_ros.stream.StreamingAnticipator` the node uses, on
the bag's own timestamps and as fast as the machine allows (no DDS): ticks happen every ``1/tick_rate``
seconds of *camera* time. Ground truth comes from a label topic (``std_msgs/String`` change events) or
a per-frame label file. The report has

* TAS metrics of the final observation (its online segmentation against the labels at the feature
  stamps), from :mod:`actfusion_training.metrics`;
* anticipation metrics of every tick's forecast against what really happened next: MoC (pooled per
  ground-truth class) over the whole forecast window and accuracy at fixed look-ahead times; the same for
  the label-only baselines of :mod:`actfusion_training.baselines` made at each tick from the tick's observed
  (online-segmented) labels over the same future frames: "repeat the last observed action" always, and the
  segment grammars of order 1 and 2 when training labels are given (``--baseline-labels``; durations in
  feature frames, the r*N^O protocol, since a stream's length is unknown);
* the next action after the current one (:mod:`actfusion_model.consensus`): every tick's next-action distribution
  scored against what really followed (top-1/top-3, Brier, ECE, reliability; :mod:`actfusion_training.prob_metrics`),
  and the distributions of the ticks drawn on the timeline, e.g. ``stir 70% @ 12.8s (12.1-13.6)``. Each
  tick keeps its K sampled futures (``--num-samples``; :attr:`TickRecord.future_sample_labels`), so the
  distribution is the K samples' (for K = 1 the one forecast's, probability 1);
* per-stage latency (p50/p95): image decoding, per-frame push (features at sampled frames), forecast;
* a timeline PNG: ground truth, the live current action published at each tick, and the forecasts of
  several ticks, titled with the headline metrics;
* the per-frame final segmentation and every tick's forecast (``frames.csv``, ``segmentation.csv``,
  ``forecasts.jsonl``, see :mod:`actfusion_ros.replay_series`), to re-score or plot the replay.

With ``--record OUT.mcap`` the replay is also written as one MCAP file to scrub through in Foxglove: the
bag's camera messages and, at every tick, what ``actfusion_node`` would publish (forecast, current action,
timeline image) plus the class map (:mod:`actfusion_ros.replay_record`).

JSON (``replay.json``) and markdown (``replay.md``) are written beside the PNG, atomically. Inputs (the
output folder, the bag and its topics, the label file, the checkpoint) are checked before the bag is
replayed; every user error exits 2 with one ``actfusion-replay: error: ...`` line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from actfusion_ros.node_params import NodeSettings, read_params_file, validate_values
from actfusion_ros.next_actions import format_next_actions, timed_alternatives
from actfusion_ros.replay_record import RecordSettings
from actfusion_ros.replay_series import SERIES_FILES, write_series
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastResult, StreamConfig
from actfusion_model.backend_names import BACKENDS
from actfusion_model.consensus import (FutureSamples, NextActionDistribution, next_action_distribution, next_action_outcome,
                             outcome_vector)
from actfusion_model.io import atomic_write_text
from actfusion_training.baselines import Forecaster, GrammarForecaster, RepeatLast, resample_labels
from actfusion_training.metrics import MocCounts, tas_metrics

DEFAULT_LOOKAHEAD_S = (1.0, 2.0, 5.0, 10.0)


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


def _percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    arr = np.asarray(values) * 1e3
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "n": int(arr.size)}


def drive(frames: Iterable[tuple[int, np.ndarray]], anticipator: StreamingAnticipator, *,
          tick_period_ns: int, on_tick: Callable[[int, ForecastResult], None] | None = None
          ) -> tuple[list[TickRecord], list[int], dict[str, list[float]]]:
    """Push every frame, tick on camera time; returns tick records, frame stamps and stage timings.

    ``on_tick(stamp_ns, result)``: called with each published result and the stamp of the frame it was
    ticked at (``--record`` writes the tick's messages there).
    """
    records: list[TickRecord] = []
    stamps: list[int] = []
    timings: dict[str, list[float]] = {"decode": [], "push": [], "forecast": []}
    next_tick: int | None = None
    iterator: Iterator[tuple[int, np.ndarray]] = iter(frames)
    while True:
        t0 = time.perf_counter()
        try:
            stamp, rgb = next(iterator)
        except StopIteration:
            break
        t1 = time.perf_counter()
        anticipator.push_frame(int(stamp), rgb)
        t2 = time.perf_counter()
        timings["decode"].append(t1 - t0)
        timings["push"].append(t2 - t1)
        stamps.append(int(stamp))
        if next_tick is None:
            next_tick = int(stamp) + tick_period_ns
        if int(stamp) >= next_tick:
            result = anticipator.tick(int(stamp))
            next_tick += tick_period_ns * max(1, (int(stamp) - next_tick) // tick_period_ns + 1)
            if result is not None:
                records.append(TickRecord.from_result(result))
                timings["forecast"].append(result.inference_s)
                if on_tick is not None:
                    on_tick(int(stamp), result)
    if stamps:  # a last tick on the final frame, so the final observation includes it
        result = anticipator.tick(stamps[-1])
        if result is not None:
            records.append(TickRecord.from_result(result))
            timings["forecast"].append(result.inference_s)
            if on_tick is not None:
                on_tick(stamps[-1], result)
    return records, stamps, timings


def score(records: Sequence[TickRecord], truth: GroundTruth, *, lookahead_s: Sequence[float] = DEFAULT_LOOKAHEAD_S,
          background: Sequence[int] = (), baselines: Sequence[Forecaster] = ()
          ) -> tuple[dict[str, float], dict[str, AnticipationScore]]:
    """TAS of the final observation; anticipation scores of the model, "repeat the last action" and ``baselines``.

    Every baseline forecasts from each tick's *observed* (online-segmented) labels over the same future
    frames, so they differ from the model only in how they anticipate.
    """
    complete = [r for r in records if not r.partial] or list(records)
    if not complete:
        raise ReplayError("no forecast was published: the bag is too short for the configured start-up")
    final = complete[-1]
    gt_final = truth.at(final.observed_stamps_ns)
    known = gt_final >= 0
    tas = tas_metrics([(final.observed_labels[known], gt_final[known])], background=background)
    scores = {"model": _anticipation_score(complete, truth, lookahead_s, lambda r: r.future_labels)}
    for baseline in (RepeatLast(), *baselines):
        scores[baseline.name] = _anticipation_score(complete, truth, lookahead_s, _baseline_future(baseline))
    return tas, scores


def _baseline_future(forecaster: Forecaster) -> Any:
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


@dataclass
class AnticipationScore:
    """MoC over the forecast windows (pooled per ground-truth class) and accuracy at look-ahead times."""

    moc: float
    lookahead_accuracy: dict[str, float | None]
    lookahead_counts: dict[str, int]


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


def next_action_report(records: Sequence[TickRecord], truth: GroundTruth, class_names: Sequence[str], *,
                       samples: Sequence[np.ndarray] | None = None, max_forecasts: int = 5) -> dict[str, Any]:
    """``ReplayReport.next_action``: the scores over the complete ticks and, for the ticks the timeline draws
    (:func:`timeline_rows`), the stated distribution beside what really came next."""
    complete = [r for r in records if not r.partial] or list(records)
    chosen_samples = None
    if samples is not None:
        by_tick = dict(zip((id(r) for r in records), samples))
        chosen_samples = [by_tick[id(r)] for r in complete]
    dists = tick_next_actions(complete, len(class_names), chosen_samples)
    t0 = int(truth.stamps_ns[0])
    _, drawn = timeline_rows(records, truth, max_forecasts=max_forecasts)
    of_tick = {id(r): d for r, d in zip(complete, dists)}
    ticks = []
    for rec in drawn:
        dist = of_tick.get(id(rec)) or tick_next_actions(
            [rec], len(class_names), None if samples is None else [by_tick[id(rec)]])[0]
        answer = tick_next_action_truth(rec, truth)
        ticks.append({"t_s": (rec.stamp_ns - t0) / 1e9, "current": class_names[dist.current],
                      "next": format_next_actions(timed_alternatives(dist, class_names, rec.future_start_ns,
                                                                     rec.period_ns), t0),
                      "no_change": dist.no_change, "truth_next": _outcome_name(answer, class_names)})
    return {"num_samples": dists[0].num_samples if dists else 0,
            "scores": score_tick_next_actions(complete, dists, truth, len(class_names)), "ticks": ticks}


def _outcome_name(answer: tuple[int, int] | None, class_names: Sequence[str]) -> str:
    if answer is None:
        return "?"
    return "no change" if answer[1] < 0 else class_names[answer[1]]


def next_action_lines(next_action: Mapping[str, Any]) -> list[str]:
    """The replay report's next-action section (markdown) from :func:`next_action_report`'s dictionary."""
    if not next_action:
        return []
    k = next_action["num_samples"]
    lines = ["", f"## Next action after the current one ({k} sampled future{'s' if k != 1 else ''} per tick)", ""]
    scores = next_action.get("scores")
    if scores:
        lines += ["| ticks | current right % | top-1 % | top-3 % | Brier | ECE top | ECE stated |",
                  "|---|---|---|---|---|---|---|",
                  f"| {scores['count']} | {scores['current_correct']:.1f} | {scores['top1']:.1f} | "
                  f"{scores['top3']:.1f} | {scores['brier']:.3f} | {scores['ece_top']:.3f} | "
                  f"{scores['ece_stated']:.3f} |", ""]
    lines += ["At the forecasts drawn on the timeline (times: camera seconds from the first frame):", "",
              "| tick | now | next (probability @ expected start (10-90%)) | no change | truth next |",
              "|---|---|---|---|---|"]
    for t in next_action["ticks"]:
        lines.append(f"| {t['t_s']:.1f} s | {t['current']} | {t['next']} | {100 * t['no_change']:.0f}% | "
                     f"{t['truth_next']} |")
    return lines


def write_report(report: ReplayReport, out: Path, class_names: Sequence[str]) -> None:
    """``replay.json`` and ``replay.md`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model = report.anticipation["model"]
    atomic_write_text(out / "replay.json", json.dumps(asdict(report), indent=2, default=_json_default))
    lines = [f"# Replay of `{report.bag}`", "",
             f"{report.frames} frames, {report.ticks} ticks ({report.published} forecasts) in "
             f"{report.wall_s:.2f} s: **{report.frames_per_s:.0f} frames/s**", "",
             "## Segmentation of the final observation", "", "| Acc | Edit | F1@10 | F1@25 | F1@50 |",
             "|---|---|---|---|---|",
             "| " + " | ".join(f"{report.tas[k]:.1f}" for k in ("acc", "edit", "f1@10", "f1@25", "f1@50")) + " |",
             "", "## Anticipation (every tick's forecast vs what happened next)", "",
             "| | MoC, forecast window | " + " | ".join(f"acc @ {k}" for k in model.lookahead_accuracy) + " |",
             "|---|---|" + "---|" * len(model.lookahead_accuracy)]
    for name, sc in report.anticipation.items():
        accs = " | ".join("-" if a is None else f"{a:.1f}" for a in sc.lookahead_accuracy.values())
        lines.append(f"| {name.replace('_', ' ')} | {sc.moc:.1f} | {accs} |")
    lines += ["", "Forecasts scored per look-ahead: "
              + ", ".join(f"{k}: {n}" for k, n in model.lookahead_counts.items()) + "."]
    lines += next_action_lines(report.next_action)
    lines += ["", "## Latency per stage (ms)", "", "| stage | p50 | p95 | n |", "|---|---|---|---|"]
    for stage, p in report.latency_ms.items():
        lines.append(f"| {stage} | {p['p50']:.2f} | {p['p95']:.2f} | {p['n']} |")
    lines += ["", f"Classes: {', '.join(class_names)}", ""]
    atomic_write_text(out / "replay.md", "\n".join(lines))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


TimelineBars = list[tuple[float, float, int]]  # (start_ns, duration_ns, class id) of one timeline row


def timeline_rows(records: Sequence[TickRecord], truth: GroundTruth, *, max_forecasts: int = 5,
                  ) -> tuple[list[tuple[str, TimelineBars]], list[TickRecord]]:
    """The rows of :func:`timeline_png` and the ticks whose forecasts are drawn.

    Rows: the ground truth per frame; the live current action (each tick's current action, from its
    stamp to the next tick's, the last one to the end of the recording); ``max_forecasts`` forecasts
    spread over the complete ticks.
    """
    end_ns = int(truth.stamps_ns[-1])
    complete = [r for r in records if not r.partial] or list(records)
    step = max(1, len(complete) // max_forecasts)
    chosen = complete[::step][-max_forecasts:]
    frame_ns = float(np.median(np.diff(truth.stamps_ns))) if truth.stamps_ns.size > 1 else 1e8
    rows: list[tuple[str, TimelineBars]] = [
        ("ground truth", [(float(t), frame_ns, int(lab)) for t, lab in zip(truth.stamps_ns, truth.labels)])]
    if records:
        stamps = [int(r.stamp_ns) for r in records]
        until = stamps[1:] + [max(end_ns, stamps[-1])]
        rows.append(("live current action", [(float(s), float(e - s), int(r.observed_labels[-1]))
                                             for s, e, r in zip(stamps, until, records)]))
    for rec in chosen:
        rows.append((f"forecast @ {(rec.stamp_ns - int(truth.stamps_ns[0])) / 1e9:.1f} s",
                     [(float(t), float(rec.period_ns), int(lab))
                      for t, lab in zip(rec.future_times_ns(), rec.future_labels)]))
    return rows, chosen


#: Width of the "beyond the recording" panel relative to the recording's (the forecasts' far future, compressed).
BEYOND_WIDTH_RATIO = 0.3


@dataclass(frozen=True)
class TimelineFigure:
    """The matplotlib figure of :func:`timeline_figure` and its parts (for saving and for checking the layout).

    ``recording``: the axes of the recorded time, x from the first frame (0 s) to the last one; ``beyond``: the
    axes of the forecasts' time after the recording, x from the last frame to the farthest forecast frame, or
    ``None`` when no forecast reaches past the recording; ``notes``: the next-action texts drawn.
    """

    figure: Any
    recording: Any
    beyond: Any | None
    notes: tuple[Any, ...]


def timeline_figure(records: Sequence[TickRecord], truth: GroundTruth, class_names: Sequence[str],
                    *, max_forecasts: int = 5, title: str | None = None,
                    forecast_notes: Sequence[str] | None = None) -> TimelineFigure:
    """Ground truth, the live current action and a few ticks' forecasts over camera time (seconds from the
    first frame), as a matplotlib figure (Agg; close it with ``matplotlib.pyplot.close``).

    The recording, the part a forecast can be checked against, gets the main panel (its x-axis ends at the
    last frame); what the forecasts say about the time after it goes into a narrow panel of its own on the
    right (:data:`BEYOND_WIDTH_RATIO` of the width, its own scale), so a forecast horizon of r x the observed
    time does not squeeze the recording. The second row shows what was published live: from each tick's stamp
    to the next one, the current action of that tick (not the final observation's re-segmentation).
    ``title`` goes above (e.g. :func:`headline`). ``forecast_notes``: one text per drawn forecast (e.g. its
    next-action distribution, from :func:`next_action_report`), written in the gap under that forecast's bar
    (the bar is drawn thinner for it) from its tick on, moved left where it would run past the recording's
    panel, so the text never covers a bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t0 = int(truth.stamps_ns[0])
    end_s = (int(truth.stamps_ns[-1]) - t0) / 1e9
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20", max(len(class_names), 1))
    rows, chosen = timeline_rows(records, truth, max_forecasts=max_forecasts)
    first_forecast = len(rows) - len(chosen)
    noted = {first_forecast + i for i, n in enumerate(forecast_notes or ()) if n and n != "-"
             and i < len(chosen)}
    # the panel after the recording: where a forecast has a frame that starts after the last recorded one
    after = [(start - t0 + width) / 1e9 for _, bars in rows[first_forecast:] for start, width, lab in bars
             if lab >= 0 and width > 0 and (start - t0) / 1e9 > end_s]
    has_beyond = bool(after)
    far_s = max(after, default=end_s)
    height = 0.55 * len(rows) + 0.25 * len(noted) + 1.6
    if has_beyond:
        fig, (ax, beyond) = plt.subplots(1, 2, figsize=(12, height), sharey=True,
                                         gridspec_kw={"width_ratios": [1.0, BEYOND_WIDTH_RATIO], "wspace": 0.03})
    else:
        fig, ax = plt.subplots(figsize=(12, height))
        beyond = None
    panels = [ax] if beyond is None else [ax, beyond]
    for y, (_, bars) in enumerate(rows):
        # a noted row: the bar in the upper part of the row, its note in the gap below (the y-axis runs down)
        bar_y, bar_h = (y - 0.15, 0.5) if y in noted else (y, 0.8)
        for start, width, lab in bars:
            if lab >= 0 and width > 0:
                for panel in panels:
                    panel.barh(bar_y, width / 1e9, left=(start - t0) / 1e9, height=bar_h, color=cmap(lab),
                               linewidth=0)
    for rec in chosen:
        ax.axvline((rec.stamp_ns - t0) / 1e9, color="k", lw=0.6, ls=":")
    ax.set_xlim(0.0, end_s if end_s > 0 else 1e-3)
    notes = _note_forecasts(ax, first_forecast, [(r.stamp_ns - t0) / 1e9 for r in chosen], forecast_notes)
    ax.axvline(end_s, color="k", lw=1.2, ls="--")
    ax.annotate("end of recording", xy=(end_s, 1), xycoords=("data", "axes fraction"), xytext=(-3, 2),
                textcoords="offset points", ha="right", va="bottom", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # top row first
    ax.set_xlabel("camera time (s)")
    if beyond is not None:
        beyond.set_xlim(end_s, far_s)
        beyond.set_facecolor("#f4f4f4")
        beyond.tick_params(axis="y", left=False)
        beyond.set_xlabel("after the recording (s)")
        beyond.annotate("forecast only", xy=(0, 1), xycoords="axes fraction", xytext=(3, 2),
                        textcoords="offset points", ha="left", va="bottom", fontsize=8)
    if title:
        ax.set_title(title, fontsize=10, pad=14)
    # legend right of the plot; the tight bounding box crops the figure to what is drawn (no empty band)
    panels[-1].legend(handles=[Patch(color=cmap(i), label=n) for i, n in enumerate(class_names)],
                      loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=max(1, -(-len(class_names) // 20)),
                      fontsize=8, frameon=False, borderaxespad=0.0)
    return TimelineFigure(fig, ax, beyond, tuple(notes))


def timeline_png(path: Path, records: Sequence[TickRecord], truth: GroundTruth, class_names: Sequence[str],
                 *, max_forecasts: int = 5, title: str | None = None,
                 forecast_notes: Sequence[str] | None = None) -> None:
    """:func:`timeline_figure` written to ``path`` as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    from actfusion_model.io import atomic_open

    drawn = timeline_figure(records, truth, class_names, max_forecasts=max_forecasts, title=title,
                            forecast_notes=forecast_notes)
    try:
        with atomic_open(path, "wb") as fh:
            drawn.figure.savefig(fh, format="png", dpi=100, bbox_inches="tight", pad_inches=0.1)
    finally:
        plt.close(drawn.figure)


def _note_forecasts(ax: Any, first_row: int, tick_s: Sequence[float], notes: Sequence[str] | None) -> list[Any]:
    """Write ``notes[i]`` under the bar of forecast row ``first_row + i`` from its tick on, moved left (to end at
    the panel's right edge) where it would run past the panel; "-" notes are skipped. Call after the x-limits
    are set."""
    out = []
    renderer = ax.figure.canvas.get_renderer()
    panel = ax.get_window_extent(renderer)
    for i, (x, note) in enumerate(zip(tick_s, notes or ())):
        if note and note != "-":
            text = ax.text(x, first_row + i + 0.14, f" next: {note} ", va="top", ha="left", fontsize=7)
            box = text.get_window_extent(renderer)
            if box.x1 > panel.x1:
                if box.width <= panel.width:
                    text.set_x(ax.get_xlim()[1])
                    text.set_horizontalalignment("right")
                else:
                    text.set_x(ax.get_xlim()[0])
            out.append(text)
    return out


def check_out_dir(out: Path) -> None:
    """Raise :class:`ReplayError` unless ``out`` is (or can be created as) a writable directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReplayError(f"--out {out}: exists and is not a directory")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ReplayError(f"--out {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ReplayError(f"--out {out}: {parent} is not writable")


def read_labels_file(path: Path) -> list[str]:
    """One label name per line (blank lines skipped); :class:`ReplayError` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"--labels {path}: no such file" if not path.exists() else f"--labels {path}: not a file")
    try:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ReplayError(f"--labels {path}: cannot be read ({type(err).__name__}: {err})") from None


def check_sources(bag: Path, image_topic: str, label_topic: str | None, labels_file: Path | None) -> None:
    """Check, from the bag's metadata only, that the image and label sources exist and fit together.

    Raises :class:`ReplayError` (or :class:`~actfusion_ros.tools.bags.BagError`) naming the problem: a missing
    bag, a missing or mistyped topic (listing the topics present), no ground truth, or a label file whose
    length differs from the number of images.
    """
    from actfusion_ros.tools.bags import IMAGE_TYPES, LABEL_TYPE, bag_topics

    if not label_topic and not labels_file:
        raise ReplayError("ground truth needed: give --label-topic or --labels")
    topics = bag_topics(bag)
    present = ", ".join(f"{t.name} ({t.msgtype}, {t.count} msgs)" for t in topics.values()) or "none"
    for topic, types, what in ((image_topic, tuple(IMAGE_TYPES), "image"),
                               (label_topic, (LABEL_TYPE,), "label")):
        if not topic:
            continue
        if topic not in topics:
            raise ReplayError(f"bag {bag}: {what} topic {topic!r} not found; topics present: {present}")
        if topics[topic].msgtype not in types:
            raise ReplayError(f"bag {bag}: {what} topic {topic!r} has type {topics[topic].msgtype}, "
                              f"expected {' or '.join(types)}")
    if topics[image_topic].count == 0:
        raise ReplayError(f"bag {bag}: no images on {image_topic!r}")
    if labels_file and not label_topic:
        names = read_labels_file(labels_file)
        if len(names) != topics[image_topic].count:
            raise ReplayError(f"{labels_file}: {len(names)} labels for {topics[image_topic].count} images "
                              f"on {image_topic!r}")


def replay(bag: Path, forecaster: Any, extractor: Any, *, out: Path, image_topic: str,
           label_topic: str | None = None, labels_file: Path | None = None, config: StreamConfig,
           tick_rate_hz: float = 2.0, lookahead_s: Sequence[float] = DEFAULT_LOOKAHEAD_S,
           baselines: Sequence[Forecaster] = (), record: RecordSettings | None = None) -> ReplayReport:
    """Replay ``bag`` through the streaming core and write the report to ``out``.

    ``baselines`` (e.g. from :func:`fit_replay_baselines`) are scored beside the model and "repeat last".
    ``record``: also write the camera topic and the node's outputs of every tick into one MCAP file
    (:mod:`actfusion_ros.replay_record`).
    """
    from actfusion_ros.tools.bags import count_messages, labels_at, read_image_messages, read_images, read_labels

    class_names = list(forecaster.class_names)
    check_out_dir(out)
    check_sources(bag, image_topic, label_topic, labels_file)
    if extractor.dim != forecaster.input_dim:
        raise ReplayError(f"the extractor gives {extractor.dim}-d features but the model expects "
                          f"{forecaster.input_dim}-d: use the extractor the model was trained with")
    if tick_rate_hz <= 0:
        raise ReplayError(f"tick rate must be > 0 Hz, got {tick_rate_hz}")
    anticipator = StreamingAnticipator(config, extractor, forecaster, class_names)
    tick_period_ns = int(round(1e9 / tick_rate_hz))
    start = time.perf_counter()
    recorded: dict[str, int] = {}
    if record is None:
        records, stamps, timings = drive(read_images(bag, image_topic), anticipator, tick_period_ns=tick_period_ns)
    else:
        from actfusion_ros.replay_record import ReplayRecorder

        with ReplayRecorder(record, class_names) as recorder:
            records, stamps, timings = drive(recorder.frames(read_image_messages(bag, image_topic), image_topic),
                                             anticipator, tick_period_ns=tick_period_ns, on_tick=recorder.tick)
        recorded = dict(recorder.counts)
    wall = time.perf_counter() - start
    if not stamps:
        raise ReplayError(f"bag {bag}: no images on {image_topic!r}")
    if label_topic:
        names = labels_at(read_labels(bag, label_topic), stamps)
    elif labels_file:
        names = read_labels_file(labels_file)
        if len(names) != len(stamps):
            raise ReplayError(f"{labels_file}: {len(names)} labels for {len(stamps)} frames on {image_topic!r}")
    else:
        raise ReplayError("ground truth needed: give --label-topic or --labels")
    index = {n: i for i, n in enumerate(class_names)}
    truth = GroundTruth(np.asarray(stamps, np.int64), np.asarray([index.get(n, -1) for n in names], np.int64))
    tas, anticipation = score(records, truth, lookahead_s=lookahead_s, baselines=baselines)
    stats = anticipator.stats
    report = ReplayReport(
        bag=str(bag), frames=len(stamps), ticks=int(stats.ticks), published=len(records), wall_s=wall,
        frames_per_s=len(stamps) / wall if wall > 0 else float("inf"), tas=tas, anticipation=anticipation,
        latency_ms={k: _percentiles(v) for k, v in timings.items()},
        stream_stats={f.name: (dict(v) if isinstance(v := getattr(stats, f.name), Mapping) else v)
                      for f in fields(stats)},
        settings={"stream": asdict(config), "tick_rate_hz": tick_rate_hz, "image_topic": image_topic,
                  "messages_on_topic": count_messages(bag, image_topic),
                  "baselines": [RepeatLast().name, *(b.name for b in baselines)],
                  **({"record": {"path": str(record.path), "messages": recorded}} if record else {})},
        next_action=next_action_report(records, truth, class_names,
                                       samples=[r.sampled_futures() for r in records]))
    write_report(report, out, class_names)
    write_series(out, records, final_record(records), truth, names, class_names)
    timeline_png(out / "timeline.png", records, truth, class_names, title=headline(report),
                 forecast_notes=[t["next"] for t in report.next_action.get("ticks", ())])
    return report


def final_record(records: Sequence[TickRecord]) -> TickRecord:
    """The tick whose observation TAS scores: the last complete one (the last one if all are partial)."""
    complete = [r for r in records if not r.partial] or list(records)
    if not complete:
        raise ReplayError("no forecast was published: the bag is too short for the configured start-up")
    return complete[-1]


def headline(report: ReplayReport) -> str:
    """One-line summary of a report for plot titles: TAS of the final observation and MoC."""
    tas = report.tas
    moc = ", ".join(f"{name.replace('_', ' ')} {sc.moc:.1f}" for name, sc in report.anticipation.items())
    return (f"{Path(report.bag).name}: Acc {tas['acc']:.1f}, Edit {tas['edit']:.1f}, F1@50 {tas['f1@50']:.1f}"
            f" | MoC {moc}")


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``prog: error: ...`` line (exit 2), without the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def check_arguments(args: argparse.Namespace) -> None:
    """Every check that needs no model: numbers, paths, the bag's topics. Raises :class:`ReplayError`."""
    if args.threads is not None and args.threads < 1:
        raise ReplayError(f"--threads must be >= 1, got {args.threads}")
    if args.tick_rate <= 0:
        raise ReplayError(f"--tick-rate must be > 0 Hz, got {args.tick_rate}")
    if args.feature_rate is not None and args.feature_rate <= 0:
        raise ReplayError(f"--feature-rate must be > 0 Hz, got {args.feature_rate}")
    if any(s <= 0 for s in args.lookahead):
        raise ReplayError(f"--lookahead times must be > 0 s, got {args.lookahead}")
    if args.params is not None:
        if not args.params.is_file():
            raise ReplayError(f"--params {args.params}: no such file")
    elif args.backend == "torch":
        if not args.checkpoint:
            raise ReplayError("backend torch needs --checkpoint")
        if not args.checkpoint.is_file():
            raise ReplayError(f"--checkpoint {args.checkpoint}: no such file")
    else:
        if not args.onnx_dir:
            raise ReplayError(f"backend {args.backend} needs --onnx-dir (written by actfusion-export)")
        if not args.onnx_dir.is_dir():
            raise ReplayError(f"--onnx-dir {args.onnx_dir}: no such directory")
    _parse_kv(args.extractor_opt)
    check_out_dir(args.out)
    if args.record is not None:
        record_settings(args)
    check_sources(args.bag, args.image_topic, args.label_topic, args.labels)


#: Flags that choose the model and the stream; with ``--params`` the params file decides them instead.
PIPELINE_FLAGS = ("checkpoint", "extractor", "extractor_opt", "feature_rate", "tick_rate", "ratio", "max_horizon_s",
                  "max_window_s", "min_observed", "steps", "seed", "num_samples", "backend", "onnx_dir", "engine_dir", "device",
                  "threads")
#: A bag is replayed as one episode, never stale: the largest gap the node's parameters allow.
_NEVER_S = 1.0e6


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The node parameters the model and stream flags stand for (the extractor is resolved later)."""
    values: dict[str, Any] = {
        "backend": args.backend, "device": args.device, "seed": args.seed, "ddim_steps": args.steps or 0,
        "num_samples": args.num_samples,
        "num_threads": args.threads or 0, "tick_rate_hz": args.tick_rate, "ratio": args.ratio,
        "max_horizon_s": args.max_horizon_s, "max_window_s": args.max_window_s,
        "min_observed_frames": args.min_observed, "stale_after_s": _NEVER_S, "episode_gap_s": _NEVER_S}
    if args.backend == "torch":
        values["checkpoint"] = str(args.checkpoint)
    else:
        values["onnx_dir"] = str(args.onnx_dir)
        values["engine_dir"] = str(args.engine_dir or "")
    return values


def pipeline_settings(args: argparse.Namespace, defaults: Mapping[str, Any]) -> tuple[NodeSettings, Any]:
    """The node settings of this replay and, when already loaded, its forecaster (else ``None``).

    ``--params``: the node's params file, exactly (no model or stream flag may be given beside it).
    Otherwise the flags, with the extractor and feature rate the model records unless given.
    """
    from actfusion_ros.builder import build_forecaster

    if args.params is not None:
        given = sorted(f"--{name.replace('_', '-')}" for name in PIPELINE_FLAGS
                       if getattr(args, name) != defaults[name])
        if given:
            raise ReplayError(f"--params {args.params} decides the model and the stream; drop {', '.join(given)}")
        return validate_values(read_params_file(args.params)), None
    values = _flag_values(args)
    forecaster = build_forecaster(validate_values(values), 0, None)
    recorded = getattr(forecaster, "pipeline", None)
    name = args.extractor or (recorded.extractor if recorded else None)
    if not name:
        raise ReplayError("the checkpoint names no feature extractor: pass --extractor")
    kwargs = dict(recorded.extractor_kwargs) if recorded and not args.extractor else {}
    kwargs.update(_parse_kv(args.extractor_opt))
    rate = args.feature_rate or (recorded.feature_rate_hz if recorded else 2.0)
    values.update(extractor=name, extractor_kwargs=json.dumps(kwargs), feature_rate_hz=float(rate))
    return validate_values(values), forecaster


def record_settings(args: argparse.Namespace) -> RecordSettings | None:
    """``--record`` / ``--record-size`` / ``--record-camera`` as :class:`RecordSettings` (``None`` without
    ``--record``); :class:`ReplayError` for a bad path or size."""
    if args.record is None:
        return None
    path = Path(args.record)
    if path.suffix != ".mcap":
        raise ReplayError(f"--record {path}: the file name must end in .mcap")
    if path.is_dir():
        raise ReplayError(f"--record {path}: is a directory")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise ReplayError(f"--record {path}: {path.parent} is not a writable directory")
    width, sep, height = str(args.record_size).lower().partition("x")
    try:
        size = (int(width), int(height)) if sep else None
    except ValueError:
        size = None
    if size is None:
        raise ReplayError(f"--record-size must be WIDTHxHEIGHT, e.g. 640x240, got {args.record_size!r}")
    try:
        settings = RecordSettings(path, width=size[0], height=size[1], camera=bool(args.record_camera))
        settings.timeline_config(["x"])  # validates the size
    except ValueError as err:
        raise ReplayError(f"--record-size {args.record_size}: {err}") from None
    return settings


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 (one line on stderr) for any user error."""
    from actfusion_ros.builder import build_anticipator

    ap = _OneLineParser(prog="actfusion-replay", description=__doc__.split("\n")[0])
    ap.add_argument("bag", type=Path)
    ap.add_argument("--params", type=Path,
                    help="the node's params file (ROS 2 YAML): model, extractor, stream and tick rate exactly as "
                         "actfusion_node runs them (replaces the model and stream flags below)")
    ap.add_argument("--checkpoint", type=Path, help="our checkpoint (backend torch; also names the pipeline)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--label-topic", help="std_msgs/String topic with the ground-truth action")
    ap.add_argument("--labels", type=Path, help="per-frame label file (one name per image message)")
    ap.add_argument("--extractor", help="feature extractor (default: the checkpoint's pipeline metadata)")
    ap.add_argument("--extractor-opt", nargs="*", default=[], metavar="KEY=VALUE")
    ap.add_argument("--feature-rate", type=float, help="Hz (default: the checkpoint's pipeline metadata)")
    ap.add_argument("--tick-rate", type=float, default=2.0, help="forecasts per second of camera time")
    ap.add_argument("--ratio", type=float, default=4.0)
    ap.add_argument("--max-horizon-s", type=float, default=300.0)
    ap.add_argument("--max-window-s", type=float, default=300.0)
    ap.add_argument("--min-observed", type=int, default=4)
    ap.add_argument("--steps", type=int, help="DDIM steps (default: the model's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-samples", type=int, default=1,
                    help="futures sampled per forecast; K > 1 scores their per-frame consensus")
    ap.add_argument("--backend", default="torch", choices=BACKENDS)
    ap.add_argument("--onnx-dir", type=Path, help="actfusion-export directory (onnxruntime / tensorrt)")
    ap.add_argument("--engine-dir", type=Path, help="TensorRT engine cache (default <onnx-dir>/tensorrt)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--lookahead", type=float, nargs="*", default=list(DEFAULT_LOOKAHEAD_S))
    ap.add_argument("--threads", type=int, help="torch CPU threads (small models: 1 is fastest on a busy CPU)")
    ap.add_argument("--baseline-labels", type=Path, nargs="+", metavar="PATH",
                    help="training labels for the grammar baselines: an MS-TCN dataset root (with "
                         "--baseline-split), a groundTruth directory, or label files")
    ap.add_argument("--baseline-split", type=int, default=1, help="training split of a dataset root (default 1)")
    ap.add_argument("--record", type=Path, metavar="OUT.mcap",
                    help="also write the camera topic, every tick's forecast, current action and timeline image and "
                         "the class map into one MCAP file (camera stamps as log times; open it in Foxglove)")
    ap.add_argument("--record-size", default="640x240", metavar="WxH", help="timeline image size (default 640x240)")
    ap.add_argument("--record-camera", action="store_true",
                    help="draw the latest camera frame above each recorded timeline image")
    ap.add_argument("--baseline-labels-hz", type=float,
                    help="labels per second of those files (default: one per feature frame, as actfusion-extract)")
    args = ap.parse_args(argv)
    try:
        check_arguments(args)
        settings, forecaster = pipeline_settings(args, {name: ap.get_default(name) for name in PIPELINE_FLAGS})
        anticipator = build_anticipator(settings, forecaster=forecaster)  # what actfusion_node builds
        rate = anticipator.config.feature_rate_hz
        grammars = fit_replay_baselines(args.baseline_labels, anticipator.class_names, split=args.baseline_split,
                                        labels_hz=args.baseline_labels_hz, feature_rate_hz=float(rate)
                                        ) if args.baseline_labels else []
        report = replay(args.bag, anticipator.forecaster, anticipator.extractor, out=args.out,
                        image_topic=args.image_topic, label_topic=args.label_topic, labels_file=args.labels,
                        config=anticipator.config, tick_rate_hz=settings.tick_rate_hz, lookahead_s=args.lookahead,
                        baselines=grammars, record=record_settings(args))
    except (ValueError, RuntimeError, OSError) as err:
        print(f"actfusion-replay: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    print((args.out / "replay.md").read_text())
    print(f"wrote {args.out / 'replay.json'}, {args.out / 'replay.md'}, {args.out / 'timeline.png'} and the "
          f"per-frame / per-tick series ({', '.join(SERIES_FILES)})")
    if args.record is not None:
        counts = report.settings["record"]["messages"]
        print(f"recorded {args.record}: " + ", ".join(f"{topic} {n}" for topic, n in counts.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
