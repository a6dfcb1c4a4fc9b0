"""The anticipation horizon: the paper's r*N^O rule (Sec. 5.4), the one place it is computed."""
from __future__ import annotations

import math


def anticipation_horizon(n_observed: int, *, ratio: float = 4.0, max_horizon: int | None = None,
                         horizon: int | None = None) -> int:
    """Number of future (mask-token) frames to append after ``n_observed`` observed frames.

    ``horizon`` given explicitly wins (the literature's ground-truth-length protocol). Otherwise the
    deployable rule ``ceil(ratio * n_observed)`` applies, capped at ``max_horizon`` when given.
    All counts are at the model's (sampled) feature rate.
    """
    if n_observed < 0:
        raise ValueError(f"n_observed must be >= 0, got {n_observed}")
    if horizon is not None:
        if horizon < 0:
            raise ValueError(f"horizon must be >= 0, got {horizon}")
        return int(horizon)
    if ratio < 0 or not math.isfinite(ratio):
        raise ValueError(f"ratio must be a finite number >= 0, got {ratio}")
    n = int(math.ceil(ratio * n_observed - 1e-9))
    if max_horizon is not None:
        if max_horizon < 0:
            raise ValueError(f"max_horizon must be >= 0, got {max_horizon}")
        n = min(n, int(max_horizon))
    return n
