"""Evaluation metrics for action segmentation (TAS) and long-term anticipation (LTA).

Definitions follow the field's reference evaluation code (MS-TCN ``eval.py`` for TAS, FUTR
``eval_file`` for MoC), see ``reference/paper.md``:

* **Acc**: 100 * correct frames / all frames, pooled over videos (background frames included).
* **Edit**: mean over videos of ``(1 - levenshtein(pred_segs, gt_segs) / max(#pred, #gt)) * 100`` on the
  segment label sequences (background segments dropped); two empty sequences score 100.
* **F1@k**: per video each predicted segment is matched to the same-label ground-truth segment of highest
  IoU; a hit if IoU >= k and that ground-truth segment is not yet hit, else a false positive; unhit
  ground-truth segments are false negatives. TP/FP/FN are summed over videos before F1 = 2PR/(P+R).
* **MoC**: per (alpha, beta) frames ``[int(alpha*N), min(len(pred), int((alpha+beta)*N)))`` are compared,
  correct/wrong counts are pooled per ground-truth class over all videos, and MoC is the mean over classes
  with at least one frame of correct/(correct+wrong), times 100.

Segments are half-open ``[start, end)`` runs from :func:`actfusion_model.labels.segments_from_labels`.

**F1 segment ends.** The reference ``eval.py`` (MS-TCN / ASFormer, used for the published numbers) gives
every segment an exclusive end index except the last segment of a video, whose end is the *last index*
``N-1``; F1's intersection and union use those ends, so the last segment counts one frame short. That is
the default here (``exact_f1=False``), so F1 matches published numbers; ``exact_f1=True`` uses the true
half-open ``[start, N)`` end (differences up to a few tenths of an F1 point). Acc, Edit and MoC do not
depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from actfusion_model.labels import Segment, segments_from_labels

#: IoU thresholds of the reported F1 scores, with their result keys.
F1_THRESHOLDS: tuple[tuple[str, float], ...] = (("f1@10", 0.10), ("f1@25", 0.25), ("f1@50", 0.50))

#: Keys of the dictionary returned by :func:`tas_metrics`, in reporting order.
TAS_KEYS: tuple[str, ...] = ("acc", "edit") + tuple(k for k, _ in F1_THRESHOLDS)


def _as_labels(x: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D label array, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer class ids, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_pair(pred: np.ndarray, gt: np.ndarray, index: int) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"video {index}: prediction has {pred.size} frames but ground truth has {gt.size}")


# ---------------------------------------------------------------------------------------------- edit


def levenshtein(a: Sequence[int], b: Sequence[int]) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1) between two label sequences."""
    a = list(a)
    b = list(b)
    if not a:
        return len(b)
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def edit_score(pred: Sequence[int] | np.ndarray, gt: Sequence[int] | np.ndarray,
               background: Iterable[int] = ()) -> float:
    """Segmental edit score of one video, in percent (100 when both segment lists are empty)."""
    bg = tuple(background)
    p = [s.label for s in segments_from_labels(_as_labels(pred, "pred"), ignore=bg)]
    g = [s.label for s in segments_from_labels(_as_labels(gt, "gt"), ignore=bg)]
    longest = max(len(p), len(g))
    if longest == 0:
        return 100.0
    return (1.0 - levenshtein(p, g) / longest) * 100.0


# ---------------------------------------------------------------------------------------------- F1


