"""The watch of a timed part, in a process of its own: contention sampling and the speed canary, single-threaded.

Why a process: sampling every process of the machine with psutil four times a second, and a BLAS matmul right
before the timed region, are work. Done in a thread of the measured process they compete with it for the GIL and
the cores, and a multi-threaded BLAS left spinning after the canary slows the framework that follows (see
``sklearn_heads.single_blas_thread``). So ``watched`` starts ``python -m tlbench.benchmarks.running.watch``: one
thread, BLAS limited to one thread, which

1. times the speed canary (``canary.canary_with_company``: its GFLOP/s, and the cores the rest of the machine kept
   busy meanwhile) while the measured process waits,
2. says ``ready`` and samples (``contention.ContentionSampler`` without threads) until told to stop, counting its own
   subtree (with any ``nvidia-smi`` it runs) apart from both the measured tree and the other processes,
3. times the canary again and prints the summary as one JSON line.

A watch that cannot start or answer never fails the cell: the summary then says why (``watch_error``).
``benchmarks/tools/bench_watch.py`` measures what the watch costs the measured work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

#: environment of the watch process: numerical libraries on one thread (read when they load)
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: seconds the measured process waits for the watch to start (imports + the first canary)
READY_TIMEOUT_S = 60.0
#: the line the watch prints when it is sampling
READY = "ready"
#: seconds between two samples of the watch: its own CPU was 0.024 cores at 0.25 s, 0.011 at 0.5 s and 0.006 at 1 s
#: (measured on the 2-core reference machine), so 0.5 s keeps it near 0.5 % of the machine
WATCH_INTERVAL_S = 0.5


def watch_command(root_pid: int, canary_s: float, reference: float | None, gpu: bool) -> list[str]:
    """The command line of a watch process."""
    command = [sys.executable, "-m", "tlbench.benchmarks.running.watch", "--root-pid", str(root_pid)]
    command += ["--canary-s", repr(canary_s), "--interval-s", repr(WATCH_INTERVAL_S)]
    if reference:
        command += ["--reference", repr(float(reference))]
    if gpu:
        command.append("--gpu")
    return command


@contextlib.contextmanager
def watched(canary_max_s: float, canary_reference_gflop_per_s: float | None) -> Iterator[dict[str, Any]]:
    """Watch a timed part from a separate single-threaded process (see the module docstring).

    The yielded dict is filled on exit (also when the body raises) with ``ContentionSampler.summary()`` and
    ``canary.canary_summary``, or with ``watch_error`` when the watch could not run.

    Args:
        canary_max_s: the canary's minimum time, capped at ``canary.CANARY_MIN_TIME_S`` (quick test runs pass
            their short ``--min-time`` and keep a quick canary).
        canary_reference_gflop_per_s: the canary measured with the machine probe (``None``: no ratio).
    """
    from .canary import CANARY_MIN_TIME_S

    summary: dict[str, Any] = {}
    canary_s = min(CANARY_MIN_TIME_S, canary_max_s)
    gpu = shutil.which("nvidia-smi") is not None
    command = watch_command(os.getpid(), canary_s, canary_reference_gflop_per_s, gpu)
    try:
        proc: subprocess.Popen[str] | None = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **SINGLE_THREAD_ENV},
        )
    except OSError as exc:
        proc, summary["watch_error"] = None, f"the watch did not start: {exc}"
    if proc is not None and not _ready(proc):
        summary["watch_error"] = _failure(proc, "the watch did not start")
        proc = None
    try:
        yield summary
    finally:
        if proc is not None:
            summary.update(_finish(proc))


def _ready(proc: subprocess.Popen[str]) -> bool:
    """Wait (bounded) for the watch's ``ready`` line."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    return bool(readable) and proc.stdout.readline().strip() == READY


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Tell the watch to stop and read its summary (``watch_error`` when it has none)."""
    try:
        out, _ = proc.communicate("stop\n", timeout=READY_TIMEOUT_S)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        proc.kill()
        proc.communicate()
        return {"watch_error": "the watch did not answer"}
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        return {"watch_error": _failure(proc, "the watch gave no summary")}
    return result if isinstance(result, dict) else {"watch_error": "the watch gave no summary"}


def _failure(proc: subprocess.Popen[str], what: str) -> str:
    """``what`` and the last line the watch wrote to stderr (the process is stopped)."""
    if proc.poll() is None:
        proc.kill()
    try:
        _, err = proc.communicate(timeout=10)
    except (subprocess.TimeoutExpired, OSError, ValueError):
        err = ""
    tail = [line.strip() for line in (err or "").splitlines() if line.strip()][-1:] or [f"exit {proc.returncode}"]
    return f"{what}: {tail[0]}"[:300]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the watch process."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.running.watch")
    parser.add_argument("--root-pid", type=int, required=True, help="the measured process (and its descendants)")
    parser.add_argument("--canary-s", type=float, required=True, help="minimum seconds of each speed canary")
    parser.add_argument("--reference", type=float, default=None, help="the probe's canary GFLOP/s")
    parser.add_argument("--gpu", action="store_true", help="sample per-process GPU use with nvidia-smi")
    parser.add_argument("--interval-s", type=float, default=None)
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from .canary import canary_summary, canary_with_company
    from .contention import DEFAULT_GPU_INTERVAL_S, DEFAULT_INTERVAL_S, ContentionSampler

    interval_s = args.interval_s or DEFAULT_INTERVAL_S
    with threadpool_limits(limits=1):
        before, company_before = canary_with_company(args.canary_s)
        sampler = ContentionSampler(
            interval_s=interval_s, root_pid=args.root_pid, gpu=args.gpu, exclude_pid=os.getpid()
        )
        sampler.start(threads=False)
        print(READY, flush=True)
        gpu, next_gpu = sampler.gpu, 0.0
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], interval_s)
            if readable:  # "stop", or the measured process closed the pipe (it ended)
                sys.stdin.readline()
                break
            sampler.sample_cpu()
            if gpu and time.monotonic() >= next_gpu:
                gpu, next_gpu = sampler.sample_gpu(), time.monotonic() + DEFAULT_GPU_INTERVAL_S
        sampler.sample_cpu()
        after, company_after = canary_with_company(args.canary_s)
    print(
        json.dumps(
            {**sampler.summary(), **canary_summary(before, after, args.reference, (company_before, company_after))}
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
