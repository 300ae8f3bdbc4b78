"""What the benchmarks report: percentiles of timed samples."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def percentile(samples: list[float], q: float) -> float:
    """The sample at quantile ``q`` (nearest rank; ``q`` from 0 to 1)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_together(threads: list[threading.Thread], start: threading.Barrier) -> float:
    """Start ``threads`` (each waits on ``start`` first), release them all at once and
    return the seconds until the last has finished."""
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure(fn: Callable[[], Any], calls: int, warmup: int) -> dict[str, float]:
    """Call ``fn`` ``warmup`` times, then time ``calls`` calls one by one."""
    for _ in range(warmup):
        fn()
    samples = []
    clock = time.perf_counter
    start = clock()
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append((clock() - t0) * 1000.0)
    total = clock() - start
    return {
        "calls": calls,
        "p50_ms": round(percentile(samples, 0.50), 4),
        "p99_ms": round(percentile(samples, 0.99), 4),
        "calls_per_s": round(calls / total, 1),
    }
