"""actfusion-replay: a case with a known answer, both storage formats, clear errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")

from actfusion_model.features.base import FeatureExtractor  # noqa: E402
from actfusion_ros.stream_types import ForecastOutput, StreamConfig  # noqa: E402
from actfusion_ros.tools.bags import write_bag  # noqa: E402
from actfusion_ros.tools.replay.driver import replay  # noqa: E402
from actfusion_ros.tools.replay.records import GroundTruth, ReplayError  # noqa: E402
from actfusion_ros.tools.replay.scoring import fit_replay_baselines  # noqa: E402

NAMES = ("red_thing", "blue_thing")
FPS = 10
BOUNDARY_S = 6.0
LENGTH_S = 12.0


class Blueness(FeatureExtractor):
    """1-d feature: 1 for a blue frame, 0 for a red one (per frame, causal)."""

    dim = 1
    context_frames = 1

    def _compute(self, frames: np.ndarray) -> np.ndarray:
        return (frames[:, 0, 0, 2] > frames[:, 0, 0, 0]).astype(np.float32)[:, None]


class RepeatLast:
    """Oracle for the observed part, 'nothing changes' for the future."""

    class_names = NAMES
    num_classes = 2
    input_dim = 1

    def __call__(self, observed: np.ndarray, horizon: int):
        cls = observed[0].astype(int)
        obs = np.eye(2, dtype=np.float32)[cls].T
        fut = np.repeat(obs[:, -1:], horizon, axis=1)
        return ForecastOutput(obs, fut)


def _frames():
    for i in range(int(LENGTH_S * FPS)):
        t = i / FPS
        rgb = np.zeros((4, 4, 3), np.uint8)
        rgb[..., 2 if t >= BOUNDARY_S else 0] = 200
        yield int(round(t * 1e9)), rgb


@pytest.mark.parametrize("storage,encoding", [("sqlite3", "rgb8"), ("mcap", "png")])
def test_replay_known_answer(tmp_path, storage: str, encoding: str) -> None:
    bag = write_bag(tmp_path / "bag", storage=storage, images=list(_frames()), encoding=encoding, pad_rows=3,
                    labels=[(0, "red_thing"), (int(BOUNDARY_S * 1e9), "blue_thing")])
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=4.0, max_horizon_s=30.0, min_observed_frames=2)
    topic = "/camera/image_raw" + ("/compressed" if encoding == "png" else "")
    report = replay(bag, RepeatLast(), Blueness(), out=tmp_path / "out", image_topic=topic,
                    label_topic="/action/label", config=cfg, tick_rate_hz=1.0, lookahead_s=(1.0, 2.0))
    assert report.frames == LENGTH_S * FPS
    assert report.tas["acc"] == 100.0 and report.tas["edit"] == 100.0 and report.tas["f1@50"] == 100.0
    # "Nothing changes" is wrong exactly for the forecasts made less than L seconds before the boundary.
    ticks = np.arange(1.0, LENGTH_S, 1.0)  # ticks at 1 s, 2 s, ... of camera time (not partial: >= 2 features)
    model, baseline = report.anticipation["model"], report.anticipation["repeat_last_observed"]
    for look in (1.0, 2.0):
        scored = ticks[ticks + look <= LENGTH_S - 1 / FPS]
        wrong = ((scored < BOUNDARY_S) & (scored + look >= BOUNDARY_S)).sum()
        assert model.lookahead_counts[f"{look:g}s"] == len(scored)
        assert model.lookahead_accuracy[f"{look:g}s"] == pytest.approx(100.0 * (1 - wrong / len(scored)))
    assert 0.0 < model.moc < 100.0
    assert baseline == model  # this forecaster *is* "repeat the last observed action"
    for name in ("replay.json", "replay.md", "timeline.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert (tmp_path / "out" / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_scores_the_grammar_baselines_from_training_labels(tmp_path) -> None:
    # Training episodes like the bag: red for 6 s then blue for 6 s; at the 2 Hz feature rate 12 + 12 labels.
    # A tick at t < 6 s has observed red for e = 2t + 1 frames; red's mean residual 12 - e ends it exactly at
    # 6 s, then blue: every scored grammar forecast is right, where "nothing changes" is not.
    labels = tmp_path / "train"
    labels.mkdir()
    (labels / "ep1.txt").write_text("red_thing\n" * 12 + "blue_thing\n" * 12)
    (labels / "ep2.txt").write_text("red_thing\n" * 12 + "blue_thing\n" * 12)
    grammars = fit_replay_baselines([labels], NAMES, feature_rate_hz=2.0)
    at_10hz = tmp_path / "ep_10hz.txt"  # the same episode labelled per camera frame (10 Hz)
    at_10hz.write_text("red_thing\n" * 60 + "blue_thing\n" * 60)
    resampled = fit_replay_baselines([at_10hz], NAMES, labels_hz=10.0, feature_rate_hz=2.0)
    assert [g.durations[0].frames.tolist() for g in resampled] == [[12.0]] * 2
    assert [g.name for g in grammars] == ["grammar_order1", "grammar_order2"]

    bag = write_bag(tmp_path / "bag", images=list(_frames()),
                    labels=[(0, "red_thing"), (int(BOUNDARY_S * 1e9), "blue_thing")])
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=4.0, max_horizon_s=30.0, min_observed_frames=2)
    report = replay(bag, RepeatLast(), Blueness(), out=tmp_path / "out", image_topic="/camera/image_raw",
                    label_topic="/action/label", config=cfg, tick_rate_hz=1.0, lookahead_s=(1.0, 2.0),
                    baselines=grammars)
    assert list(report.anticipation) == ["model", "repeat_last_observed", "grammar_order1", "grammar_order2"]
    for name in ("grammar_order1", "grammar_order2"):
        score = report.anticipation[name]
        assert score.moc == 100.0 and score.lookahead_accuracy == {"1s": 100.0, "2s": 100.0}
        assert score.lookahead_counts == report.anticipation["model"].lookahead_counts
    assert report.anticipation["repeat_last_observed"].lookahead_accuracy["2s"] < 100.0
    md = (tmp_path / "out" / "replay.md").read_text()
    assert "| grammar order1 | 100.0 | 100.0 | 100.0 |" in md and "| repeat last observed |" in md
    assert report.settings["baselines"] == ["repeat_last_observed", "grammar_order1", "grammar_order2"]

    (labels / "ep3.txt").write_text("green_thing\n")
    with pytest.raises(ReplayError, match="green_thing"):
        fit_replay_baselines([labels], NAMES, feature_rate_hz=2.0)
    with pytest.raises(ReplayError, match="no labels"):
        fit_replay_baselines([tmp_path / "out"], NAMES, feature_rate_hz=2.0)


def test_replay_errors_name_the_problem(tmp_path) -> None:
    bag = write_bag(tmp_path / "bag", images=list(_frames())[:30], labels=[(0, "red_thing")])
    cfg = StreamConfig(feature_rate_hz=2.0, min_observed_frames=1)
    with pytest.raises(Exception, match=r"/nope"):
        replay(bag, RepeatLast(), Blueness(), out=tmp_path / "o", image_topic="/nope",
               label_topic="/action/label", config=cfg)
    with pytest.raises(ReplayError, match="ground truth needed"):
        replay(bag, RepeatLast(), Blueness(), out=tmp_path / "o", image_topic="/camera/image_raw", config=cfg)

    class Wide(Blueness):
        dim = 3

    with pytest.raises(ReplayError, match="3-d features but the model expects 1-d"):
        replay(bag, RepeatLast(), Wide(), out=tmp_path / "o", image_topic="/camera/image_raw",
               label_topic="/action/label", config=cfg)


def test_ground_truth_lookup_is_causal_and_bounded() -> None:
    gt = GroundTruth(np.array([0, 10, 20]), np.array([4, 5, 6]))
    assert gt.at(np.array([-1, 0, 9, 10, 19, 20, 21])).tolist() == [-1, 4, 4, 5, 5, 6, -1]


# ------------------------------------------------------------------ per-frame / per-tick files, timeline rows


class LastFrameOracle(RepeatLast):
    """Labels the whole observation with the newest frame's class: the final re-segmentation then differs
    from what each tick published live."""

    def __call__(self, observed: np.ndarray, horizon: int):
        cls = int(observed[0, -1])
        obs = np.zeros((2, observed.shape[1]), np.float32)
        obs[cls] = 1.0
        return ForecastOutput(obs, np.repeat(obs[:, -1:], horizon, axis=1))


def _replay(tmp_path, forecaster=None):
    bag = write_bag(tmp_path / "bag", storage="mcap", images=list(_frames()), encoding="rgb8",
                    labels=[(0, "red_thing"), (int(BOUNDARY_S * 1e9), "blue_thing")])
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=4.0, max_horizon_s=30.0, min_observed_frames=2)
    return replay(bag, forecaster or RepeatLast(), Blueness(), out=tmp_path / "out", image_topic="/camera/image_raw",
                  label_topic="/action/label", config=cfg, tick_rate_hz=1.0, lookahead_s=(1.0, 2.0))


def test_series_files_rescore_to_the_report(tmp_path) -> None:
    import csv
    import json

    from actfusion_ros.tools.replay.scoring import score
    from actfusion_ros.tools.replay.series import read_series
    from actfusion_training.metrics import tas_metrics

    report = _replay(tmp_path, LastFrameOracle())
    out = tmp_path / "out"
    frames = list(csv.DictReader((out / "frames.csv").open()))
    assert len(frames) == report.frames and frames[0] == {"stamp_ns": "0", "truth": "red_thing"}
    ticks = [json.loads(ln) for ln in (out / "forecasts.jsonl").read_text().splitlines()]
    assert len(ticks) == report.published and [t["tick"] for t in ticks] == list(range(len(ticks)))
    for t in ticks:
        assert len(t["future_labels"]) == sum((s["end_ns"] - s["start_ns"]) // t["period_ns"]
                                              for s in t["future_segments"])
        segs = t["observed_segments"] + t["future_segments"]
        assert all(a["end_ns"] == b["start_ns"] for a, b in zip(segs, segs[1:]))   # contiguous
        assert t["current"] == t["observed_segments"][-1]
    # TAS by hand from segmentation.csv
    seg = [r for r in csv.DictReader((out / "segmentation.csv").open()) if r["truth"]]
    ids = {n: i for i, n in enumerate(NAMES)}
    tas = tas_metrics([(np.array([ids[r["predicted"]] for r in seg]), np.array([ids[r["truth"]] for r in seg]))])
    assert tas == report.tas
    # and everything through the replay's own scoring
    records, truth = read_series(out, NAMES)
    tas2, anticipation = score(records, truth, lookahead_s=(1.0, 2.0))
    assert tas2 == report.tas and anticipation == report.anticipation


def test_timeline_second_row_is_what_was_published_live(tmp_path) -> None:
    from actfusion_ros.tools.replay.figure import timeline_rows
    from actfusion_ros.tools.replay.series import read_series

    _replay(tmp_path, LastFrameOracle())
    records, truth = read_series(tmp_path / "out", NAMES)
    rows, _ = timeline_rows(records, truth)
    name, bars = rows[1]
    assert name == "live current action"
    live = [lab for _, _, lab in bars]
    stamps = [start for start, _, _ in bars]
    assert stamps == [float(r.stamp_ns) for r in records]
    # red (0) was published before the boundary, blue after; the final re-segmentation is all blue
    assert live == [0 if s < BOUNDARY_S * 1e9 else 1 for s in stamps] and 0 in live
    final = [r for r in records if not r.partial][-1]
    assert set(final.observed_labels.tolist()) == {1}
    assert bars[-1][0] + bars[-1][1] == float(truth.stamps_ns[-1])  # the last one runs to the end


# ------------------------------------------------------------------ the CLI: user errors before the replay


@pytest.fixture
def cli_bag(tmp_path, monkeypatch):
    """A small bag, a placeholder checkpoint file, and read_images made to fail the test if called."""
    import actfusion_ros.tools.bags as bags

    bag = write_bag(tmp_path / "bag", images=list(_frames())[:10], labels=[(0, "red_thing")])

    def no_replay(*args, **kwargs):
        raise AssertionError("the bag was replayed before the inputs were checked")

    monkeypatch.setattr(bags, "read_images", no_replay)
    (tmp_path / "ckpt.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "a_file").write_text("x")
    return bag


@pytest.mark.parametrize("case, extra, message", [
    ("out under a file", ["--out", "{tmp}/a_file/out", "--label-topic", "/action/label"], "a_file is a file"),
    ("out is a file", ["--out", "{tmp}/a_file", "--label-topic", "/action/label"], "not a directory"),
    ("missing labels file", ["--labels", "{tmp}/nope.txt"], "--labels .*nope.txt: no such file"),
    ("short labels file", ["--labels", "{tmp}/a_file"], "1 labels for 10 images"),
    ("missing label topic", ["--label-topic", "/wrong"], "label topic '/wrong' not found; topics present: "
                                                         "/action/label"),
    ("label topic of images", ["--label-topic", "/camera/image_raw"], "has type sensor_msgs/msg/Image"),
    ("missing image topic", ["--label-topic", "/action/label", "--image-topic", "/cam"],
     "image topic '/cam' not found"),
    ("no ground truth", [], "ground truth needed"),
    ("missing checkpoint", ["--label-topic", "/action/label", "--checkpoint", "{tmp}/missing.pt"],
     "--checkpoint .*missing.pt: no such file"),
    ("bad checkpoint", ["--label-topic", "/action/label"], "ckpt.pt"),
    ("missing bag", ["--label-topic", "/action/label", "--bag", "{tmp}/nobag"], "nobag: no such file"),
    ("bad tick rate", ["--label-topic", "/action/label", "--tick-rate", "0"], "--tick-rate must be > 0"),
    ("argparse", ["--label-topic", "/action/label", "--ratio", "x"], "invalid float value"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, cli_bag, capsys, case, extra, message) -> None:
    import re

    from actfusion_ros.tools.replay.cli import main

    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    bag = str(cli_bag)
    if "--bag" in extra:
        i = extra.index("--bag")
        bag = extra[i + 1]
        del extra[i:i + 2]
    argv = [bag, "--checkpoint", str(tmp_path / "ckpt.pt"), "--out", str(tmp_path / "out"), *extra]
    if "--out" in extra:
        del argv[4:6]
    if case == "argparse":
        with pytest.raises(SystemExit) as info:
            main(argv)
        rc = info.value.code
    else:
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (case, err)
    assert err.count("\n") == 1 and err.startswith("actfusion-replay: error: "), err
    assert "Traceback" not in err and re.search(message, err), err


def test_cli_user_error_as_a_subprocess_has_no_traceback(tmp_path) -> None:
    import os
    import subprocess
    import sys

    bag = write_bag(tmp_path / "bag", images=list(_frames())[:4], labels=[(0, "red_thing")])
    (tmp_path / "f").write_text("x")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    res = subprocess.run([sys.executable, "-m", "actfusion_ros.tools.replay", str(bag),
                          "--checkpoint", str(tmp_path / "f"), "--out", str(tmp_path / "f" / "out"),
                          "--labels", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


# ------------------------------------------------------------------ --params: the node's deployment, exactly
def _params_file(tmp_path: Path, **overrides) -> Path:
    import yaml

    from actfusion_model.checkpoint import save_checkpoint
    from actfusion_model.config import model_config
    from actfusion_model.features import build_extractor
    from actfusion_model.network import ActFusion

    dim = build_extractor("color_layout").dim
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, ActFusion(model_config("tiny", num_classes=2, input_dim=dim)), list(NAMES))
    params = {"checkpoint": str(ckpt), "extractor": "color_layout", "feature_rate_hz": 4.0, "ratio": 1.0,
              "tick_rate_hz": 1.0, "min_observed_frames": 2, "max_window_s": 20.0, "seed": 5, "ddim_steps": 2,
              "stale_after_s": 100.0, **overrides}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({"actfusion_node": {"ros__parameters": params}}))
    return path


def test_cli_params_file_replays_the_node_deployment(tmp_path) -> None:
    import json
    from dataclasses import asdict

    from actfusion_ros.builder import build_anticipator
    from actfusion_ros.node_params import read_params_file, validate_values
    from actfusion_ros.tools.replay.cli import main

    params = _params_file(tmp_path)
    bag = write_bag(tmp_path / "bag", images=list(_frames()), labels=[(0, "red_thing"),
                                                                       (int(BOUNDARY_S * 1e9), "blue_thing")])
    assert main([str(bag), "--params", str(params), "--out", str(tmp_path / "out"),
                 "--label-topic", "/action/label"]) == 0
    settings = json.loads((tmp_path / "out" / "replay.json").read_text())["settings"]
    node = build_anticipator(validate_values(read_params_file(params)))   # what actfusion_node would run
    assert settings["stream"] == json.loads(json.dumps(asdict(node.config)))
    assert settings["tick_rate_hz"] == 1.0 and settings["stream"]["feature_rate_hz"] == 4.0


def test_cli_params_file_refuses_model_and_stream_flags(tmp_path, capsys) -> None:
    from actfusion_ros.tools.replay.cli import main

    bag = write_bag(tmp_path / "bag", images=list(_frames())[:4], labels=[(0, "red_thing")])
    rc = main([str(bag), "--params", str(_params_file(tmp_path)), "--ratio", "2", "--out", str(tmp_path / "o"),
               "--label-topic", "/action/label"])
    err = capsys.readouterr().err
    assert rc == 2 and "decides the model and the stream; drop --ratio" in err, err


# ------------------------------------------------------------------ the next action after the current one


def test_replay_report_states_and_scores_the_next_action(tmp_path) -> None:
    from actfusion_ros.tools.replay.series import read_series

    report = _replay(tmp_path)  # "nothing changes": every tick states {no change: 1}
    records, _ = read_series(tmp_path / "out", NAMES)
    complete = [r for r in records if not r.partial]
    # red until 6 s, then blue to the end: a tick before 6 s sees blue come within its horizon (4x its
    # observation reaches past 6 s for every tick >= 1 s), a tick from 6 s on sees no change.
    after = sum(r.stamp_ns >= BOUNDARY_S * 1e9 for r in complete)
    scores = report.next_action["scores"]
    assert report.next_action["num_samples"] == 1 and scores["count"] == len(complete)
    assert scores["top1"] == pytest.approx(100.0 * after / len(complete))
    assert scores["brier"] == pytest.approx(2.0 * (1 - after / len(complete)))
    assert scores["current_correct"] == 100.0
    md = (tmp_path / "out" / "replay.md").read_text()
    assert "## Next action after the current one (1 sampled future per tick)" in md
    ticks = report.next_action["ticks"]
    assert ticks and all(t["next"] == "-" and t["no_change"] == 1.0 for t in ticks)
    assert {t["truth_next"] for t in ticks} <= {"blue_thing", "no change"}


def test_next_action_hook_takes_k_samples_per_tick(tmp_path) -> None:
    from actfusion_ros.tools.replay.figure import timeline_png
    from actfusion_ros.tools.replay.records import TickRecord
    from actfusion_ros.tools.replay.report import next_action_lines, next_action_report
    from actfusion_ros.tools.replay.scoring import tick_next_actions

    period = 500_000_000
    rec = TickRecord(stamp_ns=2 * period, observed_stamps_ns=np.arange(3) * period,
                     observed_labels=np.zeros(3, np.int64), future_start_ns=3 * period, period_ns=period,
                     future_labels=np.zeros(6, np.int64), partial=False, inference_s=0.01)
    truth = GroundTruth(np.arange(12) * period, np.array([0] * 5 + [1] * 7))  # blue from frame 5 = future frame 2
    samples = np.array([[0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1], [0] * 6])  # (K=4, H=6)
    (dist,) = tick_next_actions([rec], 2, [samples])
    assert dist.num_samples == 4 and dist.probability_of(1) == 0.75 and dist.no_change == 0.25
    report = next_action_report([rec], truth, NAMES, samples=[samples])
    scores = report["scores"]
    assert report["num_samples"] == 4 and scores["count"] == 1 and scores["top1"] == 100.0
    assert scores["brier"] == pytest.approx(0.25 ** 2 + 0.25 ** 2)  # p(blue) 0.75, p(no change) 0.25
    (tick,) = report["ticks"]
    # blue starts at future frame 2, 2, 3: mean 2.33 -> 3 * 0.5 s + 1.17 s = 2.67 s; 10-90%: 2.5 s - 2.9 s
    assert tick["next"] == "blue_thing 75% @ 2.7s (2.5-2.9)" and tick["truth_next"] == "blue_thing"
    assert any("| 1.0 s | red_thing | blue_thing 75% @ 2.7s (2.5-2.9) | 25% | blue_thing |" == ln
               for ln in next_action_lines(report))
    timeline_png(tmp_path / "plain.png", [rec], truth, NAMES)
    timeline_png(tmp_path / "noted.png", [rec], truth, NAMES, forecast_notes=[tick["next"]])
    assert (tmp_path / "noted.png").read_bytes() != (tmp_path / "plain.png").read_bytes()  # the note is drawn
    with pytest.raises(ValueError, match="future frames"):
        tick_next_actions([rec], 2, [samples[:, :4]])
    with pytest.raises(ValueError, match="2 sample arrays for 1 ticks"):
        tick_next_actions([rec], 2, [samples, samples])


class FourSamples(RepeatLast):
    """The observation as RepeatLast; K = 4 sampled futures: 3 switch to the other class at once, 1 does not."""

    def __call__(self, observed: np.ndarray, horizon: int):
        obs, fut, _ = super().__call__(observed, horizon)
        switched = np.repeat(1.0 - obs[:, -1:], horizon, axis=1)
        samples = np.stack([switched, switched, switched, fut]).astype(np.float32)
        return ForecastOutput(obs, fut, samples)


def test_replay_scores_the_k_samples_of_each_tick(tmp_path) -> None:
    report = _replay(tmp_path, FourSamples())
    assert report.next_action["num_samples"] == 4
    ticks = report.next_action["ticks"]
    assert ticks and all(t["no_change"] == 0.25 and " 75% @ " in t["next"] for t in ticks)
    assert "(4 sampled futures per tick)" in (tmp_path / "out" / "replay.md").read_text()
