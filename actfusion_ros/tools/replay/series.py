"""The per-frame and per-tick files of an ``actfusion-replay`` report, to re-score or plot a replay.

Written beside ``replay.json`` (each file atomically):

* ``frames.csv`` - ``stamp_ns,truth``: every image of the bag with its ground-truth label name (the label
  in force at the frame; a name the model does not know is kept as it is).
* ``segmentation.csv`` - ``stamp_ns,predicted,truth``: the final observation's online segmentation, one
  row per feature (the frames TAS is scored on); ``truth`` is empty where the ground truth is unknown to
  the model or outside the recording (those rows are not scored).
* ``forecasts.jsonl`` - one JSON object per published tick, in order: ``tick`` (0-based), ``stamp_ns``
  (camera stamp of the tick's last feature), ``partial``, ``inference_s``, ``current`` (the live current
  action published at that tick: ``{label, start_ns, end_ns}``), ``observed_segments`` and
  ``future_segments`` (``[{label, start_ns, end_ns}]``, ``[start, end)`` camera ns), ``future_start_ns``,
  ``period_ns`` and ``future_labels`` (one name per future frame; frame ``k`` starts at
  ``future_start_ns + k * period_ns``).

:func:`read_series` loads them back as the replay's :class:`~actfusion_ros.tools.replay.records.TickRecord` list
and :class:`~actfusion_ros.tools.replay.records.GroundTruth`, so
``actfusion_ros.tools.replay.scoring.score(*read_series(out, class_names))`` gives the report's figures again.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actfusion_model.io import atomic_write_text
from actfusion_model.labels import segments_from_labels
from actfusion_ros.tools.replay.records import GroundTruth, TickRecord

FRAMES_CSV = "frames.csv"
SEGMENTATION_CSV = "segmentation.csv"
FORECASTS_JSONL = "forecasts.jsonl"
SERIES_FILES = (FRAMES_CSV, SEGMENTATION_CSV, FORECASTS_JSONL)


class SeriesError(ValueError):
    """A replay series file is missing or malformed."""


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _name(class_names: Sequence[str], class_id: int) -> str:
    return class_names[int(class_id)] if class_id >= 0 else ""


def label_segments(labels: np.ndarray, starts_ns: np.ndarray, end_ns: int,
                   class_names: Sequence[str]) -> list[dict[str, Any]]:
    """``[{label, start_ns, end_ns}]`` of a label series whose frame ``t`` starts at ``starts_ns[t]``.

    A segment ends where the next begins; the last one ends at ``end_ns``.
    """
    bounds = np.append(np.asarray(starts_ns, np.int64), np.int64(end_ns))
    return [{"label": _name(class_names, s.label), "start_ns": int(bounds[s.start]), "end_ns": int(bounds[s.end])}
            for s in segments_from_labels(labels)]


def tick_entry(index: int, rec: TickRecord, class_names: Sequence[str]) -> dict[str, Any]:
    """The ``forecasts.jsonl`` object of one tick."""
    future_times = rec.future_times_ns()
    observed = label_segments(rec.observed_labels, rec.observed_stamps_ns, rec.future_start_ns, class_names)
    return {"tick": index, "stamp_ns": int(rec.stamp_ns), "partial": bool(rec.partial),
            "inference_s": float(rec.inference_s), "current": observed[-1] if observed else None,
            "observed_segments": observed, "future_start_ns": int(rec.future_start_ns),
            "period_ns": int(rec.period_ns),
            "future_labels": [_name(class_names, c) for c in rec.future_labels],
            "future_segments": label_segments(rec.future_labels, future_times,
                                              int(rec.future_start_ns) + rec.period_ns * len(future_times),
                                              class_names)}


def write_series(out: Path, records: Sequence[TickRecord], final: TickRecord, truth: GroundTruth,
                 truth_names: Sequence[str], class_names: Sequence[str]) -> list[Path]:
    """Write ``frames.csv``, ``segmentation.csv`` and ``forecasts.jsonl`` to ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / FRAMES_CSV, _csv_text(
        ("stamp_ns", "truth"), [(int(s), n) for s, n in zip(truth.stamps_ns, truth_names)]))
    gt_final = truth.at(final.observed_stamps_ns)
    atomic_write_text(out / SEGMENTATION_CSV, _csv_text(
        ("stamp_ns", "predicted", "truth"),
        [(int(s), _name(class_names, p), _name(class_names, g))
         for s, p, g in zip(final.observed_stamps_ns, final.observed_labels, gt_final)]))
    atomic_write_text(out / FORECASTS_JSONL, "".join(
        json.dumps(tick_entry(i, rec, class_names)) + "\n" for i, rec in enumerate(records)))
    return [out / name for name in SERIES_FILES]


def _read_csv(path: Path, header: Sequence[str]) -> list[list[str]]:
    if not path.is_file():
        raise SeriesError(f"{path}: not found (written by actfusion-replay)")
    rows = list(csv.reader(path.read_text().splitlines()))
    if not rows or rows[0] != list(header):
        raise SeriesError(f"{path}: expected the header {','.join(header)}")
    return rows[1:]


def read_series(out: Path, class_names: Sequence[str]) -> tuple[list[TickRecord], GroundTruth]:
    """Tick records and ground truth from a report folder (see the module docstring).

    Each record's observed labels are rebuilt per feature for the last complete tick (from
    ``segmentation.csv``) and as the tick's current action otherwise (all that scoring uses).
    """
    index = {n: i for i, n in enumerate(class_names)}
    frames = _read_csv(out / FRAMES_CSV, ("stamp_ns", "truth"))
    truth = GroundTruth(np.asarray([int(r[0]) for r in frames], np.int64),
                        np.asarray([index.get(r[1], -1) for r in frames], np.int64))
    seg = _read_csv(out / SEGMENTATION_CSV, ("stamp_ns", "predicted", "truth"))
    path = out / FORECASTS_JSONL
    if not path.is_file():
        raise SeriesError(f"{path}: not found (written by actfusion-replay)")
    records: list[TickRecord] = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        try:
            e = json.loads(line)
            current = index.get(e["current"]["label"], -1) if e["current"] else -1
            records.append(TickRecord(
                stamp_ns=int(e["stamp_ns"]), observed_stamps_ns=np.asarray([int(e["stamp_ns"])], np.int64),
                observed_labels=np.asarray([current], np.int64), future_start_ns=int(e["future_start_ns"]),
                period_ns=int(e["period_ns"]),
                future_labels=np.asarray([index.get(n, -1) for n in e["future_labels"]], np.int64),
                partial=bool(e["partial"]), inference_s=float(e["inference_s"])))
        except (KeyError, TypeError, ValueError) as err:
            raise SeriesError(f"{path}:{lineno}: malformed tick ({type(err).__name__}: {err})") from None
    complete = [r for r in records if not r.partial] or records
    if complete:
        complete[-1].observed_stamps_ns = np.asarray([int(r[0]) for r in seg], np.int64)
        complete[-1].observed_labels = np.asarray([index.get(r[1], -1) for r in seg], np.int64)
    return records, truth
