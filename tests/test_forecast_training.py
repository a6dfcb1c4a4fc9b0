"""Issue 19's mechanisms: training windows, the "carry" masked input, step/budget validation with baselines.

- windows: a windowed sample is the whole-video sample's frames ``[start, end)`` (targets, mask, features,
  boundary), and keeps at most ``window_observed`` frames before an anticipation cut and ``window_future``
  after it;
- ``model.masked_input: carry``: a masked frame reads the last visible frame's features plus the token, and
  its gap features say how long ago that frame was; the ONNX encoder graph computes the same;
- the trainer stops at ``training.max_steps``, validates every ``eval_every_steps`` (``validation.csv``: the
  model next to the best label-only baseline) and says plainly whether the model beats them.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from actfusion_model.config import ConfigError, experiment_config, model_config
from actfusion_model.layers import GAP_SCALES, gap_features, last_visible_index
from actfusion_model.network import ActFusion
from actfusion_model.onnx_graphs import EncoderGraph
from actfusion_training.batches import CachedVideo, anticipation_cut, draw_sample
from actfusion_training.data import VideoRecord, boundary_targets
from tests.test_train import _read_csv, build_dataset, run, state_of, write_config

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _video(num_frames: int = 900, dim: int = 8, classes: int = 5) -> CachedVideo:
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.integers(0, classes, size=num_frames // 30 + 1), 30)[:num_frames]
    feats = rng.standard_normal((dim, num_frames)).astype(np.float32)
    return CachedVideo(VideoRecord("v", feats, labels), boundary_targets(labels, 3.0))


def _cfg(window: tuple[int, int], **masking):
    return experiment_config("tiny", {"model": {"num_classes": 5, "input_dim": 8, "sample_rate": 2},
                                      "masking": {"window_observed": window[0], "window_future": window[1],
                                                  "time_stretch": 1.25, **masking}})


# ---------------------------------------------------------------------------------------------- windows
def test_a_window_is_the_whole_video_sample_there():
    video = _video()
    whole_cfg, win_cfg = _cfg((0, 0)), _cfg((40, 60))
    kinds = set()
    for seed in range(80):
        whole = draw_sample(video, whole_cfg, np.random.default_rng(seed), random.Random(seed), torch.device("cpu"))
        win = draw_sample(video, win_cfg, np.random.default_rng(seed), random.Random(seed), torch.device("cpu"))
        assert (whole.mask_type, whole.offset, whole.stretch) == (win.mask_type, win.offset, win.stretch)
        start, length = win.window_start, win.targets.shape[1]
        end = start + length
        assert 1 <= length <= 100 and end <= whole.targets.shape[1]
        # the targets (and everything else) inside the window equal the whole-video sample's there
        assert torch.equal(win.targets, whole.targets[:, start:end])
        assert torch.equal(win.visible, whole.visible[:, start:end])
        assert torch.equal(win.boundary, whole.boundary[:, start:end])
        assert torch.equal(win.features, whole.features[:, :, start:end])
        cut = anticipation_cut(whole.visible[0].numpy())
        if cut is not None:  # an anticipative sample keeps the cut, <= 40 frames before it and <= 60 after
            kinds.add(whole.mask_type)
            assert start == max(0, cut - 40) and end == min(whole.targets.shape[1], cut + 60)
            assert anticipation_cut(win.visible[0].numpy()) == cut - start
    assert kinds == {"ant", "ant_ratio"}


def test_anticipation_cut_only_for_prefix_masks():
    assert anticipation_cut(np.array([True, True, False, False])) == 2
    assert anticipation_cut(np.array([True, False, True, False])) is None
    assert anticipation_cut(np.array([False, False])) is None
    assert anticipation_cut(np.array([True, True])) is None


def test_window_config_is_checked():
    with pytest.raises(ConfigError, match="window_observed"):
        _cfg((10, 0))
    with pytest.raises(ConfigError, match="masked_input"):
        model_config("tiny", num_classes=3, masked_input="copy")
    with pytest.raises(ConfigError, match="max_steps"):
        experiment_config("tiny", {"training": {"max_steps": 0}})
    with pytest.raises(ConfigError, match="eval_every_minutes"):
        experiment_config("tiny", {"training": {"eval_every_minutes": 0}})


# ---------------------------------------------------------------------------------------------- carry
def _naive_last_visible(mask: np.ndarray) -> np.ndarray:
    out, last = [], -1
    for i, m in enumerate(mask):
        last = i if m else last
        out.append(last)
    return np.array(out)


@pytest.mark.parametrize("length", [1, 2, 7, 64, 3001])
def test_last_visible_index_is_a_running_maximum(length: int):
    rng = np.random.default_rng(length)
    mask = rng.random((2, length)) < 0.05
    mask[1, : length // 2] = True
    mask[1, length // 2:] = False  # an anticipation layout: one long masked suffix
    got = last_visible_index(torch.from_numpy(mask)).numpy()
    for row in range(2):
        np.testing.assert_array_equal(got[row], _naive_last_visible(mask[row]))


def test_carry_reads_the_last_visible_frame_plus_the_token_and_knows_the_gap():
    cfg = model_config("tiny", num_classes=4, masked_input="carry")
    model = ActFusion(cfg).eval()
    feats = torch.randn(1, cfg.input_dim, 9)
    mask = torch.tensor([[False, True, True, False, False, True, False, False, False]])
    x, gap = model.encoder_input(feats, mask)
    token = model.mask_token[0, :, 0]
    assert torch.equal(x[0, :, mask[0]], feats[0, :, mask[0]])
    assert torch.equal(x[0, :, 0], token)  # nothing visible before it: the token alone
    for frame, source in ((3, 2), (4, 2), (6, 5), (8, 5)):
        torch.testing.assert_close(x[0, :, frame], feats[0, :, source] + token)
    assert gap.shape == (1, len(GAP_SCALES), 9)
    assert torch.equal(gap[0, :, mask[0]], torch.zeros(len(GAP_SCALES), int(mask.sum())))
    scales = torch.tensor(GAP_SCALES)
    torch.testing.assert_close(gap[0, :, 8], torch.exp(-3.0 / scales))  # 3 frames after frame 5
    torch.testing.assert_close(gap[0, :, 0], torch.exp(-1.0 / scales))
    # the token model is untouched: the learned token, no gap features
    plain = ActFusion(model_config("tiny", num_classes=4)).eval()
    x_plain, gap_plain = plain.encoder_input(feats, mask)
    assert gap_plain is None and torch.equal(x_plain[0, :, 4], plain.mask_token[0, :, 0])


def test_gap_features_are_zero_on_visible_frames():
    mask = torch.tensor([[True, False, True]])
    got = gap_features(mask, last_visible_index(mask))
    assert torch.equal(got[0, :, 0], torch.zeros(len(GAP_SCALES))) and got[0, 0, 1] > 0


def test_carry_encoder_graph_equals_the_model_on_interior_masks():
    cfg = model_config("tiny", num_classes=5, masked_input="carry")
    torch.manual_seed(0)
    model = ActFusion(cfg).eval()
    feats = torch.randn(1, cfg.input_dim, 80)
    mask = torch.ones(1, 80, dtype=torch.bool)
    mask[:, :3] = False
    mask[:, 20:31] = False
    mask[:, 60:] = False
    with torch.no_grad():
        logits, cond = model.encode(feats, mask)
        g_logits, g_cond = EncoderGraph(model).eval()(feats, mask)
    torch.testing.assert_close(g_logits, logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_cond, cond, atol=1e-5, rtol=1e-5)
    # and the gap matters: the same observation with another suffix length gives other logits there
    with torch.no_grad():
        other, _ = model.encode(feats, torch.cat([mask[:, :70], torch.ones(1, 10, dtype=torch.bool)], 1))
    assert not torch.allclose(other[..., 60:70], logits[..., 60:70])


def test_carry_exports_to_onnx_and_matches_onnx_runtime(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from actfusion_model.export import export_onnx, verify_against_model
    cfg = model_config("tiny", num_classes=5, masked_input="carry")
    torch.manual_seed(1)
    model = ActFusion(cfg).eval()
    export_onnx(model, tmp_path)
    assert verify_against_model(model, tmp_path, length=300) <= 1e-4


# ---------------------------------------------------------------------------------------------- trainer
@pytest.fixture(scope="module")
def data(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset(shared_data, tmp_path_factory.mktemp("synth"))


def test_max_steps_and_step_validation_with_baselines(data: Path, tmp_path: Path, capsys):
    cfg = write_config(tmp_path / "c.yaml", epochs=100, accumulate=1, eval_every=1000, checkpoint_every=1000,
                       max_steps=5, eval_every_steps=2, lr_schedule="cosine")
    assert run(cfg, data, tmp_path / "run") == "finished"
    state = state_of(tmp_path / "run")
    assert state["progress"]["step"] == 5
    rows = _read_csv(tmp_path / "run" / "validation.csv")
    # steps 2 and 4 by eval_every_steps (3 training videos, one step per video: mid-epoch too), 5 at the end
    assert [int(r["step"]) for r in rows] == [2, 4, 5]
    for r in rows:
        assert r["model_lta_gt"] and r["model_lta_rn"] and r["best_baseline_gt"] and r["best_baseline_rn"]
        assert r["best_baseline_gt_name"].startswith(("repeat_last", "grammar"))
    out = capsys.readouterr().out
    assert "max_steps = 5" in out
    assert "label-only baseline on the validation videos at step 5" in out
    assert ("BEATS" in out) or ("does NOT beat" in out) or ("one protocol only" in out)
    from actfusion_model.checkpoint import load_checkpoint
    best = load_checkpoint(tmp_path / "run" / "best.pt").metadata["validation"]
    assert best["step"] in (2, 4, 5) and set(best["baselines"]) and set(best["lta_mean"]) == {"gt", "rn"}


def test_the_schedule_spans_max_steps(data: Path, tmp_path: Path):
    cfg = write_config(tmp_path / "c.yaml", epochs=100, accumulate=1, max_steps=4, lr_schedule="cosine",
                       min_lr_ratio=0.0, validation_fraction=0.0)
    from actfusion_training.trainer import Trainer, TrainOptions
    trainer = Trainer(TrainOptions(config=cfg, data_root=data, split=1, out=tmp_path / "run", progress=False))
    try:
        assert trainer.schedule_total() == 4
    finally:
        trainer.close()


# ---------------------------------------------------------------------------------------------- sample rate
def test_auto_sample_rate_rule_gives_the_measured_rates():
    from actfusion_training.run_config import auto_sample_rate
    # GTEA, 50 Salads and Breakfast medians (raw frames): the rates measured best with the CPU recipe
    assert (auto_sample_rate(1058), auto_sample_rate(11769), auto_sample_rate(940)) == (2, 8, 2)
    assert auto_sample_rate(10) == 1 and auto_sample_rate(1024 ** 2) == 64  # sqrt = 1024 = 16 * 64
    with pytest.raises(ConfigError, match="auto"):
        auto_sample_rate(0)


def test_sample_rate_auto_is_resolved_from_the_training_videos(data: Path, tmp_path: Path):
    import yaml

    from actfusion_training.data import MsTcnDataset
    from actfusion_training.run_config import auto_sample_rate, data_facts, resolve_config
    facts = data_facts(MsTcnDataset(data, 1, "train"))
    path = tmp_path / "auto.yaml"
    path.write_text(yaml.safe_dump({"preset": "tiny", "model": {"sample_rate": "auto"}}))
    assert resolve_config(path, facts).model.sample_rate == auto_sample_rate(facts.median_frames)
    path.write_text(yaml.safe_dump({"preset": "tiny", "model": {"sample_rate": "fast"}}))
    with pytest.raises(ConfigError, match="'auto'"):
        resolve_config(path, facts)


def test_a_finished_max_steps_run_resumes_to_a_larger_max_steps(data: Path, tmp_path: Path):
    out = tmp_path / "run"
    first = write_config(tmp_path / "a.yaml", epochs=100, accumulate=1, max_steps=2, validation_fraction=0.0)
    assert run(first, data, out) == "finished" and state_of(out)["progress"]["step"] == 2
    assert run(first, data, out, resume=True) == "finished" and state_of(out)["progress"]["step"] == 2
    more = write_config(tmp_path / "b.yaml", epochs=100, accumulate=1, max_steps=4, validation_fraction=0.0)
    assert run(more, data, out, resume=True) == "finished" and state_of(out)["progress"]["step"] == 4


def test_auto_windows_hold_half_a_median_video_observed_and_a_whole_one_ahead():
    from actfusion_training.run_config import auto_windows
    assert auto_windows(940, 2) == (256, 512)  # Breakfast: 470 model frames
    assert auto_windows(11769, 8) == (1024, 2048)  # 50 Salads: 1471 model frames
    assert auto_windows(2, 1) == (1, 2)
    with pytest.raises(ConfigError, match="window"):
        auto_windows(0, 2)


def test_window_auto_is_resolved_from_the_data_and_needs_both(data: Path, tmp_path: Path):
    import yaml

    from actfusion_training.data import MsTcnDataset
    from actfusion_training.run_config import auto_windows, data_facts, resolve_config
    facts = data_facts(MsTcnDataset(data, 1, "train"))
    path = tmp_path / "auto.yaml"
    doc = {"preset": "tiny", "model": {"sample_rate": 3},
           "masking": {"window_observed": "auto", "window_future": "auto"}}
    path.write_text(yaml.safe_dump(doc))
    got = resolve_config(path, facts).masking
    assert (got.window_observed, got.window_future) == auto_windows(facts.median_frames, 3)
    doc["masking"]["window_future"] = 100
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match="together"):
        resolve_config(path, facts)


# ---------------------------------------------------------------------------------------------- validation split
def test_the_views_of_one_recording_fall_on_one_side_of_the_validation_split():
    from actfusion_training.data import recording_key, split_train_validation
    assert recording_key("P21_webcam02_P21_coffee") == recording_key("P21_cam01_P21_coffee") == "P21_P21_coffee"
    assert recording_key("S1_Cheese_C1") == "S1_Cheese_C1" and recording_key("rgb-01-1") == "rgb-01-1"
    names = [f"P{p:02d}_{cam}_P{p:02d}_{act}" for p in range(3, 30) for act in ("coffee", "milk")
             for cam in ("cam01", "cam02", "webcam01", "stereo01")]
    for seed in range(5):
        train, val = split_train_validation(names, 0.1, seed)
        assert val and len(train) + len(val) == len(names)
        assert not {recording_key(n) for n in train} & {recording_key(n) for n in val}
        assert abs(len(val) - round(0.1 * len(names))) < 4  # whole recordings of 4 views


def test_without_views_the_split_is_the_seeded_permutation_it_always_was():
    from actfusion_training.data import split_train_validation
    names = [f"S{i}_Video_C1" for i in range(20)][::-1]
    ordered = sorted(names)
    old = {ordered[i] for i in np.random.default_rng(7).permutation(len(ordered))[:3]}
    train, val = split_train_validation(names, 0.15, 7)
    assert set(val) == old and train == [n for n in names if n not in old]
