"""What the node logs about bad input and failures, and logging that can never raise (ROS-free).

* :class:`KindCounter` decides *what* to log: it counts errors per kind and hands back the text of the
  first one of each kind (later ones are only counted, for /diagnostics).
* :class:`SafeLog` does the logging with one fixed severity per method. rclpy ties each logging call
  site (file, line) to the severity of its first call and raises ``ValueError: Logger severity cannot be
  changed between calls`` when the same line later logs at another severity; every method here is a
  call site of a single severity, and any exception from the logger is swallowed (the text goes to
  stderr), so logging can never kill the image callback, the feature worker or a tick.
"""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TextIO

__all__ = ["KindCounter", "SafeLog", "describe", "error_kind"]


def describe(err: BaseException | str) -> str:
    """``str(err)``, or the exception's type name when even that fails."""
    try:
        return str(err)
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises must still be reportable
        return f"<{type(err).__name__}>"


def error_kind(err: BaseException) -> str:
    """The counter key of an error: its ``kind`` attribute when it has one (the image conversion errors of
    :mod:`actfusion_ros.frames`), else the exception's type name (e.g. ``ValueError`` for a bad stamp)."""
    kind = getattr(err, "kind", None)
    return kind if isinstance(kind, str) and kind else type(err).__name__


class KindCounter:
    """Counts errors per kind; the first of each kind is logged (later ones only count). Thread-safe.

    ``log``, if given, receives the text of each first occurrence (pass a fixed-severity method of
    :class:`SafeLog`).
    """

    def __init__(self, what: str, log: Callable[[str], Any] | None = None) -> None:
        self.what = what
        self._log = log
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def record(self, kind: str, err: BaseException | str) -> str | None:
        """Count one error of ``kind``; the text to log if it is the first of its kind, else ``None``."""
        with self._lock:
            n = self._counts.get(kind, 0) + 1
            self._counts[kind] = n
        if n != 1:
            return None
        text = f"{self.what} ({kind}): {describe(err)} - further ones of this kind are only counted (see /diagnostics)"
        if self._log is not None:
            self._log(text)
        return text

    @property
    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class SafeLog:
    """Fixed-severity logging through ``logger`` (an rclpy logger, or anything with ``info``, ``warning``
    and ``error``) that never raises: a failing logger costs the line (written to ``fallback``), never
    the caller. ``failures`` counts the lines the logger refused."""

    def __init__(self, logger: Any, fallback: TextIO | None = None) -> None:
        self._logger = logger
        self._fallback = fallback
        self._lock = threading.Lock()
        self.failures = 0

    def info(self, text: str) -> None:
        try:
            self._logger.info(text)
        except Exception as err:  # noqa: BLE001 - logging must never take the node down
            self._failed("INFO", text, err)

    def warning(self, text: str) -> None:
        try:
            self._logger.warning(text)
        except Exception as err:  # noqa: BLE001 - logging must never take the node down
            self._failed("WARN", text, err)

    def error(self, text: str) -> None:
        try:
            self._logger.error(text)
        except Exception as err:  # noqa: BLE001 - logging must never take the node down
            self._failed("ERROR", text, err)

    def _failed(self, severity: str, text: str, err: BaseException) -> None:
        with self._lock:
            self.failures += 1
        try:
            out = self._fallback if self._fallback is not None else sys.stderr
            print(f"[{severity}] {text} (the logger failed: {type(err).__name__}: {describe(err)})",
                  file=out, flush=True)
        except Exception:  # noqa: BLE001 - not even stderr: drop the line
            pass
