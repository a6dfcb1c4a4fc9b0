"""Remaining-duration diagnostics (actfusion_training.current_action): hand-checked tiny cases."""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_training.current_action import (
    bin_label,
    elapsed_run,
    first_change,
    median_sample_change,
    remaining_duration,
    summarize,
)


def test_first_change_and_censoring() -> None:
    assert first_change(np.array([2, 2, 3, 2]), 2) == 2
    assert first_change(np.array([3, 2]), 2) == 0          # changes at the cut
    assert first_change(np.array([2, 2, 2]), 2) == 3       # outlasts the horizon: H


def test_elapsed_run() -> None:
    assert elapsed_run(np.array([0, 0, 1, 1, 1])) == 3
    assert elapsed_run(np.array([4, 4])) == 2
    assert elapsed_run(np.array([1, 0])) == 1
    with pytest.raises(ValueError):
        elapsed_run(np.array([], dtype=np.int64))


def test_median_sample_change() -> None:
    samples = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]])  # first changes 2, 1, 4
    assert median_sample_change(samples, 1) == 2.0


def test_remaining_duration_cuts_the_horizon_at_unknown_truth() -> None:
    # current 1; forecast changes at 1, truth at 3; truth unknown from frame 4 on -> horizon 4
    row = remaining_duration(np.array([1, 2, 2, 2, 2, 2]), np.array([1, 1, 1, 0, -1, -1]), 1, elapsed=5,
                             alpha=0.25, grammar_residual=10.0)
    assert row is not None
    assert (row.horizon, row.predicted, row.truth, row.sample_median) == (4, 1, 3, 1.0)
    assert row.grammar == 4.0  # clipped at the horizon
    assert not row.changes_at_cut and not row.truth_changes_at_cut
    # the whole future unknown: no row
    assert remaining_duration(np.array([1, 1]), np.array([-1, -1]), 1, elapsed=1, alpha=0.5,
                              grammar_residual=1.0) is None


def test_summarize_bias_and_groups() -> None:
    rows = [remaining_duration(np.array([1, 0, 0, 0]), np.array([1, 1, 1, 0]), 1, elapsed=2, alpha=0.2,
                               grammar_residual=3.0),   # predicted 1, truth 3: -2; grammar 0
            remaining_duration(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]), 0, elapsed=9, alpha=0.3,
                               grammar_residual=1.0)]   # predicted 4, truth 2: +2; grammar -1
    summary = summarize(rows, {"alpha": lambda r: f"{r.alpha:g}"})
    stats = summary["all"]
    assert stats["n"] == 2 and stats["truth_mean"] == 2.5
    assert stats["predicted_bias"] == 0.0 and stats["predicted_mae"] == 2.0
    assert stats["grammar_bias"] == -0.5 and stats["grammar_mae"] == 0.5
    assert summary["alpha"]["0.2"]["predicted_bias"] == -2.0
    assert summary["alpha"]["0.3"]["predicted_bias"] == 2.0
    with pytest.raises(ValueError):
        summarize([])


def test_bin_label() -> None:
    edges = (0.0, 1.0, 2.0)
    assert bin_label(0.5, edges) == "[0, 1)"
    assert bin_label(1.0, edges) == "[1, 2)"
    assert bin_label(2.0, edges) == ">= 2"
    assert bin_label(-1.0, edges) == "< 0"


def test_lookahead_outcome() -> None:
    from actfusion_training.current_action import lookahead_outcome
    assert lookahead_outcome(1, 1, 2, 2) == "right"
    assert lookahead_outcome(0, 1, 1, 2) == "current action wrong (segmentation)"
    assert lookahead_outcome(1, 1, 2, 1) == "changes too early"
    assert lookahead_outcome(1, 1, 1, 2) == "changes too late"
    assert lookahead_outcome(1, 1, 3, 2) == "wrong next action"
