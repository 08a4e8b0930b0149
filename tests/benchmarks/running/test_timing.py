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
    assert (
        measure_latency(lambda batch: None, batches, lambda: None, warmup=0, repeats=10).batch_size == 2
    )  # len(tuple)


class SharedClock:
    """One fake clock for several models: each call of model ``name`` advances it by that model's next duration."""

    def __init__(self, durations: dict[str, list[float]]):
        self.now = 0.0
        self.durations = {k: list(v) for k, v in durations.items()}
        self.calls: list[str] = []

    def perf_counter(self) -> float:
        return self.now

    def runner(self, name: str):
        def run(batch) -> None:
            self.calls.append(name)
            self.now += self.durations[name].pop(0) if len(self.durations[name]) > 1 else self.durations[name][0]

        return run, (lambda: None)


def test_interleaved_rotates_the_order_and_pools_each_models_latencies(monkeypatch):
    clock = SharedClock({"a": [0.1], "b": [0.2], "c": [0.4]})
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    stats = timing.measure_interleaved(
        {name: clock.runner(name) for name in "abc"},
        [np.zeros((8, 2))],
        rounds=3,
        min_time_s=0.0,
        warmup=1,
        repeats=6,
    )
    # one warm-up call each; then 3 rounds, each giving every model ceil(10 / 3) = 4 calls (never fewer than 10
    # timed calls per model in all), the model that opens a round rotating
    assert clock.calls[:3] == ["a", "b", "c"]
    slots = ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert clock.calls[3:] == [name for name in slots for _ in range(4)]
    for name, seconds in (("a", 0.1), ("b", 0.2), ("c", 0.4)):
        assert stats[name].repeats == 12 and stats[name].batch_size == 8
        assert stats[name].images_per_s == pytest.approx(8 / seconds)
        assert stats[name].latency_ms_p50 == pytest.approx(seconds * 1e3)
        assert stats[name].timed_s == pytest.approx(seconds * 12)


def test_interleaved_slots_last_their_share_of_the_minimum_time(monkeypatch):
    clock = SharedClock({"fast": [1 / 64], "slow": [0.25]})
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    stats = timing.measure_interleaved(
        {n: clock.runner(n) for n in ("fast", "slow")}, [np.zeros((4, 1))], rounds=4, min_time_s=2.0, warmup=0
    )
    # 2 s over 4 rounds = 0.5 s per slot: 32 calls of 1/64 s; the slow model gets 3 calls of 0.25 s (ceil(10 / 4))
    assert stats["fast"].repeats == 4 * 32 and stats["slow"].repeats == 4 * 3
    assert stats["fast"].timed_s == pytest.approx(2.0) and stats["slow"].timed_s == pytest.approx(3.0)


def test_interleaved_medians_resist_a_burst_that_hits_one_round(monkeypatch):
    """A disturbance during one round slows every model in it, never one model's whole window."""
    clock = SharedClock({"a": [0.1] * 4 + [0.3] * 4 + [0.1] * 100, "b": [0.1] * 4 + [0.3] * 4 + [0.1] * 100})
    monkeypatch.setattr(timing.time, "perf_counter", clock.perf_counter)
    stats = timing.measure_interleaved(
        {n: clock.runner(n) for n in "ab"}, [np.zeros((4, 1))], rounds=5, min_time_s=0.0, warmup=0
    )
    assert stats["a"].images_per_s == pytest.approx(stats["b"].images_per_s) == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("runners", "batches", "rounds", "message"),
    [
        ({}, [np.zeros((1, 1))], 1, "at least one model"),
        ({"a": (lambda b: None, lambda: None)}, [], 1, "at least one batch"),
        ({"a": (lambda b: None, lambda: None)}, [np.zeros((1, 1))], 0, "invalid rounds 0"),
    ],
)
def test_interleaved_refuses_empty_input(runners, batches, rounds, message):
    with pytest.raises(ValueError, match=message):
        timing.measure_interleaved(runners, batches, rounds=rounds)
