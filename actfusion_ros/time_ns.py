"""Time on the frames' clock: integer nanoseconds everywhere, and the few conversions at the edges.

The one home of :data:`NS_PER_S` and of the time helpers: rates to periods, stamp checks, seconds to
nanoseconds, and ``builtin_interfaces/Time``-like stamps to and from integer nanoseconds (ROS-free:
duck-typed ``sec`` / ``nanosec`` fields).
"""
from __future__ import annotations

import operator
from numbers import Integral
from typing import Any

__all__ = ["NS_PER_S", "as_stamp_ns", "ns_to_stamp_fields", "period_ns_from_rate", "seconds_to_ns",
           "stamp_to_ns"]

NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1


def period_ns_from_rate(rate_hz: float) -> int:
    """Sampling period in integer nanoseconds: ``round(1e9 / rate_hz)`` (the one conversion)."""
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz!r}")
    period = int(round(NS_PER_S / float(rate_hz)))
    if period < 1:
        raise ValueError(f"rate_hz={rate_hz!r} gives a period below 1 ns")
    return period


def as_stamp_ns(stamp_ns: object, name: str = "stamp_ns") -> int:
    """Check that a timestamp is an integer number of nanoseconds and return it as ``int``."""
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, Integral):
        raise TypeError(f"{name} must be an integer number of nanoseconds, got {stamp_ns!r} "
                        f"({type(stamp_ns).__name__})")
    return int(stamp_ns)


def seconds_to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds, rounded to the nearest."""
    return int(round(seconds * NS_PER_S))


def stamp_to_ns(stamp: Any) -> int:
    """Convert a ``builtin_interfaces/Time``-like stamp (``sec``, ``nanosec``) to int nanoseconds.

    Objects exposing ``nanoseconds`` (``rclpy.time.Time``) are accepted too.

    Raises:
        TypeError: no integer ``sec``/``nanosec`` fields.
        ValueError: negative time, or ``nanosec`` outside ``0..999999999``.
    """
    if hasattr(stamp, "nanoseconds") and not hasattr(stamp, "sec"):
        ns = int(stamp.nanoseconds)
    else:
        try:
            sec = operator.index(stamp.sec)
            nanosec = operator.index(stamp.nanosec)
        except AttributeError:
            raise TypeError(
                f"expected a stamp with integer 'sec' and 'nanosec', got {type(stamp).__name__}"
            ) from None
        if not 0 <= nanosec < NS_PER_S:
            raise ValueError(f"nanosec must be in 0..{NS_PER_S - 1}, got {nanosec}")
        ns = sec * NS_PER_S + nanosec
    if ns < 0:
        raise ValueError(f"negative time stamp: {ns} ns")
    return ns


def ns_to_stamp_fields(ns: int) -> tuple[int, int]:
    """Split integer nanoseconds into ``(sec, nanosec)`` for ``builtin_interfaces/Time``.

    Raises:
        TypeError: ``ns`` is not an integer (floats are rejected on purpose).
        ValueError: ``ns`` is negative or ``sec`` would overflow int32.
    """
    if isinstance(ns, bool):
        raise TypeError("ns must be an integer, got bool")
    ns = operator.index(ns)
    if ns < 0:
        raise ValueError(f"negative time in nanoseconds: {ns}")
    sec, nanosec = divmod(ns, NS_PER_S)
    if sec > _INT32_MAX:
        raise ValueError(f"time {ns} ns overflows builtin_interfaces/Time.sec (int32)")
    return sec, nanosec
