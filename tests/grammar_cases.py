"""The hand-checked training sequences of the grammar baseline, and the grammars fitted on them.

Shared by tests/test_baselines.py (its docstring derives the counts and durations by hand) and
tests/test_prob_metrics.py. The fixtures ``g1`` / ``g2`` (orders 1 and 2, fitted on ``A, B, C``) are
imported by tests/conftest.py, so any test module can ask for them.
"""
from __future__ import annotations

import numpy as np
import pytest

from actfusion_training.baselines import GrammarForecaster


def runs(*pairs: tuple[int, int]) -> np.ndarray:
    """Frame labels from ``(label, frames)`` runs: ``runs((0, 2), (1, 1))`` is ``[0, 0, 1]``."""
    return np.concatenate([np.full(n, label, dtype=np.int64) for label, n in pairs])


A = runs((0, 4), (1, 2), (2, 6))
B = runs((0, 2), (2, 4), (1, 4))
C = runs((1, 4), (2, 4))


@pytest.fixture(scope="module")
def g1() -> GrammarForecaster:
    return GrammarForecaster.fit([A, B, C], order=1)


@pytest.fixture(scope="module")
def g2() -> GrammarForecaster:
    return GrammarForecaster.fit([A, B, C], order=2)
