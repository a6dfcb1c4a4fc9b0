"""F1 segment ends: the reference ``eval.py`` convention (last segment ends at N-1) by default, the exact
one behind ``exact_f1``; and ``python -m actfusion_training.evaluate`` input checks (empty / extension-less files)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from actfusion_training.evaluate import main as evaluate_main
from actfusion_training.metrics import f1_counts, tas_metrics


def _reference_f1_counts(pred: list[int], gt: list[int], overlap: float,
                         bg: tuple[int, ...] = ()) -> tuple[int, int, int]:
    """The reference semantics, restated literally from their description (loops, no project code).

    Segments: a start at every label change; ends are exclusive indices (the index of the change), except
    the last segment of the video whose end is the last index N-1. IoU = intersection / union of those
    [start, end] numbers; each prediction takes the same-label ground-truth segment of highest IoU.
    """
    def segments(labels: list[int]) -> tuple[list[int], list[int], list[int]]:
        labs, starts, ends = [], [], []
        last = labels[0]
        if last not in bg:
            labs.append(last)
            starts.append(0)
        i = 0
        for i in range(len(labels)):
            if labels[i] != last:
                if labels[i] not in bg:
                    labs.append(labels[i])
                    starts.append(i)
                if last not in bg:
                    ends.append(i)
                last = labels[i]
        if last not in bg:
            ends.append(i)
        return labs, starts, ends

    pl, ps, pe = segments(pred)
    gl, gs, ge = segments(gt)
    if not gl:
        return 0, len(pl), 0
    hits = [False] * len(gl)
    tp = fp = 0
    for j in range(len(pl)):
        ious = []
        for x in range(len(gl)):
            inter = min(pe[j], ge[x]) - max(ps[j], gs[x])
            union = max(pe[j], ge[x]) - min(ps[j], gs[x])
            ious.append(inter / union if union > 0 and pl[j] == gl[x] else 0.0)
        best = int(np.argmax(ious))
        if ious[best] >= overlap and not hits[best]:
            hits[best] = True
            tp += 1
        else:
            fp += 1
    return tp, fp, len(gl) - sum(hits)


def test_last_segment_one_frame_short_changes_the_match() -> None:
    # gt [0 0 0 0 | 1], pred [0 0 0 | 1 1]; exact: IoUs 3/4 and 1/2 (both hits at 0.5);
    # reference: gt's last segment is [4, 4], pred's [3, 4] -> intersection 0, a miss.
    pred, gt = np.array([0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 1])
    assert f1_counts(pred, gt, 0.5, exact_f1=True) == (2, 0, 0)
    assert f1_counts(pred, gt, 0.5) == (1, 1, 1)
    assert tas_metrics([(pred, gt)]) == pytest.approx(
        {"acc": 80.0, "edit": 100.0, "f1@10": 50.0, "f1@25": 50.0, "f1@50": 50.0})
    assert tas_metrics([(pred, gt)], exact_f1=True) == pytest.approx(
        {"acc": 80.0, "edit": 100.0, "f1@10": 100.0, "f1@25": 100.0, "f1@50": 100.0})


def test_perfect_prediction_with_one_frame_last_segment() -> None:
    # The reference gives the one-frame last segment [2, 2]: IoU 0 even for a perfect prediction.
    labels = np.array([0, 0, 1])
    assert f1_counts(labels, labels, 0.1, exact_f1=True) == (2, 0, 0)
    assert f1_counts(labels, labels, 0.1) == (1, 1, 1)


def test_iou_of_the_last_segment_by_hand() -> None:
    # gt [0]*4 + [1]*6, pred [0]*2 + [1]*8 (N = 10). First segments: IoU 2/4 in both conventions.
    # Last: exact [2,10) vs [4,10) -> 6/8 = 0.75; reference [2,9] vs [4,9] -> 5/7 = 0.714.
    pred = np.array([0] * 2 + [1] * 8)
    gt = np.array([0] * 4 + [1] * 6)
    assert f1_counts(pred, gt, 0.72, exact_f1=True) == (1, 1, 1)
    assert f1_counts(pred, gt, 0.72) == (0, 2, 2)
    assert f1_counts(pred, gt, 0.70) == f1_counts(pred, gt, 0.70, exact_f1=True) == (1, 1, 1)


def test_only_segments_running_to_the_end_change() -> None:
    # gt ends in background (dropped): its kept segment keeps the exclusive end 3; pred's runs to N.
    # exact: [0,5) vs [0,3) -> 3/5; reference: [0,4] vs [0,3) -> 3/4.
    pred, gt, bg = np.array([1, 1, 1, 1, 1]), np.array([1, 1, 1, 0, 0]), [0]
    assert f1_counts(pred, gt, 0.7, bg, exact_f1=True) == (0, 1, 1)
    assert f1_counts(pred, gt, 0.7, bg) == (1, 0, 0)
    # nothing runs to the end in either: the conventions agree
    pred2 = np.array([1, 1, 0, 0, 0])
    assert f1_counts(pred2, gt, 0.6, bg) == f1_counts(pred2, gt, 0.6, bg, exact_f1=True) == (1, 0, 0)


def test_default_equals_the_reference_on_random_videos() -> None:
    rng = np.random.default_rng(7)
    differed = 0
    for _ in range(300):
        n = int(rng.integers(1, 40))
        runs = rng.integers(1, 8, size=n)
        labels = np.repeat(rng.integers(0, 4, size=n), runs)[:n]
        gt = labels.copy()
        pred = labels.copy()
        flip = rng.random(n) < 0.2
        pred[flip] = rng.integers(0, 4, size=int(flip.sum()))
        bg = (0,) if rng.random() < 0.5 else ()
        for k in (0.1, 0.25, 0.5, 0.75):
            want = _reference_f1_counts(pred.tolist(), gt.tolist(), k, bg)
            assert f1_counts(pred, gt, k, bg) == want, (pred.tolist(), gt.tolist(), k, bg)
            differed += f1_counts(pred, gt, k, bg, exact_f1=True) != want
        exact, ref = tas_metrics([(pred, gt)], bg, exact_f1=True), tas_metrics([(pred, gt)], bg)
        assert (exact["acc"], exact["edit"]) == (ref["acc"], ref["edit"])
    assert differed > 0  # the cases exercise the difference


# ------------------------------------------------------------------------------ python -m actfusion_training.evaluate


def _write(path: Path, names: list[str], header: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("### Frame level recognition: ###\n" + " ".join(names) + "\n") if header
                    else "".join(f"{n}\n" for n in names))


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = evaluate_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_f1_convention_flag(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write(tmp_path / "gt" / "v1.txt", ["a", "a", "a", "a", "b"])
    _write(tmp_path / "pred" / "v1.txt", ["a", "a", "a", "b", "b"])
    args = ("tas", "--predictions", str(tmp_path / "pred"), "--ground-truth", str(tmp_path / "gt"))
    rc, out, _ = _run(capsys, *args)
    assert rc == 0 and json.loads(out)["f1@50"] == pytest.approx(50.0)
    rc, out, _ = _run(capsys, *args, "--exact-f1")
    assert rc == 0 and json.loads(out)["f1@50"] == pytest.approx(100.0)


def test_cli_reads_ms_tcn_result_files_without_extension(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt = ["a"] * 5 + ["b"] * 5
    _write(tmp_path / "gt" / "v1.txt", gt)
    _write(tmp_path / "gt" / "v2.txt", gt)
    _write(tmp_path / "pred" / "v1", gt, header=True)       # MS-TCN predict() output: no extension
    _write(tmp_path / "pred" / "v2.txt", gt)
    rc, out, err = _run(capsys, "lta", "--predictions", str(tmp_path / "pred"), "--ground-truth",
                        str(tmp_path / "gt"), "--observed", "0.2", "--predicted", "0.5")
    assert rc == 0, err
    assert json.loads(out) == {"observed": 0.2, "videos": 2, "moc": {"0.5": 100.0}}
    _write(tmp_path / "pred" / "v2", gt)                     # v2 twice: ambiguous
    rc, out, err = _run(capsys, "tas", "--predictions", str(tmp_path / "pred"), "--ground-truth",
                        str(tmp_path / "gt"))
    assert rc == 2 and "two files for video 'v2'" in err and out == ""


@pytest.mark.parametrize("task", ["lta", "tas"])
def test_cli_refuses_an_empty_prediction_file(tmp_path: Path, capsys: pytest.CaptureFixture, task: str) -> None:
    _write(tmp_path / "gt" / "v1.txt", ["a"] * 10)
    _write(tmp_path / "gt" / "v2.txt", ["b"] * 10)
    _write(tmp_path / "pred" / "v1.txt", ["a"] * 10)
    (tmp_path / "pred" / "v2.txt").write_text("\n")
    extra = ("--observed", "0.2", "--predicted", "0.5") if task == "lta" else ()
    rc, out, err = _run(capsys, task, "--predictions", str(tmp_path / "pred"), "--ground-truth",
                        str(tmp_path / "gt"), *extra)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and "prediction of 'v2' is empty" in err and "Traceback" not in err
