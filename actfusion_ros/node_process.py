"""The ``actfusion_node`` process: rclpy start, spin, ordered shutdown, exit codes (ROS glue).

Follows the rclpy examples: ``with rclpy.init(args=args):`` around building the node and spinning it, with
``KeyboardInterrupt`` / ``ExternalShutdownException`` meaning a normal shutdown. Signal handling is
installed by :mod:`actfusion_ros.node_entry` before this module (and rclpy, torch) is imported.
"""
from __future__ import annotations

import sys
from typing import Sequence

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.task import Future

from actfusion_ros.builder import StartupError
from actfusion_ros.node import NODE_NAME, ActFusionNode
from actfusion_ros.signals import ShutdownRequest, ShutdownSignal

__all__ = ["main"]


def main(args: Sequence[str] | None = None, shutdown: ShutdownRequest | None = None) -> int:
    """Spin until Ctrl-C / SIGTERM or the lifecycle transition shutdown; exit 0 (also for a signal at any moment of start-up, spin or
    shutdown), or 2 on a bad start. ``shutdown``: handlers already installed (actfusion_ros.node_entry);
    by default they are installed here and restored on return."""
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
                executor.spin_until_future_complete(finalized)
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


