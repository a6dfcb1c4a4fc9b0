"""torch's CPU thread count: set once per process, at start-up (never per forecast).

``torch.set_num_threads`` changes a process-wide setting; changing it around each forecast while a torch
feature extractor runs in another thread (the node's feature worker) changes that extractor's threads
too, at random moments. So a process sets it once, when it starts (``num_threads`` of the node,
``--threads`` of the command-line tools) through :func:`set_process_threads`, and nothing on the
forecast path touches it. The ONNX Runtime backend sets its ``loop_threads`` (1) when it is built, unless
the process chose a count before. Tests that need one thread set and restore it themselves.
"""
from __future__ import annotations

import torch

__all__ = ["process_threads", "set_process_threads"]

_chosen: int | None = None


def set_process_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU threads for this process (start-up code only); returns the count in effect.

    ``None`` or ``0``: leave the count as it is (torch's choice unless set before).
    """
    global _chosen
    if threads is None or int(threads) == 0:
        return torch.get_num_threads()
    n = int(threads)
    if n < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    _chosen = n
    torch.set_num_threads(n)
    return n


def process_threads() -> int | None:
    """The last count :func:`set_process_threads` set (None: never called with a count)."""
    return _chosen
