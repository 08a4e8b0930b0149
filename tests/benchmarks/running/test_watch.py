"""The watch runs outside the measured work: its own process, its CPU apart from both the work and the others."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from tlbench.benchmarks.running import watch
from tlbench.benchmarks.running.contention import ContentionSampler, describe

BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def test_a_watch_subtree_is_neither_the_measured_work_nor_contention() -> None:
    """A busy child of the measured process, named as the watch, is counted apart (its own CPU counters agree)."""
    busy = subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=3)])
    try:
        time.sleep(0.3)
        start = psutil.Process(busy.pid).cpu_times()
        with ContentionSampler(interval_s=0.2, gpu=False, exclude_pid=busy.pid, top_n=10) as sampler:
            time.sleep(1.5)  # the measured process (this one) sleeps
        end = psutil.Process(busy.pid).cpu_times()
    finally:
        busy.kill()
        busy.wait()
    summary = sampler.summary()
    used_cores = (end.user + end.system - start.user - start.system) / summary["duration_s"]
    assert used_cores > 0.05  # it got some CPU, whatever else the machine does
    assert abs(summary["watch_cpu_cores_mean"] - used_cores) < 0.5 * used_cores + 0.05
    assert summary["own_cpu_cores_mean"] < 0.5 * summary["watch_cpu_cores_mean"]  # not the measured work
    assert busy.pid not in [p["pid"] for p in summary["top_other_processes"]]  # not contention either


def test_watched_runs_the_sampler_and_canary_in_another_process(monkeypatch) -> None:
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    with watch.watched(0.02, 50.0) as summary:
        assert started and started[0].poll() is None  # sampling while the body runs
        child = psutil.Process(started[0].pid)
        assert child.ppid() == psutil.Process().pid
        environ = child.environ()
        assert environ["OMP_NUM_THREADS"] == environ["OPENBLAS_NUM_THREADS"] == "1"
        time.sleep(0.6)
    assert started[0].returncode == 0
    assert summary["samples"] >= 1 and len(summary["canary_gflop_per_s"]) == 2
    assert summary["canary_ratio_to_probe"] is not None and "watch_cpu_cores_mean" in summary
    company = summary["canary_company_cpu_cores"]  # the cores busy beside each canary (the measured one sleeps)
    assert len(company) == 2 and all(0.0 <= cores <= psutil.cpu_count() for cores in company)
    assert started[0].pid not in [p["pid"] for p in summary["top_other_processes"]]


def test_a_watch_that_cannot_start_never_fails_the_work(monkeypatch) -> None:
    monkeypatch.setattr(
        watch,
        "watch_command",
        lambda *a: [sys.executable, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(3)"],
    )
    ran = []
    with watch.watched(0.02, None) as summary:
        ran.append(True)
    assert ran == [True]
    assert summary == {"watch_error": "the watch did not start: boom"}
    assert describe(summary) == "not watched: the watch did not start: boom"


def test_a_watch_without_a_summary_is_reported(monkeypatch) -> None:
    code = "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\nprint('not json')\n"
    monkeypatch.setattr(watch, "watch_command", lambda *a: [sys.executable, "-c", code])
    with watch.watched(0.02, None) as summary:
        pass
    assert summary["watch_error"].startswith("the watch gave no summary")
