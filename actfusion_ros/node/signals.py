"""SIGINT / SIGTERM as a request to shut down, handled the same at every moment of a process's life.

ROS-free. :class:`ShutdownRequest` is installed first thing (before the heavy imports and the model
load): the first signal raises :class:`ShutdownSignal` in the main thread, like ``KeyboardInterrupt``
but for SIGTERM too, so start-up stops where it is; once the clean-up has begun
(:meth:`ShutdownRequest.stop_interrupting`) further signals are only recorded, so they cannot break the
clean-up. rclpy's own handlers, installed later by ``rclpy.init``, chain to these.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager
from types import FrameType
from typing import Any, Iterator

__all__ = ["SHUTDOWN_SIGNALS", "ShutdownRequest", "ShutdownSignal"]

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignal(BaseException):
    """Raised in the main thread by the first shutdown signal (a BaseException, like KeyboardInterrupt,
    so ``except Exception`` blocks let it through)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"received {signal.Signals(signum).name}")
        self.signum = signum


class ShutdownRequest:
    """Python-level handlers for :data:`SHUTDOWN_SIGNALS`; :attr:`signum` is the first one received."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._interrupt = True
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self) -> "ShutdownRequest":
        """Install the handlers (main thread only); returns ``self``."""
        for sig in SHUTDOWN_SIGNALS:
            self._previous.setdefault(sig, signal.signal(sig, self._handle))
        return self

    def uninstall(self) -> None:
        """Restore the handlers that were there before :meth:`install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def ignore_from_now(self) -> None:
        """The process is about to exit: ignore further signals. (At exit Python resets its own handlers to
        the default, so a signal during interpreter finalization would kill the process: exit -15.)"""
        for sig in SHUTDOWN_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        self._previous.clear()

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within the block a signal is only recorded; leaving it raises :class:`ShutdownSignal` for a signal
        that arrived meanwhile (if interrupting was on). For code that runs Python under C++ frames, such as
        ``import torch`` (pybind11): an exception raised there by the handler cannot unwind through C++ and
        aborts the process (``terminate called ... error_already_set``, exit -6)."""
        interrupting, self._interrupt = self._interrupt, False
        try:
            yield
        finally:
            self._interrupt = interrupting and self.signum is None
        if interrupting and self.signum is not None:
            raise ShutdownSignal(self.signum)

    def stop_interrupting(self) -> None:
        """From now on (the clean-up), signals are only recorded."""
        self._interrupt = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if first and self._interrupt:
            self._interrupt = False
            raise ShutdownSignal(signum)
