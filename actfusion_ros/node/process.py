"""The ``actfusion_node`` process: rclpy start, spin, ordered shutdown, exit codes (ROS glue).

Follows the rclpy examples: ``with rclpy.init(args=args):`` around building the node and spinning it, with
``KeyboardInterrupt`` / ``ExternalShutdownException`` meaning a normal shutdown. Signal handling is
installed by :func:`actfusion_ros.node.main` before this module (and rclpy, torch) is imported.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Sequence

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.task import Future

try:  # "a destroyed entity was used" (a RuntimeError); Kilted has it in rclpy.exceptions
    from rclpy.exceptions import InvalidHandle
except ImportError:  # pragma: no cover - older layouts
    from rclpy._rclpy_pybind11 import InvalidHandle

from actfusion_ros.builder import StartupError
from actfusion_ros.node.actfusion_node import ActFusionNode
from actfusion_ros.node.signals import ShutdownRequest, ShutdownSignal
from actfusion_ros.topics import NODE_NAME

__all__ = ["main"]


def main(args: Sequence[str] | None = None, shutdown: ShutdownRequest | None = None) -> int:
    """Spin until Ctrl-C / SIGTERM or the lifecycle transition shutdown; exit 0 (also for a signal at any
    moment of start-up, spin or shutdown), or 2 on a bad start. ``shutdown``: handlers already installed
    (:func:`actfusion_ros.node.main`); by default they are installed here and restored on return."""
    own = shutdown is None
    if shutdown is None:
        shutdown = ShutdownRequest().install()
    try:
        return _run(args, shutdown)
    except ShutdownSignal:
        return 0
    finally:
        if own:
            shutdown.uninstall()


def _run(args: Sequence[str] | None, shutdown: ShutdownRequest) -> int:
    try:
        init = rclpy.init(args=args)
    except RuntimeError as err:  # rcl's RCLError, e.g. a missing or malformed --params-file
        print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr, flush=True)
        return 2
    with init:  # rclpy.try_shutdown on the way out, whatever happens
        try:
            node = ActFusionNode()
        except StartupError as err:
            if shutdown.requested:
                return 0
            print(f"[{NODE_NAME}] cannot start: {err}", file=sys.stderr, flush=True)
            return 2
        except Exception:
            # a signal shut the context down while the node was being built (RCLError from rcl)
            if shutdown.requested or not rclpy.ok():
                return 0
            raise
        executor = MultiThreadedExecutor(num_threads=3)
        finalized: Future = Future()  # the lifecycle transition shutdown ends the spin: exit 0
        node.on_finalized = lambda: finalized.set_result(True)
        try:
            executor.add_node(node)
            if not shutdown.requested:
                spin_until_finalized(executor, finalized, on_race=lambda err: node.get_logger().debug(
                    f"executor wait set raced an entity destruction ({err}); spinning on"))
        except (KeyboardInterrupt, ShutdownSignal, ExternalShutdownException):
            pass
        except RuntimeError:
            # rclpy race: the signal handler shut the context down while spin() was building its wait set
            # (RCLError "the given context is not valid"): a shutdown all the same, not a failure
            if rclpy.ok(context=node.context) and not shutdown.requested:
                raise
        finally:
            shutdown.stop_interrupting()  # a second signal must not break the clean-up
            _shut_down(node, executor)
    return 0


#: how many races in a row :func:`spin_until_finalized` spins on before it gives up; "in a row": each within
#: :data:`RACE_STREAK_S` of the spin before (a fault that is no race fails every build at once)
MAX_WAIT_SET_RACES = 1000
RACE_STREAK_S = 1.0


def spin_until_finalized(executor: Executor, finalized: Future, *,
                         on_race: Callable[[Exception], None] | None = None,
                         max_races: int = MAX_WAIT_SET_RACES) -> int:
    """``executor.spin_until_future_complete(finalized)``, spun on across rclpy's wait-set race; returns the
    races seen. It returns as that does: ``finalized`` done, or the executor or its context shut down.

    rclpy's executor (ros2/rclpy#1142 and #1206, still in Kilted) lists the nodes' waitables, then enters each
    one to build the wait set. A QoS event handler whose subscription or publisher a callback in another
    executor thread destroyed in between - a deactivation destroys the image subscription, a cleanup or the
    shutdown transition the publishers - fails that enter and is skipped there, but is still added to the wait
    set, and ``InvalidHandle`` ("destruction was requested") ends the spin. The destroyed entity is already
    off the node's lists, so the next wait set is built without it: spin again. ``on_race(err)`` is told of
    each race; more than ``max_races`` in a row means something else keeps using destroyed entities:
    re-raised.
    """
    races = streak = 0
    while True:
        began = time.monotonic()
        try:
            executor.spin_until_future_complete(finalized)
            return races
        except InvalidHandle as err:
            races += 1
            streak = streak + 1 if time.monotonic() - began < RACE_STREAK_S else 1
            if streak > max_races:
                raise
            if on_race is not None:
                on_race(err)


def _shut_down(node: ActFusionNode, executor: MultiThreadedExecutor) -> None:
    """Timers, frames and worker first (ActFusionNode.close), then the executor (it waits for the running
    callbacks, e.g. the reply to a lifecycle shutdown), then the ROS entities."""
    node.close()
    for step in (lambda: executor.shutdown(timeout_sec=10.0), node.destroy_node):
        try:
            step()
        except Exception as err:  # noqa: BLE001 - e.g. the context already shut down by the signal
            if rclpy.ok(context=node.context):
                raise
            print(f"[{NODE_NAME}] during shutdown: {type(err).__name__}: {err}", file=sys.stderr, flush=True)


