"""Honest timers: synchronize the device before every clock read; medians and percentiles over repeats."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np


class SyncTimer:
    """Accumulates wall seconds of device work; ``sync`` is called before each clock read.

    Usage::

        timer = SyncTimer(backend.synchronize)
        with timer:
            ...  # queued device work
        timer.seconds
    """

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync
        self.seconds = 0.0
        self._start: float | None = None

    def __enter__(self) -> "SyncTimer":
        self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sync()
        assert self._start is not None
        self.seconds += time.perf_counter() - self._start
        self._start = None


@dataclass(frozen=True)
class LatencyStats:
    """Per-batch latency statistics of an inference loop."""

    batch_size: int
    repeats: int
    latency_ms_p50: float
    latency_ms_p90: float
    images_per_s: float


def measure_latency(
    run_batch: Callable[[np.ndarray], object],
    batches: list[np.ndarray],
    sync: Callable[[], None],
    warmup: int = 3,
    repeats: int = 10,
) -> LatencyStats:
    """Time ``run_batch`` per batch after ``warmup`` untimed calls, ``repeats`` timed calls (≥ 10).

    Batches are cycled. Throughput is ``batch_size / median latency`` (batches all have ``batch_size``
    images; the caller passes full batches only).

    Args:
        run_batch: runs inference on one uint8 batch (its result is discarded).
        batches: pre-sliced, already decoded uint8 batches of equal size.
        sync: device synchronize, called before every clock read.
        warmup: untimed calls first (allocator, kernels selection, compilation).
        repeats: timed calls; at least 10.
    """
    if not batches:
        raise ValueError("measure_latency needs at least one batch")
    repeats = max(10, repeats)
    for i in range(warmup):
        run_batch(batches[i % len(batches)])
    times = np.empty(repeats)
    for i in range(repeats):
        batch = batches[i % len(batches)]
        sync()
        start = time.perf_counter()
        run_batch(batch)
        sync()
        times[i] = time.perf_counter() - start
    batch_size = len(batches[0])
    p50, p90 = np.percentile(times, [50, 90])
    return LatencyStats(
        batch_size=batch_size,
        repeats=repeats,
        latency_ms_p50=float(p50 * 1e3),
        latency_ms_p90=float(p90 * 1e3),
        images_per_s=float(batch_size / p50),
    )
