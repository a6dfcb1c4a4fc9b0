"""actfusion_ros.reporting (ROS-free): what is logged about errors, and logging that never raises."""
from __future__ import annotations

import io
import sys
import threading

import pytest

from actfusion_ros.reporting import KindCounter, SafeLog


class RclpyLikeLogger:
    """Applies rclpy's rule: a call site (file, line) keeps the severity of its first call, else ValueError."""

    def __init__(self) -> None:
        self.sites: dict[tuple[str, int], str] = {}
        self.lines: list[tuple[str, str]] = []

    def _log(self, severity: str, text: str) -> None:
        caller = sys._getframe(2)
        site = (caller.f_code.co_filename, caller.f_lineno)
        if self.sites.setdefault(site, severity) != severity:
            raise ValueError("Logger severity cannot be changed between calls.")
        self.lines.append((severity, text))

    def info(self, text: str) -> None:
        self._log("INFO", text)

    def warning(self, text: str) -> None:
        self._log("WARN", text)

    def error(self, text: str) -> None:
        self._log("ERROR", text)


class BrokenLogger:
    def info(self, text: str) -> None:
        raise RuntimeError("rcl logging is shut down")

    warning = error = info


def test_kind_counter_hands_back_the_first_of_each_kind_only() -> None:
    c = KindCounter("bad image skipped")
    texts = [c.record(kind, ValueError(f"{kind} #{i}")) for i, kind in enumerate(
        ["encoding", "encoding", "step", "encoding", "truncated", "step"])]
    assert [t is not None for t in texts] == [True, False, True, False, True, False]
    assert texts[0] == ("bad image skipped (encoding): encoding #0 - further ones of this kind are only counted "
                        "(see /diagnostics)")
    assert c.counts == {"encoding": 3, "step": 2, "truncated": 1} and c.total == 6


def test_kind_counter_survives_an_exception_whose_str_raises() -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert KindCounter("tick failed").record("Weird", Weird()) == "tick failed (Weird): <Weird> - further ones " \
                                                                  "of this kind are only counted (see /diagnostics)"


def test_kind_counter_counts_exactly_under_threads() -> None:
    c = KindCounter("x")
    firsts: list[str] = []
    lock = threading.Lock()

    def work(kind: str) -> None:
        for _ in range(500):
            t = c.record(kind, "e")
            if t is not None:
                with lock:
                    firsts.append(t)

    threads = [threading.Thread(target=work, args=(k,)) for k in ("a", "b", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60.0)
    assert c.counts == {"a": 1000, "b": 1000} and sorted(f[:5] for f in firsts) == ["x (a)", "x (b)"]


def test_warnings_and_errors_interleaved_through_safe_log_keep_each_call_site_at_one_severity() -> None:
    """The node's wiring: bad images warn, ticks fail with an error, in any order, from several counters."""
    logger = RclpyLikeLogger()
    log = SafeLog(logger)
    bad, rejected, ticks = (KindCounter("bad image skipped", log.warning),
                            KindCounter("frame rejected by the stream", log.warning),
                            KindCounter("tick failed", log.error))
    for k in ("ValueError", "RuntimeError"):
        ticks.record(k, k)
        bad.record(f"encoding-{k}", "yuv422")
        rejected.record(k, k)
        log.info("reset requested")
    assert log.failures == 0
    assert [s for s, _ in logger.lines] == ["ERROR", "WARN", "WARN", "INFO"] * 2


def test_the_old_wiring_breaks_rclpys_rule() -> None:
    """Why SafeLog exists: one call site handed loggers of two severities raises on the second."""
    logger = RclpyLikeLogger()

    def record(log, text: str) -> None:   # one call site, as KindCounter.record calling its ``log`` is
        log(text)

    record(logger.error, "tick failed")
    with pytest.raises(ValueError, match="severity cannot be changed"):
        record(logger.warning, "bad image")


def test_safe_log_never_raises_and_keeps_the_line() -> None:
    out = io.StringIO()
    log = SafeLog(BrokenLogger(), fallback=out)
    log.info("a")
    log.warning("b")
    log.error("c")
    assert log.failures == 3
    assert out.getvalue().splitlines() == [
        f"[{s}] {t} (the logger failed: RuntimeError: rcl logging is shut down)"
        for s, t in (("INFO", "a"), ("WARN", "b"), ("ERROR", "c"))]
