"""The replay report's files ``replay.json`` and ``replay.md``, and the summaries they hold.

:func:`next_action_report` (the next-action section: scores and the drawn ticks' distributions beside what
really came next), :func:`latency_percentiles`, :func:`write_report` and :func:`headline` (the plot title).
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from actfusion_model.io import atomic_write_text
from actfusion_ros.next_actions import format_next_actions, timed_alternatives
from actfusion_ros.tools.replay.records import GroundTruth, ReplayReport, TickRecord, complete_ticks, drawn_ticks
from actfusion_ros.tools.replay.scoring import score_tick_next_actions, tick_next_action_truth, tick_next_actions


def latency_percentiles(values: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of stage times ``values`` (seconds) in ms, and their count."""
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "n": 0}
    arr = np.asarray(values) * 1e3
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)), "n": int(arr.size)}


def next_action_report(records: Sequence[TickRecord], truth: GroundTruth, class_names: Sequence[str], *,
                       samples: Sequence[np.ndarray] | None = None, max_forecasts: int = 5) -> dict[str, Any]:
    """``ReplayReport.next_action``: the scores over the complete ticks and, for the ticks the timeline draws
    (:func:`~actfusion_ros.tools.replay.records.drawn_ticks`), the stated distribution beside what really came next."""
    complete = complete_ticks(records)
    chosen_samples = None
    if samples is not None:
        by_tick = dict(zip((id(r) for r in records), samples))
        chosen_samples = [by_tick[id(r)] for r in complete]
    dists = tick_next_actions(complete, len(class_names), chosen_samples)
    t0 = int(truth.stamps_ns[0])
    drawn = drawn_ticks(records, max_forecasts)
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


def headline(report: ReplayReport) -> str:
    """One-line summary of a report for plot titles: TAS of the final observation and MoC."""
    tas = report.tas
    moc = ", ".join(f"{name.replace('_', ' ')} {sc.moc:.1f}" for name, sc in report.anticipation.items())
    return (f"{Path(report.bag).name}: Acc {tas['acc']:.1f}, Edit {tas['edit']:.1f}, F1@50 {tas['f1@50']:.1f}"
            f" | MoC {moc}")
