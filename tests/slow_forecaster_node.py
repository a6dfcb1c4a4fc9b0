"""actfusion_node with a fake model whose calls last until shutdown, each logged to a marker file.

``python -m tests.slow_forecaster_node MARKER --ros-args ...`` runs the real entry point
(actfusion_ros.node.main: signal handling, rclpy, spin, shutdown) with the model replaced: a call
appends ``enter <k>`` to MARKER, waits until the ROS context is shut down (a signal; at most 60 s),
then appends ``leave <k> shut_down=<bool>``. A test waits for ``enter 1`` and sends a signal, which
therefore lands while a tick is running (tests/test_faults_node.py).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class ContextBoundForecaster:
    """Fake model (3 classes): each call lasts until ``rclpy.ok()`` turns false, at most ``limit_s``."""

    num_classes = 3
    class_names = ("idle", "reach", "pour")
    pipeline = None

    def __init__(self, marker: Path, input_dim: int, limit_s: float = 60.0) -> None:
        self.marker, self.input_dim, self.limit_s = marker, input_dim, limit_s
        self.calls = 0

    def _note(self, line: str) -> None:
        with open(self.marker, "a") as f:
            f.write(line + "\n")

    def __call__(self, observed: np.ndarray, horizon: int) -> Any:
        import rclpy

        from actfusion_ros.stream_types import ForecastOutput

        self.calls += 1
        k = self.calls
        self._note(f"enter {k}")
        deadline = time.monotonic() + self.limit_s
        while rclpy.ok() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._note(f"leave {k} shut_down={not rclpy.ok()}")
        n = observed.shape[1]
        return ForecastOutput(np.full((3, n), 1 / 3, np.float32), np.full((3, horizon), 1 / 3, np.float32))


def main(argv: Sequence[str]) -> int:
    marker = Path(argv[0])
    from actfusion_ros import builder, node

    def build(s: Any, input_dim: int, names: Any) -> ContextBoundForecaster:
        return ContextBoundForecaster(marker, input_dim)

    builder.build_forecaster = build  # type: ignore[assignment]
    return node.main(list(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
