"""Tests of offline extraction: online stream == offline features, and the actfusion-extract CLI."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from actfusion_model.features import FeatureExtractor, FrameShapeChanged
from actfusion_model.features.i3d import I3DRGBExtractor
from actfusion_model.features.simple import ColorLayoutExtractor
from actfusion_model.labels import ClassMapping
from actfusion_ros.sampler import sample_frame_indices
from actfusion_ros.stream import StreamingAnticipator
from actfusion_ros.stream_types import StreamConfig
from actfusion_ros.tools.extract import extract_sampled, main

pytest.importorskip("rosbags")
from actfusion_ros.tools.bags import write_bag  # noqa: E402

S = 1_000_000_000
MS = 1_000_000


pytestmark = pytest.mark.usefixtures("single_torch_thread_module")


class _NoForecast:
    num_classes = 2

    def __call__(self, observed: np.ndarray, horizon: int):   # pragma: no cover - never ticked
        raise AssertionError("not used")


def _online(extractor: FeatureExtractor, stamps: list[int], frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and stamps the live streaming core computes from (stamp, frame) pairs."""
    ant = StreamingAnticipator(StreamConfig(feature_rate_hz=2.0, max_window_s=60.0), extractor,
                               _NoForecast(), ["a", "b"])
    for s, f in zip(stamps, frames):
        ant.push_frame(s, f)
    return ant.snapshot()


