"""ShutdownRequest (ROS-free): the first signal interrupts the main thread, except inside ``deferred()``,
where it is recorded and raised on leaving the block (signals sent to this process, main thread)."""
from __future__ import annotations

import os
import signal

import pytest

from actfusion_ros.node.signals import ShutdownRequest, ShutdownSignal


def _send(sig: int) -> None:
    os.kill(os.getpid(), sig)  # delivered to the main thread at the next bytecode boundary


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_interrupts_at_once_outside_a_deferred_block(sig: int) -> None:
    request = ShutdownRequest().install()
    try:
        with pytest.raises(ShutdownSignal) as caught:
            _send(sig)
            for _ in range(10**6):  # the handler runs within a few bytecodes
                pass
        assert caught.value.signum == sig and request.signum == sig
    finally:
        request.uninstall()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_in_a_deferred_block_is_raised_when_the_block_ends(sig: int) -> None:
    request = ShutdownRequest().install()
    reached_end = False
    try:
        with pytest.raises(ShutdownSignal) as caught:
            with request.deferred():
                _send(sig)
                for _ in range(10**6):
                    pass
                reached_end = True  # not interrupted inside the block
        assert reached_end and caught.value.signum == sig
    finally:
        request.uninstall()


def test_a_deferred_block_without_a_signal_raises_nothing_and_interrupting_resumes() -> None:
    request = ShutdownRequest().install()
    try:
        with request.deferred():
            pass
        with pytest.raises(ShutdownSignal):
            _send(signal.SIGINT)
            for _ in range(10**6):
                pass
    finally:
        request.uninstall()


def test_after_stop_interrupting_a_deferred_block_only_records() -> None:
    request = ShutdownRequest().install()
    try:
        request.stop_interrupting()
        with request.deferred():
            _send(signal.SIGTERM)
            for _ in range(10**6):
                pass
        assert request.signum == signal.SIGTERM
    finally:
        request.uninstall()
