"""Timeline, loss-curve and reliability figures (matplotlib, Agg backend; nothing is shown on screen).

A timeline has one colour bar per row (ground truth first), one colour per class, segments from
:func:`actfusion_model.labels.segments_from_labels`. For a forecast row the observed part is drawn plain and the
anticipated part hatched, with a vertical line at the observation cut; frames without a prediction are
white.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from actfusion_model.io import atomic_open  # noqa: E402
from actfusion_model.labels import segments_from_labels  # noqa: E402

if TYPE_CHECKING:
    from actfusion_training.prob_metrics import ReliabilityTable


@dataclass(frozen=True)
class TimelineRow:
    """One bar: a title, raw-rate class ids (negative: no prediction) and, for forecasts, the observed cut."""

    title: str
    labels: np.ndarray
    observed: int | None = None


def class_colors(num_classes: int) -> list[tuple[float, float, float, float]]:
    """A distinct colour per class (tab20, then hsv for more than 20 classes)."""
    cmap = plt.get_cmap("tab20") if num_classes <= 20 else plt.get_cmap("hsv", num_classes + 1)
    return [cmap(i % 20 if num_classes <= 20 else i) for i in range(num_classes)]


def _draw_row(ax, y: float, row: TimelineRow, colors: Sequence) -> None:
    for seg in segments_from_labels(row.labels):
        if seg.label < 0:
            continue
        anticipated_from = row.observed if row.observed is not None else seg.end
        parts = [(seg.start, min(seg.end, anticipated_from), None),
                 (max(seg.start, anticipated_from), seg.end, "///")]
        for start, end, hatch in parts:
            if end > start:
                ax.add_patch(Rectangle((start, y), end - start, 0.8, facecolor=colors[seg.label],
                                       edgecolor="black" if hatch else "none", linewidth=0.0, hatch=hatch))
    if row.observed is not None:
        ax.plot([row.observed, row.observed], [y - 0.05, y + 0.85], color="black", linewidth=1.5)


def plot_timeline(path: str | Path, rows: Sequence[TimelineRow], class_names: Sequence[str],
                  title: str = "") -> Path:
    """Write a PNG with one bar per row and a legend of the classes that appear; returns ``path``."""
    if not rows:
        raise ValueError("plot_timeline needs at least one row")
    n = max(int(np.asarray(r.labels).size) for r in rows)
    colors = class_colors(len(class_names))
    fig, ax = plt.subplots(figsize=(12, 0.55 * len(rows) + 1.6))
    try:
        for i, row in enumerate(rows):
            labels = np.asarray(row.labels, dtype=np.int64)
            if labels.size and labels.max() >= len(class_names):
                raise ValueError(f"row {row.title!r}: class id {labels.max()} >= {len(class_names)} classes")
            _draw_row(ax, len(rows) - 1 - i, TimelineRow(row.title, labels, row.observed), colors)
        ax.set_xlim(0, max(n, 1))
        ax.set_ylim(-0.2, len(rows))
        ax.set_yticks([len(rows) - 1 - i + 0.4 for i in range(len(rows))])
        ax.set_yticklabels([r.title for r in rows])
        ax.set_xlabel("frame (raw rate)")
        if title:
            ax.set_title(title)
        used = sorted({int(x) for r in rows for x in np.unique(np.asarray(r.labels)) if x >= 0})
        handles = [Patch(facecolor=colors[c], label=class_names[c]) for c in used]
        if any(r.observed is not None for r in rows):
            handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="anticipated"))
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.25 if len(rows) < 4 else -0.12),
                  ncol=min(6, max(1, len(handles))), fontsize=7, frameon=False)
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_loss_curves(csv_path: str | Path, path: str | Path, columns: Sequence[str] = ("total",)) -> Path:
    """Plot ``columns`` of a per-iteration loss CSV (with an ``iteration`` column) with a running mean."""
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    x = np.array([float(r["iteration"]) for r in rows])
    fig, ax = plt.subplots(figsize=(8, 4))
    try:
        for col in columns:
            y = np.array([float(r[col]) for r in rows if r.get(col, "") != ""])
            if y.size != x.size:
                continue
            ax.plot(x, y, alpha=0.3, linewidth=0.8)
            k = max(1, min(50, y.size // 10))
            ax.plot(x[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=f"{col} (mean of {k})")
        ax.set_xlabel("iteration (video)")
        ax.set_ylabel("loss")
        ax.legend()
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_reliability(path: str | Path, table: ReliabilityTable, title: str = "") -> Path:
    """Write a reliability diagram PNG of a :class:`actfusion_training.prob_metrics.ReliabilityTable`; returns ``path``.

    Top: per bin the observed frequency (bar over the bin) against the diagonal of perfect calibration, the
    mean stated probability as a dot; bottom: the number of pairs per bin. The title carries the ECE.
    """
    if not table.bins:
        raise ValueError("plot_reliability needs a table with at least one bin")
    fig, (ax, ax_count) = plt.subplots(2, 1, figsize=(5, 6), sharex=True,
                                       gridspec_kw={"height_ratios": (3, 1)})
    try:
        filled = [b for b in table.bins if b.count]
        ax.bar([b.lower for b in filled], [b.observed for b in filled], width=[b.upper - b.lower for b in filled],
               align="edge", color="tab:blue", edgecolor="black", linewidth=0.5, label="observed frequency")
        ax.plot([b.mean_stated for b in filled], [b.observed for b in filled], "o", color="tab:orange",
                markersize=4, label="at mean stated probability")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfectly calibrated")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("observed frequency")
        ax.legend(loc="upper left", fontsize=7, frameon=False)
        heading = f"ECE {table.ece:.3f}, {table.count} pairs" + (f" ({table.mode})" if table.mode else "")
        ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=9)
        ax_count.bar([b.lower for b in table.bins], [b.count for b in table.bins],
                     width=[b.upper - b.lower for b in table.bins], align="edge", color="grey", edgecolor="black",
                     linewidth=0.5)
        ax_count.set_xlabel("stated probability")
        ax_count.set_ylabel("pairs")
        fig.tight_layout()
        return _save(fig, path)
    finally:
        plt.close(fig)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    return path
