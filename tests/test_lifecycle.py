"""actfusion_node as a managed (lifecycle) node, driven over loopback DDS through the standard lifecycle
services (what ``ros2 lifecycle get/set`` call) and the parameter service (``ros2 param set``).

The node runs as a subprocess (actfusion_ros.testing.ros_harness.node_session) with ``autostart: false``; a camera
thread publishes frames the whole time. "Quiet" is judged in /diagnostics periods (steady clock on the
node's side), never by the wall clock; every wait is a generous "did not hang" bound.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actfusion_ros.testing import ros_harness as harness

REASON = harness.ros_skip_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=str(REASON)), pytest.mark.slow]

HANG_S = 60.0   # only a hang fails
PARAMS = {"autostart": False, "random_weights": True, "tick_rate_hz": 10.0, "feature_rate_hz": 5.0,
          "min_observed_frames": 1, "max_window_s": 30.0, "max_horizon_s": 4.0, "qos_reliability": "reliable",
          "qos_depth": 10, "num_threads": 1, "diagnostics_period_s": 0.2, "stale_after_s": 100.0}


def _camera(session: harness.NodeSession) -> Any:
    return harness.camera_feed(session, join_s=HANG_S)


def _wait_statuses(session: harness.NodeSession, state: str, more: int) -> dict[str, str]:
    return harness.wait_statuses(session, state, more, HANG_S)


def _forecasts(session: harness.NodeSession) -> list[Any]:
    return session.client.messages(session.future_topic)


def _wait_forecasts(session: harness.NodeSession, more: int) -> None:
    target = len(_forecasts(session)) + more
    harness.wait_for(lambda: not session.node.alive() or len(_forecasts(session)) >= target, HANG_S,
                     f"{more} more forecasts", details=session.node.log_tail)
    assert session.node.alive(), session.node.log_tail()


def _assert_quiet(session: harness.NodeSession, state: str) -> None:
    """Once in-flight messages are in (a few statuses), no forecast arrives during several more statuses."""
    _wait_statuses(session, state, 3)
    before = len(_forecasts(session))
    _wait_statuses(session, state, 5)
    assert len(_forecasts(session)) == before, "forecasts while not active"


def _assert_clean_exit(session: harness.NodeSession) -> None:
    rc = session.node.wait(HANG_S)
    log = session.node.log_path.read_text(errors="replace")
    assert rc == 0, f"exit code {rc}\n{session.node.log_tail()}"
    assert "Traceback" not in log, session.node.log_tail()


def test_lifecycle_transitions_over_dds(tmp_path: Path) -> None:
    """unconfigured -> configure -> activate -> deactivate -> activate -> deactivate -> cleanup -> shutdown."""
    with harness.node_session(tmp_path, PARAMS, name="aflife", active=False, match_s=HANG_S) as session, \
            _camera(session) as sent:
        life = session.lifecycle
        assert life.get_state() == "unconfigured"
        assert "configure" in life.available_transitions()
        # unconfigured: frames are sent, nothing is taken or published; diagnostics say so
        harness.wait_for(lambda: sent.count >= 10, HANG_S, "frames sent")
        _assert_quiet(session, "unconfigured")
        assert _forecasts(session) == []

        assert life.change_state("configure")
        assert life.get_state() == "inactive"
        _assert_quiet(session, "inactive")
        status = _wait_statuses(session, "inactive", 1)
        assert status["images_received"] == "0", status      # no subscription while inactive
        assert _forecasts(session) == []

        assert life.change_state("activate")
        assert life.get_state() == "active"
        _wait_forecasts(session, 5)
        assert _wait_statuses(session, "active", 1)["episode"] == "0"

        assert life.change_state("deactivate")
        deactivated_ns = time.time_ns()
        assert life.get_state() == "inactive"
        _assert_quiet(session, "inactive")
        status = _wait_statuses(session, "inactive", 1)
        received = status["images_received"]
        assert status["resets.deactivate"] == "1" and status["episode"] == "1", status   # the episode ended
        assert _wait_statuses(session, "inactive", 3)["images_received"] == received    # nothing taken
        first_episode = _forecasts(session)      # everything published before the deactivation (quiet since)

        # activate again: forecasts resume in a new episode, made of frames sent after the deactivation only
        assert life.change_state("activate")
        _wait_forecasts(session, 3)
        resumed = _forecasts(session)[len(first_episode):]
        assert resumed, "no forecasts after activating again"
        for msg in resumed:
            start_ns = msg.observed[0].start.sec * 10**9 + msg.observed[0].start.nanosec
            assert start_ns >= deactivated_ns, "the episode continued across deactivate/activate"
        assert max(m.num_observed_frames for m in first_episode) > resumed[0].num_observed_frames

        assert life.change_state("deactivate") and life.change_state("cleanup")
        assert life.get_state() == "unconfigured"
        assert _wait_statuses(session, "unconfigured", 1).keys() == {"lifecycle_state"}   # the model is gone
        assert life.change_state("shutdown")
        _assert_clean_exit(session)


def test_a_failing_configure_leaves_the_node_unconfigured_until_the_parameter_is_fixed(tmp_path: Path) -> None:
    """A nonexistent, then an unreadable checkpoint: configure fails, the node stays up and unconfigured
    and says why once per attempt; random_weights set through the parameter service then configures."""
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    params = {**PARAMS, "random_weights": False, "checkpoint": str(tmp_path / "missing.pt")}
    with harness.node_session(tmp_path, params, name="afbadcfg", active=False, match_s=HANG_S) as session:
        life, node = session.lifecycle, session.node
        assert not life.change_state("configure")
        assert life.get_state() == "unconfigured" and node.alive()
        status = _wait_statuses(session, "unconfigured", 1)
        log = node.log_path.read_text(errors="replace")
        assert log.count("configure failed") == 1, node.log_tail()
        assert f"checkpoint: file not found: {tmp_path / 'missing.pt'}" in log, node.log_tail()

        [result] = life.set_parameters({"checkpoint": str(garbage)})
        assert result.successful, result.reason
        assert not life.change_state("configure")
        assert life.get_state() == "unconfigured" and node.alive()
        log = node.log_path.read_text(errors="replace")
        assert log.count("configure failed") == 2 and "cannot load the model" in log, node.log_tail()
        status = _wait_statuses(session, "unconfigured", 1)
        assert status["lifecycle_state"] == "unconfigured"

        results = life.set_parameters({"checkpoint": "", "random_weights": True})
        assert all(r.successful for r in results), [r.reason for r in results]
        assert life.change_state("configure")
        assert life.get_state() == "inactive"
        # configured: the parameters are frozen until cleanup
        [refused] = life.set_parameters({"seed": 7})
        assert not refused.successful and "unconfigured" in refused.reason
        assert "Traceback" not in node.log_path.read_text(errors="replace"), node.log_tail()
        assert life.change_state("shutdown")
        _assert_clean_exit(session)


def test_autostart_then_shutdown_while_forecasting(tmp_path: Path) -> None:
    """The default (autostart): active at once; the shutdown transition while forecasting replies and
    ends the process with exit 0."""
    with harness.node_session(tmp_path, {**PARAMS, "autostart": True}, name="afauto", match_s=HANG_S) as session, \
            _camera(session):
        assert session.lifecycle.get_state() == "active"
        _wait_forecasts(session, 3)
        assert session.lifecycle.change_state("shutdown")
        _assert_clean_exit(session)
        assert "shut down (lifecycle transition)" in session.node.log_path.read_text(errors="replace")


# ============================================================================ in process
def _node(ros_context: Any, name: str, **params: Any) -> Any:
    from rclpy.parameter import Parameter

    from actfusion_ros.node.actfusion_node import ActFusionNode

    return ActFusionNode(context=ros_context, node_name=name, parameter_overrides=[
        Parameter(k, value=v) for k, v in {**PARAMS, **params}.items()])


def test_lifecycle_status_per_state() -> None:
    from actfusion_ros.node.actfusion_node import lifecycle_status

    active = ("warn", "waiting for images", {"episode": 0})
    assert lifecycle_status("unconfigured", None, None) == (
        "warn", "unconfigured: no model loaded", {"lifecycle_state": "unconfigured"})
    level, message, values = lifecycle_status("unconfigured", None, "2 invalid parameter(s):\n  a: x\n  b: y")
    assert (level, values) == ("error", {"lifecycle_state": "unconfigured"})
    assert message == "unconfigured: configure failed: 2 invalid parameter(s): a: x b: y"
    assert lifecycle_status("inactive", active, None) == (
        "ok", "inactive: model loaded, not processing images", {"lifecycle_state": "inactive", "episode": 0})
    assert lifecycle_status("active", active, None) == (
        "warn", "waiting for images", {"lifecycle_state": "active", "episode": 0})


def test_reset_starts_a_new_episode_only_when_configured(ros_context) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from std_srvs.srv import Trigger

    node = _node(ros_context, "reset_rule")
    try:
        reply = node.reset_callback(Trigger.Request(), Trigger.Response())
        assert (reply.success, reply.message) == (False, "the node is unconfigured: no episode to reset")
        assert node.trigger_configure() == R.SUCCESS
        before = node.pipeline.stream.episode
        reply = node.reset_callback(Trigger.Request(), Trigger.Response())
        assert (reply.success, reply.message) == (True, f"new episode {before + 1}")
    finally:
        node.destroy_node()


def test_a_failing_activate_leaves_the_node_inactive_until_fixed(ros_context) -> None:
    """An image topic rclpy refuses: activate fails and says why, nothing runs, the model stays loaded;
    cleanup, fix the parameter, configure + activate then works."""
    from rclpy.lifecycle import TransitionCallbackReturn as R
    from rclpy.parameter import Parameter

    node = _node(ros_context, "badtopic", image_topic="not a topic")
    try:
        assert node.trigger_configure() == R.SUCCESS and node.lifecycle_state == "inactive"
        assert node.trigger_activate() == R.FAILURE
        assert node.lifecycle_state == "inactive" and "InvalidTopicName" in node._activate_error
        assert node.feature_worker is None and node.tick_timer is None and node.image_sub is None
        assert node.pipeline.stream is not None                       # the model stays loaded
        [refused] = node.set_parameters([Parameter("image_topic", value="camera")])
        assert not refused.successful                                 # inactive: parameters frozen
        assert node.trigger_cleanup() == R.SUCCESS and node.lifecycle_state == "unconfigured"
        [accepted] = node.set_parameters([Parameter("image_topic", value="camera")])
        assert accepted.successful
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        assert node.lifecycle_state == "active" and node.image_sub.topic_name == "/camera"
        assert node.feature_worker.thread.is_alive()
    finally:
        node.destroy_node()


def test_autostart_reports_a_failing_activate_as_a_start_up_error(ros_context) -> None:
    from actfusion_ros.builder import StartupError

    with pytest.raises(StartupError, match="activate failed: InvalidTopicName"):
        _node(ros_context, "badtopic_autostart", autostart=True, image_topic="not a topic")


def test_cleanup_frees_the_model_and_empties_the_cuda_cache(ros_context, monkeypatch) -> None:
    """After cleanup nothing holds the model any more (a weak reference dies) and, where CUDA is available,
    torch's cache is emptied (a stand-in torch records the call: this machine may have no GPU)."""
    import gc
    import sys
    import types
    import weakref

    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = _node(ros_context, "cleanup")
    try:
        assert node.trigger_configure() == R.SUCCESS
        model = weakref.ref(node.pipeline.stream.forecaster.model)
        assert node.trigger_activate() == R.SUCCESS and node.trigger_deactivate() == R.SUCCESS
        gc.collect()
        assert model() is not None                                    # deactivate keeps the model
        emptied = []
        cuda = types.SimpleNamespace(is_available=lambda: True, empty_cache=lambda: emptied.append(True))
        monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
        assert node.trigger_cleanup() == R.SUCCESS
        monkeypatch.undo()
        assert node.lifecycle_state == "unconfigured" and emptied == [True]
        assert model() is None, gc.get_referrers(model())
        with pytest.raises(RuntimeError, match="unconfigured"):
            node.pipeline.stream
    finally:
        node.destroy_node()


