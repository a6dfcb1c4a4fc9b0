"""Score prediction files against ground truth (MS-TCN layout), printing JSON.

    python -m actfusion_training.evaluate tas --predictions DIR --ground-truth DIR [--mapping FILE] \
        [--background NAME ...]
    python -m actfusion_training.evaluate lta --predictions DIR --ground-truth DIR --observed 0.2 \
        --predicted 0.1 0.2 0.3 0.5

A prediction file ``<video>.txt`` has the format of ``groundTruth/<video>.txt`` (one class name per
frame); the MS-TCN output format (a ``###`` header line, then the names separated by spaces) is also read,
and so are MS-TCN result files named ``<video>`` without an extension. Videos are matched by file name; an
empty prediction file is refused. The videos scored are those in ``--split`` (a ``.bundle`` file) when
given, else every prediction file; each needs a ground-truth file and (for ``--split``) a prediction.
Labels are compared as names; with ``--mapping`` every name must be in the mapping.

``tas`` prints ``{"acc", "edit", "f1@10", "f1@25", "f1@50", "videos"}``; TAS predictions must have the
ground-truth length. ``--background`` names are dropped from the segments of Edit/F1; the default is
``background`` (as in the MS-TCN reference code), ``--background`` with no name drops nothing. F1 ends the
last segment of each video at frame ``N-1`` as the reference ``eval.py`` does (comparable with published
numbers); ``--exact-f1`` uses the exact end ``N`` (see :mod:`actfusion_training.metrics`).
``lta`` prints ``{"observed", "videos", "moc": {"<beta>": MoC or null}}``: each prediction is the whole sequence
from frame 0 (the observed part is ignored) and frames ``[int(a*N), min(len(pred), int((a+b)*N)))`` count.

Exit status: 0 on success, 2 for bad inputs (one ``error: ...`` line on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from actfusion_model.labels import ClassMapping, LabelError
from actfusion_training.metrics import moc_scores, tas_metrics


class EvaluationError(ValueError):
    """Inputs to the evaluation are missing or inconsistent."""


def read_names(path: Path) -> list[str]:
    """Class names of one label/prediction file (ground-truth or MS-TCN prediction format)."""
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    if lines and lines[0].startswith("###"):
        return [name for ln in lines[1:] for name in ln.split()]
    return lines


def label_files(directory: Path, what: str) -> dict[str, Path]:
    """``{video: path}`` of the label files in ``directory``: ``<video>.txt`` and extension-less ``<video>``.

    MS-TCN's ``predict`` writes its results without an extension; a video present both ways is an error.
    """
    if not directory.is_dir():
        raise EvaluationError(f"{what} directory not found: {directory}")
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if path.suffix == ".txt":
            video = path.stem
        elif "." not in path.name:
            video = path.name
        else:
            continue
        if video in found:
            raise EvaluationError(f"{what} directory {directory} has two files for video {video!r}: "
                                  f"{found[video].name} and {path.name}")
        found[video] = path
    return found


def collect(pred_dir: Path, gt_dir: Path, split: Path | None = None) -> list[tuple[str, list[str], list[str]]]:
    """``(video, pred_names, gt_names)`` for every video to score, sorted by video name.

    Raises :class:`EvaluationError` for a missing prediction or ground truth and for an empty file.
    """
    preds = label_files(pred_dir, "predictions")
    gts = label_files(gt_dir, "ground-truth")
    if split is not None:
        from actfusion_training.data import DatasetError, read_bundle
        try:
            videos = read_bundle(split)
        except DatasetError as err:
            raise EvaluationError(str(err)) from None
        missing = sorted(set(videos) - set(preds))
        if missing:
            raise EvaluationError(f"no prediction for {len(missing)} video(s) of {split.name}: "
                                  f"{', '.join(missing)} (looked in {pred_dir})")
    else:
        videos = sorted(preds)
        if not videos:
            raise EvaluationError(f"no prediction files (<video>.txt or <video>) in {pred_dir}")
    no_gt = sorted(set(videos) - set(gts))
    if no_gt:
        raise EvaluationError(f"no ground truth for {len(no_gt)} prediction(s): {', '.join(no_gt)} "
                              f"(looked in {gt_dir})")
    out = []
    for video in sorted(videos):
        gt = read_names(gts[video])
        if not gt:
            raise EvaluationError(f"ground truth of {video!r} is empty ({gts[video]})")
        pred = read_names(preds[video])
        if not pred:
            raise EvaluationError(f"prediction of {video!r} is empty ({preds[video]}): no frame labels to score")
        out.append((video, pred, gt))
    return out


def encode(videos: Sequence[tuple[str, list[str], list[str]]],
           mapping: ClassMapping | None) -> tuple[list[tuple[np.ndarray, np.ndarray]], ClassMapping]:
    """Turn names into ids, with ``mapping`` or a vocabulary of all names seen (sorted)."""
    if mapping is None:
        vocab = sorted({n for _, p, g in videos for n in (*p, *g)})
        mapping = ClassMapping(tuple(vocab))
    pairs = []
    for video, pred, gt in videos:
        try:
            pairs.append((mapping.encode(pred), mapping.encode(gt)))
        except LabelError as err:
            raise EvaluationError(f"video {video!r}: {err}") from None
    return pairs, mapping


def evaluate_tas(pred_dir: Path, gt_dir: Path, mapping: ClassMapping | None = None,
                 background: Sequence[str] | None = None, split: Path | None = None, *,
                 exact_f1: bool = False) -> dict[str, float]:
    """TAS metrics of prediction files (see module docstring); ``videos`` holds the count.

    ``exact_f1`` uses the exact last-segment end for F1 instead of the reference ``eval.py``'s ``N-1``.
    """
    videos = collect(pred_dir, gt_dir, split)
    for video, pred, gt in videos:
        if len(pred) != len(gt):
            raise EvaluationError(f"video {video!r}: prediction has {len(pred)} frames, "
                                  f"ground truth has {len(gt)}")
    pairs, used = encode(videos, mapping)
    if background is None:
        bg_names: Sequence[str] = ("background",)
    else:
        bg_names = background
        if mapping is not None:
            unknown = [b for b in background if b not in mapping.names]
            if unknown:
                raise EvaluationError(f"--background names not in the mapping: {unknown}")
    bg_ids = [used.id_of(b) for b in bg_names if b in used.names]
    result: dict[str, float] = dict(tas_metrics(pairs, background=bg_ids, exact_f1=exact_f1))
    result["videos"] = len(pairs)
    return result


def evaluate_lta(pred_dir: Path, gt_dir: Path, observed: float, predicted: Sequence[float],
                 mapping: ClassMapping | None = None, split: Path | None = None) -> dict:
    """MoC per prediction ratio of prediction files (see module docstring)."""
    videos = collect(pred_dir, gt_dir, split)
    pairs, _ = encode(videos, mapping)
    moc, _ = moc_scores(pairs, observed, predicted)
    # NaN (no frame compared for that beta) becomes null so the output stays strict JSON.
    return {"observed": observed, "videos": len(pairs),
            "moc": {f"{b:g}": (None if v != v else v) for b, v in moc.items()}}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m actfusion_training.evaluate",
                                     description="Score TAS / LTA prediction files against ground truth.")
    sub = parser.add_subparsers(dest="task", required=True)
    for task in ("tas", "lta"):
        p = sub.add_parser(task)
        p.add_argument("--predictions", required=True, type=Path, help="directory of <video>.txt predictions")
        p.add_argument("--ground-truth", required=True, type=Path, help="groundTruth directory")
        p.add_argument("--mapping", type=Path, help="mapping.txt; every label must be in it")
        p.add_argument("--split", type=Path, help="bundle file listing the videos to score")
        if task == "tas":
            p.add_argument("--background", nargs="*", default=None, metavar="NAME",
                           help="classes dropped from Edit/F1 segments (default: background)")
            p.add_argument("--exact-f1", action="store_true",
                           help="F1 with the exact last-segment end N (default: the reference eval.py's N-1)")
        else:
            p.add_argument("--observed", required=True, type=float, help="observed ratio alpha")
            p.add_argument("--predicted", required=True, type=float, nargs="+", help="prediction ratios beta")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        mapping = ClassMapping.from_file(args.mapping) if args.mapping is not None else None
        if args.task == "tas":
            result = evaluate_tas(args.predictions, args.ground_truth, mapping, args.background, args.split,
                                  exact_f1=args.exact_f1)
        else:
            result = evaluate_lta(args.predictions, args.ground_truth, args.observed, args.predicted,
                                  mapping, args.split)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
