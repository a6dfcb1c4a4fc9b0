"""Label-only baselines (training/baselines.py): hand-checked tiny cases.

Training sequences (segments as label x frames; tests/grammar_cases.py):

    A = 0x4 1x2 2x6   (N = 12)      tokens S 0 1 2 E
    B = 0x2 2x4 1x4   (N = 10)      tokens S 0 2 1 E
    C = 1x4 2x4       (N = 8)       tokens S 1 2 E

Order 1 counts: S -> {0: 2, 1: 1}; 0 -> {1: 1, 2: 1}; 1 -> {2: 2, E: 1}; 2 -> {E: 2, 1: 1}.
Order 2 counts: (S,0) -> {1, 2}; (S,1) -> {2}; (0,1) -> {2}; (0,2) -> {1}; (1,2) -> {E: 2}; (2,1) -> {E}.
Unigram (every token after S): {0: 2, 1: 3, 2: 3, E: 3} (11).
Durations, frames: 0 -> [2, 4]; 1 -> [2, 4, 4]; 2 -> [4, 4, 6]. Relative: 0 -> [4/12, 2/10];
1 -> [2/12, 4/10, 4/8]; 2 -> [6/12, 4/10, 4/8].
"""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_training.baselines import (
    END,
    START,
    GrammarForecaster,
    LabelForecaster,
    RepeatLast,
    baseline_lta_labels,
    best_per_cell,
    fit_baselines,
    resample_labels,
    score_baselines,
)
from actfusion_training.metrics import moc_scores
from tests.grammar_cases import A, B, C, runs


def test_the_shared_training_sequences_are_the_documented_ones():
    assert runs((0, 2), (1, 1)).tolist() == [0, 0, 1] and runs((0, 2), (1, 1)).dtype == np.int64
    assert (len(A), len(B), len(C)) == (12, 10, 8)
    assert A.tolist() == [0] * 4 + [1] * 2 + [2] * 6 and C.tolist() == [1] * 4 + [2] * 4


def test_fitted_transition_probabilities(g1: GrammarForecaster, g2: GrammarForecaster):
    assert g1.transition_probabilities([START]) == pytest.approx({0: 2 / 3, 1: 1 / 3})
    assert g1.transition_probabilities([START, 0]) == pytest.approx({1: 0.5, 2: 0.5})
    assert g1.transition_probabilities([START, 0, 1]) == pytest.approx({2: 2 / 3, END: 1 / 3})
    assert g1.transition_probabilities([START, 1, 2]) == pytest.approx({END: 2 / 3, 1: 1 / 3})
    assert g2.transition_probabilities([START, 0, 2]) == pytest.approx({1: 1.0})
    assert g2.transition_probabilities([START, 1, 2]) == pytest.approx({END: 1.0})
    assert g2.transition_probabilities([START, 0]) == pytest.approx({1: 0.5, 2: 0.5})
    assert g1.unigram == {0: 2, 1: 3, 2: 3, END: 3} and g1.videos == 3


def test_backoff_order2_to_order1_to_unigram(g1: GrammarForecaster, g2: GrammarForecaster):
    # (2, 0) never seen: order 2 backs off to the order-1 context (0,).
    assert g2.transition_probabilities([START, 2, 0]) == pytest.approx({1: 0.5, 2: 0.5})
    assert g2.successor([START, 2, 0]) == 1  # a tie: the lowest class id
    # Class 3 never occurs in training: unigram; 3 is excluded anyway, 1 / 2 / END tie at 3/11 -> 1.
    unigram = {0: 2 / 11, 1: 3 / 11, 2: 3 / 11, END: 3 / 11}
    assert g1.transition_probabilities([START, 3]) == pytest.approx(unigram)
    assert g2.transition_probabilities([START, 0, 3]) == pytest.approx(unigram)
    assert g1.successor([START, 3]) == 1
    # Never the label of the segment it follows: after a unigram back-off from 1, 1 is excluded.
    assert g1.successor([START, 1]) == 2
    # Class 3 takes the pooled durations: frames [2, 4, 2, 4, 4, 4, 4, 6], mean 30 / 8.
    assert g1.mean_duration(3, relative=False) == pytest.approx(3.75)