def test_shutdown_while_active_frees_the_model(ros_context) -> None:
    """The shutdown transition straight from active stops everything and drops the model: nothing rclpy
    still holds (the cancelled tick timer, the clock-jump callback) keeps it alive (a weak reference dies)."""
    import gc
    import weakref

    from rclpy.lifecycle import TransitionCallbackReturn as R

    node = _node(ros_context, "shutdown_active")
    try:
        assert node.trigger_configure() == R.SUCCESS and node.trigger_activate() == R.SUCCESS
        model = weakref.ref(node.pipeline.stream.forecaster.model)
        assert node.trigger_shutdown() == R.SUCCESS and node.lifecycle_state == "finalized"
        gc.collect()
        assert model() is None, gc.get_referrers(model())
        assert node.feature_worker is None and node.last_result is None
    finally:
        node.destroy_node()


def test_lifecycle_get_answers_during_a_long_configure(ros_context, monkeypatch) -> None:
    """rclpy puts every lifecycle service in the node's default callback group, where the transition runs:
    ``ros2 lifecycle get`` would wait for a configure that builds a TensorRT engine for minutes. The node
    moves the queries into a group of their own: while configure is held inside the model load, get_state
    answers ``configuring`` (and the available transitions answer too); released, configure succeeds."""
    import threading

    import rclpy
    from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
    from rclpy.executors import MultiThreadedExecutor

    from actfusion_ros.node import pipeline as node_pipeline

    entered, release = threading.Event(), threading.Event()
    build = node_pipeline.NodePipeline.build

    def held_build(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(HANG_S)
        return build(*args, **kwargs)

    monkeypatch.setattr(node_pipeline.NodePipeline, "build", staticmethod(held_build))
    node = _node(ros_context, "long_configure")
    client_node = rclpy.create_node("long_configure_client", context=ros_context)
    executor = MultiThreadedExecutor(num_threads=3, context=ros_context)
    executor.add_node(node)
    executor.add_node(client_node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    fqn = node.get_fully_qualified_name()
    try:
        change = client_node.create_client(ChangeState, f"{fqn}/change_state")
        get = client_node.create_client(GetState, f"{fqn}/get_state")
        transitions = client_node.create_client(GetAvailableTransitions, f"{fqn}/get_available_transitions")
        for c in (change, get, transitions):
            assert c.wait_for_service(timeout_sec=HANG_S), c.srv_name
        request = ChangeState.Request()
        request.transition.label = "configure"
        configured = change.call_async(request)
        assert entered.wait(HANG_S), "configure never reached the model load"
        state = get.call_async(GetState.Request())
        listed = transitions.call_async(GetAvailableTransitions.Request())
        # held for as long as a hang bound allows: only an answer that waits for configure fails
        harness.wait_for(lambda: state.done() and listed.done(), HANG_S / 2,
                         "get_state / get_available_transitions while configure is held")
        assert state.result().current_state.label == "configuring"
        assert not configured.done()
        release.set()
        harness.wait_for(configured.done, HANG_S, "the configure reply")
        assert configured.result().success and node.lifecycle_state == "inactive"
        after = get.call_async(GetState.Request())
        harness.wait_for(after.done, HANG_S, "get_state after configure")
        assert after.result().current_state.label == "inactive"
    finally:
        release.set()
        executor.shutdown(timeout_sec=HANG_S)
        client_node.destroy_node()
        node.destroy_node()
