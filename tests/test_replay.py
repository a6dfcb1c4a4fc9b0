"""actfusion-replay: a case with a known answer, both storage formats, clear errors."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rosbags", reason="rosbags not installed")

from actfusion_ros.bags import write_bag  # noqa: E402
from actfusion_ros.replay import GroundTruth, ReplayError, fit_replay_baselines, replay  # noqa: E402
from actfusion_ros.stream import StreamConfig  # noqa: E402
from model.features.base import FeatureExtractor  # noqa: E402

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
        return obs, fut


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
