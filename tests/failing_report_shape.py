"""A deliberately failing test (not collected: no ``test_`` prefix) run by tests/test_pytest_reports.py.

Its shape is that of the DDS tests when they fail: ``wait_for`` (actfusion_ros/testing/ros_harness.py, a module pytest
``ast.parse``-s to show the failing line) times out while another thread keeps running and parsing Python
source, as a thread that dies and formats its traceback does on CPython 3.11. The ``gc.callbacks`` entry
stands in for the finalizers that run during a garbage collection and let that thread take the GIL; it
makes the race deterministic. Without the hook in tests/conftest.py pytest ends in INTERNALERROR.
"""
from __future__ import annotations

import ast
import gc
import threading
import time
from typing import Any, Iterator

import pytest

from actfusion_ros.testing.ros_harness import wait_for


@pytest.fixture()
def a_thread_parsing_source() -> Iterator[None]:
    """Until teardown (after the failure is reported): a thread parsing, and GCs that let it run."""
    stop = threading.Event()

    def format_tracebacks() -> None:
        while not stop.is_set():
            try:
                ast.parse("pub.publish(make_image(Image, synthetic_frame(i), time.time_ns())) + d['k'][0]")
            except SystemError:   # this thread's own parse may be hit by the race too
                pass

    def switch_threads(phase: str, info: dict[str, Any]) -> None:
        time.sleep(0)

    thread = threading.Thread(target=format_tracebacks, daemon=True)
    thread.start()
    gc.callbacks.append(switch_threads)
    try:
        yield
    finally:
        gc.callbacks.remove(switch_threads)
        stop.set()
        thread.join(60.0)


def test_a_wait_that_times_out(a_thread_parsing_source: None) -> None:
    wait_for(lambda: False, 0.01, "two forecasts")
