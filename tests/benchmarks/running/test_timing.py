"""Timers synchronize before every clock read and compute latency statistics correctly."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.benchmarks.running import timing
from tlbench.benchmarks.running.timing import SyncTimer, measure_latency


class FakeClock:
    """perf_counter replacement: each batch 'takes' the next duration; records sync/clock order."""

    def __init__(self, durations):
        self.now = 0.0
        self.events: list[str] = []
        self.durations = list(durations)

    def perf_counter(self) -> float:
        self.events.append("clock")
        return self.now

    def sync(self) -> None:
        self.events.append("sync")

    def run(self, batch) -> None:
        self.events.append("run")
        self.now += self.durations.pop(0)


def test_sync_timer_syncs_before_each_clock_read(monkeypatch):
    clock = FakeClock([0.25, 0.5])
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    timer = SyncTimer(clock.sync)
    with timer:
        clock.run(None)
    with timer:
        clock.run(None)
    assert timer.seconds == pytest.approx(0.75)
    assert clock.events == ["sync", "clock", "run", "sync", "clock"] * 2


def test_measure_latency_warmup_repeats_and_percentiles(monkeypatch):
    # 2 warm-up calls (untimed, 100 s each so they'd dominate if counted), then 10 timed: 10..100 ms
    durations = [100.0, 100.0] + [0.01 * (i + 1) for i in range(10)]
    clock = FakeClock(durations)
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    batch = np.zeros((8, 4, 4, 3), np.uint8)
    stats = measure_latency(clock.run, [batch], clock.sync, warmup=2, repeats=3)  # repeats raised to 10
    assert stats.repeats == 10 and stats.batch_size == 8
    expected = np.array([0.01 * (i + 1) for i in range(10)])
    assert stats.latency_ms_p50 == pytest.approx(np.percentile(expected, 50) * 1e3)
    assert stats.latency_ms_p90 == pytest.approx(np.percentile(expected, 90) * 1e3)
    assert stats.images_per_s == pytest.approx(8 / np.percentile(expected, 50))
    timed = clock.events[2:]  # after the two warm-up runs
    assert timed[:5] == ["sync", "clock", "run", "sync", "clock"]


def test_measure_latency_needs_a_batch():
    with pytest.raises(ValueError, match="at least one batch"):
        measure_latency(lambda b: None, [], lambda: None)


def test_measure_latency_takes_the_images_per_call_when_a_batch_is_a_tuple():
    from tlbench.benchmarks.running.timing import measure_latency

    batches = [(np.zeros((8, 4, 4, 3), np.uint8), np.zeros((8, 4, 4, 3), np.uint8))]  # one array per backbone
    stats = measure_latency(lambda batch: None, batches, lambda: None, warmup=0, repeats=10, batch_size=8)
    assert stats.batch_size == 8 and stats.images_per_s == pytest.approx(8 / (stats.latency_ms_p50 / 1e3))
    assert measure_latency(lambda batch: None, batches, lambda: None, warmup=0, repeats=10).batch_size == 2  # len(tuple)
