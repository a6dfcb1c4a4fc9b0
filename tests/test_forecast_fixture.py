"""Same forecasts for the same seed: every caller of the forecast path against values recorded before
the single-inference-path refactor (``tests/data/seeded_forecasts.json``, see ``tests/forecast_fixture.py``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from tests.forecast_fixture import FIXTURE, compute_forecasts, export_tiny

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        onnx_dir = None
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            pass
        else:
            onnx_dir = export_tiny(tmp_path_factory.mktemp("fixture") / "onnx")
        yield compute_forecasts(onnx_dir)
    finally:
        torch.set_num_threads(before)


RECORDED = json.loads(Path(FIXTURE).read_text())


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_forecast_equals_the_recorded_one(current: dict, case: str) -> None:
    if case not in current and "/onnxruntime/" in case:
        pytest.skip("onnxruntime not installed")
    recorded, got = RECORDED[case], current[case]
    if case.startswith("inference/lta/"):
        assert got == recorded  # label ids
        return
    pairs = (recorded, got) if case.startswith("forecast") else ([recorded], [got])  # (observed, future)
    assert len(pairs[0]) == len(pairs[1])
    for want, have in zip(*pairs):
        np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=0, atol=TOLERANCE, err_msg=case)
