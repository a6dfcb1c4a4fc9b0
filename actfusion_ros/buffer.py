"""A bounded ring buffer of timestamped feature vectors (the observed part of the model input)."""
from __future__ import annotations

import numpy as np

from actfusion_ros.time_ns import as_stamp_ns


class FeatureBuffer:
    """Up to ``capacity`` ``(stamp_ns, feature)`` pairs, oldest first, in preallocated arrays.

    ``append`` is O(1) and overwrites the oldest pair when full. Stamps must strictly increase.
    Not thread-safe by itself; the anticipator guards it with its lock.
    """

    def __init__(self, capacity: int, dim: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ValueError(f"capacity must be an int >= 1, got {capacity!r}")
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be an int >= 1, got {dim!r}")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self._features = np.zeros((self.capacity, self.dim), dtype=np.float32)
        self._stamps = np.zeros(self.capacity, dtype=np.int64)
        self._start = 0
        self._len = 0
        self.dropped = 0  # features discarded over the buffer's life (overwrite or decimate)

    def __len__(self) -> int:
        return self._len

    @property
    def full(self) -> bool:
        return self._len == self.capacity

    @property
    def newest_stamp_ns(self) -> int | None:
        if self._len == 0:
            return None
        return int(self._stamps[(self._start + self._len - 1) % self.capacity])

    def clear(self) -> None:
        """Empty the buffer (``dropped`` is kept: it counts features lost to the bound, not resets)."""
        self._start = 0
        self._len = 0

    def append(self, stamp_ns: int, feature: np.ndarray) -> int:
        """Add one feature ``(dim,)``; return how many old features were dropped (0 or 1)."""
        stamp = as_stamp_ns(stamp_ns)
        vec = np.asarray(feature, dtype=np.float32)
        if vec.shape != (self.dim,):
            raise ValueError(f"feature must have shape ({self.dim},), got {vec.shape}")
        newest = self.newest_stamp_ns
        if newest is not None and stamp <= newest:
            raise ValueError(f"stamps must increase: got {stamp} after {newest}")
        if self._len < self.capacity:
            slot = (self._start + self._len) % self.capacity
            self._len += 1
            dropped = 0
        else:
            slot = self._start
            self._start = (self._start + 1) % self.capacity
            dropped = 1
        self._features[slot] = vec
        self._stamps[slot] = stamp
        self.dropped += dropped
        return dropped

    def _order(self) -> np.ndarray:
        return (self._start + np.arange(self._len)) % self.capacity

    def stamps(self) -> np.ndarray:
        """Copy of the stamps ``(N,) int64``, oldest first."""
        return self._stamps[self._order()]

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies ``(features (dim, N) float32 C-contiguous, stamps (N,) int64)``, oldest first."""
        order = self._order()
        return np.ascontiguousarray(self._features[order].T), self._stamps[order]

    def decimate(self) -> int:
        """Keep every second feature, counting back from the newest (which is kept); return #dropped.

        Each kept feature keeps its own stamp, so times stay exact.
        """
        order = self._order()
        keep = order[(self._len - 1 - np.arange(self._len)) % 2 == 0]
        feats, stamps = self._features[keep], self._stamps[keep]
        n = keep.size
        dropped = self._len - n
        self._features[:n] = feats
        self._stamps[:n] = stamps
        self._start = 0
        self._len = n
        self.dropped += dropped
        return dropped