def test_mean_durations_and_residuals(g1: GrammarForecaster):
    assert g1.mean_duration(1, relative=False) == pytest.approx(10 / 3)
    assert g1.mean_duration(2, relative=True) == pytest.approx((0.5 + 0.4 + 0.5) / 3)
    assert g1.mean_residual(1, 1, relative=False) == pytest.approx((1 + 3 + 3) / 3)  # D > 1: 2, 4, 4
    assert g1.mean_residual(1, 3, relative=False) == pytest.approx(1.0)  # D > 3: 4, 4
    assert g1.mean_residual(0, 2, relative=False) == pytest.approx(2.0)  # D > 2: 4 only
    assert g1.mean_residual(1, 4, relative=False) == 0.0  # no training segment is longer: ends now
    assert g1.mean_residual(2, 0.45, relative=True) == pytest.approx(0.05)  # D > 0.45: 0.5, 0.5
    assert g1.mean_residual(1, 0.15, relative=True) == pytest.approx((2 / 12 + 0.4 + 0.5) / 3 - 0.15)


def test_forecast_frames_protocol_by_hand(g1: GrammarForecaster):
    # Observed 0x1 (N unknown, r*N^O): residual of 0 after 1 frame = mean(2-1, 4-1) = 2, so frames 0-1;
    # then 0 -> {1, 2} tie -> 1 for 10/3 frames: [2, 5.33) = frames 2-5; 1 -> 2 (2/3) for 14/3 frames:
    # [5.33, 10) = frames 6-7; the horizon (8) is reached.
    assert g1.forecast(np.array([0]), 8).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    # Observed 0x2 1x3: residual of 1 after 3 = 1 frame; 1 -> 2 for 4.67 frames: [1, 5.67); 2 -> END: stop,
    # the last segment fills the rest.
    assert g1.forecast(np.array([0, 0, 1, 1, 1]), 10).tolist() == [1] + [2] * 9
    plan = g1.plan(np.array([0, 0, 1, 1, 1]), 10)
    assert [p[0] for p in plan] == [1, 2] and [p[1] for p in plan] == pytest.approx([1.0, 14 / 3])


def test_forecast_gt_length_protocol_by_hand(g1: GrammarForecaster):
    # Same observation, video length 20: e = 3/20 = 0.15; residual = mean(1/6, 0.4, 0.5) - 0.15 = 0.20556 of N
    # = 4.11 frames (frames 0-4); then 2 for 0.4667 * 20 = 9.33 frames: [4.11, 13.44) = frames 5-13; 2 -> END,
    # frame 14 continues the last segment.
    out = g1.forecast(np.array([0, 0, 1, 1, 1]), 15, video_length=20)
    assert out.tolist() == [1] * 5 + [2] * 10
    plan = g1.plan(np.array([0, 0, 1, 1, 1]), 15, video_length=20)
    assert [p[1] for p in plan] == pytest.approx([((2 / 12 + 0.4 + 0.5) / 3 - 0.15) * 20, 28 / 3])
    # Durations scale with N: a 40-frame video doubles every predicted length (e is then 0.075 of N).
    long = g1.plan(np.array([0, 0, 1, 1, 1]), 30, video_length=40)
    assert long[0][1] == pytest.approx(((2 / 12 + 0.4 + 0.5) / 3 - 0.075) * 40)
    with pytest.raises(ValueError, match="shorter than the 5 observed"):
        g1.forecast(np.array([0, 0, 1, 1, 1]), 3, video_length=4)


def test_order2_uses_the_longer_context_and_the_end_state(g1: GrammarForecaster, g2: GrammarForecaster):
    obs = np.array([0, 0, 2])  # history S 0 2; residual of 2 after 1 frame = mean(3, 3, 5) = 11/3
    # Order 1: 2 -> END is most likely, so the current segment fills the horizon.
    assert g1.forecast(obs, 12).tolist() == [2] * 12
    # Order 2: (0, 2) -> 1 for 10/3 frames: [3.67, 7); (2, 1) -> END; the rest continues 1.
    assert g2.forecast(obs, 12).tolist() == [2] * 4 + [1] * 8
    # A segment longer than every training one of its class ends now (residual 0): 1x5 -> 2 at once.
    assert [p[1] for p in g1.plan(np.array([1] * 5), 6)][0] == 0.0
    assert g1.forecast(np.array([1] * 5), 6).tolist() == [2] * 6


