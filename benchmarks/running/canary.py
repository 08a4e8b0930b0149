"""A speed canary: is the machine computing as fast now as when it was probed?

The contention guard sees other processes of this machine and, on a virtual machine, the time the hypervisor
steals; it cannot see another guest running on the sibling hyper-threads of our cores, or a throttled CPU.
Both slow every kernel alike, so a fixed, short float32 matmul (numpy's BLAS, the same in every framework's
process) measured before and after a cell's timed part, divided by the same canary measured with the machine
probe, says how much of the machine the cell had. A cell whose canary ran below ``SLOW_RATIO`` of the probe's is
flagged in the report ("the machine was slower than probed"): its speed figures are too low, for a reason no
process list shows.

Framework-free: numpy (on one BLAS thread, threadpoolctl) only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .results import SLOW_RATIO

#: side of the square float32 matmul (2 * N^3 FLOPs per call; ~1 ms on one modern core)
CANARY_SIDE = 512
#: timed calls cover at least this long (after one warm-up call)
CANARY_MIN_TIME_S = 0.25


def canary_gflop_per_s(min_time_s: float = CANARY_MIN_TIME_S, side: int = CANARY_SIDE) -> float:
    """GFLOP/s of a fixed ``side``-square float32 matmul on ONE BLAS thread, over at least ``min_time_s`` (median
    of the calls). One thread: the canary measures how fast a core is now, leaves no BLAS threads spinning, and
    reads the same in the probe's process and in the watch process."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _matmul_gflop_per_s(min_time_s, side)


def canary_with_company(
    min_time_s: float = CANARY_MIN_TIME_S,
    side: int = CANARY_SIDE,
    busy_s: Callable[[], float] | None = None,
    own_s: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """The canary (``canary_gflop_per_s``) and the CPU cores the rest of the machine kept busy while it ran: the
    machine's busy CPU seconds minus this process's own, over the canary's wall time. A canary that reads low while
    its company is near 0 saw a slower machine (the host), not a process competing with it (say, a framework's
    thread pool still spinning after the timed part).

    Args:
        min_time_s: the canary's minimum time.
        side: the matmul's side.
        busy_s: machine-wide busy CPU seconds (default: ``psutil.cpu_times``, every core).
        own_s: this process's CPU seconds (default: ``time.process_time``).
        clock: wall clock.

    Returns:
        (GFLOP/s, cores busy besides the canary, rounded to 0.01).
    """
    if busy_s is None:
        from .contention import _busy_and_steal_s

        def busy_s() -> float:
            return _busy_and_steal_s()[0]

    own_s = own_s or time.process_time
    busy_0, own_0, wall_0 = busy_s(), own_s(), clock()
    rate = canary_gflop_per_s(min_time_s, side)
    wall = clock() - wall_0
    company = (busy_s() - busy_0 - (own_s() - own_0)) / wall if wall > 0 else 0.0
    return rate, round(max(company, 0.0), 2)


def _matmul_gflop_per_s(min_time_s: float, side: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((side, side), dtype=np.float32)
    b = rng.standard_normal((side, side), dtype=np.float32)
    out = np.empty((side, side), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up: pages touched
    times: list[float] = []
    total = 0.0
    while total < min_time_s or len(times) < 5:
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        elapsed = time.perf_counter() - start
        times.append(elapsed)
        total += elapsed
    return 2.0 * side**3 / float(np.median(times)) / 1e9


def canary_summary(
    before: float, after: float, reference: float | None, company: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The canary fields a cell adds to its ``contention`` record.

    Args:
        before: canary GFLOP/s just before the timed part.
        after: canary GFLOP/s just after it.
        reference: the machine probe's canary (``None``: an older probe without one; no ratio, no flag).
        company: the cores busy besides each canary (``canary_with_company``), before and after; ``None``: not
            measured (no field).

    Returns:
        ``canary_gflop_per_s`` ([before, after]), ``canary_ratio_to_probe`` (the lower of the two over the
        reference, or ``None``), ``slower_than_probed`` (that ratio below ``SLOW_RATIO``) and, when measured,
        ``canary_company_cpu_cores`` ([before, after]).
    """
    ratio = min(before, after) / reference if reference else None
    summary: dict[str, Any] = {
        "canary_gflop_per_s": [round(before, 2), round(after, 2)],
        "canary_ratio_to_probe": None if ratio is None else round(ratio, 3),
        "slower_than_probed": bool(ratio is not None and ratio < SLOW_RATIO),
    }
    if company is not None:
        summary["canary_company_cpu_cores"] = [round(company[0], 2), round(company[1], 2)]
    return summary
