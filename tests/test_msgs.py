"""Tests for the actfusion_msgs interfaces (built by scripts/build_msgs.sh).

Skipped when actfusion_msgs has not been built into the running interpreter.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

msgs = pytest.importorskip(
    "actfusion_msgs.msg",
    reason="actfusion_msgs not built; run scripts/build_msgs.sh .venv",
)
serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not importable")

ActionForecast = msgs.ActionForecast
ActionSegment = msgs.ActionSegment
# None in a build older than ActionAlternative.msg: the tests that need it fail with a "stale build" message.
ActionAlternative = getattr(msgs, "ActionAlternative", None)

STALE = "actfusion_msgs was built before ActionAlternative.msg; rerun scripts/build_msgs.sh"

REPO = Path(__file__).resolve().parents[1]
MSG_DIR = REPO / "actfusion_msgs" / "msg"
MSG_NAMES = ("ActionSegment", "ActionAlternative", "ActionForecast", "ForecastMarginals", "VisionClass", "LabelInfo")
T0 = 1_700_000_000_000_000_000  # ns


def _time(cls: Any, ns: int) -> Any:
    return cls(sec=ns // 10**9, nanosec=ns % 10**9)


def _segment_kwargs(i: int) -> dict[str, Any]:
    return dict(label=f"action_{i}", class_id=i - 1, confidence=0.25 * (i % 5))


def _alternative_kwargs(i: int) -> dict[str, Any]:
    return dict(label=f"next_{i}", class_id=10 + i, probability=0.125 * (i + 1))


def _alternative_times(i: int) -> tuple[int, int, int]:
    """(expected start, lower, upper) in ns of alternative ``i``."""
    return (T0 + (4 + i) * 10**9 + 5, T0 + (3 + i) * 10**9, T0 + (6 + i) * 10**9 + 999_999_999)


def _forecast_fields(seg: Any, Header: Any, Time: Any, Duration: Any) -> dict[str, Any]:
    """The fields of the reference ActionForecast, built with one library's message classes."""
    return dict(
        header=Header(stamp=_time(Time, T0 + 3_000_000_000), frame_id="camera"),
        current=seg(2, T0 + 1_000_000_000, T0 + 3_000_000_000),
        observed=[seg(1, T0, T0 + 1_000_000_000), seg(2, T0 + 1_000_000_000, T0 + 3_000_000_000)],
        future=[seg(3, T0 + 3_000_000_000, T0 + 4_500_000_000),
                seg(4, T0 + 4_500_000_000, T0 + 9_000_000_001)],
        num_observed_frames=45,
        horizon_frames=90,
        feature_rate_hz=15.0,
        model_latency=Duration(sec=0, nanosec=12_345_678),
        partial=True,
    )


def make_rclpy_forecast() -> Any:
    from builtin_interfaces.msg import Duration, Time
    from std_msgs.msg import Header

    def seg(i: int, s: int, e: int) -> Any:
        return ActionSegment(start=_time(Time, s), end=_time(Time, e), **_segment_kwargs(i))

    return ActionForecast(**_forecast_fields(seg, Header, Time, Duration))


def make_rclpy_sampled_forecast() -> Any:
    """The forecast of :func:`make_rclpy_forecast` with two next-action alternatives from 8 samples."""
    from builtin_interfaces.msg import Time

    assert ActionAlternative is not None, STALE

    def alt(i: int) -> Any:
        start, low, high = (_time(Time, ns) for ns in _alternative_times(i))
        return ActionAlternative(expected_start=start, start_lower=low, start_upper=high, **_alternative_kwargs(i))

    msg = make_rclpy_forecast()
    msg.next_actions = [alt(0), alt(4)]
    msg.num_samples = 8
    return msg


def test_fields_and_types() -> None:
    assert ActionForecast.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "current": "actfusion_msgs/ActionSegment",
        "observed": "sequence<actfusion_msgs/ActionSegment>",
        "future": "sequence<actfusion_msgs/ActionSegment>",
        "num_observed_frames": "uint32",
        "horizon_frames": "uint32",
        "feature_rate_hz": "float",
        "model_latency": "builtin_interfaces/Duration",
        "partial": "boolean",
        "next_actions": "sequence<actfusion_msgs/ActionAlternative>",
        "num_samples": "uint32",
    }
    assert ActionAlternative is not None, STALE
    assert ActionAlternative.get_fields_and_field_types() == {
        "label": "string",
        "class_id": "int32",
        "probability": "float",
        "expected_start": "builtin_interfaces/Time",
        "start_lower": "builtin_interfaces/Time",
        "start_upper": "builtin_interfaces/Time",
    }
    assert ActionSegment.get_fields_and_field_types() == {
        "label": "string",
        "class_id": "int32",
        "start": "builtin_interfaces/Time",
        "end": "builtin_interfaces/Time",
        "confidence": "float",
    }


