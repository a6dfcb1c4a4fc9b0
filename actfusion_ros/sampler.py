"""Feature-rate sampling by frame timestamp (not arrival time), with episode-boundary detection.

Frames come from a camera at its own rate (e.g. 30 fps), possibly jittered, duplicated, reordered or
with holes; the model wants features at a fixed rate (e.g. 2 Hz). :class:`FeatureRateSampler` looks
only at the frames' stamps (integer nanoseconds) and takes a frame when its stamp reaches the next
point of a fixed grid ``anchor + k * period`` (``anchor`` = the first frame of the episode). A grid,
rather than "last taken + period", keeps jitter from accumulating into drift.

Per frame, in this order (``latest`` = newest stamp seen in order):

- no history (first frame, or after :meth:`FeatureRateSampler.reset`): taken, starts the grid;
- ``stamp == latest``: ``duplicate``, ignored;
- ``latest - stamp > backward_jump_ns``: time jumped back (bag loop, sim restart): new episode,
  the frame is taken as its first frame (``reset_reason='backward_jump'``);
- ``stamp < latest`` otherwise: ``out_of_order``, ignored;
- ``stamp - latest > episode_gap_ns``: the stream paused: new episode starting at this frame
  (``reset_reason='gap'``);
- otherwise the frame becomes ``latest``; it is ``taken`` when ``stamp >= next_due`` (then
  ``next_due`` moves to the first grid point after ``stamp``), else ``not_due``.

Not thread-safe; the anticipator calls it under its lock.
"""
from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral
from typing import Iterable

import numpy as np

from actfusion_ros.time_ns import as_stamp_ns, period_ns_from_rate


@dataclass(frozen=True)
class SampleDecision:
    """What the sampler did with one frame.

    ``kind`` is ``'taken'``, ``'not_due'``, ``'duplicate'`` or ``'out_of_order'``; ``reset_reason``
    is ``'gap'`` or ``'backward_jump'`` when this frame starts a new episode (it is then taken).
    """

    take: bool
    kind: str
    reset_reason: str | None = None


@dataclass
class SamplerCounts:
    """Running totals since construction (not cleared by :meth:`FeatureRateSampler.reset`)."""

    received: int = 0
    taken: int = 0
    not_due: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    backward_jumps: int = 0


class FeatureRateSampler:
    """Choose, by timestamp, the frames that become features (see the module docstring).

    ``episode_gap_ns`` / ``backward_jump_ns`` of ``None`` disable that detection (offline clips).
    """

    def __init__(self, period_ns: int, *, episode_gap_ns: int | None = None,
                 backward_jump_ns: int | None = None) -> None:
        self._period_ns = self._check_period(period_ns)
        for name, value in (("episode_gap_ns", episode_gap_ns), ("backward_jump_ns", backward_jump_ns)):
            bad = isinstance(value, bool) or not isinstance(value, Integral) or value < 0
            if value is not None and bad:
                raise ValueError(f"{name} must be None or an int >= 0, got {value!r}")
        self.episode_gap_ns = None if episode_gap_ns is None else int(episode_gap_ns)
        self.backward_jump_ns = None if backward_jump_ns is None else int(backward_jump_ns)
        self.counts = SamplerCounts()
        self.latest_stamp_ns: int | None = None
        self.last_taken_ns: int | None = None
        self.next_due_ns: int | None = None

    @staticmethod
    def _check_period(period_ns: int) -> int:
        if isinstance(period_ns, bool) or not isinstance(period_ns, Integral) or period_ns < 1:
            raise ValueError(f"period_ns must be an int >= 1, got {period_ns!r}")
        return int(period_ns)

    @property
    def period_ns(self) -> int:
        return self._period_ns

    def set_period(self, period_ns: int) -> None:
        """Change the period; the grid is re-anchored on the last taken frame."""
        self._period_ns = self._check_period(period_ns)
        if self.last_taken_ns is not None:
            self.next_due_ns = self.last_taken_ns + self._period_ns

    def reset(self) -> None:
        """Forget the stream (not the counts): the next frame is taken and anchors a new grid."""
        self.latest_stamp_ns = None
        self.last_taken_ns = None
        self.next_due_ns = None

    def restart(self, stamp_ns: int) -> None:
        """Start a new grid at ``stamp_ns`` as if that frame had just been taken (not counted)."""
        stamp = as_stamp_ns(stamp_ns)
        self.latest_stamp_ns = stamp
        self.last_taken_ns = stamp
        self.next_due_ns = stamp + self._period_ns

    def offer(self, stamp_ns: int) -> SampleDecision:
        """Decide about one frame stamped ``stamp_ns`` and update the state."""
        stamp = as_stamp_ns(stamp_ns)
        c = self.counts
        c.received += 1
        latest = self.latest_stamp_ns
        reset_reason: str | None = None
        if latest is not None:
            if stamp == latest:
                c.duplicates += 1
                return SampleDecision(False, "duplicate")
            if stamp < latest:
                if self.backward_jump_ns is None or latest - stamp <= self.backward_jump_ns:
                    c.out_of_order += 1
                    return SampleDecision(False, "out_of_order")
                c.backward_jumps += 1
                reset_reason = "backward_jump"
            elif self.episode_gap_ns is not None and stamp - latest > self.episode_gap_ns:
                c.gaps += 1
                reset_reason = "gap"
        if latest is None or reset_reason is not None:
            self.restart(stamp)
            c.taken += 1
            return SampleDecision(True, "taken", reset_reason)
        self.latest_stamp_ns = stamp
        assert self.next_due_ns is not None
        if stamp < self.next_due_ns:
            c.not_due += 1
            return SampleDecision(False, "not_due")
        # first grid point strictly after this stamp
        self.next_due_ns += self._period_ns * ((stamp - self.next_due_ns) // self._period_ns + 1)
        self.last_taken_ns = stamp
        c.taken += 1
        return SampleDecision(True, "taken")


def sample_frame_indices(stamps_ns: Iterable[int] | np.ndarray, feature_rate_hz: float) -> np.ndarray:
    """Indices of the frames the online sampler takes from a clip's stamps (offline feature files).

    Gap and backward-jump resets are disabled: a clip is one episode. Extract offline features over
    ``frames[indices]`` to get exactly what the node computes live.
    """
    sampler = FeatureRateSampler(period_ns_from_rate(feature_rate_hz))
    return np.array([i for i, s in enumerate(np.asarray(stamps_ns).reshape(-1).tolist())
                     if sampler.offer(int(s)).take], dtype=np.int64)
