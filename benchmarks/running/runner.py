"""Run a suite: every cell in its own subprocess, results appended as they finish, resumable.

Layout of a suite directory::

    suite.json           the matrix and run options
    environment.json     versions, CPU/GPU, threads, git sha (written once per run invocation)
    results.jsonl        one JSON record per finished cell attempt (append-only)
    cells/<cell_id>/     log.txt, predictions.npz, curve.json (per-cell artifacts)
    summary.{md,csv,tex} tables made by ``tlbench report``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any, Callable

from tlbench.benchmarks.running.artifacts import cell_dir as artifact_dir
from tlbench.benchmarks.running.config import CellConfig, SuiteConfig
from tlbench.benchmarks.running.environment import add_environment, environment_record
from tlbench.benchmarks.running.results import append_result, cell_key, empty_record, latest_by_cell, load_results, write_json_atomic

RESULTS_FILE = "results.jsonl"


def completed_cells(records: list[dict[str, Any]], suite: SuiteConfig, environment: str | None = None) -> set[tuple]:
    """Keys of cells whose latest record is ``ok``, made with the same options for its backend and, when
    ``environment`` is given, measured in that environment (a number timed on another machine is not this
    machine's number, so resume re-runs it)."""
    hashes = {backend: suite.options.fingerprint(backend) for backend in suite.backends}
    return {
        cell_key(r) for r in latest_by_cell(records)
        if r.get("status") == "ok" and r.get("options_hash") == hashes.get(r.get("backend"))
        and (environment is None or r.get("environment_id") == environment)
    }  # fmt: skip


def resume_plan(records: list[dict[str, Any]], suite: SuiteConfig, environment: str, reuse_other_environments: bool) -> tuple[set[tuple], int]:
    """Cells to skip, and how many finished cells of *other* environments are re-run (or reused when asked)."""
    here = completed_cells(records, suite, environment)
    anywhere = completed_cells(records, suite)
    elsewhere = len(anywhere - here)
    return (anywhere if reuse_other_environments else here), elsewhere


def cell_command(cell: CellConfig, suite: SuiteConfig, cell_dir: Path, result_file: Path, progress: bool) -> list[str]:
    """The subprocess command line that runs one cell."""
    command = [
        sys.executable, "-m", "tlbench.benchmarks.running.cell",
        "--cell", json.dumps(asdict(cell)), "--options", json.dumps(asdict(suite.options)),
        "--cell-dir", str(cell_dir), "--result-file", str(result_file),
    ]  # fmt: skip
    if progress:
        command.append("--progress")
    return command


def run_cell_subprocess(
    cell: CellConfig, suite: SuiteConfig, out_dir: Path, timeout_s: float | None = None, stream: bool = False
) -> dict[str, Any]:
    """Run ``cell`` in a fresh Python process and return its record (a ``failed`` one if the process died).

    Args:
        cell: the cell.
        suite: its suite (for run options).
        out_dir: suite directory; the cell's log and artifacts go to ``cells/<cell_id>/``.
        timeout_s: kill the cell after this many seconds (recorded as failed).
        stream: also copy the cell's log to this process' stderr.
    """
    cell_dir = artifact_dir(out_dir, cell)
    cell_dir.mkdir(parents=True, exist_ok=True)
    result_file = cell_dir / "result.json"
    result_file.unlink(missing_ok=True)
    log_path = cell_dir / "log.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            cell_command(cell, suite, cell_dir, result_file, progress=stream),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1,
        )  # fmt: skip
        pump = threading.Thread(target=_copy_lines, args=(process.stdout, log, stream), daemon=True)
        pump.start()
        timed_out = False
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
            timed_out = True
        pump.join()
    if result_file.is_file() and not timed_out:
        record = json.loads(result_file.read_text())
        result_file.unlink()
        return record
    record = empty_record(cell, suite.options)
    record["status"] = "failed"
    record["wall_s"] = time.perf_counter() - start
    if timed_out:
        record["error"] = f"cell timed out after {timeout_s:.0f} s"
    else:
        tail = [ln.strip() for ln in log_path.read_text().splitlines() if ln.strip()][-1:] or ["no output"]
        record["error"] = f"cell process exited with code {returncode}: {tail[0]}"[:500]
    return record


def run_cell_inprocess(
    cell: CellConfig, suite: SuiteConfig, out_dir: Path, timeout_s: float | None = None, stream: bool = False
) -> dict[str, Any]:
    """Run ``cell`` in this process (the inline launcher): same procedure and record, no process start.

    For tests and for backends that need no isolation (the numpy test backend): a framework imported here
    stays imported, a crash takes the caller down and ``timeout_s`` is not enforced, which is why the
    subprocess launcher is the default.
    """
    import contextlib

    from tlbench.benchmarks.running.cell import CellRun

    directory = artifact_dir(out_dir, cell)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "log.txt", "w") as log, contextlib.redirect_stderr(_Tee(log, sys.stderr) if stream else log):
        return CellRun(cell, suite.options, directory).run()


class _Tee:
    """A text stream writing to several streams (the cell log, and stderr when streaming)."""

    def __init__(self, *streams: IO[str]) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def _copy_lines(source: IO[str], log: IO[str], stream: bool) -> None:
    """Copy a child's output to its log file (and to stderr when streaming) until EOF."""
    for line in source:
        log.write(line)
        log.flush()
        if stream:
            sys.stderr.write(line)


def run_suite(
    suite: SuiteConfig,
    out_dir: Path,
    timeout_s: float | None = None,
    stream: bool = False,
    on_result: Callable[[int, int, dict[str, Any]], None] | None = None,
    cell_runner: Callable[..., dict[str, Any]] = run_cell_subprocess,
    reuse_other_environments: bool = False,
    on_message: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``suite``, appending each record to ``out_dir/results.jsonl``.

    Cells already finished (``ok``) with the same run options are skipped: re-running a suite resumes it.
    A failing cell is recorded with ``status="failed"`` and its error; the others go on.

    Args:
        suite: the matrix and options.
        out_dir: suite directory (created).
        timeout_s: per-cell time limit.
        stream: copy each cell's log to stderr while it runs.
        on_result: called as ``on_result(index, total, record)`` after each cell.
        cell_runner: function running one cell (``run_cell_subprocess`` or ``run_cell_inprocess``).
        reuse_other_environments: count cells finished on another machine/software stack as done (they keep
            their own ``environment_id``); by default they are re-run here.
        on_message: receives one-line notes for the user (cells re-run because they were measured elsewhere).

    Returns:
        The records produced by this call (skipped cells excluded).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "suite.json", suite.to_dict())
    environment = environment_record(suite.backends)
    results_path = out_dir / RESULTS_FILE
    done, elsewhere = resume_plan(load_results(results_path), suite, environment["environment_id"], reuse_other_environments)
    if elsewhere and on_message is not None:
        verb = "reused as finished (--reuse-results)" if reuse_other_environments else "re-run here"
        on_message(f"{elsewhere} cell(s) in {out_dir} were measured in another environment; {verb}")
    todo = [c for c in suite.cells() if cell_key(asdict(c)) not in done]
    produced = []
    for index, cell in enumerate(todo, 1):
        record = cell_runner(cell, suite, out_dir, timeout_s=timeout_s, stream=stream)
        record["environment_id"] = environment["environment_id"]
        if index == 1:
            add_environment(out_dir, environment)  # only now: this environment measured a cell of the suite
        append_result(results_path, record)
        produced.append(record)
        if on_result is not None:
            on_result(index, len(todo), record)
    return produced
