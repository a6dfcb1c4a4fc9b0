"""A shortened soak of the streaming core (benchmarks/soak.py): 3 simulated minutes at 30 fps.

Checks counts and resources only, never wall-clock timing: every frame is accounted for, the buffer
stays bounded, camera stalls give exactly the expected stale ticks and episode resets, and memory,
threads and file descriptors do not grow once the window is full. The full 30-minute figures are in
docs/reliability.md.
"""
from __future__ import annotations

import math

import pytest

from actfusion_ros.stream_types import StreamConfig
from benchmarks.soak import CoreSoakReport, CoreSoakSettings, SoakCamera, proc_sample, run_core_soak

STREAM = StreamConfig(feature_rate_hz=2.0, max_window_s=30.0, max_horizon_s=30.0, stale_after_s=2.0,
                      episode_gap_s=5.0)
SETTINGS = CoreSoakSettings(minutes=3.0, camera=SoakCamera(fps=30.0), episodes=1, stream=STREAM, tick_rate_hz=2.0,
                            stall_every_s=60.0, stall_s=8.0, ddim_steps=2, torch_threads=1,
                            bucket_minutes=1.0, sample_every_s=10.0)
FPS = SETTINGS.camera.fps


def expected_stale_ticks() -> int:
    """Independent count: a tick at T sees every frame stamped <= T; stale when the newest is > 2 s old."""
    fps, s = FPS, SETTINGS
    stalls = [(k * s.stall_every_s, k * s.stall_every_s + s.stall_s)
              for k in range(1, int(s.minutes * 60 / s.stall_every_s) + 1) if k * s.stall_every_s < s.minutes * 60]
    sent = [i / fps for i in range(int(s.minutes * 60 * fps)) if not any(a <= i / fps < b for a, b in stalls)]
    count, j = 0, 0
    for n in range(1, int(s.minutes * 60 * s.tick_rate_hz) + 1):
        t = n / s.tick_rate_hz
        while j + 1 < len(sent) and sent[j + 1] <= t + 1e-9:
            j += 1
        count += t - sent[j] > STREAM.stale_after_s
    return count


@pytest.fixture(scope="module")
def report() -> CoreSoakReport:
    return run_core_soak(SETTINGS)


def test_core_soak_streams_with_the_node_stream_config() -> None:
    """The soak configures its stream with the node's StreamConfig: defaults as before, but a 60 s window."""
    default = CoreSoakSettings()
    assert default.stream == StreamConfig(max_window_s=60.0, max_horizon_s=60.0)
    assert (default.stream.feature_rate_hz, default.stream.ratio, default.stream.stale_after_s,
            default.stream.episode_gap_s, default.stream.min_observed_frames) == (2.0, 4.0, 2.0, 5.0, 4)
    assert default.camera == SoakCamera(fps=30.0, width=64, height=48)


def test_proc_sample_reads_this_process() -> None:
    s = proc_sample()
    assert s.rss_kb > 10_000 and s.peak_rss_kb >= s.rss_kb and s.threads >= 1 and s.fds >= 3


@pytest.mark.slow
def test_every_frame_is_accounted_for(report: CoreSoakReport) -> None:
    st = report.stats
    total = int(SETTINGS.minutes * 60 * FPS)
    assert report.frames_offered + report.frames_stalled == total
    assert report.frames_stalled == report.expected_stalls * int(SETTINGS.stall_s * FPS)
    assert st["frames_received"] == report.frames_offered
    assert st["frames_received"] == (st["frames_accepted"] + st["frames_not_due"] + st["duplicates"]
                                     + st["out_of_order"] + st["invalid_frames"] + st["extract_errors"])
    assert (st["duplicates"], st["out_of_order"], st["invalid_frames"], st["extract_errors"]) == (0, 0, 0, 0)
    # 30 fps -> 2 Hz: exactly every 15th frame of each episode (the grid restarts after a stall)
    assert st["frames_accepted"] == report.expected_features
    assert report.expected_stalls == 2


@pytest.mark.slow
def test_stalls_give_stale_ticks_and_new_episodes(report: CoreSoakReport) -> None:
    st = report.stats
    assert st["reset_reasons"] == {"gap": report.expected_stalls}
    assert st["episode"] == report.expected_stalls
    assert st["skip_reasons"] == {"stale": expected_stale_ticks()}
    assert expected_stale_ticks() == 12 * report.expected_stalls   # ticks at t+2.0 .. t+7.5 s of a stall at t
    assert st["ticks"] == st["published"] + st["skipped_ticks"]
    assert st["ticks"] == int(SETTINGS.minutes * 60 * SETTINGS.tick_rate_hz)
    assert sum(b.ticks for b in report.buckets) == st["published"]


