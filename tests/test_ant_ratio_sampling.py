"""masking.ant_ratio_sampling: the authors' discrete observed ratios vs every cut position (uniform)."""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_model.config import ConfigError, MaskingConfig
from actfusion_model.masking import draw_mask, masked_sample, observed_ratio


def test_choice_draws_exactly_what_the_authors_draw() -> None:
    cfg = MaskingConfig(ant_ratios=(0.2, 0.5))
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    drawn = [observed_ratio(cfg, a) for _ in range(20)]
    assert drawn == [float(b.choice(cfg.ant_ratios)) for _ in range(20)]  # same values, same RNG use
    assert set(drawn) <= {0.2, 0.5}


def test_uniform_covers_the_range_between_the_ratios() -> None:
    cfg = MaskingConfig(ant_ratios=(0.2, 0.5, 0.3), ant_ratio_sampling="uniform")
    rng = np.random.default_rng(0)
    drawn = np.array([observed_ratio(cfg, rng) for _ in range(2000)])
    assert drawn.min() >= 0.2 and drawn.max() < 0.5
    assert len(np.unique(np.round(drawn, 3))) > 100          # not three values
    assert abs(drawn.mean() - 0.35) < 0.01


def test_uniform_cuts_land_between_the_discrete_positions() -> None:
    """On a 100-frame video the discrete ratios 0.2 / 0.5 cut at frame 20 or 50 only; uniform anywhere."""
    labels = np.zeros(100, dtype=np.int64)
    boundary = np.zeros(100, dtype=np.float32)
    feats = np.zeros((2, 100), dtype=np.float32)
    for sampling, expect_only in (("choice", {20, 50}), ("uniform", None)):
        cfg = MaskingConfig(ant_ratios=(0.2, 0.5), ant_ratio_sampling=sampling)
        rng = np.random.default_rng(1)
        cuts = {int(draw_mask("ant", labels, boundary, cfg, rng).sum()) for _ in range(200)}
        crops = {int(masked_sample("ant_ratio", feats, labels, boundary, cfg, rng).visible.sum()) for _ in range(200)}
        if expect_only is not None:
            assert cuts == expect_only and crops == expect_only
        else:
            assert len(cuts) > 20 and len(crops) > 20
            assert min(cuts | crops) >= 20 and max(cuts | crops) < 50


def test_unknown_sampling_is_refused() -> None:
    with pytest.raises(ConfigError, match="ant_ratio_sampling"):
        MaskingConfig(ant_ratio_sampling="beta")
