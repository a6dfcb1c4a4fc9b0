"""The replay's timeline figure (actfusion_ros.tools.replay.figure.timeline_figure): the recording gets the main
panel, the forecasts' time after it a narrow panel of its own, and the next-action notes sit beside the bars, not on
them.
Checked on the figure's layout (axis limits, axes extents, text and bar extents), not on pixels."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib.pyplot as plt  # noqa: E402

from actfusion_ros.tools.replay.figure import BEYOND_WIDTH_RATIO, timeline_figure, timeline_png  # noqa: E402
from actfusion_ros.tools.replay.records import GroundTruth, TickRecord  # noqa: E402

NAMES = ("take_cup", "pour_water", "stir", "drink")
PERIOD = 250_000_000                 # 4 Hz features
T0 = 1_700_000_000 * 10**9
RECORDING_S = 30.0


def _truth() -> GroundTruth:
    stamps = T0 + np.arange(int(RECORDING_S * 30) + 1, dtype=np.int64) * (10**9 // 30)   # 30 fps, 0 .. 30 s
    labels = np.minimum((stamps - T0) // (8 * 10**9), 3).astype(np.int64)                  # a new action every 8 s
    return GroundTruth(stamps, labels)


def _tick(at_s: float) -> TickRecord:
    """A tick at ``at_s`` forecasting r = 4 times its observed time (capped at 60 s), as the demo's node does."""
    n_obs = int(at_s * 4)
    horizon = min(4 * n_obs, 240)
    stamp = T0 + int(at_s * 1e9)
    future = (np.arange(horizon) // 20 + n_obs // 32) % len(NAMES)
    return TickRecord(stamp_ns=stamp, observed_stamps_ns=T0 + np.arange(n_obs, dtype=np.int64) * PERIOD,
                      observed_labels=np.minimum(np.arange(n_obs) // 32, 3), future_start_ns=stamp + PERIOD,
                      period_ns=PERIOD, future_labels=future.astype(np.int64), partial=False, inference_s=0.01)


RECORDS = [_tick(s) for s in (1.0, 7.0, 13.0, 19.0, 25.0)]
NOTES = ["pour_water 100% @ 2.7s (2.5-3.1)", "stir 50% @ 8.5s (8.2-8.8), drink 38% @ 9.0s (8.7-9.3)",
         "stir 50% @ 17.1s (16.6-17.6), drink 38% @ 15.2s (14.3-16.4), take_cup 12% @ 14.5s",
         "drink 100% @ 20.7s (20.4-21.0)", "stir 88% @ 27.4s (27.2-27.8), drink 12% @ 27.2s"]


def _far_end_s() -> float:
    return max((r.future_times_ns()[-1] + r.period_ns - T0) / 1e9 for r in RECORDS)


def test_the_recording_has_the_main_panel_and_the_forecast_beyond_it_a_compressed_one() -> None:
    drawn = timeline_figure(RECORDS, _truth(), NAMES, forecast_notes=NOTES)
    try:
        assert _far_end_s() > 2.5 * RECORDING_S                  # the premise: forecasts reach far past the end
        assert drawn.recording.get_xlim() == pytest.approx((0.0, RECORDING_S))
        assert drawn.beyond is not None
        assert drawn.beyond.get_xlim() == pytest.approx((RECORDING_S, _far_end_s()))
        rec_w = drawn.recording.get_position().width
        beyond_w = drawn.beyond.get_position().width
        assert rec_w / beyond_w == pytest.approx(1.0 / BEYOND_WIDTH_RATIO, rel=0.02)
        assert rec_w / (rec_w + beyond_w) > 0.7                   # the checkable part: most of the width
        assert drawn.beyond.get_position().x0 > drawn.recording.get_position().x1   # side by side, beyond right
    finally:
        plt.close(drawn.figure)


def test_next_action_notes_sit_beside_the_bars_never_over_one() -> None:
    drawn = timeline_figure(RECORDS, _truth(), NAMES, forecast_notes=NOTES)
    try:
        fig = drawn.figure
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        assert len(drawn.notes) == len(NOTES)
        bars = [p.get_window_extent(renderer) for ax in (drawn.recording, drawn.beyond) for p in ax.patches
                if p.get_width() > 0]
        axes_box = drawn.recording.get_window_extent(renderer)
        assert len(bars) > 20
        for note in drawn.notes:
            box = note.get_window_extent(renderer)
            assert not any(box.overlaps(bar) for bar in bars), note.get_text()
            assert axes_box.x0 - 0.5 <= box.x0 and box.x1 <= axes_box.x1 + 0.5, note.get_text()  # over the recording
    finally:
        plt.close(drawn.figure)


def test_without_a_forecast_past_the_end_there_is_one_panel_and_the_png_is_written(tmp_path) -> None:
    short = [TickRecord(stamp_ns=T0 + 10**9, observed_stamps_ns=T0 + np.arange(4, dtype=np.int64) * PERIOD,
                        observed_labels=np.zeros(4, np.int64), future_start_ns=T0 + 10**9 + PERIOD, period_ns=PERIOD,
                        future_labels=np.ones(8, np.int64), partial=False, inference_s=0.01)]
    drawn = timeline_figure(short, _truth(), NAMES)
    try:
        assert drawn.beyond is None and drawn.recording.get_xlim() == pytest.approx((0.0, RECORDING_S))
    finally:
        plt.close(drawn.figure)
    timeline_png(tmp_path / "t.png", RECORDS, _truth(), NAMES, forecast_notes=NOTES, title="a title")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"]      # written atomically: no temporary left
