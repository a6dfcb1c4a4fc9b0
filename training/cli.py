"""Small pieces shared by the training command-line tools."""
from __future__ import annotations

import sys

import torch


def apply_threads(threads: int | None) -> bool:
    """Set torch's CPU threads from ``--threads`` (None: leave torch's choice); False after printing an error."""
    if threads is None:
        return True
    if threads < 1:
        print("error: --threads must be >= 1", file=sys.stderr)
        return False
    torch.set_num_threads(threads)
    return True