def test_repeat_last_and_the_protocol():
    assert RepeatLast().forecast(np.array([3, 3, 1]), 4).tolist() == [1, 1, 1, 1]
    assert RepeatLast().forecast(np.array([2]), 0).size == 0
    assert isinstance(RepeatLast(), LabelForecaster) and isinstance(GrammarForecaster.fit([A], 1), LabelForecaster)
    with pytest.raises(ValueError, match="non-empty"):
        RepeatLast().forecast(np.array([], dtype=np.int64), 3)
    with pytest.raises(ValueError, match="horizon"):
        RepeatLast().forecast(np.array([1]), -1)
    with pytest.raises(ValueError, match="order"):
        GrammarForecaster.fit([A], order=0)
    with pytest.raises(ValueError, match="no label sequences"):
        GrammarForecaster.fit([np.zeros(0, dtype=np.int64)])


def test_baseline_lta_layout_by_hand(g1: GrammarForecaster):
    gt = runs((0, 6), (1, 6), (2, 8))  # N = 20, sample rate 2: full_len 10
    # alpha 0.2: 2 sampled frames observed (raw 0, 2 -> raw frames 0-3 observed); r*N^O: horizon 8.
    rl = baseline_lta_labels(RepeatLast(), gt, 2, 0.2, "rn")
    assert rl.tolist() == [0] * 20
    # alpha 0.3, GT length: 3 observed sampled frames (labels 0 0 0, raw 0-5), horizon 7 = 10 - 3, N = 10
    # sampled frames. Residual of 0 after e = 3/10: mean(4/12, 2/10 -> only 4/12 > 0.3) - 0.3 = 1/30 of 10 = 1/3
    # frame (sampled frame 0 of the forecast); 0 -> 1 for mean(1/6, .4, .5) * 10 = 3.56: [0.33, 3.89) = 1-3;
    # 1 -> 2 for 4.67: [3.89, 8.56) = 4-6. Upsampled x2 from raw frame 6.
    out = baseline_lta_labels(g1, gt, 2, 0.3, "gt")
    assert out.tolist() == [0] * 6 + [0] * 2 + [1] * 6 + [2] * 6
    # r*N^O at alpha 0.3: horizon ceil(4 * 3) = 12 sampled frames, beyond the video: cut at N.
    assert baseline_lta_labels(g1, gt, 2, 0.3, "rn").size == 20


def test_fit_baselines_scores_like_the_model():
    videos = [("a", A), ("b", B)]
    forecasters = fit_baselines([A, B, C], sample_rate=2)
    assert [f.name for f in forecasters] == ["repeat_last_observed", "grammar_order1", "grammar_order2"]
    run = score_baselines(forecasters, videos, 2)
    for f in forecasters:
        for protocol in ("gt", "rn"):
            for alpha in (0.2, 0.3):
                preds = run.predictions[f.name][(protocol, alpha)]
                moc, _ = moc_scores([(preds[n], gt) for n, gt in videos], alpha, (0.1, 0.2, 0.3, 0.5))
                row = run.metrics[f.name]["lta"][protocol][f"{alpha:g}"]
                assert row == pytest.approx({f"{b:g}": v for b, v in moc.items()})
    tables = {"model": {"gt": {"0.2": {"0.1": 50.0, "0.2": 10.0, "0.3": None}}},
              "repeat": {"gt": {"0.2": {"0.1": 50.0, "0.2": 20.0, "0.3": None}}}}
    assert best_per_cell(tables) == {"gt": {"0.2": {"0.1": "model", "0.2": "repeat"}}}  # ties: listed first


def test_resample_labels_takes_the_last_frame_at_or_before_each_time():
    ten_hz = runs((0, 5), (1, 5))
    assert resample_labels(ten_hz, 10.0, 2.0).tolist() == [0, 1]  # t = 0 s, 0.5 s
    assert resample_labels(ten_hz[:7], 10.0, 2.0).tolist() == [0, 1]
    assert resample_labels(np.array([0, 1]), 2.0, 10.0).tolist() == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="> 0 Hz"):
        resample_labels(ten_hz, 0.0, 2.0)
