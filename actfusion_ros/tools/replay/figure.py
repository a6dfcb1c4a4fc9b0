"""The replay's timeline figure: ground truth, the live current action and a few ticks' forecasts over camera time.

:func:`timeline_rows` chooses what is drawn, :func:`timeline_figure` draws it with matplotlib (Agg),
:func:`timeline_png` writes it (``timeline.png`` of a replay report).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from actfusion_ros.tools.replay.records import GroundTruth, TickRecord, drawn_ticks

TimelineBars = list[tuple[float, float, int]]  # (start_ns, duration_ns, class id) of one timeline row


def timeline_rows(records: Sequence[TickRecord], truth: GroundTruth, *, max_forecasts: int = 5,
                  ) -> tuple[list[tuple[str, TimelineBars]], list[TickRecord]]:
    """The rows of :func:`timeline_png` and the ticks whose forecasts are drawn.

    Rows: the ground truth per frame; the live current action (each tick's current action, from its
    stamp to the next tick's, the last one to the end of the recording); ``max_forecasts`` forecasts
    spread over the complete ticks (:func:`~actfusion_ros.tools.replay.records.drawn_ticks`).
    """
    end_ns = int(truth.stamps_ns[-1])
    chosen = drawn_ticks(records, max_forecasts)
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
