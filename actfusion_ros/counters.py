"""The identities the counters of the node's ``/diagnostics`` satisfy (ROS-free).

Every image the node receives and every tick it runs ends in exactly one counter, so the counters add
up. :data:`IDENTITIES` lists the sums (documented in ``docs/node.md``); :func:`identity_violations`
checks a ``/diagnostics`` value mapping against them (tests, soak runs, a user's monitoring). They hold
whenever the node is quiet: the feature worker has handled every queued frame (``queue_length`` 0
and no frame inside ``push_frame``) and no tick is running; in between, a frame or tick in flight
may be counted on one side only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["IDENTITIES", "Identity", "identity_violations"]


@dataclass(frozen=True)
class Identity:
    """``left == sum(terms) + sum of every value whose key starts with one of prefixes``."""

    left: str
    terms: tuple[str, ...]
    prefixes: tuple[str, ...] = ()
    meaning: str = ""

    def __str__(self) -> str:
        parts = [*self.terms, *(f"sum({p}*)" for p in self.prefixes)]
        return f"{self.left} == {' + '.join(parts)}"

    def sides(self, values: Mapping[str, Any]) -> tuple[int, int]:
        """``(left, right)`` evaluated on ``values`` (missing terms count 0)."""
        right = sum(int(values.get(k, 0)) for k in self.terms)
        right += sum(int(v) for k, v in values.items() if k.startswith(self.prefixes)) if self.prefixes else 0
        return int(values.get(self.left, 0)), right


IDENTITIES: tuple[Identity, ...] = (
    Identity("images_received", ("bad_images", "frames_dropped", "queue_length", "frames_received"),
             meaning="each received image is refused by the converter, dropped from the full queue, "
                     "waiting in the queue, or handed to the stream"),
    Identity("bad_images", (), ("bad_images.",), meaning="refused images, per kind"),
    Identity("frames_received", ("frames_accepted", "frames_not_due", "duplicates", "out_of_order",
                                 "invalid_frames", "extract_errors", "future_frames"),
             meaning="each frame handed to the stream becomes a feature or is set aside for one reason"),
    Identity("ticks", ("published", "publish_errors"), ("stream_skips.",),
             meaning="each tick run publishes, fails to publish its result, or gives no result "
                     "(stream_skips.forecast_error: the forecaster failed)"),
    Identity("tick_errors", ("stream_skips.forecast_error", "publish_errors"),
             meaning="failed ticks: the forecast failed, or its messages could not be built or published"),
)


def identity_violations(values: Mapping[str, Any]) -> list[str]:
    """``'identity: left != right'`` for each of :data:`IDENTITIES` that ``values`` break (empty: all hold)."""
    out = []
    for identity in IDENTITIES:
        left, right = identity.sides(values)
        if left != right:
            out.append(f"{identity}: {left} != {right}")
    return out