def _bounds(segments: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.fromiter((s.label for s in segments), dtype=np.int64, count=len(segments))
    starts = np.fromiter((s.start for s in segments), dtype=np.int64, count=len(segments))
    ends = np.fromiter((s.end for s in segments), dtype=np.int64, count=len(segments))
    return labels, starts, ends


def segment_iou(pred: Sequence[Segment], gt: Sequence[Segment]) -> np.ndarray:
    """IoU matrix ``(len(pred), len(gt))`` between segments of the *same* label (0 across labels)."""
    pl, ps, pe = _bounds(pred)
    gl, gs, ge = _bounds(gt)
    inter = np.minimum(pe[:, None], ge[None, :]) - np.maximum(ps[:, None], gs[None, :])
    union = np.maximum(pe[:, None], ge[None, :]) - np.minimum(ps[:, None], gs[None, :])
    iou = np.clip(inter, 0, None) / np.maximum(union, 1)
    return np.where(pl[:, None] == gl[None, :], iou, 0.0)


def reference_f1_segments(segments: Sequence[Segment], length: int) -> list[Segment]:
    """``segments`` with the reference ``eval.py`` ends: a segment ending at ``length`` ends at ``length - 1``.

    Only the segment that runs to the end of the video (when it is not dropped as background) changes;
    every other end stays exclusive, as in the reference ``get_labels_start_end_time``.
    """
    return [Segment(s.label, s.start, length - 1) if s.end == length else s for s in segments]


def f1_counts(pred: Sequence[int] | np.ndarray, gt: Sequence[int] | np.ndarray, threshold: float,
              background: Iterable[int] = (), *, exact_f1: bool = False) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of one video at IoU ``threshold`` (greedy matching in prediction order).

    ``exact_f1=False`` (default) ends the video's last segment at ``N-1`` as the reference ``eval.py``
    does (see the module docstring); ``True`` uses the half-open end ``N``.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {threshold}")
    bg = tuple(background)
    pred_arr, gt_arr = _as_labels(pred, "pred"), _as_labels(gt, "gt")
    p = segments_from_labels(pred_arr, ignore=bg)
    g = segments_from_labels(gt_arr, ignore=bg)
    if not exact_f1:
        p, g = reference_f1_segments(p, pred_arr.size), reference_f1_segments(g, gt_arr.size)
    if not g:
        return 0, len(p), 0
    iou = segment_iou(p, g)
    best = iou.argmax(axis=1) if p else np.zeros(0, dtype=np.int64)
    hit = np.zeros(len(g), dtype=bool)
    tp = fp = 0
    for j, idx in enumerate(best):
        if iou[j, idx] >= threshold and not hit[idx]:
            hit[idx] = True
            tp += 1
        else:
            fp += 1
    return tp, fp, int(len(g) - hit.sum())


def f1_from_counts(tp: int, fp: int, fn: int) -> float:
    """F1 in percent from summed counts; 0 when precision + recall is 0 (or undefined)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall) * 100.0


# ---------------------------------------------------------------------------------------------- TAS


def tas_metrics(pairs: Iterable[tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
                background: Iterable[int] = (), *, exact_f1: bool = False) -> dict[str, float]:
    """Acc, Edit and F1@{10,25,50} over ``(pred, gt)`` int label arrays, one pair per video.

    ``background`` class ids are dropped from the segments used by Edit and F1 (frames still count for
    Acc). F1 uses the reference ``eval.py`` segment ends unless ``exact_f1`` (see the module docstring).
    Returns ``{"acc", "edit", "f1@10", "f1@25", "f1@50"}`` in percent. Raises ``ValueError`` for
    no videos, mismatched lengths or non-integer labels.
    """
    bg = tuple(int(b) for b in background)
    correct = total = 0
    edits: list[float] = []
    counts = {key: [0, 0, 0] for key, _ in F1_THRESHOLDS}
    for i, (pred, gt) in enumerate(pairs):
        p = _as_labels(pred, f"video {i} prediction")
        g = _as_labels(gt, f"video {i} ground truth")
        _check_pair(p, g, i)
        correct += int(np.count_nonzero(p == g))
        total += g.size
        edits.append(edit_score(p, g, bg))
        for key, k in F1_THRESHOLDS:
            tp, fp, fn = f1_counts(p, g, k, bg, exact_f1=exact_f1)
            c = counts[key]
            c[0] += tp
            c[1] += fp
            c[2] += fn
    if not edits:
        raise ValueError("tas_metrics needs at least one video")
    out = {"acc": 100.0 * correct / total if total else 0.0, "edit": float(np.mean(edits))}
    for key, _ in F1_THRESHOLDS:
        out[key] = f1_from_counts(*counts[key])
    return out


# ---------------------------------------------------------------------------------------------- MoC


@dataclass
class MocCounts:
    """Per-ground-truth-class correct / wrong frame counts pooled over videos (one (alpha, beta))."""

    correct: dict[int, int] = field(default_factory=dict)
    wrong: dict[int, int] = field(default_factory=dict)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add the frame-wise comparison of two equal-length windows."""
        ok = pred == gt
        for cls, n in zip(*np.unique(gt[ok], return_counts=True)):
            self.correct[int(cls)] = self.correct.get(int(cls), 0) + int(n)
        for cls, n in zip(*np.unique(gt[~ok], return_counts=True)):
            self.wrong[int(cls)] = self.wrong.get(int(cls), 0) + int(n)

    @property
    def classes(self) -> list[int]:
        """Ground-truth classes with at least one compared frame."""
        return sorted(set(self.correct) | set(self.wrong))

    def moc(self) -> float:
        """Mean over classes of correct/(correct+wrong), in percent; NaN when no frame was compared."""
        accs = [self.correct.get(c, 0) / (self.correct.get(c, 0) + self.wrong.get(c, 0)) for c in self.classes]
        return float(np.mean(accs) * 100.0) if accs else float("nan")


def moc_window(n_frames: int, pred_len: int, observed: float, predicted: float) -> tuple[int, int]:
    """Frames ``[int(observed*N), min(pred_len, N, int((observed+predicted)*N)))`` scored for one video."""
    start = int(observed * n_frames)
    end = min(pred_len, n_frames, int((observed + predicted) * n_frames))
    return start, max(start, end)


def moc_counts(pairs: Iterable[tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
               observed: float, predicted: float) -> MocCounts:
    """Pooled per-class counts over ``(pred, gt)`` pairs for one (observed, predicted) ratio pair.

    ``pred`` is the whole predicted sequence from frame 0 (observed part included, it is ignored); it
    may be shorter or longer than ``gt``. ``N`` is ``len(gt)`` at the raw frame rate.
    """
    _check_ratios(observed, (predicted,))
    counts = MocCounts()
    for i, (pred, gt) in enumerate(pairs):
        p = _as_labels(pred, f"video {i} prediction")
        g = _as_labels(gt, f"video {i} ground truth")
        start, end = moc_window(g.size, p.size, observed, predicted)
        counts.add(p[start:end], g[start:end])
    return counts


def moc_scores(pairs: Iterable[tuple[Sequence[int] | np.ndarray, Sequence[int] | np.ndarray]],
               observed: float, predicted: Sequence[float] = (0.1, 0.2, 0.3, 0.5),
               ) -> tuple[dict[float, float], dict[float, MocCounts]]:
    """MoC for several prediction ratios: ``({beta: moc}, {beta: pooled counts})``."""
    _check_ratios(observed, predicted)
    pairs = [(_as_labels(p, f"video {i} prediction"), _as_labels(g, f"video {i} ground truth"))
             for i, (p, g) in enumerate(pairs)]
    if not pairs:
        raise ValueError("moc_scores needs at least one video")
    counts = {float(beta): moc_counts(pairs, observed, beta) for beta in predicted}
    return {beta: c.moc() for beta, c in counts.items()}, counts


def _check_ratios(observed: float, predicted: Sequence[float]) -> None:
    if not 0.0 <= observed < 1.0:
        raise ValueError(f"observed ratio must be in [0, 1), got {observed}")
    for beta in predicted:
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"predicted ratio must be in (0, 1], got {beta}")


def summary_score(metrics: Mapping[str, float]) -> float:
    """Mean of Acc, Edit and the three F1 scores (the authors' "TAS score" for model selection)."""
    return float(np.mean([metrics[k] for k in TAS_KEYS]))
