"""The demo trains for a fixed number of optimizer steps (training.max_steps of demo.yaml), shows a progress bar,
and says so, in the console and in the report, when its wall-clock guard stopped it early (issue 18). The clock
is a fake one: no wall-clock time is asserted."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from actfusion_ros.tools import demo
from actfusion_ros.tools.world import ActivityWorld

EPISODES = 8   # 2 held out, 6 to train and validate on


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo_data") / "dataset"
    demo.build_dataset(ActivityWorld(), range(EPISODES), root, 4.0)
    return root


def test_demo_config_trains_a_fixed_number_of_steps() -> None:
    data = yaml.safe_load(demo.DEMO_CONFIG.read_text())
    assert data["training"]["max_steps"] == 1605                  # the README's figure
    from actfusion_model.config import load_experiment_config

    assert load_experiment_config(demo.DEMO_CONFIG, num_classes=7, input_dim=8).training.max_steps == 1605


def test_training_stops_at_max_steps_with_a_progress_line_per_tenth(dataset, tmp_path, capsys) -> None:
    config = demo.demo_config(tmp_path, 6)
    outcome = demo.train_model(dataset, tmp_path / "run", tmp_path / "model.pt", config=config, progress=False)
    assert outcome.steps == 6 and outcome.max_steps == 6 and outcome.status == "finished"
    assert not outcome.stopped_early and "STOPPED EARLY" not in outcome.summary()
    assert (tmp_path / "model.pt").is_file()
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("training:")]
    assert lines and lines[-1].strip().startswith("training: 100% (6/6 steps")
    assert "\r" not in out                                       # plain lines, not a terminal bar, in a log


def test_the_guard_stops_the_training_and_the_console_and_report_say_so(dataset, tmp_path) -> None:
    ticks = iter(range(0, 10**6, 60))                            # every reading of the clock: one minute later

    def clock() -> float:
        return float(next(ticks))

    config = demo.demo_config(tmp_path, 50)
    outcome = demo.train_model(dataset, tmp_path / "run", tmp_path / "model.pt", config=config, progress=False,
                               guard_minutes=5.0, clock=clock)
    assert outcome.stopped_early and outcome.status == "guard" and 1 <= outcome.steps < 50
    assert "STOPPED EARLY by the 5-minute guard" in outcome.summary()
    assert (tmp_path / "model.pt").is_file()                     # the model so far is still used
    demo.write_training_record(tmp_path, outcome)
    assert demo.read_training_record(tmp_path) == outcome        # a later run that reuses the model says it too
    report = tmp_path / "replay.md"
    report.write_text("# Replay of episode_bag\n\n## TAS\n")
    demo.add_training_to_report(report, outcome)
    text = report.read_text()
    assert text.startswith("# Replay of episode_bag\n") and "STOPPED EARLY" in text and "## TAS" in text
    assert json.loads((tmp_path / "training.json").read_text())["stopped_early"] is True


def test_the_progress_bar_prints_each_tenth_once() -> None:
    shown: list[str] = []
    bar = demo.StepProgress(200, tty=False, write=shown.append)
    for step in range(1, 201):
        bar.update(step, step * 0.5)
    bar.close()
    assert [ln.split("%")[0].split()[-1] for ln in shown] == [str(p) for p in range(10, 101, 10)]
    assert shown[-1].strip() == "training: 100% (200/200 steps, 100 s)"


def test_bad_step_and_guard_arguments_are_refused_before_any_work(tmp_path, capsys) -> None:
    assert demo.main(["--work", str(tmp_path / "w"), "--max-steps", "0"]) == 2
    assert demo.main(["--work", str(tmp_path / "w"), "--max-train-minutes", "0"]) == 2
    assert "--max-steps must be >= 1" in capsys.readouterr().err and not (tmp_path / "w").exists()
