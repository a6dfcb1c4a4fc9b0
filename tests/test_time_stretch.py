"""Temporal speed augmentation (``masking.time_stretch``, issue 12): resampling a training video in time.

Hand-checked index maps, feature/label alignment, the default leaving samples bit-identical to the
unstretched code path, config validation, the boundary target following the stretched labels, and an
exact resume with the augmentation on (the speed factor comes from the trainer's numpy RNG).
"""
from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from actfusion_model.config import ConfigError, MaskingConfig, experiment_config
from actfusion_model.masking import masked_sample
from actfusion_training.batches import CachedVideo, collate, draw_sample, draw_time_stretch, stretch_indices
from actfusion_training.data import VideoRecord, boundary_targets, sample, segments_from_labels, subsample_boundary
from actfusion_training.trainer import TrainOptions, train
from tests.record_step_reference import write_toy_dataset
from tests.test_train import assert_same_weights

CPU = torch.device("cpu")


def _onehot_video(labels: np.ndarray, num_classes: int, sigma: float = 3.0) -> CachedVideo:
    """A video whose features are its labels, one-hot (D = num_classes), with its raw-rate boundary target."""
    feats = np.eye(num_classes, dtype=np.float32)[labels].T.copy()
    return CachedVideo(VideoRecord("v", feats, labels), boundary_targets(labels, sigma))


def _cfg(num_classes: int, sample_rate: int, types: list[str], time_stretch: float = 1.0, **loss):
    return experiment_config("tiny", {"model": {"num_classes": num_classes, "input_dim": num_classes,
                                                "sample_rate": sample_rate},
                                      "loss": {"boundary_sigma": 3.0, **loss},
                                      "masking": {"types": types, "time_stretch": time_stretch}})


def test_hand_checked_stretch_of_a_tiny_video():
    labels = np.array([0, 0, 1, 1])
    assert labels[stretch_indices(4, 2.0)].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert labels[stretch_indices(4, 0.5)].tolist() == [0, 1]
    assert stretch_indices(4, 1.0).tolist() == [0, 1, 2, 3]
    assert stretch_indices(1, 0.1).tolist() == [0]  # never empty
    with pytest.raises(ValueError):
        stretch_indices(4, 0.0)


def test_speed_factors_are_log_uniform_within_the_bounds():
    rng = np.random.default_rng(0)
    factors = np.array([draw_time_stretch(1.25, rng) for _ in range(4000)])
    assert factors.min() >= 1 / 1.25 and factors.max() <= 1.25
    logs = np.log(factors) / math.log(1.25)  # uniform in [-1, 1]
    assert abs(logs.mean()) < 0.05 and abs((logs < 0).mean() - 0.5) < 0.03
    assert abs((np.abs(logs) < 0.5).mean() - 0.5) < 0.03


def test_stretched_features_and_labels_stay_aligned():
    labels = np.repeat(np.array([0, 2, 1, 3, 0]), [17, 31, 9, 25, 14])
    video = _onehot_video(labels, 4)
    cfg = _cfg(4, 3, ["ant", "boundary", "random_num_patch"], time_stretch=1.5)
    np_rng, py_rng = np.random.default_rng(3), random.Random(3)
    factors = set()
    for _ in range(40):
        s = draw_sample(video, cfg, np_rng, py_rng, CPU)
        assert 1 / 1.5 <= s.stretch <= 1.5
        factors.add(round(s.stretch, 6))
        stretched = len(stretch_indices(labels.size, s.stretch))
        assert s.targets.shape[1] == len(range(s.offset, stretched, 3)) == s.features.shape[2]
        feats, visible, targets = s.features[0], s.visible[0], s.targets[0]
        assert torch.equal(feats[:, visible].argmax(0), targets[visible])  # visible frames: feature = label
        assert torch.all(feats[:, visible].sum(0) == 1)  # still one-hot
        # the labels are the source's run-length pattern, each run scaled by about s
        runs = [seg.end - seg.start for seg in segments_from_labels(targets.numpy())]
        assert [seg.label for seg in segments_from_labels(targets.numpy())] == [0, 2, 1, 3, 0]
        expected = np.array([17, 31, 9, 25, 14]) * s.stretch / 3
        assert np.all(np.abs(np.array(runs) - expected) <= 1.5)
    assert len(factors) == 40


