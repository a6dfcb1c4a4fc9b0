"""The bounded queue between the node's image callback and its feature worker (ROS-free)."""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["FrameQueue"]


class FrameQueue:
    """Bounded FIFO between the image callback and the feature worker.

    :meth:`put` never blocks: when full, the oldest item is dropped and counted in ``dropped``.
    :meth:`get` blocks until an item arrives or :meth:`close` is called (then returns ``None``).
    The node's lifecycle: :meth:`clear` on deactivate (waiting items dropped, counted), :meth:`reopen` on
    activate.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self._items: deque[Any] = deque()
        self._maxsize = int(maxsize)
        self._cond = threading.Condition()
        self._closed = False
        self.put_count = 0
        self.dropped = 0

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def put(self, item: Any) -> bool:
        """Enqueue ``item``; True when the oldest item had to be dropped to make room."""
        with self._cond:
            dropped = len(self._items) >= self._maxsize
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """Oldest item, or ``None`` when closed (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if self._closed:
                return None
            return self._items.popleft()

    def clear(self) -> int:
        """Drop every waiting item, counted in ``dropped`` (the node deactivating); returns how many."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            return n

    def reopen(self) -> None:
        """Accept items and hand them out again after :meth:`close` (the node activating again)."""
        with self._cond:
            self._closed = False

    def close(self) -> None:
        """Wake and release every waiting :meth:`get`; later ``get`` calls return ``None``."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()
