"""Shared fixtures and hooks. Reference data is read from ../shared beside the repository, never copied in."""
from __future__ import annotations

import gc
import json
import signal
from pathlib import Path
from typing import Any, Generator

import pytest

from tests.grammar_cases import g1, g2  # noqa: F401 - the grammar fixtures, for every test module

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Build each test report (where a failure's traceback is rendered) with the cyclic GC paused.

    To show a failing line pytest ``ast.parse``-s the whole source file of every traceback entry. On
    CPython 3.11 the AST constructor keeps its recursion depth in state shared by all threads
    (python/cpython#106905): when a garbage collection inside that parse runs Python code (a finalizer, a
    ``gc.callbacks`` entry) and so lets another thread parse too (a dying thread's traceback, which 3.11
    formats with ``ast.parse``), the outer parse ends with ``SystemError: AST constructor recursion depth
    mismatch``. pytest only catches ``SyntaxError`` there, so the run ends in INTERNALERROR and prints no
    report. With the GC paused the parse runs no Python code, so no other thread can interleave with it.
    tests/test_pytest_reports.py proves it on tests/failing_report_shape.py.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        return (yield)
    finally:
        if enabled:
            gc.enable()


@pytest.fixture(autouse=True, scope="session")
def _export_cache(tmp_path_factory: pytest.TempPathFactory) -> Generator[None, None, None]:
    """Backend ``auto`` (the node's default) caches its ONNX exports under ``$ACTFUSION_CACHE_DIR``: during the
    tests a session directory (nodes started as processes inherit it), never the user's ``~/.cache``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTFUSION_CACHE_DIR", str(tmp_path_factory.mktemp("actfusion_cache")))
        yield


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Generator[None, None, None]:
    """Tests that run the node's ``main()`` in-process (rclpy.init installs its own handlers, the node its
    shutdown handlers) must not leave the pytest process with other SIGINT / SIGTERM handlers: a later test
    (e.g. the trainer's Ctrl-C tests) relies on the defaults."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in before.items():
        if signal.getsignal(sig) is not handler and handler is not None:
            signal.signal(sig, handler)


@pytest.fixture()
def single_torch_thread() -> Generator[None, None, None]:
    """torch on one intra-op thread for the test (tests/torch_threads.py)."""
    from tests.torch_threads import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def single_torch_thread_module() -> Generator[None, None, None]:
    """torch on one intra-op thread for the whole module (module-scoped fixtures built under it too)."""
    from tests.torch_threads import one_torch_thread

    with one_torch_thread():
        yield


@pytest.fixture()
def ros_context() -> Generator[Any, None, None]:
    """A private rclpy context on the loopback profile and a domain of its own (no signal handlers in
    pytest); skips the test where rclpy or the messages are not importable."""
    from actfusion_ros.testing.ros_harness import private_context, ros_skip_reason, unique_domain_id

    reason = ros_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with private_context(unique_domain_id()) as ctx:
        yield ctx


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    path = SHARED / "reference"
    if not path.is_dir():
        pytest.skip(f"reference material not found at {path}")
    return path


@pytest.fixture(scope="session")
def official_shapes(shared_reference: Path):
    """{preset: (num_classes, [(name, shape), ...])} from the authors' state-dict listings."""
    out = {}
    for preset in ("50salads", "breakfast"):
        data = json.loads((shared_reference / f"official_state_dict_{preset}.json").read_text())
        out[preset] = (data["num_classes"], [(n, s) for n, s in data["state_dict"]])
    return out


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only MS-TCN label data (``../shared/data`` beside the repo); skips when absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared reference data not found at {path}")
    return path
