"""Honest timers: synchronize the device before every clock read; medians and percentiles over repeats."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

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

    def __enter__(self) -> SyncTimer:
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
    """Per-batch latency statistics of an inference loop.

    Attributes:
        batch_size: images per batch.
        repeats: timed batches.
        latency_ms_p50, latency_ms_p90: median and 90th percentile batch latency.
        latency_cv: coefficient of variation (std / mean) of the batch latencies: the spread of the window.
        images_per_s: ``batch_size / median latency``.
        timed_s: seconds covered by the timed batches.
        latencies_ms: every timed latency (kept in the cell's artifacts).
    """

    batch_size: int
    repeats: int
    latency_ms_p50: float
    latency_ms_p90: float
    images_per_s: float
    latency_cv: float = 0.0
    timed_s: float = 0.0
    latencies_ms: tuple[float, ...] = ()


def measure_latency(
    run_batch: Callable[[np.ndarray], object],
    batches: list[np.ndarray],
    sync: Callable[[], None],
    warmup: int = 3,
    repeats: int = 10,
    min_time_s: float = 0.0,
    max_repeats: int = 100_000,
    batch_size: int | None = None,
) -> LatencyStats:
    """Time ``run_batch`` per batch after ``warmup`` untimed calls: at least ``repeats`` calls *and* ``min_time_s``.

    Batches are cycled. Throughput is ``batch_size / median latency`` (batches all have ``batch_size``
    images; the caller passes full batches only).

    Args:
        run_batch: runs inference on one uint8 batch (its result is discarded).
        batches: pre-sliced, already decoded uint8 batches of equal size.
        sync: device synchronize, called before every clock read.
        warmup: untimed calls first (allocator, kernels selection, compilation).
        repeats: timed calls; at least 10.
        min_time_s: keep timing until the timed calls cover at least this many seconds (optimum-benchmark's
            rule: short windows on a CPU move ±30 % between runs).
        max_repeats: upper bound of timed calls.
        batch_size: images per call; default ``len(batches[0])``. Give it when a batch is not one array (a
            fusion probe's batch is a tuple holding one array per backbone).
    """
    if not batches:
        raise ValueError("measure_latency needs at least one batch")
    repeats = max(10, repeats)
    for i in range(warmup):
        run_batch(batches[i % len(batches)])
    times = _timed_calls(run_batch, batches, sync, repeats, min_time_s, max_repeats)
    return latency_stats(times, int(batch_size) if batch_size is not None else len(batches[0]))


def _timed_calls(
    run_batch: Callable[[np.ndarray], object],
    batches: list[np.ndarray],
    sync: Callable[[], None],
    min_calls: int,
    min_time_s: float,
    max_calls: int = 100_000,
) -> list[float]:
    """Seconds of each call of ``run_batch`` (batches cycled): at least ``min_calls`` and ``min_time_s``."""
    times: list[float] = []
    total = 0.0
    while len(times) < min_calls or (total < min_time_s and len(times) < max_calls):
        batch = batches[len(times) % len(batches)]
        sync()
        start = time.perf_counter()
        run_batch(batch)
        sync()
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return times


def latency_stats(times_s: list[float] | tuple[float, ...], batch_size: int) -> LatencyStats:
    """Statistics of per-batch latencies (seconds) of ``batch_size`` images each: throughput from the median."""
    if not len(times_s):
        raise ValueError("latency_stats needs at least one latency")
    values = np.asarray(times_s, dtype=np.float64)
    p50, p90 = np.percentile(values, [50, 90])
    return LatencyStats(
        batch_size=batch_size,
        repeats=len(values),
        latency_ms_p50=float(p50 * 1e3),
        latency_ms_p90=float(p90 * 1e3),
        images_per_s=float(batch_size / p50),
        latency_cv=float(values.std() / values.mean()) if values.mean() > 0 else 0.0,
        timed_s=float(values.sum()),
        latencies_ms=tuple(float(t * 1e3) for t in values),
    )


def measure_interleaved(
    runners: dict[str, tuple[Callable[[np.ndarray], object], Callable[[], None]]],
    batches: list[np.ndarray],
    rounds: int = 5,
    min_time_s: float = 2.0,
    warmup: int = 3,
    repeats: int = 10,
) -> dict[str, LatencyStats]:
    """Time several models of the same shape round-robin, in one process, and pool each one's latencies.

    Every model gets ``warmup`` untimed calls first; then ``rounds`` rounds, each giving every model a slot of at
    least ``repeats / rounds`` calls and ``min_time_s / rounds`` seconds, the order rotated by one model per round (no
    model is always first after another). A drift of the machine during the pass (a noisy neighbour, a clock
    change) falls on every model alike, so their figures compare; each model's throughput comes from the median
    of all its pooled latencies.

    Args:
        runners: name -> (run one uint8 batch, device synchronize).
        batches: pre-sliced uint8 batches of equal size, shared by all models.
        rounds: round-robin rounds (at least 1).
        min_time_s: timed seconds per model over all rounds.
        warmup: untimed calls per model before the first round.
        repeats: timed calls per model over all rounds, at least (never fewer than 10).

    Returns:
        name -> the pooled ``LatencyStats`` (``timed_s``: that model's timed seconds).
    """
    if not runners:
        raise ValueError("measure_interleaved needs at least one model")
    if not batches:
        raise ValueError("measure_interleaved needs at least one batch")
    if rounds < 1:
        raise ValueError(f"invalid rounds {rounds!r}: expected at least 1")
    for run, _ in runners.values():
        for i in range(warmup):
            run(batches[i % len(batches)])
    per_slot = max(1, -(-max(10, repeats) // rounds))  # at least 10 timed calls per model over all rounds
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            run, sync = runners[name]
            times[name] += _timed_calls(run, batches, sync, per_slot, min_time_s / rounds)
    return {name: latency_stats(values, len(batches[0])) for name, values in times.items()}
