"""SIGINT / SIGTERM at every moment of actfusion_node's life end it with exit 0 and no traceback.

The node runs as ``python -m actfusion_ros.node`` (actfusion_ros.testing.ros_harness.NodeProcess). Moments: start-up
(fixed delays after launch: imports, rclpy.init), the model load and spin (log markers), and shutdown
(a second signal right after the first). Only the outcome is asserted, never how long anything took;
the waits are "did not hang" bounds. Skipped when rclpy or the message packages are missing.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from actfusion_ros.testing.ros_harness import NodeProcess, ros_skip_reason, unique_domain_id, wait_for, write_params

REASON = ros_skip_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=str(REASON)), pytest.mark.slow]

HANG_S = 60.0   # only a hang fails


def _start(tmp_path: Path, tag: str) -> NodeProcess:
    ns = f"/afsigs{os.getpid()}{tag}"
    params = write_params(tmp_path / "params.yaml", {
        "random_weights": True, "tick_rate_hz": 10.0, "feature_rate_hz": 5.0, "min_observed_frames": 1,
        "diagnostics_period_s": 0.2, "num_threads": 1})
    return NodeProcess(params, tmp_path / "node.log", domain_id=unique_domain_id(), namespace=ns)


def _log_has(node: NodeProcess, marker: str) -> bool:
    return marker in node.log_path.read_text(errors="replace")


def _assert_clean_exit(node: NodeProcess) -> None:
    rc = node.wait(HANG_S)
    log = node.log_path.read_text(errors="replace")
    assert rc == 0, f"exit code {rc}\n{node.log_tail()}"
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, node.log_tail()


def _handles_sigterm(pid: int) -> bool:
    """True once the process catches SIGTERM (its ``SigCgt`` in /proc): the node's handlers are installed.

    Before that no program can help a signal (Python starting up); the test starts from there."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay_s", [0.0, 1.0, 1.8])
def test_a_signal_during_start_up_exits_cleanly(tmp_path: Path, sig: int, delay_s: float) -> None:
    """At the first instant the handlers exist, and 1.0 / 1.8 s after launch (imports, rclpy.init, parameters)."""
    node = _start(tmp_path, f"u{int(sig)}{int(delay_s * 10)}")
    try:
        wait_for(lambda: not node.alive() or _handles_sigterm(node.proc.pid), HANG_S, "the signal handlers",
                 poll=0.001, details=node.log_tail)
        assert node.alive(), node.log_tail()
        time.sleep(max(0.0, node.started + delay_s - time.monotonic()))   # a fixed moment; any is fine
        node.signal(sig)
        _assert_clean_exit(node)
    finally:
        node.kill()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("marker", ["loading the model", "listening on"], ids=["model_load", "spin"])
def test_a_signal_at_a_logged_moment_exits_cleanly(tmp_path: Path, sig: int, marker: str) -> None:
    node = _start(tmp_path, f"m{int(sig)}{len(marker)}")
    try:
        wait_for(lambda: not node.alive() or _log_has(node, marker), HANG_S, repr(marker),
                 details=node.log_tail)
        assert node.alive(), node.log_tail()
        node.signal(sig)
        _assert_clean_exit(node)
    finally:
        node.kill()


@pytest.mark.parametrize("first,second", [(signal.SIGINT, signal.SIGTERM), (signal.SIGTERM, signal.SIGINT),
                                          (signal.SIGINT, signal.SIGINT)], ids=["INT_TERM", "TERM_INT", "INT_INT"])
def test_a_second_signal_during_shutdown_exits_cleanly(tmp_path: Path, first: int, second: int) -> None:
    node = _start(tmp_path, f"s{int(first)}{int(second)}")
    try:
        wait_for(lambda: not node.alive() or _log_has(node, "listening on"), HANG_S, "the node to spin",
                 details=node.log_tail)
        assert node.alive(), node.log_tail()
        node.signal(first)
        time.sleep(0.05)      # the clean-up has begun (or is about to): a second Ctrl-C / SIGTERM
        node.signal(second)
        _assert_clean_exit(node)
    finally:
        node.kill()