def test_installed_definitions_match_repo() -> None:
    """Detect a stale build: installed .msg files must equal the repository's."""
    share = Path(sys.prefix) / "share" / "actfusion_msgs" / "msg"
    if not share.is_dir():
        pytest.skip(f"actfusion_msgs not installed in {sys.prefix} (built elsewhere?)")
    for name in MSG_NAMES:
        assert (share / f"{name}.msg").is_file(), f"{name}.msg is not installed; rerun scripts/build_msgs.sh"
        assert (share / f"{name}.msg").read_text() == (MSG_DIR / f"{name}.msg").read_text(), (
            f"{name}.msg changed since the last build; rerun scripts/build_msgs.sh"
        )


def test_rclpy_serialize_roundtrip() -> None:
    msg = make_rclpy_forecast()
    raw = serialization.serialize_message(msg)
    assert isinstance(raw, bytes) and len(raw) > 0
    back = serialization.deserialize_message(raw, ActionForecast)
    assert back == msg
    assert back.header.frame_id == "camera"
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_003, 0)
    assert [s.label for s in back.observed] == ["action_1", "action_2"]
    assert [s.class_id for s in back.future] == [2, 3]
    assert back.future[1].end.nanosec == 1
    assert back.current.confidence == pytest.approx(0.5)
    assert (back.num_observed_frames, back.horizon_frames) == (45, 90)
    assert back.feature_rate_hz == 15.0
    assert back.model_latency.nanosec == 12_345_678
    assert back.partial is True


def test_sampled_forecast_roundtrip() -> None:
    """The next-action distribution and the sample count survive serialization exactly."""
    msg = make_rclpy_sampled_forecast()
    back = serialization.deserialize_message(serialization.serialize_message(msg), ActionForecast)
    assert back == msg
    assert back.num_samples == 8
    assert [(a.label, a.class_id) for a in back.next_actions] == [("next_0", 10), ("next_4", 14)]
    assert [a.probability for a in back.next_actions] == [0.125, 0.625]
    for a, i in zip(back.next_actions, (0, 4)):
        got = tuple(t.sec * 10**9 + t.nanosec for t in (a.expected_start, a.start_lower, a.start_upper))
        assert got == _alternative_times(i)


def test_empty_forecast_roundtrip() -> None:
    msg = ActionForecast()
    assert msg.partial is False and list(msg.observed) == [] and list(msg.future) == []
    assert list(msg.next_actions) == [] and msg.num_samples == 0
    back = serialization.deserialize_message(serialization.serialize_message(msg), ActionForecast)
    assert back == msg


# --------------------------------------------------------------------------- rosbags interop
@pytest.fixture(scope="module")
def typestore() -> Any:
    typesys = pytest.importorskip("rosbags.typesys", reason="rosbags not installed")
    ts = typesys.get_typestore(typesys.Stores.ROS2_KILTED)
    types: dict[str, Any] = {}
    for name in MSG_NAMES:
        text = (MSG_DIR / f"{name}.msg").read_text()
        types.update(typesys.get_types_from_msg(text, f"actfusion_msgs/msg/{name}"))
    ts.register(types)
    return ts


def make_rosbags_forecast(ts: Any, sampled: bool = False) -> Any:
    T = ts.types
    Time, Duration = T["builtin_interfaces/msg/Time"], T["builtin_interfaces/msg/Duration"]
    Header, Segment = T["std_msgs/msg/Header"], T["actfusion_msgs/msg/ActionSegment"]
    Forecast, Alternative = T["actfusion_msgs/msg/ActionForecast"], T["actfusion_msgs/msg/ActionAlternative"]

    def seg(i: int, s: int, e: int) -> Any:
        return Segment(start=_time(Time, s), end=_time(Time, e), **_segment_kwargs(i))

    def alt(i: int) -> Any:
        start, low, high = (_time(Time, ns) for ns in _alternative_times(i))
        return Alternative(expected_start=start, start_lower=low, start_upper=high, **_alternative_kwargs(i))

    return Forecast(
        **_forecast_fields(seg, Header, Time, Duration),
        next_actions=[alt(0), alt(4)] if sampled else [],
        num_samples=8 if sampled else 0,
    )


def _segments_equal(rb: Any, rc: Any) -> None:
    assert rb.label == rc.label and rb.class_id == rc.class_id
    assert rb.confidence == pytest.approx(rc.confidence)
    for a, b in ((rb.start, rc.start), (rb.end, rc.end)):
        assert (a.sec, a.nanosec) == (b.sec, b.nanosec)


