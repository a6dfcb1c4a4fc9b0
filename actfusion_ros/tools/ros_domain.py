"""Which ROS domain the demo and the test helpers use: ``ROS_DOMAIN_ID`` when set, else their own pick.

A user who runs on a shared network sets ``ROS_DOMAIN_ID`` to keep apart from other machines; the demo and
the DDS tests must then stay on that domain. Without it they pick a pid-derived domain so parallel runs on
one machine do not hear each other.
"""
from __future__ import annotations

import os
from typing import Mapping

#: Largest domain id the DDS port mapping allows (RTPS: 232; Linux's ephemeral ports limit it to 101 by default).
MAX_DOMAIN_ID = 232


def domain_id(fallback: int, environ: Mapping[str, str] | None = None) -> int:
    """``ROS_DOMAIN_ID`` from ``environ`` (default ``os.environ``) when set and not blank, else ``fallback``.

    Raises ``ValueError`` naming the variable when it is set but not an integer in [0, 232].
    """
    env = os.environ if environ is None else environ
    raw = env.get("ROS_DOMAIN_ID", "").strip()
    if not raw:
        return int(fallback)
    try:
        value = int(raw, 10)
    except ValueError:
        raise ValueError(f"ROS_DOMAIN_ID={raw!r} is not an integer (expected 0..{MAX_DOMAIN_ID})") from None
    if not 0 <= value <= MAX_DOMAIN_ID:
        raise ValueError(f"ROS_DOMAIN_ID={value} is out of range 0..{MAX_DOMAIN_ID}")
    return value
