"""``actfusion_node``: the ROS 2 node around the streaming anticipator.

=======================  ==============================================================================
module                   what it holds
=======================  ==============================================================================
``actfusion_node``       :class:`ActFusionNode`, the lifecycle node: transitions and their rules, its ROS
                         entities (created in the transitions) and callbacks, its parameters on rclpy
``pipeline``             what the configured node holds and does, without ROS: model, frame queue, feature
                         worker, the tick, the live picture
``diagnostics``          its counters and the /diagnostics status (ROS-free)
``process``              the process: rclpy start, spin, ordered shutdown, exit codes
``signals``              SIGINT / SIGTERM as a shutdown request at every moment of the process
=======================  ==============================================================================

The parameters' table and validation (:mod:`actfusion_ros.node_params`), the builder
(:mod:`actfusion_ros.builder`), the message conversions (:mod:`actfusion_ros.ros_messages`) and the topic
names (:mod:`actfusion_ros.topics`) stay beside it: the replay uses them too.

:func:`main` is the console script ``actfusion_node`` and ``python -m actfusion_ros.node``: it installs the
signal handling before the process module and its heavy dependencies (numpy, rclpy, torch) are imported, so a
SIGINT / SIGTERM at any moment of start-up ends the process with exit 0 and no traceback. That is why this
package imports nothing heavy itself: import ``ActFusionNode`` from :mod:`actfusion_ros.node.actfusion_node`.
"""
from __future__ import annotations

from typing import Sequence

from actfusion_ros.node.signals import ShutdownRequest, ShutdownSignal

__all__ = ["main"]


def main(args: Sequence[str] | None = None) -> int:
    """Run ``actfusion_node`` until Ctrl-C / SIGTERM or the lifecycle transition shutdown; the exit code."""
    shutdown = ShutdownRequest().install()
    try:
        with shutdown.deferred():  # torch's import runs Python under C++ frames: a signal there waits for its end
            import torch  # noqa: F401
        from actfusion_ros.node import process

        return process.main(args, shutdown=shutdown)
    except ShutdownSignal:
        return 0
    finally:
        shutdown.ignore_from_now()  # exiting: a late signal must not turn exit 0 into -15