def _assert_same(rb: Any, rc: Any) -> None:
    """Compare a rosbags ActionForecast with an rclpy one field by field."""
    assert rb.header.frame_id == rc.header.frame_id
    assert (rb.header.stamp.sec, rb.header.stamp.nanosec) == (
        rc.header.stamp.sec, rc.header.stamp.nanosec)
    _segments_equal(rb.current, rc.current)
    assert len(rb.observed) == len(rc.observed) and len(rb.future) == len(rc.future)
    for a, b in zip(list(rb.observed) + list(rb.future), list(rc.observed) + list(rc.future)):
        _segments_equal(a, b)
    assert rb.num_observed_frames == rc.num_observed_frames
    assert rb.horizon_frames == rc.horizon_frames
    assert rb.feature_rate_hz == pytest.approx(rc.feature_rate_hz)
    assert (rb.model_latency.sec, rb.model_latency.nanosec) == (
        rc.model_latency.sec, rc.model_latency.nanosec)
    assert bool(rb.partial) == bool(rc.partial)
    assert rb.num_samples == rc.num_samples and len(rb.next_actions) == len(rc.next_actions)
    for a, b in zip(rb.next_actions, rc.next_actions):
        assert (a.label, a.class_id) == (b.label, b.class_id)
        assert a.probability == pytest.approx(b.probability)
        for x, y in ((a.expected_start, b.expected_start), (a.start_lower, b.start_lower),
                     (a.start_upper, b.start_upper)):
            assert (x.sec, x.nanosec) == (y.sec, y.nanosec)


def test_rosbags_bytes_deserialize_in_rclpy(typestore: Any) -> None:
    raw = typestore.serialize_cdr(make_rosbags_forecast(typestore),
                                  "actfusion_msgs/msg/ActionForecast")
    back = serialization.deserialize_message(bytes(raw), ActionForecast)
    assert back == make_rclpy_forecast()
    _assert_same(make_rosbags_forecast(typestore), back)


def test_sampled_forecast_rosbags_interop(typestore: Any) -> None:
    """The new fields read the same in rosbags (bags, replay) and in rclpy (the node), both ways."""
    raw = typestore.serialize_cdr(make_rosbags_forecast(typestore, sampled=True),
                                  "actfusion_msgs/msg/ActionForecast")
    assert serialization.deserialize_message(bytes(raw), ActionForecast) == make_rclpy_sampled_forecast()
    rc = make_rclpy_sampled_forecast()
    rb = typestore.deserialize_cdr(serialization.serialize_message(rc), "actfusion_msgs/msg/ActionForecast")
    _assert_same(rb, rc)


def test_rclpy_bytes_deserialize_in_rosbags(typestore: Any) -> None:
    rc = make_rclpy_forecast()
    rb = typestore.deserialize_cdr(serialization.serialize_message(rc),
                                   "actfusion_msgs/msg/ActionForecast")
    _assert_same(rb, rc)


def test_rosbags_type_hash_matches_generated(typestore: Any) -> None:
    """Bags written with rosbags carry the same RIHS01 hash as the generated package."""
    share = Path(sys.prefix) / "share" / "actfusion_msgs" / "msg"
    if not (share / "ActionForecast.json").is_file():
        pytest.skip(f"{share / 'ActionForecast.json'} not found (actfusion_msgs built into another prefix)")
    for name in MSG_NAMES:
        desc = share / f"{name}.json"
        assert desc.is_file(), f"{desc.name} is not installed; rerun scripts/build_msgs.sh"
        hashes = {h["type_name"]: h["hash_string"] for h in json.loads(desc.read_text())["type_hashes"]}
        full = f"actfusion_msgs/msg/{name}"
        assert full in hashes, f"{full} is not in {desc.name}; rerun scripts/build_msgs.sh"
        assert typestore.hash_rihs01(full) == hashes[full]


# --------------------------------------------------------------------------- from a stream result
PERIOD = 500_000_000  # ns: 2 Hz features