def _jittered_stamps(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    stamps = [k * S // 30 + int(rng.integers(-3 * MS, 3 * MS + 1)) for k in range(n)]
    stamps[0] = 0
    stamps[20] = stamps[19]                 # a duplicate stamp and an out-of-order frame: not context
    stamps[33] = stamps[31] - MS
    return stamps


@pytest.mark.parametrize("kind", ["color_layout", "i3d"])
def test_online_stream_equals_offline_extraction(kind: str) -> None:
    n = 70
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(n, 30, 40, 3), dtype=np.uint8)
    stamps = _jittered_stamps(n, seed=2)
    if kind == "i3d":
        ext: FeatureExtractor = I3DRGBExtractor(allow_random_weights=True, clip_frames=6, resize=32, crop=32)
    else:
        ext = ColorLayoutExtractor(grid=3, bins=4)
    online, online_stamps = _online(ext, stamps, frames)
    offline = extract_sampled(zip(stamps, frames), ext, 2.0)
    taken = sample_frame_indices(stamps, 2.0)
    np.testing.assert_array_equal(offline.frame_indices, taken)
    np.testing.assert_array_equal(offline.stamps_ns, online_stamps)
    assert offline.frames_read == n and offline.features.shape == (len(taken), ext.dim) == online.T.shape
    np.testing.assert_array_equal(offline.features, online.T)                 # bit-equal (batch 1)
    # in-memory counterpart over the frames that enter the context (not the duplicate/out-of-order ones)
    keep = [i for i in range(n) if i not in (20, 33)]
    at = ext.extract_at(frames[keep], [keep.index(i) for i in taken])
    np.testing.assert_array_equal(at, online.T)
    # batched windows: equal up to float rounding
    batched = extract_sampled(zip(stamps, frames), ext, 2.0, batch_size=4)
    np.testing.assert_allclose(batched.features, online.T, rtol=1e-5, atol=1e-5 * np.abs(online).max())


def test_offline_extraction_is_causal_and_rejects_size_changes() -> None:
    ext = ColorLayoutExtractor(grid=2, bins=2)
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, size=(40, 8, 8, 3), dtype=np.uint8)
    stamps = [k * S // 10 for k in range(40)]
    base = extract_sampled(zip(stamps, frames), ext, 2.0)
    changed = frames.copy()
    changed[21:] = 255 - changed[21:]
    after = extract_sampled(zip(stamps, changed), ext, 2.0)
    np.testing.assert_array_equal(after.features[:5], base.features[:5])      # features at <= 2.0 s
    assert not np.array_equal(after.features[5:], base.features[5:])
    mixed = list(zip(stamps, frames))
    mixed[7] = (mixed[7][0], np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(FrameShapeChanged, match="frame 7"):
        extract_sampled(mixed, ext, 2.0)


# --------------------------------------------------------------------------- CLI on a bag
def _scene(k: int, h: int = 24, w: int = 32) -> np.ndarray:
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., k // 10 % 3] = 200                          # colour = phase of the activity
    frame[:, (k % w)] = 255
    return frame


def test_cli_on_a_bag_with_label_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = 100 * S
    images = [(t0 + k * S // 10, _scene(k)) for k in range(30)]              # 10 fps, 3 s
    labels = [(t0, "pour"), (t0 + 1_200 * MS, "stir"), (t0 + 2_000 * MS, "serve")]
    bag = write_bag(tmp_path / "ep1", storage="mcap", images=images, encoding="png", labels=labels)
    out = tmp_path / "ds"
    rc = main([str(bag), "--out", str(out), "--extractor", "color_layout", "--feature-rate", "2",
               "--image-topic", "/camera/image_raw/compressed", "--label-topic", "/action/label"])
    assert rc == 0, capsys.readouterr().err
    feats = np.load(out / "features" / "ep1.npy")
    assert feats.dtype == np.float32 and feats.shape == (ColorLayoutExtractor().dim, 6)
    # features at 0, 0.5, ..., 2.5 s; labels in force then (the change at 1.2 s shows from 1.5 s)
    gt = (out / "groundTruth" / "ep1.txt").read_text().split()
    assert gt == ["pour", "pour", "pour", "stir", "serve", "serve"]
    np.testing.assert_array_equal(np.load(out / "stamps" / "ep1.npy"), t0 + np.arange(6) * S // 2)
    assert ClassMapping.from_file(out / "mapping.txt").names == ("pour", "stir", "serve")
    offline = extract_sampled(images, ColorLayoutExtractor(), 2.0)
    np.testing.assert_array_equal(feats, offline.features.T)                 # PNG: lossless pixels
    # a second recording extends the mapping, keeping the existing ids
    bag2 = write_bag(tmp_path / "ep2", storage="sqlite3", images=images[:10],
                     labels=[(t0, "wipe"), (t0 + 300 * MS, "pour")])
    assert main([str(bag2), "--out", str(out), "--extractor", "color_layout", "--feature-rate", "2",
                 "--label-topic", "/action/label"]) == 0
    assert ClassMapping.from_file(out / "mapping.txt").names == ("pour", "stir", "serve", "wipe")
    assert (out / "groundTruth" / "ep2.txt").read_text().split() == ["wipe", "pour"]
    assert "ep2: 10 frames -> 2 features" in capsys.readouterr().out
    # the dataset records its feature pipeline, and refuses features from another one
    from actfusion_model.features.pipeline import read_dataset_pipeline
    assert read_dataset_pipeline(out).extractor == "color_layout" and read_dataset_pipeline(out).feature_rate_hz == 2.0
    assert main([str(bag2), "--out", str(out), "--extractor", "color_layout", "--feature-rate", "4",
                 "--label-topic", "/action/label", "--name", "ep3"]) == 1
    assert "feature_rate_hz: 2 != 4" in capsys.readouterr().err


def test_cli_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_bag(tmp_path / "b", storage="sqlite3", images=[(k * S // 10, _scene(k)) for k in range(5)])
    rc = main([str(bag), "--out", str(tmp_path / "o"), "--extractor", "color_layout", "--feature-rate", "2",
               "--image-topic", "/cam/missing"])
    err = capsys.readouterr().err
    assert rc == 1 and "topic '/cam/missing' not found" in err and str(bag) in err
    rc = main([str(bag), "--out", str(tmp_path / "o"), "--extractor", "resnet18", "--feature-rate", "2"])
    assert rc == 1 and "needs a weights file" in capsys.readouterr().err
    rc = main([str(bag), "--out", str(tmp_path / "o"), "--extractor", "color_layout", "--feature-rate", "2",
               "--label-topic", "/action/label"])
    assert rc == 1 and "topic '/action/label' not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(bag), "--out", str(tmp_path / "o"), "--extractor", "color_layout", "--feature-rate", "2",
              "--weights", str(tmp_path / "w.pt")])
    assert "does not take" in capsys.readouterr().err
    assert not (tmp_path / "o" / "features").exists()


# --------------------------------------------------------------------------- CLI on a video
def _write_video(path: Path, n: int, fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (48, 40))
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.ascontiguousarray(_scene(k, 40, 48)[:, :, ::-1]))
    writer.release()


def test_cli_on_a_video_with_per_frame_labels_and_i3d(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "kitchen_01.avi"
    _write_video(video, 25, 10.0)
    names = ["idle"] * 8 + ["cut"] * 12 + ["idle"] * 5
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "ds"
    args = [str(video), "--out", str(out), "--extractor", "i3d_rgb", "--allow-random-weights",
            "--clip-frames", "4", "--extractor-option", "resize=32", "--extractor-option", "crop=32",
            "--feature-rate", "2", "--labels", str(tmp_path / "labels.txt"), "--device", "cpu"]
    assert main(args) == 0, capsys.readouterr().err
    feats = np.load(out / "features" / "kitchen_01.npy")
    assert feats.shape == (1024, 5) and feats.dtype == np.float32 and np.isfinite(feats).all()
    # frames 0, 5, 10, 15, 20 at 10 fps are sampled at 2 Hz
    assert (out / "groundTruth" / "kitchen_01.txt").read_text().split() == ["idle", "idle", "cut", "cut", "idle"]
    np.testing.assert_array_equal(np.load(out / "stamps" / "kitchen_01.npy"), np.arange(5) * S // 2)
    assert ClassMapping.from_file(out / "mapping.txt").names == ("idle", "cut")
    # a label file of the wrong length is refused, naming both counts
    (tmp_path / "short.txt").write_text("idle\n" * 24)
    args[args.index(str(tmp_path / "labels.txt"))] = str(tmp_path / "short.txt")
    assert main(args + ["--name", "other"]) == 1
    assert "24 labels but" in capsys.readouterr().err and not (out / "features" / "other.npy").exists()
