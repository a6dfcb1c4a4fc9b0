"""Metrics (Acc/Edit/F1, MoC) on hand-made sequences with known answers, and the evaluation CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from actfusion_model.labels import ClassMapping, read_label_file, segments_from_labels
from actfusion_training.metrics import (
    edit_score,
    f1_counts,
    f1_from_counts,
    levenshtein,
    moc_counts,
    moc_scores,
    moc_window,
    segment_iou,
    tas_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def a(*runs: tuple[int, int]) -> np.ndarray:
    """Labels from (label, length) runs."""
    return np.concatenate([np.full(n, c, dtype=np.int64) for c, n in runs])


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


# ---------------------------------------------------------------------------------------------- TAS


def test_perfect_prediction_scores_100():
    gt = a((0, 3), (1, 3), (2, 2), (0, 4))
    assert tas_metrics([(gt, gt.copy())]) == {"acc": 100.0, "edit": 100.0, "f1@10": 100.0,
                                               "f1@25": 100.0, "f1@50": 100.0}


def test_small_shift_keeps_segments():
    gt = a((0, 10), (1, 10))
    m = tas_metrics([(a((0, 12), (1, 8)), gt)])
    assert m == {"acc": approx(90.0), "edit": approx(100.0), "f1@10": approx(100.0),
                 "f1@25": approx(100.0), "f1@50": approx(100.0)}


def test_large_shift_fails_f1_at_50():
    # IoUs: class 0 -> 10/16 = 0.625, class 1 -> 4/10 = 0.4.
    m = tas_metrics([(a((0, 16), (1, 4)), a((0, 10), (1, 10)))])
    assert m["acc"] == approx(70.0)
    assert m["edit"] == approx(100.0)
    assert m["f1@10"] == approx(100.0) and m["f1@25"] == approx(100.0)
    assert m["f1@50"] == approx(50.0)  # tp 1, fp 1, fn 1


def test_over_segmentation_exact_values():
    gt = a((0, 10), (1, 10))
    pred = a((0, 4), (1, 2), (0, 4), (1, 10))
    assert levenshtein([0, 1, 0, 1], [0, 1]) == 2
    assert edit_score(pred, gt) == approx(50.0)
    # @10/@25: [0,4) hits gt0 (IoU .4), [4,6) misses, [6,10) picks the already-hit gt0, [10,20) hits gt1.
    assert f1_counts(pred, gt, 0.10) == (2, 2, 0)
    assert f1_counts(pred, gt, 0.50) == (1, 3, 1)
    m = tas_metrics([(pred, gt)])
    assert m["acc"] == approx(90.0)
    assert m["edit"] == approx(50.0)
    assert m["f1@10"] == approx(200 / 3) and m["f1@25"] == approx(200 / 3)
    assert m["f1@50"] == approx(100 / 3)


def test_f1_counts_pooled_over_videos_edit_averaged():
    perfect = a((0, 10), (1, 10))
    over = a((0, 4), (1, 2), (0, 4), (1, 10))
    m = tas_metrics([(perfect, perfect), (over, perfect)])
    assert m["acc"] == approx(95.0)
    assert m["edit"] == approx(75.0)
    # pooled @50: tp 2+1, fp 0+3, fn 0+1 -> P .5, R .75 -> 60 (a per-video mean would be 66.7)
    assert m["f1@50"] == approx(60.0)


def test_empty_prediction_and_both_empty():
    bg = 2
    gt = a((bg, 5), (1, 10), (bg, 5))
    pred = np.full(20, bg)
    m = tas_metrics([(pred, gt)], background=[bg])
    assert m == {"acc": approx(50.0), "edit": approx(0.0), "f1@10": 0.0, "f1@25": 0.0, "f1@50": 0.0}
    only_bg = np.full(7, bg)
    assert edit_score(only_bg, only_bg, [bg]) == 100.0
    assert f1_counts(only_bg, only_bg, 0.1, [bg]) == (0, 0, 0)
    assert f1_from_counts(0, 0, 0) == 0.0


def test_class_absent_in_ground_truth_is_false_positive():
    gt = np.zeros(10, dtype=np.int64)
    pred = a((0, 5), (3, 5))
    assert edit_score(pred, gt) == approx(50.0)
    assert f1_counts(pred, gt, 0.5) == (1, 1, 0)  # IoU exactly 0.5 counts as a hit
    assert tas_metrics([(pred, gt)])["f1@50"] == approx(200 / 3)


def test_background_dropped_from_segments_only():
    gt = a((0, 5), (9, 3), (0, 5))
    pred = np.zeros(13, dtype=np.int64)
    plain = tas_metrics([(pred, gt)])
    dropped = tas_metrics([(pred, gt)], background=[9])
    assert plain["acc"] == dropped["acc"] == approx(1000 / 13)
    assert plain["edit"] == approx(100 / 3)      # [0] vs [0, 9, 0]
    assert dropped["edit"] == approx(50.0)       # [0] vs [0, 0]: background still separates
    assert dropped["f1@10"] == approx(200 / 3)   # IoU 5/13 with the first gt 0 segment; one fn
    assert dropped["f1@50"] == 0.0


def test_segment_iou_matrix():
    p = segments_from_labels(a((0, 4), (1, 6)))
    g = segments_from_labels(a((0, 2), (1, 8)))
    iou = segment_iou(p, g)
    np.testing.assert_allclose(iou, [[2 / 4, 0.0], [0.0, 6 / 8]])


def test_tas_input_errors():
    with pytest.raises(ValueError, match="frames"):
        tas_metrics([(np.zeros(3, dtype=int), np.zeros(4, dtype=int))])
    with pytest.raises(ValueError, match="at least one"):
        tas_metrics([])
    with pytest.raises(ValueError, match="integer"):
        tas_metrics([(np.zeros(3), np.zeros(3))])


def test_real_ground_truth_perfect_and_perturbed(shared_data: Path):
    root = shared_data / "gtea"
    mapping = ClassMapping.from_file(root / "mapping.txt")
    gt = read_label_file(root / "groundTruth" / "S1_Cheese_C1.txt", mapping)
    bg = [mapping.id_of("background")]
    assert tas_metrics([(gt, gt)], bg) == {k: 100.0 for k in ("acc", "edit", "f1@10", "f1@25", "f1@50")}
    shifted = np.concatenate([gt[:1].repeat(10), gt[:-10]])  # same transcript, boundaries 10 frames late
    m = tas_metrics([(shifted, gt)], bg)
    assert m["acc"] == approx(100.0 * np.mean(shifted == gt)) and m["acc"] < 90.0
    assert m["edit"] == 100.0
    assert 100.0 >= m["f1@10"] >= m["f1@25"] >= m["f1@50"] and m["f1@50"] < 70.0


# ---------------------------------------------------------------------------------------------- MoC


def test_moc_window_matches_reference_rounding():
    assert moc_window(10, 10, 0.2, 0.5) == (2, 7)
    assert moc_window(10, 4, 0.2, 0.5) == (2, 4)      # prediction shorter than the window
    assert moc_window(10, 1, 0.2, 0.5) == (2, 2)      # nothing left to compare
    assert moc_window(10, 99, 0.3, 0.1) == (3, 4)     # int(0.3*10)=3, int(0.4*10)=4


def test_moc_pools_counts_per_class_over_videos():
    gt_a, pred_a = a((0, 5), (1, 5)), np.zeros(10, dtype=np.int64)
    gt_b, pred_b = np.ones(20, dtype=np.int64), a((1, 6), (2, 14))
    pairs = [(pred_a, gt_a), (pred_b, gt_b)]
    c = moc_counts(pairs, 0.2, 0.5)
    # A: frames [2,7) -> class 0: 3 correct, class 1: 2 wrong. B: frames [4,14) -> class 1: 2 correct, 8 wrong.
    assert c.correct == {0: 3, 1: 2} and c.wrong == {1: 10}
    scores, counts = moc_scores(pairs, 0.2, [0.3, 0.5])
    assert scores[0.5] == approx((1.0 + 2 / 12) / 2 * 100)   # pooled; a per-video mean would give 35
    assert scores[0.3] == approx((1.0 + 2 / 6) / 2 * 100)
    assert counts[0.3].classes == [0, 1]


def test_moc_perfect_and_errors():
    gt = a((0, 30), (1, 40), (2, 30))
    scores, _ = moc_scores([(gt, gt)], 0.3, [0.1, 0.2, 0.3, 0.5])
    assert scores == {0.1: 100.0, 0.2: 100.0, 0.3: 100.0, 0.5: 100.0}
    with pytest.raises(ValueError):
        moc_scores([(gt, gt)], 1.2, [0.1])
    with pytest.raises(ValueError):
        moc_scores([(gt, gt)], 0.2, [0.0])


# ---------------------------------------------------------------------------------------------- CLI


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "actfusion_training.evaluate", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def gtea_preds(shared_data: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(predictions dir holding copies of split-1 test ground truth, groundTruth dir, bundle)."""
    root = shared_data / "gtea"
    bundle = root / "splits" / "test.split1.bundle"
    preds = tmp_path / "preds"
    preds.mkdir()
    for line in bundle.read_text().split():
        shutil.copy(root / "groundTruth" / line, preds / line)
    return preds, root / "groundTruth", bundle


