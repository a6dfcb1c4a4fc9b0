"""Wall-clock timing of a callable for the benchmark scripts (benchmarks only: tests never assert time)."""
from __future__ import annotations

import time
from typing import Callable


def timed_runs(fn: Callable[[], object], repeats: int, *, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
