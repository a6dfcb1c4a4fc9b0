"""The project's pytest configuration reports a failing test as a failure, never as INTERNALERROR.

See the ``pytest_runtest_makereport`` hook in tests/conftest.py for the CPython 3.11 race it prevents.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def test_a_failure_while_another_thread_parses_source_is_reported_as_failed(tmp_path: Path) -> None:
    shutil.copy(TESTS / "failing_report_shape.py", tmp_path / "test_shape.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    # -p tests.conftest: the project's hooks, as a run of tests/ loads them; rootdir tmp_path: nothing else
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                          "--rootdir", str(tmp_path), str(tmp_path / "test_shape.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert "INTERNALERROR" not in out, out[-4000:]
    assert run.returncode == 1, out[-4000:]                       # 1: tests failed (3 is an internal error)
    assert "FAILED test_shape.py::test_a_wait_that_times_out" in out, out[-4000:]
    assert "timed out after 0.01 s waiting for two forecasts" in out, out[-4000:]