def test_cli_tas_perfect_and_perturbed(gtea_preds, shared_data: Path):
    preds, gt_dir, bundle = gtea_preds
    res = run_cli("tas", "--predictions", str(preds), "--ground-truth", str(gt_dir), "--split", str(bundle))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"acc": 100.0, "edit": 100.0, "f1@10": 100.0, "f1@25": 100.0,
                                      "f1@50": 100.0, "videos": 7}
    # Perturb one video; the CLI must agree with the library on id-encoded labels.
    mapping = ClassMapping.from_file(shared_data / "gtea" / "mapping.txt")
    victim = sorted(preds.iterdir())[0]
    names = victim.read_text().split()
    names[100:300] = ["stir"] * 200
    victim.write_text("\n".join(names) + "\n")
    res = run_cli("tas", "--predictions", str(preds), "--ground-truth", str(gt_dir),
                  "--mapping", str(shared_data / "gtea" / "mapping.txt"))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    pairs = [(read_label_file(p, mapping), read_label_file(gt_dir / p.name, mapping)) for p in sorted(preds.iterdir())]
    expect = tas_metrics(pairs, background=[mapping.id_of("background")])
    assert out["videos"] == 7
    assert out["acc"] < 100.0 and out["edit"] < 100.0
    for key, value in expect.items():
        assert out[key] == pytest.approx(value)


def test_cli_errors_name_the_video(gtea_preds):
    preds, gt_dir, bundle = gtea_preds
    victim = sorted(preds.iterdir())[0]
    victim.unlink()
    res = run_cli("tas", "--predictions", str(preds), "--ground-truth", str(gt_dir), "--split", str(bundle))
    assert res.returncode == 2
    assert victim.stem in res.stderr and "no prediction" in res.stderr
    (preds / "not_a_video.txt").write_text("take\n")
    res = run_cli("lta", "--predictions", str(preds), "--ground-truth", str(gt_dir),
                  "--observed", "0.2", "--predicted", "0.1")
    assert res.returncode == 2
    assert "not_a_video" in res.stderr and "no ground truth" in res.stderr


def test_cli_lta_perfect(gtea_preds):
    preds, gt_dir, _ = gtea_preds
    res = run_cli("lta", "--predictions", str(preds), "--ground-truth", str(gt_dir),
                  "--observed", "0.2", "--predicted", "0.1", "0.2", "0.3", "0.5")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"observed": 0.2, "videos": 7,
                                      "moc": {"0.1": 100.0, "0.2": 100.0, "0.3": 100.0, "0.5": 100.0}}
