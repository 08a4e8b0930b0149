"""Contention guard: how much of the machine did OTHER processes use while a cell was timed?

Two timed jobs at once make every figure several times too slow, and a throughput number alone cannot show
it. ``ContentionSampler`` runs beside the timed work and measures, every ``interval_s``:

* the machine's busy CPU time (``/proc/stat`` via ``psutil.cpu_times``: user + nice + system + irq + softirq;
  hypervisor ``steal`` is reported separately), minus
* the CPU time of *this process tree* (``root_pid`` and all its descendants: the cell and whatever it spawns
  are the work being measured, not contention). A process's time is tracked as ``user + system +
  children_user + children_system``: when a descendant exits and is reaped by a process of the tree, its time
  moves into the reaper's ``children_*`` counters, so nothing the tree did leaks into "other" when a
  short-lived child disappears between two samples.

What remains is the CPU use of other processes, in cores (1.0 = one core fully busy). With ``nvidia-smi``
present the per-process GPU utilization (``nvidia-smi pmon``) of processes outside the tree is sampled too;
without it the GPU part is skipped.

``wait_until_quiet`` polls the same measurement until the machine is quiet (an optional ``--wait-quiet``).

psutil is the only dependency; no framework is imported.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

#: a run is "disturbed" when other processes used more than this fraction of the machine's cores on average
DEFAULT_THRESHOLD = 0.10
#: seconds between two CPU samples
DEFAULT_INTERVAL_S = 0.25
#: seconds between two GPU samples (``nvidia-smi pmon -c 1`` itself takes about a second)
DEFAULT_GPU_INTERVAL_S = 1.0


def _busy_and_steal_s() -> tuple[float, float]:
    """Machine-wide busy and steal CPU seconds since boot (all cores)."""
    t = psutil.cpu_times()
    busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


@dataclass
class _ProcessInfo:
    ppid: int
    name: str
    own_s: float  # user + system
    children_s: float  # children_user + children_system (reaped descendants)


def _scan_processes() -> dict[tuple[int, float], _ProcessInfo]:
    """Every visible process, keyed by ``(pid, create_time)`` so a reused pid is a different process."""
    processes: dict[tuple[int, float], _ProcessInfo] = {}
    for proc in psutil.process_iter():
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                key = (proc.pid, proc.create_time())
                processes[key] = _ProcessInfo(
                    ppid=proc.ppid(),
                    name=proc.name(),
                    own_s=times.user + times.system,
                    children_s=getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0),
                )
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return processes


def _tree_keys(processes: dict[tuple[int, float], _ProcessInfo], root_pid: int) -> set[tuple[int, float]]:
    """Keys of ``root_pid`` and all its descendants."""
    children: dict[int, list[tuple[int, float]]] = {}
    root_keys = []
    for key, info in processes.items():
        children.setdefault(info.ppid, []).append(key)
        if key[0] == root_pid:
            root_keys.append(key)
    tree: set[tuple[int, float]] = set()
    stack = list(root_keys)
    while stack:
        key = stack.pop()
        if key in tree:
            continue
        tree.add(key)
        stack.extend(k for k in children.get(key[0], []) if k[0] != key[0])
    return tree


@dataclass
class _Interval:
    """One sampling interval."""

    wall_s: float
    other_cores: float
    own_cores: float
    steal_cores: float
    #: the watch itself (``exclude_pid``'s subtree): neither the measured work nor another process's
    watch_cores: float = 0.0


@dataclass
class _SubtreeClock:
    """Cumulative CPU seconds of one process subtree, compared between two scans.

    A subtree's cumulative time is conserved when a member exits and a member reaps it (its time moves into the
    reaper's ``children_*`` counters), so the delta is taken between sums, not per process.
    """

    last: dict[tuple[int, float], float] = field(default_factory=dict)

    def reset(self, processes: dict[tuple[int, float], _ProcessInfo], keys: set[tuple[int, float]]) -> None:
        """Take the baseline of the subtree ``keys``."""
        self.last = {k: processes[k].own_s + processes[k].children_s for k in keys}

    def delta_s(
        self,
        processes: dict[tuple[int, float], _ProcessInfo],
        keys: set[tuple[int, float]],
        seen_before: set[tuple[int, float]],
    ) -> float:
        """CPU seconds the subtree ``keys`` used since the last call; the baseline moves to now."""
        now = {k: processes[k].own_s + processes[k].children_s for k in keys}
        previous_s = 0.0
        for key, cumulative in self.last.items():
            if key in now or key not in processes:  # still in the subtree, or exited (and reaped)
                previous_s += cumulative
            # else: alive but re-parented outside the subtree: its time leaves with it
        current_s = 0.0
        for key, cumulative in now.items():
            current_s += cumulative
            if key not in self.last and key in seen_before:  # joined the subtree without being new: baseline it
                previous_s += cumulative
        self.last = now
        return max(0.0, current_s - previous_s)


@dataclass
class _CpuTracker:
    """Computes, between two calls of ``sample``, the CPU cores used by the tree, by the watch and by the rest.

    ``exclude_pid``: a process (the watch) whose subtree is neither the measured tree nor another process, even when
    it is a descendant of ``root_pid``: its time is reported apart (``watch_cores``).
    """

    root_pid: int
    exclude_pid: int | None = None
    last_time: float = 0.0
    last_busy_s: float = 0.0
    last_steal_s: float = 0.0
    tree: _SubtreeClock = field(default_factory=_SubtreeClock)
    watch: _SubtreeClock = field(default_factory=_SubtreeClock)
    last_all: dict[tuple[int, float], float] = field(default_factory=dict)
    other_by_process_s: dict[tuple[int, float], float] = field(default_factory=dict)
    names: dict[tuple[int, float], str] = field(default_factory=dict)

    def _split(
        self, processes: dict[tuple[int, float], _ProcessInfo]
    ) -> tuple[set[tuple[int, float]], set[tuple[int, float]]]:
        watch = _tree_keys(processes, self.exclude_pid) if self.exclude_pid is not None else set()
        return _tree_keys(processes, self.root_pid) - watch, watch

    def start(self) -> None:
        """Take the baseline."""
        self.last_time = time.monotonic()
        self.last_busy_s, self.last_steal_s = _busy_and_steal_s()
        processes = _scan_processes()
        tree, watch = self._split(processes)
        self.tree.reset(processes, tree)
        self.watch.reset(processes, watch)
        self.last_all = {k: p.own_s for k, p in processes.items() if k not in tree and k not in watch}

    def sample(self) -> _Interval:
        """Measure the interval since the previous call (or ``start``)."""
        processes = _scan_processes()
        busy_s, steal_s = _busy_and_steal_s()
        now = time.monotonic()
        wall_s = max(now - self.last_time, 1e-9)
        tree, watch = self._split(processes)
        seen_before = self.tree.last.keys() | self.watch.last.keys() | self.last_all.keys()  # absent: new
        tree_delta_s = self.tree.delta_s(processes, tree, seen_before)
        watch_delta_s = self.watch.delta_s(processes, watch, seen_before)
        # other processes, for the "top" list only (the totals come from the machine-wide counters)
        all_now = {k: p.own_s for k, p in processes.items() if k not in tree and k not in watch}
        for key, own_s in all_now.items():
            previous = self.last_all.get(key)
            if previous is None:
                previous = 0.0 if key not in seen_before else own_s
            delta = own_s - previous
            if delta > 0:
                self.other_by_process_s[key] = self.other_by_process_s.get(key, 0.0) + delta
                self.names[key] = processes[key].name
        busy_delta_s = max(0.0, busy_s - self.last_busy_s)
        interval = _Interval(
            wall_s=wall_s,
            other_cores=max(0.0, busy_delta_s - tree_delta_s - watch_delta_s) / wall_s,
            own_cores=tree_delta_s / wall_s,
            steal_cores=max(0.0, steal_s - self.last_steal_s) / wall_s,
            watch_cores=watch_delta_s / wall_s,
        )
        self.last_time, self.last_busy_s, self.last_steal_s = now, busy_s, steal_s
        self.last_all = all_now
        return interval


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (as numpy's default), 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _gpu_process_utilization() -> list[tuple[int, float]] | None:
    """``(pid, sm_percent)`` per GPU process from ``nvidia-smi pmon -c 1 -s u``; ``None`` when unavailable."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "pmon", "-c", "1", "-s", "u"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return parse_pmon(out.stdout)


