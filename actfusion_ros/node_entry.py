"""Console script ``actfusion_node`` (and ``python -m actfusion_ros.node``): the signal handling is
installed before the node module and its heavy dependencies (numpy, rclpy, torch) are imported, so a
SIGINT / SIGTERM at any moment of start-up ends the process with exit 0 and no traceback."""
from __future__ import annotations

import sys
from typing import Sequence

from actfusion_ros.signals import ShutdownRequest, ShutdownSignal


def main(args: Sequence[str] | None = None) -> int:
    shutdown = ShutdownRequest().install()
    try:
        with shutdown.deferred():  # torch's import runs Python under C++ frames: a signal there waits for its end
            import torch  # noqa: F401
        from actfusion_ros import node_process

        return node_process.main(args, shutdown=shutdown)
    except ShutdownSignal:
        return 0
    finally:
        shutdown.ignore_from_now()  # exiting: a late signal must not turn exit 0 into -15


if __name__ == "__main__":
    sys.exit(main())
