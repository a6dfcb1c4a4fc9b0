"""Next-action scores (training/prob_metrics.py), the reliability PNG and the grammar's distribution.

Four events over C = 2 classes (outcomes 0, 1, then "no change" at index 2):

    e0 [0.7, 0.2, 0.1] truth 0   Brier 0.09 + 0.04 + 0.01 = 0.14
    e1 [0.2, 0.5, 0.3] truth 2   Brier 0.04 + 0.25 + 0.49 = 0.78
    e2 [0.0, 0.0, 1.0] truth 2   Brier 0
    e3 [0.6, 0.4, 0.0] truth 1   Brier 0.36 + 0.36 = 0.72        mean 1.64 / 4 = 0.41

Top-1: e0, e2 hit -> 50 %; top-2: all four -> 100 %.
Top-label reliability (10 bins): 0.7 hit (bin 7), 0.5 miss (bin 5), 1.0 hit (bin 9), 0.6 miss (bin 6):
ECE = (0.3 + 0.5 + 0 + 0.6) / 4 = 0.35.
Stated reliability (the 9 pairs with p > 0): 0.1 F, 0.2 F F, 0.3 T, 0.4 T, 0.5 F, 0.6 F, 0.7 T, 1.0 T:
ECE = (0.1 + 0.4 + 0.7 + 0.6 + 0.5 + 0.6 + 0.3 + 0) / 9 = 3.2 / 9.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actfusion_model.consensus import NO_CHANGE, next_action_distribution, next_action_outcome, outcome_vector
from actfusion_training.baselines import GrammarForecaster, RepeatLast
from actfusion_training.plots import plot_reliability
from actfusion_training.prob_metrics import (
    NextActionForecaster,
    ReliabilityTable,
    brier_score,
    lta_next_action_case,
    outcome_index,
    reliability_pairs,
    reliability_table,
    score_forecaster_next_actions,
    score_next_actions,
    topk_accuracy,
)
from tests.grammar_cases import A, runs
from tests.test_plots import assert_png

P = np.array([[0.7, 0.2, 0.1],
              [0.2, 0.5, 0.3],
              [0.0, 0.0, 1.0],
              [0.6, 0.4, 0.0]])
T = np.array([0, 2, 2, 1])


def test_topk_accuracy():
    assert topk_accuracy(P, T, 1) == pytest.approx(50.0)
    assert topk_accuracy(P, T, 2) == pytest.approx(100.0)
    assert topk_accuracy(P, T, 3) == pytest.approx(100.0)
    # An outcome stated with probability 0 is never in the top k.
    assert topk_accuracy(np.array([[1.0, 0.0, 0.0]]), [2], 3) == 0.0
    # Ranking ties: the lower outcome index first.
    assert topk_accuracy(np.array([[0.5, 0.5, 0.0]]), [0], 1) == 100.0
    assert topk_accuracy(np.array([[0.5, 0.5, 0.0]]), [1], 1) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        topk_accuracy(P, T, 0)


def test_brier_score():
    assert brier_score(P, T) == pytest.approx(0.41)
    assert brier_score(np.array([[0.0, 1.0]]), [1]) == 0.0
    assert brier_score(np.array([[0.0, 1.0]]), [0]) == pytest.approx(2.0)  # the worst: all mass elsewhere


def test_reliability_top_label():
    stated, happened = reliability_pairs(P, T, "top")
    np.testing.assert_allclose(stated, [0.7, 0.5, 1.0, 0.6])
    np.testing.assert_array_equal(happened, [True, False, True, False])
    table = reliability_table(stated, happened, 10, "top")
    assert table.count == 4 and len(table.bins) == 10
    assert [b.count for b in table.bins] == [0, 0, 0, 0, 0, 1, 1, 1, 0, 1]
    assert (table.bins[9].lower, table.bins[9].upper, table.bins[9].observed) == (0.9, 1.0, 1.0)  # 1.0: last bin
    assert table.bins[0].mean_stated is None and table.bins[0].observed is None
    assert table.ece == pytest.approx(0.35)


def test_reliability_stated_outcomes():
    stated, happened = reliability_pairs(P, T, "stated")
    assert stated.size == 9  # the zero-probability outcomes are left out
    table = reliability_table(stated, happened, 10)
    assert [b.count for b in table.bins] == [0, 1, 2, 1, 1, 1, 1, 1, 0, 1]
    assert table.bins[2].observed == 0.0 and table.bins[3].observed == 1.0
    assert table.ece == pytest.approx(3.2 / 9)
    with pytest.raises(ValueError, match="unknown reliability mode"):
        reliability_pairs(P, T, "all")


def test_reliability_table_bins_and_ece():
    table = reliability_table([0.05, 0.15, 0.12, 0.95, 1.0], [False, True, False, True, True], num_bins=10)
    first, second, last = table.bins[0], table.bins[1], table.bins[9]
    assert (first.count, first.mean_stated, first.observed) == (1, pytest.approx(0.05), 0.0)
    assert (second.count, second.mean_stated, second.observed) == (2, pytest.approx(0.135), 0.5)
    assert (last.count, last.mean_stated, last.observed) == (2, pytest.approx(0.975), 1.0)
    assert table.ece == pytest.approx((0.05 + 2 * 0.365 + 2 * 0.025) / 5)
    assert reliability_table([0.2, 0.8], [False, True], num_bins=2).ece == pytest.approx(0.2)
    assert table.to_dict()["bins"][1] == {"lower": 0.1, "upper": 0.2, "count": 2,
                                          "mean_stated": pytest.approx(0.135), "observed": 0.5}
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        reliability_table([1.2], [True])
    with pytest.raises(ValueError, match="2 stated probabilities but 1 outcomes"):
        reliability_table([0.1, 0.2], [True])


def test_score_next_actions_and_bad_events():
    scores = score_next_actions(P, T)
    assert scores.count == 4 and scores.topk == pytest.approx({1: 50.0, 3: 100.0})
    assert scores.brier == pytest.approx(0.41) and scores.reliability.ece == pytest.approx(0.35)
    report = scores.to_dict()
    assert report["top1"] == 50.0 and report["reliability"]["mode"] == "top"
    with pytest.raises(ValueError, match="event 0: probabilities sum to 0.9"):
        score_next_actions(np.array([[0.5, 0.4]]), [0])
    with pytest.raises(ValueError, match="no events"):
        brier_score(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match=r"truth indices must lie in \[0, 3\)"):
        brier_score(P, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        brier_score(np.array([[np.nan, 1.0]]), [0])


def test_model_samples_to_scored_events():
    """From K samples and a ground truth to one scored event, through the shared first-change rule."""
    samples = np.array([[1, 1, 2, 2], [1, 0, 0, 0], [1, 1, 1, 1], [1, 2, 2, 2]])
    gt_future = np.array([1, 1, 1, 2])
    dist = next_action_distribution(samples, current=1, num_classes=3)
    vector = outcome_vector(dist.as_mapping(), 3)
    np.testing.assert_allclose(vector, [0.25, 0, 0.5, 0.25])  # classes 0, 1, 2, then no change
    truth = outcome_index(next_action_outcome(gt_future, 1), 3)
    assert truth == 2
    assert score_next_actions(vector[None], [truth]).topk[1] == 100.0
    assert outcome_index(NO_CHANGE, 3) == 3
    with pytest.raises(ValueError, match="out of range"):
        outcome_index(3, 3)


def test_reliability_png(tmp_path: Path):
    stated, happened = reliability_pairs(P, T, "stated")
    table = reliability_table(stated, happened, 10, "stated")
    path = plot_reliability(tmp_path / "figs" / "reliability.png", table, title="next action")
    img = assert_png(path)
    assert img[..., :3].std() > 0.05
    assert [p.name for p in (tmp_path / "figs").iterdir()] == ["reliability.png"]  # no temporary left behind
    with pytest.raises(ValueError, match="at least one bin"):
        plot_reliability(tmp_path / "x.png", ReliabilityTable((), 0, 0.0), "")


# ---------------------------------------------------------------------------------------------- grammar


def test_grammar_next_action_distribution(g1: GrammarForecaster, g2: GrammarForecaster):
    """Training sequences of tests/grammar_cases.py: durations of 0 [2, 4], of 2 [4, 4, 6], pooled
    [2, 2, 4, 4, 4, 4, 4, 6]; after (S, 0): {1: 1/2, 2: 1/2}; after 2: {END: 2/3, 1: 1/3}."""
    # Class 0 for 2 frames: only the 4-frame training segment is longer, it ends at future frame 2.
    assert g1.next_action_distribution(runs((0, 2)), 3) == pytest.approx({1: 0.5, 2: 0.5})
    assert g1.next_action_distribution(runs((0, 2)), 2) == {NO_CHANGE: 1.0}  # frame 2 is past the horizon
    # Class 2 for 2 frames after 1: 4, 4 of 4, 4, 6 end within 3 frames; then END (no change) 2/3, 1 1/3.
    dist = g1.next_action_distribution(runs((1, 4), (2, 2)), 3)
    assert dist == pytest.approx({NO_CHANGE: 1 / 3 + 2 / 3 * 2 / 3, 1: 2 / 3 * 1 / 3})
    assert g2.next_action_distribution(runs((1, 4), (2, 2)), 3) == pytest.approx({NO_CHANGE: 1.0})  # (1, 2) -> END
    # An unseen class: unigram successors {0: 2, 1: 3, 2: 3, END: 3} / 11, pooled durations: 5 of 6 end.
    dist = g1.next_action_distribution(runs((3, 2)), 3)
    assert dist == pytest.approx({0: 5 / 6 * 2 / 11, 1: 5 / 6 * 3 / 11, 2: 5 / 6 * 3 / 11,
                                  NO_CHANGE: 1 / 6 + 5 / 6 * 3 / 11})
    # Outlived every training segment of its class: it ends now.
    assert g1.next_action_distribution(runs((0, 5)), 1) == pytest.approx({1: 0.5, 2: 0.5})
    assert g1.next_action_distribution(runs((0, 5)), 0) == {NO_CHANGE: 1.0}  # nothing changes in no time
    for d in (g1.next_action_distribution(runs((3, 2)), 3), g2.next_action_distribution(runs((0, 1), (1, 1)), 9)):
        assert outcome_vector(d, 4).sum() == pytest.approx(1.0)


def test_grammar_next_action_distribution_relative(g1: GrammarForecaster):
    # GT-length protocol, N = 10: class 0 elapsed 0.2; relative durations [4/12, 2/10]: only 1/3 is longer.
    assert g1.next_action_distribution(runs((0, 2)), 2, video_length=10) == pytest.approx({1: 0.5, 2: 0.5})
    assert g1.next_action_distribution(runs((0, 2)), 1, video_length=10) == {NO_CHANGE: 1.0}
    with pytest.raises(ValueError, match="shorter than"):
        g1.next_action_distribution(runs((0, 2)), 1, video_length=1)


# ---------------------------------------------------------------------------------------------- offline events


def test_lta_next_action_case_per_protocol():
    video = runs((0, 10), (1, 2))  # sr 1, N 12, alpha 0.2: 2 observed frames of class 0
    gt_case = lta_next_action_case(video, 1, 0.2, "gt")  # horizon 10: reaches the 1 at frame 10
    assert (gt_case.current, gt_case.horizon, gt_case.video_length, gt_case.truth) == (0, 10, 12, 1)
    np.testing.assert_array_equal(gt_case.observed, [0, 0])
    rn_case = lta_next_action_case(video, 1, 0.2, "rn")  # horizon 4 * 2 = 8: still class 0
    assert (rn_case.horizon, rn_case.video_length, rn_case.truth) == (8, None, NO_CHANGE)
    # The video ends in the current action: no change under both protocols.
    assert lta_next_action_case(runs((0, 3), (1, 9)), 1, 0.5, "gt").truth == NO_CHANGE
    assert lta_next_action_case(runs((0, 3), (1, 9)), 1, 0.5, "rn").truth == NO_CHANGE
    # At the sampled rate (offset 0): raw 0x8 1x8 2x16 at sr 2 -> 0x4 1x4 2x8; alpha 0.3 observes 5.
    case = lta_next_action_case(runs((0, 8), (1, 8), (2, 16)), 2, 0.3, "gt")
    assert (case.current, case.truth, case.video_length, case.horizon) == (1, 2, 16, 11)
    with pytest.raises(ValueError, match="empty video"):
        lta_next_action_case(np.zeros(0, dtype=np.int64), 1, 0.2, "gt")


def test_score_forecasters_next_actions(g1: GrammarForecaster):
    video = runs((0, 10), (1, 2))
    repeat = score_forecaster_next_actions(RepeatLast(), [("v", video)], 2, 1, alphas=(0.2,))
    assert repeat["gt"].topk[1] == 0.0 and repeat["gt"].brier == pytest.approx(2.0)  # truth: 1
    assert repeat["rn"].topk[1] == 100.0 and repeat["rn"].brier == 0.0  # truth: no change
    assert isinstance(RepeatLast(), NextActionForecaster) and isinstance(g1, NextActionForecaster)
    # Grammar on A (0x4 1x2 2x6), alpha 0.2: [0, 0] observed, truth 1; it states {1: 0.5, 2: 0.5} under both
    # protocols (the only longer class-0 segments end within the horizon): a ranking tie won by 1.
    scores = score_forecaster_next_actions(g1, [("A", A)], 3, 1, alphas=(0.2,))
    for protocol in ("gt", "rn"):
        s = scores[protocol]
        assert (s.count, s.topk[1], s.topk[3], s.brier) == (1, 100.0, 100.0, pytest.approx(0.5))
        assert s.reliability.bins[5].count == 1 and s.reliability.ece == pytest.approx(0.5)
