"""Tests of the missed-frames estimate (actfusion_ros.node.diagnostics.MissedFrameEstimator): frames lost before
the callback, estimated from stamp gaps."""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_ros.node.diagnostics import MissedFrameEstimator

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S


def _camera(n: int, fps: float = 30.0, jitter_ms: float = 4.0, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return [T0 + int(round(k * S / fps)) + int(rng.integers(-jitter_ms * MS, jitter_ms * MS + 1))
            for k in range(n)]


def _run(stamps: list[int], **kwargs) -> MissedFrameEstimator:
    est = MissedFrameEstimator(5 * S, **kwargs)
    for s in stamps:
        est.observe(s)
    return est


def test_a_jittered_camera_without_losses_misses_nothing() -> None:
    est = _run(_camera(600))
    assert est.missed == 0
    assert est.rate_hz == pytest.approx(30.0, rel=0.02)


def test_lost_frames_are_counted_from_the_gaps() -> None:
    stamps = _camera(600, seed=1)
    lost = set(range(100, 103)) | {200} | set(range(300, 310)) | {450, 452, 454}
    received = [s for k, s in enumerate(stamps) if k not in lost]
    est = _run(received)
    assert est.missed == len(lost) == 17
    assert est.rate_hz == pytest.approx(30.0, rel=0.02)


def test_each_gap_reports_what_it_missed() -> None:
    est = MissedFrameEstimator(5 * S, min_intervals=4)
    period = 100 * MS
    out = [est.observe(T0 + k * period) for k in range(5)]            # learns 100 ms
    out.append(est.observe(T0 + 7 * period))                          # frames 5 and 6 lost
    out.append(est.observe(T0 + 8 * period))
    assert out == [0, 0, 0, 0, 0, 2, 0] and est.missed == 2


def test_nothing_is_estimated_before_the_rate_is_known() -> None:
    est = MissedFrameEstimator(5 * S, min_intervals=8)
    assert est.observe(T0) == 0 and est.observe(T0 + S) == 0          # one interval: rate unknown
    assert est.interval_ns is None and est.rate_hz == 0.0 and est.missed == 0


def test_pauses_duplicates_reordering_and_jumps_back_are_not_losses() -> None:
    stamps = _camera(90, jitter_ms=0.0)
    est = _run(stamps)
    last = stamps[-1]
    assert est.observe(last) == 0                                      # duplicate
    assert est.observe(last - 10 * MS) == 0                            # out of order (kept the newest)
    assert est.observe(last + S // 30) == 0                            # the next frame after the newest
    assert est.observe(last + S // 30 + 6 * S) == 0                    # a 6 s pause: a new episode
    assert est.observe(T0) == 0                                        # a jump back (bag loop)
    assert est.observe(T0 + S // 30) == 0
    assert est.missed == 0


def test_a_rate_change_is_followed() -> None:
    fast = _camera(200, fps=30.0, jitter_ms=0.0)
    slow = [fast[-1] + k * S // 10 for k in range(1, 200)]           # the camera drops to 10 fps
    est = _run([*fast, *slow], window=32)
    assert est.rate_hz == pytest.approx(10.0)
    assert est.missed <= 32                                            # only while the median moves over


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="max_gap_ns"):
        MissedFrameEstimator(0)
    with pytest.raises(ValueError, match="min_intervals"):
        MissedFrameEstimator(S, window=4, min_intervals=5)


def test_a_burst_of_frames_1_ms_apart_loses_nothing_and_keeps_the_rate() -> None:
    """Issue 18: a burst of frames 1 ms apart (a driver flushing its buffer, a malformed burst) made the median
    interval 1 ms, and every camera interval after it then counted as ~32 lost frames (thousands in all)."""
    before = _camera(300, seed=2)
    burst = [before[-1] + (k + 1) * MS for k in range(500)]
    after = [burst[-1] + S // 30 + k * S // 30 for k in range(300)]
    est = _run([*before, *burst, *after])
    assert est.missed == 0
    assert est.rate_hz == pytest.approx(30.0, rel=0.02)


def test_arrivals_that_may_not_teach_the_rate_close_gaps_without_training() -> None:
    """Malformed frames arrive (no gap across them) but never teach the interval: a malformed burst 1 ms apart
    before any good frame leaves the rate to the good frames."""
    est = MissedFrameEstimator(5 * S, min_intervals=4)
    for k in range(200):
        assert est.observe(T0 + k * MS, learn=False) == 0
    assert est.interval_ns is None
    good = [T0 + 200 * MS + k * 100 * MS for k in range(20)]
    assert [est.observe(s) for s in good] == [0] * 20
    assert est.observe(good[-1] + 100 * MS, learn=False) == 0          # one malformed frame on time
    assert est.observe(good[-1] + 200 * MS) == 0                       # no gap across it
    assert est.missed == 0 and est.interval_ns == 100 * MS


def test_a_faster_camera_is_followed_once_it_lasts() -> None:
    slow = _camera(200, fps=10.0, jitter_ms=0.0)
    fast = [slow[-1] + k * S // 40 for k in range(1, 400)]            # the camera speeds up to 40 fps
    est = _run([*slow, *fast], window=32)
    assert est.rate_hz == pytest.approx(40.0)
    assert est.missed == 0
    lost = est.observe(fast[-1] + 3 * S // 40)                          # then two frames lost at 40 fps
    assert lost == 2