def parse_pmon(text: str) -> list[tuple[int, float]]:
    """Parse ``nvidia-smi pmon -s u`` output into ``(pid, sm_percent)`` rows (``-`` counts as 0).

    Columns: ``gpu pid type sm mem enc dec ...``; header lines start with ``#``; idle GPUs show ``-`` as pid.
    """
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#") or len(fields) < 4:
            continue
        try:
            pid = int(fields[1])
        except ValueError:
            continue
        try:
            sm = float(fields[3])
        except ValueError:
            sm = 0.0
        rows.append((pid, sm))
    return rows


class ContentionSampler:
    """Samples, in a background thread, the CPU (and GPU) use of processes outside this process tree.

    Usage::

        with ContentionSampler() as sampler:
            ...  # timed work (in this process or its children)
        record.update(sampler.summary())

    Args:
        threshold: ``disturbed`` when other processes used more than this fraction of the machine's cores
            on average (or, with a GPU, more than this fraction of its SM time).
        interval_s: seconds between CPU samples.
        root_pid: the tree whose CPU use is the measured work (default: this process).
        exclude_pid: the watch's own process (``watch.py``): its subtree is neither measured work nor other.
        gpu: sample per-process GPU utilization when ``nvidia-smi`` exists.
        gpu_interval_s: seconds between GPU samples.
        top_n: how many other processes to name in the summary.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        interval_s: float = DEFAULT_INTERVAL_S,
        root_pid: int | None = None,
        gpu: bool = True,
        gpu_interval_s: float = DEFAULT_GPU_INTERVAL_S,
        top_n: int = 3,
        exclude_pid: int | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"invalid interval_s {interval_s!r}: expected a positive number of seconds")
        self.threshold = threshold
        self.interval_s = interval_s
        self.root_pid = root_pid if root_pid is not None else psutil.Process().pid
        self.gpu = gpu and shutil.which("nvidia-smi") is not None
        self.gpu_interval_s = gpu_interval_s
        self.top_n = top_n
        self.machine_cores = psutil.cpu_count(logical=True) or 1
        self.exclude_pid = exclude_pid
        self._tracker = _CpuTracker(self.root_pid, exclude_pid)
        self._intervals: list[_Interval] = []
        self._gpu_other_percent: list[float] = []
        self._gpu_total_percent: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False

    # ---- context manager -------------------------------------------------------------------------
    def __enter__(self) -> ContentionSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, threads: bool = True) -> None:
        """Take the baseline and start the sampling thread(s); ``threads=False``: the caller samples itself
        (``sample_cpu``, ``sample_gpu``), as the single-threaded watch process does."""
        if self._started:
            raise RuntimeError("ContentionSampler already started")
        self._started = True
        self._tracker.start()
        if not threads:
            return
        self._threads = [threading.Thread(target=self._run_cpu, name="tlbench-contention", daemon=True)]
        if self.gpu:
            self._threads.append(threading.Thread(target=self._run_gpu, name="tlbench-contention-gpu", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop sampling; the time since the last sample becomes a last (shorter) interval."""
        if not self._started or self._stop.is_set():
            return
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._sample_cpu()

    # ---- sampling --------------------------------------------------------------------------------
    def _sample_cpu(self) -> None:
        with self._lock:
            self._intervals.append(self._tracker.sample())

    def sample_cpu(self) -> None:
        """Close one CPU interval now (for a caller that samples without threads)."""
        self._sample_cpu()

    def sample_gpu(self) -> bool:
        """Take one GPU sample; ``False`` when ``nvidia-smi`` cannot be read (no more GPU samples then)."""
        rows = _gpu_process_utilization()
        if rows is None:
            return False
        processes = _scan_processes()
        tree, _ = self._tracker._split(processes)
        pids = {key[0] for key in tree}
        watch = {key[0] for key in _tree_keys(processes, self.exclude_pid)} if self.exclude_pid is not None else set()
        with self._lock:
            self._gpu_total_percent.append(min(100.0, sum(sm for pid, sm in rows if pid not in watch)))
            self._gpu_other_percent.append(min(100.0, sum(sm for pid, sm in rows if pid not in pids | watch)))
        return True

    def _run_cpu(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample_cpu()

    def _run_gpu(self) -> None:
        while not self._stop.is_set():
            if not self.sample_gpu():
                return
            self._stop.wait(self.gpu_interval_s)

    # ---- results ---------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What other processes used while sampling (call after the ``with`` block).

        Returns:
            ``other_cpu_cores_mean`` (time-weighted), ``other_cpu_cores_p90`` (over samples),
            ``other_cpu_fraction_mean`` (mean / ``machine_cores``), ``own_cpu_cores_mean`` (this process tree),
            ``watch_cpu_cores_mean`` (the watch process, apart from both),
            ``steal_cpu_cores_mean`` and ``steal_cpu_fraction_mean`` (hypervisor steal: time other guests of the
            host ran on our virtual cores; not counted as other), ``machine_cores``, ``samples``, ``duration_s``,
            ``threshold``, ``disturbed`` (other CPU fraction, steal fraction, or other GPU SM fraction above
            ``threshold``), ``top_other_processes`` (up to ``top_n`` of ``{"name", "pid", "cores"}``),
            ``other_gpu_util_percent_mean`` and ``gpu_util_percent_mean`` (``None`` without ``nvidia-smi``).
        """
        with self._lock:
            intervals = list(self._intervals)
            gpu_other = list(self._gpu_other_percent)
            gpu_total = list(self._gpu_total_percent)
            by_process = dict(self._tracker.other_by_process_s)
            names = dict(self._tracker.names)
        duration_s = sum(i.wall_s for i in intervals)
        weighted = lambda attr: sum(getattr(i, attr) * i.wall_s for i in intervals) / duration_s if duration_s else 0.0  # noqa: E731
        other_mean = weighted("other_cores")
        fraction = other_mean / self.machine_cores
        gpu_other_mean = sum(gpu_other) / len(gpu_other) if gpu_other else None
        steal_fraction = weighted("steal_cores") / self.machine_cores
        # the hypervisor running other guests on our cores slows a cell exactly like a busy process beside it
        disturbed = (
            fraction > self.threshold
            or steal_fraction > self.threshold
            or (gpu_other_mean is not None and gpu_other_mean / 100.0 > self.threshold)
        )
        top = sorted(by_process.items(), key=lambda item: item[1], reverse=True)[: self.top_n]
        return {
            "other_cpu_cores_mean": round(other_mean, 4),
            "other_cpu_cores_p90": round(_percentile([i.other_cores for i in intervals], 90), 4),
            "other_cpu_fraction_mean": round(fraction, 4),
            "own_cpu_cores_mean": round(weighted("own_cores"), 4),
            "watch_cpu_cores_mean": round(weighted("watch_cores"), 4),
            "steal_cpu_cores_mean": round(weighted("steal_cores"), 4),
            "steal_cpu_fraction_mean": round(steal_fraction, 4),
            "machine_cores": self.machine_cores,
            "samples": len(intervals),
            "duration_s": round(duration_s, 3),
            "threshold": self.threshold,
            "disturbed": bool(disturbed),
            "top_other_processes": [
                {
                    "name": names.get(key, "?"),
                    "pid": key[0],
                    "cores": round(seconds / duration_s, 3) if duration_s else 0.0,
                }
                for key, seconds in top
                if seconds > 0
            ],
            "other_gpu_util_percent_mean": None if gpu_other_mean is None else round(gpu_other_mean, 2),
            "gpu_util_percent_mean": round(sum(gpu_total) / len(gpu_total), 2) if gpu_total else None,
        }


def describe(summary: dict[str, Any]) -> str:
    """One log line from a ``ContentionSampler.summary()`` (or the watch's error)."""
    if "other_cpu_cores_mean" not in summary:
        return f"not watched: {summary.get('watch_error', 'no samples')}"
    top = ", ".join(f"{p['name']}[{p['pid']}] {p['cores']:.2f}" for p in summary.get("top_other_processes", []))
    line = (
        f"other processes used {summary['other_cpu_cores_mean']:.2f} of {summary['machine_cores']} cores "
        f"(p90 {summary['other_cpu_cores_p90']:.2f}, {100 * summary['other_cpu_fraction_mean']:.0f}%)"
    )
    if summary.get("other_gpu_util_percent_mean") is not None:
        line += f", {summary['other_gpu_util_percent_mean']:.0f}% of the GPU"
    if summary.get("steal_cpu_fraction_mean"):
        line += f", {100 * summary['steal_cpu_fraction_mean']:.0f}% stolen by the hypervisor"
    if summary.get("canary_ratio_to_probe") is not None:
        line += f"; speed canary at {100 * summary['canary_ratio_to_probe']:.0f}% of the probe's"
        company = summary.get("canary_company_cpu_cores")
        if company:
            line += f" ({max(company):.2f} cores busy beside it)"
    if top:
        line += f"; top: {top}"
    flags = ("DISTURBED: " if summary.get("disturbed") else "") + (
        "SLOWER THAN PROBED: " if summary.get("slower_than_probed") else ""
    )
    return flags + line


def wait_until_quiet(
    threshold: float = DEFAULT_THRESHOLD,
    timeout_s: float = 300.0,
    poll_s: float = 2.0,
    root_pid: int | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    tracker: Any = None,
) -> bool:
    """Block until other processes use at most ``threshold`` of the machine's cores over one ``poll_s`` window,
    and the hypervisor steals at most as much (the same rule that marks a cell ``disturbed``).

    Args:
        threshold: fraction of the machine's cores other processes may use.
        timeout_s: give up after this many seconds.
        poll_s: length of each measurement window.
        root_pid: the tree not counted as other (default: this process).
        clock, sleep: the time source and the wait (tests pass a fake clock that ``sleep`` advances).
        tracker: what measures each window (``start()``, then ``sample()`` giving ``other_cores`` and
            ``steal_cores``); default: the machine's processes against the ``root_pid`` tree.

    Returns:
        ``True`` as soon as one window is quiet, ``False`` when ``timeout_s`` passed without one.
    """
    cores = psutil.cpu_count(logical=True) or 1
    if tracker is None:
        tracker = _CpuTracker(root_pid if root_pid is not None else psutil.Process().pid)
    tracker.start()
    deadline = clock() + timeout_s
    while True:
        remaining = deadline - clock()
        sleep(max(0.01, min(poll_s, remaining)))
        interval = tracker.sample()
        # quiet = neither other processes nor the hypervisor (steal: other guests on our cores) above threshold
        if interval.other_cores / cores <= threshold and interval.steal_cores / cores <= threshold:
            return True
        if clock() >= deadline:
            return False