@pytest.mark.slow
def test_buffer_stays_bounded(report: CoreSoakReport) -> None:
    st = report.stats
    capacity = math.ceil(STREAM.max_window_s * STREAM.feature_rate_hz)
    assert report.window_capacity == capacity
    assert report.max_buffer_length == capacity          # the window filled, and never more
    assert st["buffer_length"] <= capacity
    assert st["dropped_features"] > 0                    # the bound was exercised


@pytest.mark.slow
def test_no_growth_of_memory_threads_or_file_descriptors(report: CoreSoakReport) -> None:
    warm, end = report.warm, report.end
    assert warm is not end, "the warm-up sample must be taken before the end"
    # generous: a real leak (e.g. keeping every frame, 9 KB each) would add ~50 MB over 5400 frames
    limit_kb = int(warm.rss_kb * 0.10) + 32 * 1024
    assert end.rss_kb - warm.rss_kb < limit_kb, (warm, end, report.rss_series_mb)
    assert report.max_rss_kb - warm.rss_kb < limit_kb, (warm, report.max_rss_kb)
    assert end.threads == warm.threads, (warm, end)
    assert end.fds == warm.fds, (warm, end)


# ---------------------------------------------------------------------------------------------- exit status


def _dds_report(exit_code: int | None):
    from benchmarks.soak import DdsSoakReport

    s = proc_sample()
    return DdsSoakReport(seconds=1.0, fps=30.0, sent=30, received_forecasts=2, first=s, warmup_s=1.0, start=s,
                         end=s, samples=[(0.0, s)], diagnostics={}, exit_code=exit_code, exit_s=0.1)


def test_soak_problems() -> None:
    from benchmarks.soak import soak_problems

    assert soak_problems(dds_requested=False, dds_skip_reason=None, dds=None) == []
    assert soak_problems(dds_requested=True, dds_skip_reason=None, dds=_dds_report(0)) == []
    assert soak_problems(dds_requested=True, dds_skip_reason="rclpy missing", dds=None, allow_dds_skip=True) == []
    assert soak_problems(dds_requested=True, dds_skip_reason="rclpy missing", dds=None) == [
        "DDS soak skipped: rclpy missing (--allow-dds-skip to accept)"]
    assert soak_problems(dds_requested=True, dds_skip_reason=None, dds=_dds_report(1)) == [
        "the node exited with code 1 after SIGINT (expected 0)"]
    assert soak_problems(dds_requested=True, dds_skip_reason=None, dds=_dds_report(None)) == [
        "the node did not exit within 30 s of SIGINT"]
    assert soak_problems(dds_requested=True, dds_skip_reason=None, dds=None, dds_error="node exited with 2") == [
        "DDS soak failed: node exited with 2"]


@pytest.mark.parametrize("case, extra, expected", [
    ("skipped", [], 1), ("skip allowed", ["--allow-dds-skip"], 0), ("node exit 1", [], 1), ("node exit 0", [], 0),
    ("node died", [], 1)])
def test_soak_main_exit_status(monkeypatch: pytest.MonkeyPatch, tmp_path, capsys, case, extra, expected) -> None:
    import json

    import actfusion_ros.testing.ros_harness as ros_helpers
    import benchmarks.soak as soak

    monkeypatch.setattr(ros_helpers, "ros_skip_reason", lambda: "rclpy not importable" if "skip" in case else None)

    def fake_dds_soak(*args, **kwargs):
        if case == "node died":
            raise RuntimeError("node exited with 2")
        return _dds_report(int(case[-1]))

    monkeypatch.setattr(soak, "run_dds_soak", fake_dds_soak)
    rc = soak.main(["--minutes", "0", "--dds-seconds", "1", "--json", str(tmp_path / "s.json"), *extra])
    assert rc == expected, capsys.readouterr()
    status = json.loads((tmp_path / "s.json").read_text())["status"]
    assert status["ok"] == (expected == 0) and len(status["problems"]) == (expected != 0)
    assert ("SOAK FAILED" in capsys.readouterr().err) == (expected != 0)
