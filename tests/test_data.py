"""MS-TCN reader errors, training targets, validation split, synthetic features and make_dataset."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actfusion_model.labels import ClassMapping, read_label_file, segments_from_labels
from actfusion_training.data import (
    DatasetError,
    MsTcnDataset,
    boundary_targets,
    class_weights,
    gaussian_smooth,
    gaussian_soft_labels,
    read_bundle,
    sample,
    split_train_validation,
    subsample_boundary,
)
from actfusion_training.make_dataset import main as make_dataset_main
from actfusion_training.synthetic import class_prototypes, jitter_labels, onehot_features, synthetic_features

REPO = Path(__file__).resolve().parents[1]
VIDEOS = ("S1_Cheese_C1", "S1_Tea_C1", "S2_Coffee_C1")


def labels_of(shared_data: Path, name: str) -> np.ndarray:
    root = shared_data / "gtea"
    return read_label_file(root / "groundTruth" / f"{name}.txt", ClassMapping.from_file(root / "mapping.txt"))


@pytest.fixture
def tiny_root(shared_data: Path, tmp_path: Path) -> Path:
    """An MS-TCN root with 3 real GTEA label files and random (4, T) features; split 1 = all 3 in train."""
    src = shared_data / "gtea"
    root = tmp_path / "ds"
    (root / "groundTruth").mkdir(parents=True)
    (root / "features").mkdir()
    (root / "splits").mkdir()
    shutil.copy(src / "mapping.txt", root / "mapping.txt")
    rng = np.random.default_rng(0)
    for name in VIDEOS:
        shutil.copy(src / "groundTruth" / f"{name}.txt", root / "groundTruth" / f"{name}.txt")
        t = labels_of(shared_data, name).size
        np.save(root / "features" / f"{name}.npy", rng.standard_normal((4, t)).astype(np.float32))
    (root / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in VIDEOS))
    (root / "splits" / "test.split1.bundle").write_text(f"{VIDEOS[0]}.txt\n")
    return root


# ---------------------------------------------------------------------------------------------- reader


def test_reader_loads_videos(tiny_root: Path, shared_data: Path):
    ds = MsTcnDataset(tiny_root, 1, "train")
    assert ds.names == list(VIDEOS) and len(ds) == 3 and ds.num_classes == 11
    rec = ds[1]
    assert rec.name == "S1_Tea_C1"
    assert rec.features.dtype == np.float32 and rec.labels.dtype == np.int64
    assert rec.features.shape == (4, rec.num_frames)
    np.testing.assert_array_equal(rec.labels, labels_of(shared_data, "S1_Tea_C1"))
    assert [r.name for r in ds] == list(VIDEOS)
    assert MsTcnDataset(tiny_root, 1, "test").names == [VIDEOS[0]]


def test_real_bundles_read(shared_data: Path):
    names = read_bundle(shared_data / "50salads" / "splits" / "test.split1.bundle")
    assert len(names) == 10 and all(n.startswith("rgb-") and not n.endswith(".txt") for n in names)


def test_missing_feature_file(tiny_root: Path):
    (tiny_root / "features" / "S1_Tea_C1.npy").unlink()
    with pytest.raises(DatasetError, match="S1_Tea_C1.*not found"):
        MsTcnDataset(tiny_root, 1, "train")


def test_missing_split_file(tiny_root: Path):
    with pytest.raises(DatasetError, match="split2"):
        MsTcnDataset(tiny_root, 2, "train")


def test_unknown_label(tiny_root: Path):
    path = tiny_root / "groundTruth" / "S2_Coffee_C1.txt"
    lines = path.read_text().splitlines()
    lines[5] = "juggle"
    path.write_text("\n".join(lines) + "\n")
    ds = MsTcnDataset(tiny_root, 1, "train")
    with pytest.raises(DatasetError, match="S2_Coffee_C1.*juggle"):
        ds[2]
    assert issubclass(DatasetError, ValueError)


def test_length_mismatch_names_video_and_lengths(tiny_root: Path, shared_data: Path):
    t = labels_of(shared_data, "S1_Cheese_C1").size
    feats = np.zeros((4, t - 5), dtype=np.float32)
    np.save(tiny_root / "features" / "S1_Cheese_C1.npy", feats)
    ds = MsTcnDataset(tiny_root, 1, "train")
    with pytest.raises(DatasetError) as err:
        ds[0]
    msg = str(err.value)
    assert "S1_Cheese_C1" in msg and str(t) in msg and str(t - 5) in msg
    # within the tolerance the longer one is trimmed
    np.save(tiny_root / "features" / "S1_Cheese_C1.npy", np.zeros((4, t + 2), dtype=np.float64))
    rec = ds[0]
    assert rec.features.shape == (4, t) and rec.labels.shape == (t,) and rec.features.dtype == np.float32
    np.save(tiny_root / "features" / "S1_Cheese_C1.npy", np.zeros((4, t - 2), dtype=np.float32))
    assert ds[0].labels.shape == (t - 2,)
    assert MsTcnDataset(tiny_root, 1, "train", tolerance=0).names  # constructs; loading would fail
    with pytest.raises(DatasetError, match=f"{t - 2}.*{t}"):
        MsTcnDataset(tiny_root, 1, "train", tolerance=0)[0]


def test_sample_strided_view():
    feats = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    labels = np.arange(10)
    f, lab = sample(feats, labels, 4, 1)
    np.testing.assert_array_equal(lab, [1, 5, 9])
    np.testing.assert_array_equal(f, feats[:, [1, 5, 9]])
    assert np.shares_memory(f, feats)
    with pytest.raises(ValueError):
        sample(feats, labels, 4, 4)


# ---------------------------------------------------------------------------------------------- targets


def test_boundary_targets_raw_and_smoothed():
    labels = np.repeat([0, 1], 50)
    raw = boundary_targets(labels, None)
    assert np.flatnonzero(raw).tolist() == [49, 50]
    sigma = 5.0
    b = boundary_targets(labels, sigma)
    assert b.dtype == np.float32 and b.shape == (100,)
    assert b[49] == pytest.approx(1.0) and b[50] == pytest.approx(1.0) and b.max() == pytest.approx(1.0)
    g = lambda x: np.exp(-0.5 * (x / sigma) ** 2)  # noqa: E731
    # isolated boundary: value k frames before frame 49 relative to the peak
    for k in (1, 4, 9):
        assert b[49 - k] == pytest.approx((g(k) + g(k + 1)) / (g(0) + g(1)), rel=1e-5)
        assert b[49 - k] == pytest.approx(b[50 + k], rel=1e-6)  # symmetric
    assert np.all(np.diff(b[:50]) >= 0) and b[0] < 1e-3
    assert not boundary_targets(np.zeros(20, dtype=int), 3.0).any()


def test_boundary_targets_clip_close_boundaries():
    labels = np.repeat([0, 1, 2], [50, 3, 50])  # boundaries at 50 and 53 overlap after smoothing
    b = boundary_targets(labels, 5.0)
    assert b.max() == pytest.approx(1.0)
    assert np.count_nonzero(np.isclose(b, 1.0)) >= 4  # clipped plateau, not one sharp peak
    sub = subsample_boundary(b, 4, 1)
    assert sub.max() == pytest.approx(1.0) and sub.size == len(range(1, 103, 4))


def test_gaussian_smooth_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    x = np.random.default_rng(1).standard_normal((3, 40))
    for sigma in (0.7, 3.0, 20.0):
        np.testing.assert_allclose(gaussian_smooth(x, sigma, axis=1),
                                   ndimage.gaussian_filter1d(x, sigma, axis=1), atol=1e-12)


def test_gaussian_soft_labels_not_renormalised():
    labels = np.repeat([0, 2], 20)
    soft = gaussian_soft_labels(labels, 3, sigma=4)
    assert soft.shape == (3, 40) and soft.dtype == np.float32
    assert not soft[1].any()
    np.testing.assert_allclose(soft[:, :5], [[1] * 5, [0] * 5, [0] * 5], atol=1e-3)
    assert 0.4 < soft[0, 19] < 0.6 and soft[0, 19] + soft[2, 19] == pytest.approx(1.0, abs=1e-6)
    # exactly the one-hot matrix smoothed along time (no renormalisation step)
    ref = gaussian_smooth(np.eye(3)[labels].T, 4.0, axis=1)
    np.testing.assert_allclose(soft, ref, atol=1e-6)


def test_class_weights_formula():
    w = class_weights([np.array([0, 0, 0, 1]), np.array([1, 2])], 4)
    np.testing.assert_allclose(w, [6 / (13 * 4), 6 / (12 * 4), 6 / (11 * 4), 6 / (10 * 4)], rtol=1e-6)
    assert w.dtype == np.float32
    with pytest.raises(ValueError):
        class_weights([np.array([4])], 4)


def test_split_train_validation(shared_data: Path):
    names = read_bundle(shared_data / "gtea" / "splits" / "train.split1.bundle")
    rest, val = split_train_validation(names, 0.2, seed=3)
    assert len(val) == 4 and len(rest) == 17
    assert not set(rest) & set(val) and set(rest) | set(val) == set(names)
    assert rest == [n for n in names if n in set(rest)]  # input order kept
    assert split_train_validation(names, 0.2, seed=3) == (rest, val)
    assert split_train_validation(list(reversed(names)), 0.2, seed=3)[1] == list(reversed(val))
    assert split_train_validation(names, 0.2, seed=4)[1] != val
    test = read_bundle(shared_data / "gtea" / "splits" / "test.split1.bundle")
    assert not set(val) & set(test)
    assert split_train_validation(names, 0.0, seed=0) == (names, [])
    with pytest.raises(ValueError):
        split_train_validation(names, 1.0, seed=0)


# ---------------------------------------------------------------------------------------------- synthetic


def test_jitter_keeps_transcript(shared_data: Path):
    labels = labels_of(shared_data, "S1_Cheese_C1")
    j = jitter_labels(labels, 4, np.random.default_rng(0))
    a, b = segments_from_labels(labels), segments_from_labels(j)
    assert [s.label for s in a] == [s.label for s in b]
    shifts = np.array([x.start - y.start for x, y in zip(a, b)])
    assert np.abs(shifts).max() <= 4 and np.any(shifts != 0)


def test_synthetic_features_deterministic_and_label_dependent(shared_data: Path):
    labels = labels_of(shared_data, "S1_Cheese_C1")
    f1 = synthetic_features(labels, 11, 32, np.random.default_rng(7))
    f2 = synthetic_features(labels, 11, 32, np.random.default_rng(7))
    f3 = synthetic_features(labels, 11, 32, np.random.default_rng(8))
    assert f1.shape == (32, labels.size) and f1.dtype == np.float32
    np.testing.assert_array_equal(f1, f2)
    assert not np.allclose(f1, f3)
    protos = class_prototypes(11, 32, np.random.default_rng(5))
    f = synthetic_features(labels, 11, 32, np.random.default_rng(1), prototypes=protos)
    acc = np.mean((protos @ f).argmax(0) == labels)
    assert 0.7 < acc < 0.99  # informative but deliberately not perfect
    other = np.roll(labels, 200)
    g = synthetic_features(other, 11, 32, np.random.default_rng(1), prototypes=protos)
    assert np.mean((protos @ g).argmax(0) == other) > 0.7 and np.mean((protos @ g).argmax(0) == labels) < 0.5
    clean = synthetic_features(labels, 11, 32, np.random.default_rng(1), prototypes=protos,
                               noise=0.0, jitter=0, ambiguity=0.0)
    np.testing.assert_allclose(clean, protos[labels].T, atol=1e-6)


def test_onehot_features():
    f = onehot_features(np.array([2, 0, 0, 1]), 3)
    np.testing.assert_array_equal(f, [[0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]])
    assert f.dtype == np.float32
    with pytest.raises(ValueError):
        onehot_features(np.array([3]), 3)


def test_make_dataset_cli(shared_data: Path, tmp_path: Path):
    out = tmp_path / "synth"
    res = subprocess.run([sys.executable, "-m", "actfusion_training.make_dataset",
                          "--source", str(shared_data / "gtea"), "--out", str(out), "--kind", "synthetic",
                          "--dim", "16", "--seed", "2"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["videos"] == 28
    assert len(list((out / "features").glob("*.npy"))) == 28
    assert (out / "mapping.txt").read_bytes() == (shared_data / "gtea" / "mapping.txt").read_bytes()
    assert not list(out.rglob("*.tmp"))
    ds = MsTcnDataset(out, 4, "test")
    rec = ds[0]
    assert rec.features.shape == (16, labels_of(shared_data, rec.name).size)
    np.testing.assert_array_equal(rec.labels, labels_of(shared_data, rec.name))

    again = tmp_path / "again"
    assert make_dataset_main(["--source", str(shared_data / "gtea"), "--out", str(again),
                              "--kind", "synthetic", "--dim", "16", "--seed", "2"]) == 0
    name = f"{rec.name}.npy"
    assert (again / "features" / name).read_bytes() == (out / "features" / name).read_bytes()

    hot = tmp_path / "hot"
    assert make_dataset_main(["--source", str(shared_data / "gtea"), "--out", str(hot), "--kind", "onehot"]) == 0
    rec = MsTcnDataset(hot, 1, "train")[0]
    assert rec.features.shape == (11, rec.num_frames)
    np.testing.assert_array_equal(rec.features.argmax(0), rec.labels)
    assert make_dataset_main(["--source", str(tmp_path / "nowhere"), "--out", str(hot), "--kind", "onehot"]) == 1
