"""The contention guard counts busy processes outside the measured process tree, never the tree's own children.

The machine is shared: other processes may be busy during these tests, so every check compares the sampler
with what the busy subprocess itself consumed in the same window (read from its own CPU counters), never with
absolute figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import psutil
import pytest

from tlbench.benchmarks.running import contention
from tlbench.benchmarks.running.contention import ContentionSampler, describe, parse_pmon, wait_until_quiet

BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


@contextmanager
def _processes(*codes: str) -> Iterator[list[subprocess.Popen]]:
    procs = [subprocess.Popen([sys.executable, "-c", code]) for code in codes]
    try:
        time.sleep(0.3)  # interpreters started
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _pids(summary: dict) -> list[int]:
    return [p["pid"] for p in summary["top_other_processes"]]


@pytest.mark.slow  # real processes, sampled for seconds
def test_a_busy_process_outside_the_tree_is_contention() -> None:
    """The sampler's tree is a sleeping process; a busy sibling outside it is 'other'."""
    with _processes(BUSY.format(seconds=4), "import time; time.sleep(5)") as (busy, sleeper):
        before = _cpu_s(busy.pid)
        with ContentionSampler(interval_s=0.2, gpu=False, root_pid=sleeper.pid, top_n=10) as sampler:
            time.sleep(1.6)
        busy_cores = (_cpu_s(busy.pid) - before) / sampler.summary()["duration_s"]
    summary = sampler.summary()
    assert busy_cores >= 0.25, f"the busy loop hardly ran ({busy_cores:.2f} cores): machine overloaded"
    assert summary["disturbed"] is True
    assert summary["other_cpu_cores_mean"] >= 0.8 * busy_cores
    assert summary["other_cpu_fraction_mean"] > summary["threshold"]
    assert summary["samples"] >= 5
    assert busy.pid in _pids(summary)
    assert "DISTURBED" in describe(summary)


@pytest.mark.slow  # real processes, sampled for seconds
def test_children_of_this_tree_are_not_contention() -> None:
    """The same busy child is 'own' for a sampler rooted here and 'other' for one rooted at its sibling."""
    with _processes(BUSY.format(seconds=4), "import time; time.sleep(5)") as (busy, sleeper):
        before = _cpu_s(busy.pid)
        with (
            ContentionSampler(interval_s=0.2, gpu=False, top_n=10) as here,
            ContentionSampler(interval_s=0.2, gpu=False, root_pid=sleeper.pid, top_n=10) as there,
        ):
            time.sleep(1.6)
        busy_cores = (_cpu_s(busy.pid) - before) / here.summary()["duration_s"]
    mine, theirs = here.summary(), there.summary()
    assert busy_cores >= 0.25, f"the busy loop hardly ran ({busy_cores:.2f} cores): machine overloaded"
    assert mine["own_cpu_cores_mean"] >= 0.8 * busy_cores
    assert busy.pid not in _pids(mine)
    assert busy.pid in _pids(theirs)
    # the same window and machine: the only difference is whose tree the busy child belongs to
    assert theirs["other_cpu_cores_mean"] - mine["other_cpu_cores_mean"] >= 0.6 * busy_cores


def test_short_lived_children_stay_own() -> None:
    """Children that exit between two samples move their time into our children_* counters: still own."""
    code = BUSY.format(seconds=0.15)
    before = psutil.Process().cpu_times()
    with ContentionSampler(interval_s=0.5, gpu=False) as sampler:
        for _ in range(5):
            subprocess.run([sys.executable, "-c", code], check=True)
    after = psutil.Process().cpu_times()
    children_s = after.children_user + after.children_system - before.children_user - before.children_system
    summary = sampler.summary()
    assert children_s > 0.3
    assert summary["own_cpu_cores_mean"] * summary["duration_s"] >= 0.9 * children_s


def test_summary_keys_and_gpu_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(contention.shutil, "which", lambda name: None)
    with ContentionSampler(interval_s=0.05) as sampler:
        time.sleep(0.12)
    summary = sampler.summary()
    assert {
        "other_cpu_cores_mean",
        "other_cpu_cores_p90",
        "other_cpu_fraction_mean",
        "own_cpu_cores_mean",
        "steal_cpu_cores_mean",
        "machine_cores",
        "samples",
        "duration_s",
        "threshold",
        "disturbed",
        "top_other_processes",
        "other_gpu_util_percent_mean",
        "gpu_util_percent_mean",
    } <= summary.keys()
    assert summary["other_gpu_util_percent_mean"] is None and summary["samples"] >= 2
    assert 0.0 <= summary["other_cpu_fraction_mean"] <= 1.0 + 1e-6
    assert summary["other_cpu_cores_p90"] >= 0.0