def _k_sample_result(k_samples: bool = True) -> Any:
    """A real stream result over 4 observed frames (horizon 8) whose forecaster returns 4 hand-made one-hot
    samples: current "idle"; "reach" from future frame 1 in samples 0 and 1, "pour" from frame 3 in sample 2,
    no change in sample 3 (``k_samples=False``: only the mean probabilities, as one sample would)."""
    import numpy as np

    from actfusion_model.features.base import FeatureExtractor
    from actfusion_ros.stream import StreamingAnticipator
    from actfusion_ros.stream_types import ForecastOutput, StreamConfig

    class Constant(FeatureExtractor):
        dim = 1

        def _compute(self, frames: np.ndarray) -> np.ndarray:
            return np.zeros((len(frames), 1), np.float32)

    def sampling(observed: np.ndarray, horizon: int) -> Any:
        labels = np.zeros((4, horizon), int)
        labels[0, 1:] = labels[1, 1:] = 1
        labels[2, 3:] = 2
        samples = np.eye(3, dtype=np.float32)[labels].transpose(0, 2, 1)   # (K, C, H) one-hot
        obs = np.zeros((3, observed.shape[1]), np.float32)
        obs[0] = 1.0
        if not k_samples:
            return ForecastOutput(obs, samples.mean(axis=0))
        return ForecastOutput(obs, samples.mean(axis=0), samples)

    sampling.num_classes = 3
    cfg = StreamConfig(feature_rate_hz=2.0, ratio=2.0, max_horizon_s=None, min_observed_frames=2, stale_after_s=1e6)
    stream = StreamingAnticipator(cfg, Constant(), sampling, ["idle", "reach", "pour"])
    for i in range(4):
        stream.push_frame(T0 + i * PERIOD, np.zeros((2, 2, 3), np.uint8))
    return stream.tick(T0 + 4 * PERIOD)


def test_stream_result_with_k_samples_round_trips_through_the_message() -> None:
    """forecast_to_msg fills next_actions and num_samples from a K-sample stream result, exactly."""
    from actfusion_ros.ros_messages import forecast_to_msg, time_to_ns

    period = PERIOD
    result = _k_sample_result()
    msg = forecast_to_msg(result, "camera")
    back = serialization.deserialize_message(serialization.serialize_message(msg), ActionForecast)
    assert list(back.next_actions) == list(msg.next_actions) and back.num_samples == 4
    first_future = T0 + 4 * period
    assert [(a.label, a.class_id, a.probability) for a in back.next_actions] == [("reach", 1, 0.5),
                                                                                  ("pour", 2, 0.25)]
    reach, pour = back.next_actions
    assert [time_to_ns(t) for t in (reach.expected_start, reach.start_lower, reach.start_upper)] == \
        [first_future + period] * 3
    assert time_to_ns(pour.expected_start) == first_future + 3 * period
    for a, alt in zip(back.next_actions, result.next_actions):
        assert (time_to_ns(a.expected_start), time_to_ns(a.start_lower), time_to_ns(a.start_upper)) == \
            (alt.start_ns, alt.low_ns, alt.high_ns)


# --------------------------------------------------------------------------- per-frame marginals
def test_marginals_message_holds_the_votes_of_the_k_samples_row_major() -> None:
    """marginals_to_msg: the fraction of the 4 hand-made samples voting each class at each future frame,
    row-major classes x frames, stamped like the forecast, with the feature period; it survives a round trip."""
    import numpy as np

    from actfusion_ros.ros_messages import forecast_to_msg, marginals_to_msg, time_to_ns

    ForecastMarginals = getattr(msgs, "ForecastMarginals", None)
    assert ForecastMarginals is not None, ("actfusion_msgs was built before ForecastMarginals.msg; "
                                           "rerun scripts/build_msgs.sh")
    result = _k_sample_result()
    msg = marginals_to_msg(result, "camera")
    back = serialization.deserialize_message(serialization.serialize_message(msg), ForecastMarginals)
    assert (back.num_samples, back.num_classes, back.horizon_frames) == (4, 3, 8)
    assert time_to_ns(back.header.stamp) == time_to_ns(forecast_to_msg(result).header.stamp) == T0 + 3 * PERIOD
    assert back.header.frame_id == "camera"
    assert back.frame_period.sec * 1_000_000_000 + back.frame_period.nanosec == PERIOD
    expected = np.zeros((3, 8))
    expected[0, 0] = 1.0                                       # every sample is still "idle" at frame 0
    expected[:, 1:3] = [[0.5], [0.5], [0.0]]                    # samples 0, 1 "reach"; 2, 3 "idle"
    expected[:, 3:] = [[0.25], [0.5], [0.25]]                   # sample 2 "pour", sample 3 "idle"
    got = np.asarray(back.probabilities, dtype=np.float64).reshape(3, 8)
    np.testing.assert_allclose(got, expected, atol=0)
    np.testing.assert_allclose(got.sum(axis=0), 1.0)


def test_marginals_of_one_sample_are_its_probabilities() -> None:
    """With one sample (no K samples returned) the marginals are the forecast's probabilities themselves."""
    import numpy as np

    from actfusion_ros.ros_messages import marginals_to_msg

    result = _k_sample_result(k_samples=False)
    assert result.num_samples == 1 and result.future_samples is None
    msg = marginals_to_msg(result)
    got = np.asarray(msg.probabilities, dtype=np.float32).reshape(msg.num_classes, msg.horizon_frames)
    np.testing.assert_array_equal(got, result.future_probs)
    assert msg.num_samples == 1 and not np.allclose(got, np.round(got)), "mean probabilities, not votes"
