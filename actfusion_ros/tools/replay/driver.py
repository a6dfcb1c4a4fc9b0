"""The replay itself: a bag's frames through the node's streaming core on camera time, then the report.

:func:`drive` pushes frames and ticks every ``tick_period_ns`` of camera time (as fast as the machine allows,
no DDS); :func:`replay` checks the inputs, drives the stream, scores the ticks and writes the report folder
(``replay.json``, ``replay.md``, ``timeline.png``, the series files and, with ``record``, the MCAP file).
"""
from __future__ import annotations

import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import ForecastResult, StreamConfig
from actfusion_ros.tools.replay.figure import timeline_png
from actfusion_ros.tools.replay.inputs import check_out_dir, check_sources, read_labels_file
from actfusion_ros.tools.replay.recording import RecordSettings
from actfusion_ros.tools.replay.records import GroundTruth, ReplayError, ReplayReport, TickRecord, final_record
from actfusion_ros.tools.replay.report import headline, latency_percentiles, next_action_report, write_report
from actfusion_ros.tools.replay.scoring import DEFAULT_LOOKAHEAD_S, score
from actfusion_ros.tools.replay.series import write_series
from actfusion_training.baselines import LabelForecaster, RepeatLast


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


def replay(bag: Path, forecaster: Any, extractor: Any, *, out: Path, image_topic: str,
           label_topic: str | None = None, labels_file: Path | None = None, config: StreamConfig,
           tick_rate_hz: float = 2.0, lookahead_s: Sequence[float] = DEFAULT_LOOKAHEAD_S,
           baselines: Sequence[LabelForecaster] = (), record: RecordSettings | None = None) -> ReplayReport:
    """Replay ``bag`` through the streaming core and write the report to ``out``.

    ``baselines`` (e.g. from :func:`fit_replay_baselines`) are scored beside the model and "repeat last".
    ``record``: also write the camera topic and the node's outputs of every tick into one MCAP file
    (:mod:`actfusion_ros.tools.replay.recording`).
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
        from actfusion_ros.tools.replay.recording import ReplayRecorder

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
        latency_ms={k: latency_percentiles(v) for k, v in timings.items()},
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