def _unstretched_sample(video: CachedVideo, cfg, np_rng, py_rng):
    """The sampling path before the augmentation existed: offset, strided views, masking (reference)."""
    sr = cfg.model.sample_rate
    offset = int(np_rng.integers(sr)) if sr > 1 else 0
    if offset >= video.record.num_frames:
        offset = 0
    feats, labels = sample(video.record.features, video.record.labels, sr, offset)
    boundary = subsample_boundary(video.boundary, sr, offset)
    kind = py_rng.choice(cfg.masking.types)
    return masked_sample(kind, feats, labels, boundary, cfg.masking, np_rng), kind, offset


def test_the_default_off_leaves_a_batch_bit_identical():
    labels = np.repeat(np.array([0, 1, 2, 1]), [40, 25, 33, 20])
    video = _onehot_video(labels, 3)
    cfg = _cfg(3, 4, ["full", "ant", "ant_ratio", "random_num_patch", "boundary", "segment"])
    assert cfg.masking.time_stretch == 1.0 == MaskingConfig().time_stretch
    rng_a, py_a = np.random.default_rng(11), random.Random(11)
    rng_b, py_b = np.random.default_rng(11), random.Random(11)
    for _ in range(6):
        batch = collate([draw_sample(video, cfg, rng_a, py_a, CPU) for _ in range(4)])
        refs = [_unstretched_sample(video, cfg, rng_b, py_b) for _ in range(4)]
        assert batch.offsets == [o for _, _, o in refs] and batch.mask_types == [k for _, k, _ in refs]
        for i, (ms, _, _) in enumerate(refs):
            n = ms.targets.size
            assert batch.lengths[i] == n
            assert np.array_equal(batch.features[i, :, :n].numpy(), ms.features.astype(np.float32))
            assert np.array_equal(batch.targets[i, :n].numpy(), ms.targets)
            assert np.array_equal(batch.visible[i, :n].numpy(), ms.visible)
            assert np.array_equal(batch.boundary[i, :n].numpy(), ms.boundary.astype(np.float32))
    assert rng_a.bit_generator.state == rng_b.bit_generator.state  # no extra draw when off
    assert py_a.getstate() == py_b.getstate()


@pytest.mark.parametrize("value", [0.99, 0.5, 0.0, -2.0, float("nan")])
def test_an_invalid_time_stretch_is_a_config_error(value: float):
    with pytest.raises(ConfigError, match="time_stretch"):
        MaskingConfig(time_stretch=value)
    with pytest.raises(ConfigError, match="time_stretch"):
        experiment_config("tiny", {"masking": {"time_stretch": value}})


def test_a_stretched_sample_boundary_target_peaks_at_the_stretched_boundaries():
    labels = np.repeat(np.array([0, 1, 2]), [60, 50, 70])
    video = _onehot_video(labels, 3)
    cfg = _cfg(3, 1, ["full"], time_stretch=2.0)
    np_rng, py_rng = np.random.default_rng(5), random.Random(5)
    raw_starts = [s.start for s in segments_from_labels(labels)[1:]]
    checked = 0
    for _ in range(20):
        s = draw_sample(video, cfg, np_rng, py_rng, CPU)
        boundary, targets = s.boundary[0].numpy(), s.targets[0].numpy()
        starts = [seg.start for seg in segments_from_labels(targets)[1:]]
        assert len(starts) == 2
        peaks = set(np.flatnonzero(boundary == boundary.max()).tolist())
        assert peaks == {x for b in starts for x in (b - 1, b)}  # the pair of frames at each stretched boundary
        if abs(s.stretch - 1.0) > 0.2:  # the unstretched video's boundaries are no longer the peaks
            raw_peaks = {x for b in raw_starts for x in (b - 1, b)}
            assert starts != raw_starts and not raw_peaks <= peaks
            checked += 1
    assert checked >= 5


def test_resume_with_time_stretch_reproduces_the_straight_run(tmp_path: Path):
    data = write_toy_dataset(tmp_path / "toy")
    doc = {"preset": "tiny", "model": {"sample_rate": 3, "ddim_steps": 3},
           "masking": {"time_stretch": 1.25},
           "training": {"epochs": 2, "lr": 0.003, "accumulate": 1, "eval_every": 1, "checkpoint_every": 1,
                        "validation_fraction": 0.25, "seed": 0}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(doc))

    def run(out: Path, **kw) -> str:
        return train(TrainOptions(config=config, data_root=data, split=1, out=out, progress=False, **kw))[0]

    assert run(tmp_path / "straight") == "finished"

    def stop_at_3(trainer, iteration: int) -> None:
        if iteration == 3:
            trainer.stop.requested = True

    assert run(tmp_path / "run", on_iteration=stop_at_3) == "interrupted"
    assert run(tmp_path / "run", resume=True) == "finished"
    assert_same_weights(tmp_path / "straight", tmp_path / "run")