def test_parse_pmon() -> None:
    text = (
        "# gpu         pid   type     sm    mem    enc    dec    jpg    ofa    command\n"
        "# Idx           #    C/G      %      %      %      %      %      %    name\n"
        "    0      12345     C     45     10      -      -      -      -    python\n"
        "    0        777     C      -      -      -      -      -      -    other\n"
        "    1          -     -      -      -      -      -      -      -    -\n"
    )
    assert parse_pmon(text) == [(12345, 45.0), (777, 0.0)]


class _ScriptedWindows:
    """A tracker whose windows are given: ``(other_cores, steal_cores)`` per ``sample()``."""

    def __init__(self, windows: list[tuple[float, float]]) -> None:
        self.windows, self.samples = list(windows), 0

    def start(self) -> None:
        pass

    def sample(self) -> SimpleNamespace:
        other, steal = self.windows[min(self.samples, len(self.windows) - 1)]
        self.samples += 1
        return SimpleNamespace(other_cores=other, steal_cores=steal)


class _FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(
    ("windows", "quiet", "samples", "waited_s"),
    [
        ([(1.0, 0.0)], False, 4, 1.0),  # busy in every window: gives up at the timeout (4 windows of 0.25 s)
        ([(1.0, 0.0), (1.0, 0.0), (0.1, 0.0)], True, 3, 0.75),  # the third window is quiet: returns at once
        ([(0.0, 1.0)], False, 4, 1.0),  # steal (other guests on our cores) counts like a busy neighbour
        ([(0.2, 0.2)], True, 1, 0.25),  # 0.2 of 2 cores = 10 %: at the threshold is quiet
    ],
)
def test_wait_until_quiet_returns_at_the_first_quiet_window_or_the_timeout(
    monkeypatch, windows, quiet, samples, waited_s
) -> None:
    monkeypatch.setattr(contention.psutil, "cpu_count", lambda logical=True: 2)
    clock, tracker = _FakeClock(), _ScriptedWindows(windows)
    result = wait_until_quiet(
        threshold=0.10, timeout_s=1.0, poll_s=0.25, clock=clock, sleep=clock.sleep, tracker=tracker
    )
    assert result is quiet and tracker.samples == samples and clock.now - 100.0 == pytest.approx(waited_s)


def test_wait_until_quiet_counts_a_busy_loop_outside_the_tree_but_not_inside() -> None:
    with _processes(BUSY.format(seconds=3), "import time; time.sleep(4)") as (busy, sleeper):
        # a busy loop outside the sleeper's tree: never below 10 % of the cores -> times out
        assert wait_until_quiet(threshold=0.10, timeout_s=0.6, poll_s=0.3, root_pid=sleeper.pid) is False
        # the same loop is this process' child: measured against this tree, it is the tree's own, not other
        tracker = contention._CpuTracker(os.getpid())
        tracker.start()
        before = _cpu_s(busy.pid)
        time.sleep(0.5)
        window = tracker.sample()
        busy_cores = (_cpu_s(busy.pid) - before) / 0.5
    # however much a loaded machine let it run, what it ran is the tree's own
    assert busy_cores > 0.02, f"the busy loop did not run ({busy_cores:.2f} cores)"
    assert window.own_cores >= 0.8 * busy_cores


def test_hypervisor_steal_above_the_threshold_is_disturbance(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a virtual machine, time the host gives to other guests (steal) slows a cell like a busy neighbour."""
    real = contention._busy_and_steal_s
    t0 = time.monotonic()

    def stolen_half_a_core() -> tuple[float, float]:
        busy, _ = real()
        return busy, 0.5 * (time.monotonic() - t0)  # 0.5 cores stolen all along

    monkeypatch.setattr(contention, "_busy_and_steal_s", stolen_half_a_core)
    monkeypatch.setattr(contention.shutil, "which", lambda name: None)
    with ContentionSampler(interval_s=0.05, gpu=False) as sampler:
        time.sleep(0.3)
    summary = sampler.summary()
    cores = summary["machine_cores"]
    assert summary["steal_cpu_cores_mean"] == pytest.approx(0.5, abs=0.05)
    assert summary["steal_cpu_fraction_mean"] == pytest.approx(0.5 / cores, abs=0.05 / cores)
    assert summary["disturbed"] is (
        0.5 / cores > summary["threshold"] or summary["other_cpu_fraction_mean"] > summary["threshold"]
    )


def test_wait_until_quiet_also_waits_out_hypervisor_steal(monkeypatch: pytest.MonkeyPatch) -> None:
    real = contention._busy_and_steal_s
    t0 = time.monotonic()
    cores = psutil.cpu_count(logical=True) or 1
    monkeypatch.setattr(
        contention, "_busy_and_steal_s", lambda: (real()[0], cores * (time.monotonic() - t0))
    )  # all stolen
    assert wait_until_quiet(threshold=0.5, timeout_s=0.5, poll_s=0.1) is False
    monkeypatch.setattr(
        contention, "_busy_and_steal_s", lambda: (real()[0], 0.0)
    )  # nothing stolen; 101 % is never exceeded
    assert wait_until_quiet(threshold=1.01, timeout_s=1.0, poll_s=0.1) is True
