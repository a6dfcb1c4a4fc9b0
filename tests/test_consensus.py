"""K-sample aggregation (model/consensus.py) on hand-made samples.

Three sampled futures of 6 frames (C = 3, current action 0):

    s0 = 0 0 1 1 1 1
    s1 = 0 0 0 2 2 2
    s2 = 0 1 1 1 2 2

Votes (fraction of samples per class), frames 0..5:
    class 0: 1   2/3 1/3 0   0   0
    class 1: 0   1/3 2/3 2/3 1/3 1/3
    class 2: 0   0   0   1/3 2/3 2/3
Per-frame mode: 0 0 1 1 2 2; segment confidences: [0,2) (1 + 2/3)/2 = 5/6, [2,4) 2/3, [4,6) 2/3.
Hamming distances: s0-s1 4 (frames 2-5), s0-s2 3 (1, 4, 5), s1-s2 3 (1, 2, 3); sums 7, 7, 6: medoid s2,
whose segments are [0,1) conf 1, [1,4) conf (1/3 + 2/3 + 2/3)/3 = 5/9, [4,6) conf 2/3.
Next action after 0: s0 -> 1 at frame 2, s1 -> 2 at frame 3, s2 -> 1 at frame 1: class 1 with p 2/3, starts
{1, 2}: mean 1.5, 10% quantile 1.1, 90% quantile 1.9; class 2 with p 1/3 at 3; no change: 0.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from actfusion_model.consensus import (
    CONSENSUS_METHODS,
    NO_CHANGE,
    ConsensusSegment,
    FutureSamples,
    aggregate_samples,
    consensus_labels,
    consensus_segments,
    current_label,
    first_change,
    frame_marginals,
    medoid_index,
    next_action_distribution,
    next_action_outcome,
    outcome_vector,
    per_frame_mode,
)
from actfusion_model.labels import Segment

S = np.array([[0, 0, 1, 1, 1, 1],
              [0, 0, 0, 2, 2, 2],
              [0, 1, 1, 1, 2, 2]])
C = 3


def one_hot_probs(labels: np.ndarray, num_classes: int, peak: float = 0.8) -> np.ndarray:
    """(K, T) labels -> (K, C, T) probabilities with ``peak`` on the label, the rest spread evenly."""
    probs = np.full(labels.shape[:1] + (num_classes,) + labels.shape[1:], (1 - peak) / (num_classes - 1))
    np.put_along_axis(probs, labels[:, None, :], peak, axis=1)
    return probs


def test_vote_marginals():
    third = 1 / 3
    expected = np.array([[1, 2 * third, third, 0, 0, 0],
                         [0, third, 2 * third, 2 * third, third, third],
                         [0, 0, 0, third, 2 * third, 2 * third]])
    np.testing.assert_allclose(frame_marginals(S, C), expected)
    np.testing.assert_allclose(frame_marginals(S, C).sum(axis=0), 1.0)
    # Probability input votes with each sample's argmax: the same votes.
    np.testing.assert_allclose(frame_marginals(one_hot_probs(S, C)), expected)


def test_probability_marginals_are_the_mean_of_the_samples():
    probs = one_hot_probs(S, C, peak=0.6)
    np.testing.assert_allclose(frame_marginals(probs, source="probs"), probs.mean(axis=0))
    np.testing.assert_allclose(frame_marginals(probs, source="probs")[:, 0], [0.6, 0.2, 0.2])
    with pytest.raises(ValueError, match="needs sample probabilities"):
        frame_marginals(S, C, source="probs")
    with pytest.raises(ValueError, match="unknown marginal source"):
        frame_marginals(S, C, source="mean")


def test_per_frame_mode_and_ties():
    np.testing.assert_array_equal(per_frame_mode(S, C), [0, 0, 1, 1, 2, 2])
    # One vote each for classes 1 and 0: labels alone -> the lowest id; probabilities -> the higher mean.
    probs = np.array([[[0.1], [0.8], [0.1]],   # argmax 1
                      [[0.5], [0.2], [0.3]]])  # argmax 0; mean probs 0.3, 0.5, 0.2
    assert per_frame_mode(probs)[0] == 1
    assert per_frame_mode(np.array([[1], [0]]), 3)[0] == 0
    # A larger vote count always wins over the mean probability.
    probs3 = np.concatenate([probs, [[[0.4], [0.0], [0.6]]], [[[0.4], [0.0], [0.6]]]])  # + two votes for 2
    assert per_frame_mode(probs3)[0] == 2


def test_medoid_is_the_sample_nearest_to_the_others():
    assert medoid_index(S, C) == 2
    labels, chosen = consensus_labels(S, C, method="medoid")
    assert chosen == 2
    np.testing.assert_array_equal(labels, S[2])
    # Ties: the lowest sample index (two identical pairs).
    assert medoid_index(np.array([[0, 1], [1, 0]]), 2) == 0
    labels, chosen = consensus_labels(S, C, method="mode")
    assert chosen is None
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])
    with pytest.raises(ValueError, match="unknown consensus method"):
        consensus_labels(S, C, method="median")
    assert CONSENSUS_METHODS == ("mode", "medoid")


def test_segment_confidence_is_the_agreeing_fraction_of_samples():
    votes = frame_marginals(S, C)
    segs = consensus_segments(per_frame_mode(S, C), votes)
    assert [(s.label, s.start, s.end) for s in segs] == [(0, 0, 2), (1, 2, 4), (2, 4, 6)]
    assert [s.confidence for s in segs] == pytest.approx([5 / 6, 2 / 3, 2 / 3])
    segs = consensus_segments(S[2], votes)
    assert [(s.label, s.start, s.end, s.length) for s in segs] == [(0, 0, 1, 1), (1, 1, 4, 3), (2, 4, 6, 2)]
    assert [s.confidence for s in segs] == pytest.approx([1.0, 5 / 9, 2 / 3])
    # Unanimous samples: confidence 1 everywhere.
    same = np.array([[1, 1, 2]] * 4)
    assert [s.confidence for s in consensus_segments(same[0], frame_marginals(same, 3))] == [1.0, 1.0]
    with pytest.raises(ValueError, match="disagree"):
        consensus_segments(S[0][:4], votes)


def test_a_consensus_segment_is_the_label_segment_plus_its_confidence():
    """One segment type: the consensus adds only ``confidence`` to :class:`actfusion_model.labels.Segment`."""
    seg = ConsensusSegment(2, 4, 6, 0.5)
    assert isinstance(seg, Segment) and seg.length == 2
    assert (seg.label, seg.start, seg.end, seg.confidence) == (2, 4, 6, 0.5)
    assert [f.name for f in dataclasses.fields(seg)] == ["label", "start", "end", "confidence"]
    assert seg != Segment(2, 4, 6)  # a plain segment carries no confidence


def test_next_action_distribution():
    dist = next_action_distribution(S, current=0, num_classes=C)
    assert (dist.current, dist.num_samples, dist.horizon, dist.interval) == (0, 3, 6, (0.1, 0.9))
    assert [(a.class_id, a.count) for a in dist.alternatives] == [(1, 2), (2, 1)]
    one, two = dist.alternatives
    assert one.probability == pytest.approx(2 / 3) and two.probability == pytest.approx(1 / 3)
    assert (one.expected_start, one.start_low, one.start_high) == pytest.approx((1.5, 1.1, 1.9))
    assert (two.expected_start, two.start_low, two.start_high) == (3.0, 3.0, 3.0)
    assert dist.no_change == 0.0 and dist.no_change_count == 0
    assert dist.as_mapping() == pytest.approx({1: 2 / 3, 2: 1 / 3})
    assert dist.probability_of(0) == 0.0 and dist.probability_of(NO_CHANGE) == 0.0


def test_no_change_bucket_and_ordering():
    samples = np.array([[0, 0, 0, 0],
                        [0, 0, 0, 0],
                        [0, 1, 1, 1],
                        [0, 0, 0, 1],
                        [2, 2, 2, 2]])  # the current action 0 ends at the cut: start 0
    dist = next_action_distribution(samples, current=0, num_classes=3, interval=(0.25, 0.75))
    assert dist.no_change == pytest.approx(0.4) and dist.no_change_count == 2
    assert [(a.class_id, a.count) for a in dist.alternatives] == [(1, 2), (2, 1)]
    one, two = dist.alternatives
    assert (one.expected_start, one.start_low, one.start_high) == pytest.approx((2.0, 1.5, 2.5))
    assert (two.probability, two.expected_start, two.start_low, two.start_high) == pytest.approx((0.2, 0, 0, 0))
    assert dist.as_mapping() == pytest.approx({1: 0.4, 2: 0.2, NO_CHANGE: 0.4})
    assert sum(dist.as_mapping().values()) == pytest.approx(1.0)
    # Equal counts: the earlier expected start first, then the lower class id.
    tied = next_action_distribution(np.array([[0, 0, 2], [0, 1, 1], [0, 0, 1], [0, 2, 2]]), 0, 3)
    assert [a.class_id for a in tied.alternatives] == [1, 2]  # both start at mean 1.5: lower id first
    early = next_action_distribution(np.array([[0, 0, 1], [0, 2, 2]]), 0, 3)
    assert [a.class_id for a in early.alternatives] == [2, 1]  # 2 starts at 1, 1 at 2


def test_every_sample_unchanged_and_empty_horizon():
    dist = next_action_distribution(np.zeros((3, 5), dtype=np.int64), 0, 2)
    assert dist.alternatives == () and dist.no_change == 1.0 and dist.as_mapping() == {NO_CHANGE: 1.0}
    empty = aggregate_samples(np.zeros((4, 0), dtype=np.int64), 1, 2)
    assert empty.labels.shape == (0,) and empty.segments == () and empty.marginals.shape == (2, 0)
    assert empty.next_action.no_change == 1.0 and empty.num_samples == 4


def test_first_change_scores_truth_with_the_same_rule():
    assert first_change([3, 3, 1, 2], 3) == (1, 2)
    assert first_change([1, 3], 3) == (1, 0)
    assert first_change([3, 3], 3) is None and first_change([], 3) is None
    assert next_action_outcome([3, 3, 1], 3) == 1 and next_action_outcome([3, 3], 3) == NO_CHANGE


def test_aggregate_samples_from_probabilities():
    probs = one_hot_probs(S, C)
    mode = aggregate_samples(probs, current=0)
    np.testing.assert_array_equal(mode.labels, [0, 0, 1, 1, 2, 2])
    assert [s.confidence for s in mode.segments] == pytest.approx([5 / 6, 2 / 3, 2 / 3])
    assert (mode.method, mode.marginal_source, mode.chosen, mode.num_samples) == ("mode", "votes", None, 3)
    assert mode.next_action.as_mapping() == pytest.approx({1: 2 / 3, 2: 1 / 3})
    medoid = aggregate_samples(probs, 0, method="medoid", marginal_source="probs")
    np.testing.assert_array_equal(medoid.labels, S[2])
    assert medoid.chosen == 2
    assert [s.confidence for s in medoid.segments] == pytest.approx([1.0, 5 / 9, 2 / 3])  # votes, not probs
    np.testing.assert_allclose(medoid.marginals, probs.mean(axis=0))


def test_current_label_of_the_observed_part():
    assert current_label(np.array([2, 2, 1])) == 1
    assert current_label(np.array([[0.9, 0.2], [0.1, 0.8]])) == 1  # (C, N_O): argmax of the last frame
    k_obs = np.array([[[0.9, 0.1], [0.1, 0.9]],   # sample 0, last frame -> class 1
                      [[0.1, 0.6], [0.9, 0.4]],   # sample 1 -> class 0
                      [[0.5, 0.3], [0.5, 0.7]]])  # sample 2 -> class 1
    assert current_label(k_obs) == 1
    for bad in (np.array([], dtype=np.int64), np.zeros((2, 0)), np.array([0.5, 0.5])):
        with pytest.raises(ValueError, match="observed must be"):
            current_label(bad)


def test_bad_samples_are_clear_errors():
    with pytest.raises(ValueError, match="need num_classes"):
        FutureSamples.of(S)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        FutureSamples.of(S, 2)
    with pytest.raises(ValueError, match="NaN"):
        FutureSamples.of(np.full((2, 3, 4), np.nan))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*logits"):
        FutureSamples.of(np.full((2, 3, 4), 2.5))
    with pytest.raises(ValueError, match="3 classes, num_classes=4"):
        FutureSamples.of(one_hot_probs(S, C), 4)
    with pytest.raises(ValueError, match=r"\(K, C, T\) or labels \(K, T\)"):
        FutureSamples.of(np.zeros(5, dtype=np.int64), 3)
    with pytest.raises(ValueError, match="K >= 1"):
        FutureSamples.of(np.zeros((0, 4), dtype=np.int64), 3)
    with pytest.raises(ValueError, match="integer class ids"):
        FutureSamples.of(S.astype(np.float32), 3)
    with pytest.raises(ValueError, match="current label 3 out of range"):
        next_action_distribution(S, 3, C)
    with pytest.raises(ValueError, match="interval"):
        next_action_distribution(S, 0, C, interval=(0.9, 0.1))
    s = FutureSamples.of(S, C)
    assert FutureSamples.of(s) is s and (s.num_samples, s.horizon, s.num_classes) == (3, 6, 3)


def test_outcome_vector():
    np.testing.assert_allclose(outcome_vector({1: 0.25, NO_CHANGE: 0.75}, 3), [0, 0.25, 0, 0.75])
    dist = next_action_distribution(S, 0, C)
    np.testing.assert_allclose(outcome_vector(dist.as_mapping(), C), [0, 2 / 3, 1 / 3, 0])
    with pytest.raises(ValueError, match="sum to 1"):
        outcome_vector({0: 0.5}, 3)
    with pytest.raises(ValueError, match="class id 3 out of range"):
        outcome_vector({3: 1.0}, 3)
    with pytest.raises(ValueError, match=">= 0"):
        outcome_vector({0: 1.5, 1: -0.5}, 3)
