"""The newcomer demo end to end on a small budget (the README's first command runs the full one)."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")

from actfusion_ros.demo import main, ros_available  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("dds", [False, True], ids=["core", "dds"])
def test_demo_runs_end_to_end(tmp_path, capsys, dds: bool) -> None:
    if dds and not ros_available():
        pytest.skip("rclpy / actfusion_msgs not importable (run scripts/build_msgs.sh .venv)")
    work = tmp_path / "demo"
    args = ["--work", str(work), "--episodes", "6", "--epochs", "2", "--rate", "4"] + ([] if dds else ["--no-dds"])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "now:" in out and "truth now:" in out
    report = json.loads((work / "replay" / "replay.json").read_text())
    assert report["frames"] > 100 and report["published"] > 5
    assert set(report["tas"]) == {"acc", "edit", "f1@10", "f1@25", "f1@50"}
    assert (work / "replay" / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    from model.checkpoint import load_checkpoint
    from model.features.pipeline import checkpoint_pipeline

    recorded = checkpoint_pipeline(load_checkpoint(work / "model.pt").metadata)  # extract -> train -> model
    assert recorded is not None and recorded.extractor == "color_layout" and recorded.feature_rate_hz == 4.0
    if not dds:  # a second run reuses the trained model
        assert main(args) == 0
        assert "using the trained model" in capsys.readouterr().out
