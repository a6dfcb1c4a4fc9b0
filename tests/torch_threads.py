"""One torch intra-op thread while a test (or a module) runs, restored after.

On a shared 2-core machine OpenMP threads competing with other processes spin at every barrier and slow
tiny models and convolutions down tenfold; results do not depend on the thread count. Modules use the
``single_torch_thread`` / ``single_torch_thread_module`` fixtures of conftest.py, code the context manager.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["one_torch_thread"]


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one intra-op thread inside the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
