"""Next-action distributions on the camera time line, and in words (ROS-free).

:func:`actfusion_model.consensus.next_action_distribution` states, over K sampled futures, which action follows the
current one and at which *future frame* it starts. A stream places future frame ``f`` at
``future_start_ns + f * period_ns`` (``future_start_ns``: one feature period after the tick's stamp, where
the first future segment begins), so :func:`timed_alternatives` turns the frames into camera times, and
:func:`format_next_actions` says it on one line, e.g. ``add_sugar 70% @ 12.8s (12.1-13.6), stir 20% @ 14.0s``.
The demo console and the replay report use these, so both read the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from actfusion_model.consensus import NextActionDistribution


@dataclass(frozen=True)
class TimedAlternative:
    """One possible next action: its label, probability and start (expected, 10% and 90%) in camera ns, and
    its class id (-1: not known, e.g. read back from text)."""

    label: str
    probability: float
    start_ns: int
    low_ns: int
    high_ns: int
    class_id: int = -1


def timed_alternatives(distribution: NextActionDistribution, class_names: Sequence[str], future_start_ns: int,
                       period_ns: int) -> tuple[TimedAlternative, ...]:
    """The alternatives of ``distribution`` (most probable first) with frame indices turned into camera time."""
    def at(frame: float) -> int:
        return int(future_start_ns) + int(round(float(frame) * int(period_ns)))

    return tuple(TimedAlternative(class_names[a.class_id] if 0 <= a.class_id < len(class_names) else str(a.class_id),
                                  float(a.probability), at(a.expected_start), at(a.start_low), at(a.start_high),
                                  int(a.class_id))
                 for a in distribution.alternatives)


def format_next_actions(alternatives: Sequence[TimedAlternative], t0_ns: int = 0, *, limit: int = 3) -> str:
    """``label P% @ t s (low-high)`` for the ``limit`` most probable alternatives, times in seconds from
    ``t0_ns``; the interval only where it is not a point; ``-`` for none. The rest of the probability is the
    current action lasting beyond the horizon (not printed)."""
    parts = []
    for a in list(alternatives)[:max(0, int(limit))]:
        text = f"{a.label} {100.0 * a.probability:.0f}% @ {(a.start_ns - t0_ns) / 1e9:.1f}s"
        if a.high_ns > a.low_ns:
            text += f" ({(a.low_ns - t0_ns) / 1e9:.1f}-{(a.high_ns - t0_ns) / 1e9:.1f})"
        parts.append(text)
    return ", ".join(parts) or "-"
