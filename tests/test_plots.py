"""Timeline and loss-curve figures are valid PNG images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from actfusion_training.plots import TimelineRow, class_colors, plot_loss_curves, plot_timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = imread(path)
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 50 and img.shape[1] > 200
    return img


def test_timeline_png(tmp_path: Path):
    gt = np.repeat([0, 1, 2, 1], 25)
    forecast = np.concatenate([np.repeat([0, 1], [25, 5]), np.repeat(2, 50), np.full(20, -1)])  # -1: not covered
    rows = [TimelineRow("ground truth", gt), TimelineRow("TAS", np.repeat([0, 2, 1], [30, 40, 30])),
            TimelineRow("LTA a=0.3", forecast, observed=30)]
    path = plot_timeline(tmp_path / "sub" / "video.png", rows, ["take", "pour", "stir"], title="video")
    img = assert_png(path)
    assert img[..., :3].std() > 0.05  # not a blank canvas
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["video.png"]  # no temporary left behind


def test_timeline_rejects_unknown_class(tmp_path: Path):
    with pytest.raises(ValueError, match="class id 5"):
        plot_timeline(tmp_path / "x.png", [TimelineRow("gt", np.array([0, 5]))], ["a", "b"])
    with pytest.raises(ValueError, match="at least one row"):
        plot_timeline(tmp_path / "x.png", [], ["a"])


def test_loss_curve_png(tmp_path: Path):
    csv = tmp_path / "loss.csv"
    csv.write_text("iteration,total,dec_ce\n" + "".join(f"{i},{3.0 / i},{2.0 / i}\n" for i in range(1, 41)))
    assert_png(plot_loss_curves(csv, tmp_path / "loss.png", columns=("total", "dec_ce")))


def test_class_colors_distinct():
    for n in (11, 19, 48):
        colors = class_colors(n)
        assert len(colors) == n and len(set(colors)) == n
