"""The newcomer demo end to end on a small budget (the README's first command runs the full one)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")

from actfusion_ros.tools.demo import main, ros_available  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("dds", [False, True], ids=["core", "dds"])
def test_demo_runs_end_to_end(tmp_path, capsys, dds: bool) -> None:
    if dds and not ros_available():
        pytest.skip("rclpy / actfusion_msgs not importable (run scripts/build_msgs.sh .venv)")
    work = tmp_path / "demo"
    args = ["--work", str(work), "--episodes", "6", "--epochs", "2", "--rate", "2"] + ([] if dds else ["--no-dds"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "now:" in out and "truth now:" in out
    report = json.loads((work / "replay" / "replay.json").read_text())
    assert report["frames"] > 100 and report["published"] > 5
    assert set(report["tas"]) == {"acc", "edit", "f1@10", "f1@25", "f1@50"}
    assert (work / "replay" / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    from actfusion_model.checkpoint import load_checkpoint
    from actfusion_model.features.pipeline import checkpoint_pipeline

    recorded = checkpoint_pipeline(load_checkpoint(work / "model.pt").metadata)  # extract -> train -> model
    assert recorded is not None and recorded.extractor == "color_layout" and recorded.feature_rate_hz == 4.0
    if not dds:  # a second run reuses the trained model
        assert main(args) == 0
        assert "using the trained model" in capsys.readouterr().out


def test_demo_line_shows_the_next_action_distribution() -> None:
    from types import SimpleNamespace

    from actfusion_ros.tools.demo import describe, message_next_actions

    def t(ns: int) -> SimpleNamespace:
        return SimpleNamespace(sec=ns // 10**9, nanosec=ns % 10**9)

    t0 = 5 * 10**9
    msg = SimpleNamespace(next_actions=[
        SimpleNamespace(label="add_sugar", probability=0.7, expected_start=t(t0 + 12_800_000_000),
                        start_lower=t(t0 + 12_100_000_000), start_upper=t(t0 + 13_600_000_000)),
        SimpleNamespace(label="stir", probability=0.2, expected_start=t(t0 + 14 * 10**9),
                        start_lower=t(t0 + 14 * 10**9), start_upper=t(t0 + 14 * 10**9))])
    line = describe(("pour", 0.9), [("pour", t0, 0), ("stir", t0 + 10**9, 0)], t0, t0 + 10**10, "pour",
                    message_next_actions(msg))
    assert "next: add_sugar 70% @ 12.8s (12.1-13.6), stir 20% @ 14.0s " in line and "now: pour" in line
    # without next_actions (a one-sample node, an older message build): the future segments as before
    plain = describe(("pour", 0.9), [("pour", t0, 0), ("stir", t0 + 10**9, 0)], t0, t0 + 10**10, "pour",
                     message_next_actions(SimpleNamespace()))
    assert "next: stir @ 1.0s " in plain


def test_demo_reads_next_actions_from_the_real_message() -> None:
    msgs = pytest.importorskip("actfusion_msgs.msg", reason="actfusion_msgs not built")
    if not hasattr(msgs, "ActionAlternative"):
        pytest.fail("actfusion_msgs was built before ActionAlternative.msg; rerun scripts/build_msgs.sh")
    from builtin_interfaces.msg import Time

    from actfusion_ros.next_actions import TimedAlternative
    from actfusion_ros.tools.demo import message_next_actions

    alt = msgs.ActionAlternative(label="stir", class_id=3, probability=0.25, expected_start=Time(sec=2, nanosec=5),
                                 start_lower=Time(sec=1), start_upper=Time(sec=3))
    assert message_next_actions(msgs.ActionForecast(next_actions=[alt])) == (
        TimedAlternative("stir", 0.25, 2_000_000_005, 1_000_000_000, 3_000_000_000),)
    assert message_next_actions(msgs.ActionForecast()) == ()


def test_demo_core_line_shows_the_stream_results_next_actions() -> None:
    """live_core prints each stream result with its next-action distribution (result_line)."""
    import numpy as np

    from actfusion_ros.next_actions import TimedAlternative
    from actfusion_ros.stream_types import ForecastResult, TimedSegment
    from actfusion_ros.tools.demo import result_line

    s = 10**9
    now = TimedSegment("pour", 0, 0, 3 * s, 0.9)
    later = TimedSegment("stir", 1, 3 * s, 9 * s, 0.6)
    result = ForecastResult(
        stamp_ns=2 * s, episode=1, current=now, observed=(now,), future=(later,), num_observed=3, horizon=6,
        partial=False, feature_period_ns=s, observed_stamps_ns=np.arange(3) * s,
        observed_probs=np.ones((2, 3), np.float32), future_probs=np.ones((2, 6), np.float32), inference_s=0.0,
        latency_s=0.0, future_samples=np.ones((4, 2, 6), np.float32), num_samples=4,
        next_actions=(TimedAlternative("stir", 0.75, 4 * s, 3 * s, 5 * s, 1),))
    line = result_line(result, 0, "pour")
    assert "now: pour" in line and "next: stir 75% @ 4.0s (3.0-5.0) " in line
    assert "next: stir @ 3.0s " in result_line(ForecastResult(**{**result.__dict__, "next_actions": ()}), 0, "pour")
