"""score_predictions on LTA predictions without a next-action distribution (LtaPrediction.next_action's default,
None): scored for TAS and MoC, left out of the next-action metrics, never an AttributeError (issue 18)."""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_model.consensus import next_action_distribution
from actfusion_training.inference import LtaLayout, LtaPrediction, TasPrediction
from actfusion_training.scoring import ScoringOptions, VideoPredictions, score_predictions

NAMES = ("take", "pour", "stir")
LABELS = np.repeat([0, 1, 2], [10, 10, 20])   # 40 frames, sample rate 1


def _lta(alpha: float, with_distribution: bool) -> LtaPrediction:
    observed = int(round(alpha * LABELS.size))
    dist = None
    if with_distribution:
        # two sampled futures after "take": one goes to "pour" after 2 frames, one stays "take"
        samples = np.zeros((2, len(NAMES), 6), np.float32)
        samples[0, 0, :2], samples[0, 1, 2:] = 1.0, 1.0
        samples[1, 0, :] = 1.0
        dist = next_action_distribution(samples, current=0)
    return LtaPrediction(labels=LABELS.copy(), layout=LtaLayout(LABELS.size, observed, LABELS.size - observed),
                         observed_raw=observed, seconds=0.1, forecast_seconds=[0.05], next_action=dist)


def _video(name: str, with_distribution: bool, options: ScoringOptions) -> VideoPredictions:
    tas = TasPrediction(labels=LABELS.copy(), probs=np.eye(len(NAMES), dtype=np.float32)[LABELS].T, seconds=0.1)
    return VideoPredictions(name, LABELS.copy(), tas,
                            {(p, a): _lta(a, with_distribution) for p in options.protocols for a in options.alphas})


def test_predictions_without_a_distribution_are_scored_without_next_action_metrics() -> None:
    options = ScoringOptions(protocols=("gt",), alphas=(0.2,))
    metrics = score_predictions([_video("a", False, options), _video("b", False, options)], NAMES, options)
    assert metrics["tas"]["acc"] == pytest.approx(100.0)          # the rest is scored as before
    assert metrics["lta_mean"]["gt"] == pytest.approx(100.0)
    assert metrics["next_action"] == {}                          # no distribution stated: nothing to score


def test_only_the_predictions_with_a_distribution_count_in_the_next_action_metrics() -> None:
    options = ScoringOptions(protocols=("gt", "rn"), alphas=(0.2,))
    both = score_predictions([_video("a", True, options), _video("b", False, options)], NAMES, options)
    alone = score_predictions([_video("a", True, options)], NAMES, options)
    assert set(both["next_action"]) == {"gt", "rn"}
    for protocol in ("gt", "rn"):
        assert both["next_action"][protocol]["count"] == 1
        assert both["next_action"][protocol] == alone["next_action"][protocol]
