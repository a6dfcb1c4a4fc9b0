"""``actfusion/future_marginals`` of the real ``actfusion_node`` over loopback DDS (PyPI ROS wheels).

With ``publish_marginals`` the node publishes, for each forecast, the per-frame class distribution of its K
samples: same stamp, same horizon and sample count as the ``ActionForecast``, each column a distribution in
steps of 1/K, and each future segment's confidence equal to the mean marginal of its label over its span (the
two are computed from the same votes). Without it the topic has no publisher. Waits are on what arrives,
bounded by a generous "did not hang" limit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actfusion_ros.testing.ros_harness import camera_feed, node_session, ros_skip_reason, wait_for

REASON = ros_skip_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=str(REASON)), pytest.mark.slow]

NAMES = ["take", "pour", "stir"]
HANG_S = 60.0
K = 4
PARAMS = {"random_weights": True, "num_samples": K, "tick_rate_hz": 10.0, "feature_rate_hz": 5.0,
          "min_observed_frames": 1, "max_window_s": 30.0, "max_horizon_s": 4.0, "qos_reliability": "reliable",
          "qos_depth": 10, "num_threads": 1, "diagnostics_period_s": 0.2, "stale_after_s": 100.0,
          "timeline_rate_hz": 0.0, "publish_marginals": True}


def _params(tmp_path: Path) -> dict[str, Any]:
    names = tmp_path / "classes.txt"
    names.write_text("\n".join(NAMES) + "\n")
    return {**PARAMS, "class_names_file": str(names)}


def test_each_forecast_has_its_marginals_with_the_same_stamp_and_votes(tmp_path: Path) -> None:
    from actfusion_msgs.msg import ForecastMarginals

    from actfusion_ros.ros_messages import OUTPUT_QOS, time_to_ns

    with node_session(tmp_path, _params(tmp_path), name="marginals") as s, camera_feed(s, join_s=HANG_S):
        got: list[Any] = []
        s.client.node.create_subscription(ForecastMarginals, f"{s.namespace}/actfusion/future_marginals",
                                          got.append, OUTPUT_QOS)
        wait_for(lambda: not s.node.alive() or len(got) >= 5, HANG_S, "marginals", details=s.node.log_tail)
        assert s.node.alive(), s.node.log_tail()
        matched = 0
        for m in list(got):
            stamp = time_to_ns(m.header.stamp)

            def same_stamp() -> list[Any]:
                return [f for f in s.client.messages(s.future_topic) if time_to_ns(f.header.stamp) == stamp]

            wait_for(same_stamp, HANG_S, "the forecast of these marginals")
            probs = np.asarray(m.probabilities, dtype=np.float64).reshape(m.num_classes, m.horizon_frames)
            np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-6)
            np.testing.assert_allclose(probs * K, np.round(probs * K), atol=1e-5)  # votes of K samples
            period = m.frame_period.sec * 1_000_000_000 + m.frame_period.nanosec
            # two ticks between camera frames share a stamp (10 Hz ticks, 5 Hz features) but draw other noise:
            # the marginals belong to one of the forecasts with their stamp
            assert any(_consistent(m, probs, period, f, stamp) for f in same_stamp()), \
                f"no forecast stamped {stamp} has these marginals' votes as its confidences"
            matched += 1
        assert matched >= 5


def _consistent(m: Any, probs: np.ndarray, period: int, f: Any, stamp: int) -> bool:
    """Whether forecast ``f`` is the one of marginals ``m``: same sample count and size, and each future
    segment's confidence is the mean marginal of its label over its span."""
    from actfusion_ros.ros_messages import time_to_ns

    if (m.num_samples, m.num_classes, m.horizon_frames) != (K, len(NAMES), f.horizon_frames) or \
            period != round(1e9 / f.feature_rate_hz) or f.num_samples != K:
        return False
    for seg in f.future:
        h0 = (time_to_ns(seg.start) - stamp) // period - 1
        h1 = (time_to_ns(seg.end) - stamp) // period - 1
        if not (0 <= h0 < h1 <= m.horizon_frames) or \
                abs(seg.confidence - probs[seg.class_id, h0:h1].mean()) > 1e-5:
            return False
    return bool(f.future)


def test_without_the_parameter_the_topic_has_no_publisher(tmp_path: Path) -> None:
    params = {**_params(tmp_path), "publish_marginals": False}
    with node_session(tmp_path, params, name="nomarginals") as s, camera_feed(s, join_s=HANG_S):
        wait_for(lambda: not s.node.alive() or len(s.client.messages(s.future_topic)) >= 3, HANG_S,
                 "forecasts", details=s.node.log_tail)
        assert s.node.alive(), s.node.log_tail()
        assert s.client.node.count_publishers(f"{s.namespace}/actfusion/future_marginals") == 0
        assert s.client.node.count_publishers(s.future_topic) == 1, "discovery saw the node's publishers"
