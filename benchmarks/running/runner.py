"""Run a suite: every cell in its own subprocess, results appended as they finish, resumable.

Layout of a suite directory::

    suite.json           the matrix and run options
    environment.json     versions, CPU/GPU, threads, git sha (written once per run invocation)
    results.jsonl        one JSON record per finished cell attempt (append-only), then one per cell re-timed by
                         the inference pass (the newest record of a cell wins)
    cells/<cell_id>/     log.txt, predictions.npz, curve.json, latency.json (per-cell artifacts)
    infer_pass.log       the log of the inference pass processes (``infer_pass``)
    summary.{md,csv,tex} tables made by ``tlbench report``

Where cells run is the executor's business (``executors.py``: local, sequential or N at once, or a Ray
cluster); this module launches one cell (``run_cell_subprocess``) and is the only writer of ``results.jsonl``
(``run_suite``). Cell processes run in their own process group; SIGINT/SIGTERM to the runner is forwarded to
them and surfaces as ``RunInterrupted`` (records already appended are kept).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from . import progress
from .artifacts import cell_dir as artifact_dir
from .config import CellConfig, SuiteConfig
from .environment import add_environment, record_code_version
from .executors import Executor, LocalExecutor
from .results import (
    append_result,
    cell_key,
    code_label,
    empty_record,
    latest_by_cell,
    load_results,
    write_json_atomic,
)
from .runtime import runtime_settings

RESULTS_FILE = "results.jsonl"
#: seconds a cell process group gets to exit after a forwarded SIGINT/SIGTERM before it is killed
STOP_GRACE_S = 2.0

#: what a signal that killed a cell process usually means (the error column says it in words)
SIGNAL_MEANINGS = {
    "SIGKILL": "usually out of memory (the kernel OOM killer) or an external kill -9",
    "SIGSEGV": "a crash in native code (framework, driver or extension bug, or a stack overflow)",
    "SIGABRT": "aborted by native code (a failed assertion or fatal error in the framework)",
    "SIGBUS": "a bus error: usually /dev/shm or a memory-mapped file ran out of space",
    "SIGILL": "an illegal instruction: a binary built for a newer CPU than this one",
    "SIGFPE": "an arithmetic fault in native code",
    "SIGTERM": "stopped by another process (a job scheduler's limit or kill)",
    "SIGINT": "interrupted",
    "SIGHUP": "its terminal or session went away",
}


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the runner during ``run_suite``; running cells were stopped.

    Attributes:
        signum: the signal; ``exit_code`` is the shell's ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal_name(signum)}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9 (``signal N`` when the number has no name here)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_error(returncode: int, last_line: str) -> str:
    """The one-line error of a cell process that died without a record: its exit code or the signal that killed
    it (named, with what it usually means), then its last log line as context."""
    if returncode < 0:
        name = signal_name(-returncode)
        meaning = SIGNAL_MEANINGS.get(name, "killed by the operating system or another process")
        return f"cell process killed by signal {-returncode} ({name}): {meaning}; last log line: {last_line}"[:500]
    return f"cell process exited with code {returncode}: {last_line}"[:500]


# ---- running cell processes, so that an interruption can stop them -----------------------------------------------
_LIVE_LOCK = threading.Lock()
_LIVE: dict[int, subprocess.Popen] = {}
_STOPPING = threading.Event()
#: the signal that interrupted the current run, once one did
_PENDING: list[int] = []
#: finished cells whose records are in hand but not yet appended: a signal meanwhile is honoured after the append
_HELD = [0]


def reset_stop() -> None:
    """Allow cells to start again (``run_suite`` calls this when it starts)."""
    _STOPPING.clear()
    _PENDING.clear()
    with _LIVE_LOCK:
        _HELD[0] = 0


def hold_interrupts() -> None:
    """A finished cell's record is in hand: until ``release_interrupts``, SIGINT/SIGTERM stop the cells but raise
    nothing, so the record is appended before the interruption is honoured (``run_suite``)."""
    with _LIVE_LOCK:
        _HELD[0] += 1


def release_interrupts() -> None:
    """The record held by ``hold_interrupts`` is appended (or dropped as no result)."""
    with _LIVE_LOCK:
        _HELD[0] = max(0, _HELD[0] - 1)


def _check_interrupted() -> None:
    """Raise ``RunInterrupted`` when a signal arrived (even if its exception was swallowed somewhere)."""
    if _PENDING:
        raise RunInterrupted(_PENDING[0])


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)  # the cell is its group's leader (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_process(process: subprocess.Popen, signum: int, grace_s: float = STOP_GRACE_S) -> None:
    """Forward ``signum`` to the cell's process group; SIGKILL the group after ``grace_s``."""
    _signal_group(process, signum)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process, signal.SIGKILL)  # whatever is left of the group (grandchildren included)
    process.wait()


def stop_running_cells(signum: int, grace_s: float = STOP_GRACE_S) -> None:
    """Stop every cell process of this runner (forward ``signum``, SIGKILL after ``grace_s``); none starts after."""
    with _LIVE_LOCK:
        _STOPPING.set()
        processes = list(_LIVE.values())
    for process in processes:
        _signal_group(process, signum)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        _signal_group(process, signal.SIGKILL)


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """Linux: the cell gets SIGKILL when the thread that started it dies (a killed runner or Ray worker)."""
    if _PRCTL is not None:
        _PRCTL(1, _SIGKILL)  # PR_SET_PDEATHSIG


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_SIGKILL = int(signal.SIGKILL)


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[Callable[[], None]]:
    """While running a suite in the main thread, SIGINT and SIGTERM raise ``RunInterrupted`` (once).

    Yields a function that installs the handlers again: call it after starting something that installs its
    own (``ray.init`` puts a C-level SIGTERM handler in the driver). The previous handlers come back on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:  # a second signal while stopping: stopping is already under way
            return
        fired.append(signum)
        _PENDING.append(signum)
        _STOPPING.set()  # no cell starts any more; the running ones get the signal now
        for process in list(_LIVE.values()):
            _signal_group(process, signum)
        if _HELD[0]:  # a finished cell's record is on its way to results.jsonl: run_suite raises once it is there
            return
        raise RunInterrupted(signum)

    def arm() -> None:
        for sig in previous:
            signal.signal(sig, handler)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    arm()
    try:
        yield arm
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def completed_cells(
    records: list[dict[str, Any]], suite: SuiteConfig, environment: str | dict[str, Any] | None = None
) -> set[tuple]:
    """Keys of cells whose latest record is ``ok``, made with the same options for its backend and, when
    ``environment`` is given, measured in that environment (a number timed on another machine is not this
    machine's number, so resume re-runs it).

    Args:
        records: the suite's records.
        suite: the matrix and options.
        environment: an environment id, or an environment record: then the cell must also have been made by that
            environment's code (``code_version``: same commit and same uncommitted changes).
    """
    hashes = {backend: suite.options.fingerprint(backend) for backend in suite.backends}
    env_id = environment.get("environment_id") if isinstance(environment, dict) else environment
    code = record_code_version(environment.get("code_version")) if isinstance(environment, dict) else None
    return {
        cell_key(r)
        for r in latest_by_cell(records)
        if r.get("status") == "ok"
        and r.get("options_hash") == hashes.get(r.get("backend"))
        and (env_id is None or r.get("environment_id") == env_id)
        and (not isinstance(environment, dict) or r.get("code_version") == code)
    }


#: a git-ignored file in a suite directory naming the checkout that runs cells into it
RUN_ID_FILE = ".run-id"


def local_run_id(out_dir: Path) -> str:
    """The id of this copy of the suite directory (created on first use, git-ignored).

    Resume counts only cells appended under this id: records that came with a clone (committed results, even from
    this very machine) or from another copy are shown but re-run, so the README's main command on a fresh clone
    runs the default suite instead of re-rendering a committed table. ``--reuse-results`` counts them anyway.
    """
    import uuid

    path = Path(out_dir) / RUN_ID_FILE
    try:
        text = path.read_text().strip()
        if text:
            return text
    except OSError:
        pass
    run_id = uuid.uuid4().hex[:12]
    path.write_text(run_id + "\n")
    return run_id


def resume_plan(
    records: list[dict[str, Any]],
    suite: SuiteConfig,
    environment: str | dict[str, Any] | Collection[str | dict[str, Any]],
    reuse_other_environments: bool,
) -> tuple[set[tuple], int]:
    """Cells to skip, and how many finished cells of *other* environments are re-run (or reused when asked).

    ``environment`` is where cells run now (an id, or an environment record: its code counts too), or several
    (the nodes of a Ray cluster).
    """
    ids = [environment] if isinstance(environment, (str, dict)) else list(environment)
    here: set[tuple] = set().union(*(completed_cells(records, suite, e) for e in ids)) if ids else set()
    anywhere = completed_cells(records, suite)
    elsewhere = len(anywhere - here)
    return (anywhere if reuse_other_environments else here), elsewhere


def cell_command(cell: CellConfig, suite: SuiteConfig, cell_dir: Path, result_file: Path, progress: bool) -> list[str]:
    """The subprocess command line that runs one cell."""
    command = [
        sys.executable,
        "-m",
        "tlbench.benchmarks.running.cell",
        "--cell",
        json.dumps(asdict(cell)),
        "--options",
        json.dumps(asdict(suite.options)),
        "--cell-dir",
        str(cell_dir),
        "--result-file",
        str(result_file),
    ]
    if progress:
        command.append("--progress")
    return command


def run_cell_subprocess(
    cell: CellConfig,
    suite: SuiteConfig,
    out_dir: Path,
    timeout_s: float | None = None,
    stream: bool = False,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``cell`` in a fresh Python process and return its record (a ``failed`` one if the process died).

    The process runs in its own session/process group (a terminal's Ctrl-C reaches the runner only, which
    forwards it), and on Linux dies with the thread that started it.

    Args:
        cell: the cell.
        suite: its suite (for run options).
        out_dir: suite directory; the cell's log and artifacts go to ``cells/<cell_id>/``.
        timeout_s: kill the cell after this many seconds (recorded as failed).
        stream: also copy the cell's log to this process' stderr.
        env: extra environment variables of the cell process (``CUDA_VISIBLE_DEVICES`` of a pinned worker).

    Raises:
        RunInterrupted, KeyboardInterrupt: while waiting; the cell's process group got the signal first.
        RuntimeError: the suite is being stopped (``stop_running_cells``); no process was started (``RunInterrupted``
            when a signal stopped it).
    """
    cell_dir = artifact_dir(out_dir, cell)
    cell_dir.mkdir(parents=True, exist_ok=True)
    result_file = cell_dir / "result.json"
    result_file.unlink(missing_ok=True)
    log_path = cell_dir / "log.txt"
    from .runtime import child_environment

    # threads, allocator: before start; the cell reports its training progress (progress.py)
    child_env = child_environment(runtime_settings(suite.options), {**(env or {}), **progress.CHILD_ENV})
    progress.publish(progress.Event("started", cell_dir.name))
    start = time.perf_counter()
    command = cell_command(cell, suite, cell_dir, result_file, progress=stream)
    try:
        returncode, timed_out = run_module_subprocess(command, child_env, log_path, timeout_s=timeout_s, stream=stream)
        hold_interrupts()  # from here a signal waits until run_suite has appended what this returns
    except KeyboardInterrupt:  # RunInterrupted: the signal came as the cell finished; keep the record it wrote
        record = _finished_record(result_file)
        if record is None:
            raise
        hold_interrupts()
        result_file.unlink(missing_ok=True)
        return record
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
        tail = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-1:] or [
            "no output"
        ]
        record["error"] = exit_error(returncode, tail[0])
    return record


def _finished_record(result_file: Path) -> dict[str, Any] | None:
    """The record a cell process wrote (atomically) before it exited, or ``None``."""
    try:
        return json.loads(result_file.read_text())
    except (OSError, ValueError):
        return None


def run_module_subprocess(
    command: list[str],
    env: Mapping[str, str],
    log_path: Path,
    timeout_s: float | None = None,
    stream: bool = False,
    append: bool = False,
) -> tuple[int, bool]:
    """Run ``command`` (a cell or an inference pass) as a stoppable child; its output goes to ``log_path``.

    The child runs in its own session/process group (a terminal's Ctrl-C reaches the runner only, which
    forwards it), is registered so that ``stop_running_cells`` reaches it, and on Linux dies with the thread
    that started it.

    Returns:
        The exit code (negative: the signal that killed it) and whether ``timeout_s`` killed it.

    Raises:
        RunInterrupted, KeyboardInterrupt: while waiting; the child's process group got the signal first.
        RuntimeError: the suite is being stopped; nothing was started (``RunInterrupted`` when a signal stopped it).
    """
    with open(log_path, "a" if append else "w") as log:
        with _LIVE_LOCK:
            if _STOPPING.is_set():
                _check_interrupted()
                raise RuntimeError("the suite is being stopped; process not started")
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=dict(env),
                text=True,
                bufsize=1,
                start_new_session=True,
                preexec_fn=_die_with_parent if _PRCTL is not None else None,
            )
            _LIVE[process.pid] = process
        pump = threading.Thread(target=_copy_lines, args=(process.stdout, log, stream), daemon=True)
        pump.start()
        timed_out = False
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
            returncode = process.wait()
            timed_out = True
        except BaseException as exc:  # SIGINT/SIGTERM to the runner: the child's group gets it too
            _stop_process(process, exc.signum if isinstance(exc, RunInterrupted) else signal.SIGINT)
            pump.join(timeout=1.0)
            raise
        finally:
            with _LIVE_LOCK:
                _LIVE.pop(process.pid, None)
        pump.join()
    return returncode, timed_out


def run_cell_inprocess(
    cell: CellConfig,
    suite: SuiteConfig,
    out_dir: Path,
    timeout_s: float | None = None,
    stream: bool = False,
    env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``cell`` in this process (the inline launcher): same procedure and record, no process start.

    For tests and for backends that need no isolation (the numpy test backend): a framework imported here
    stays imported, a crash takes the caller down, and ``timeout_s`` and ``env`` are not applied, which is why
    the subprocess launcher is the default.
    """
    import contextlib

    from .cell import CellRun

    directory = artifact_dir(out_dir, cell)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "log.txt", "w") as log, contextlib.redirect_stderr(_Tee(log, sys.stderr) if stream else log):
        with progress.inprocess_cell(directory.name):
            record = CellRun(cell, suite.options, directory).run()
    hold_interrupts()
    return record


run_cell_inprocess.in_process = True  # type: ignore[attr-defined]  # executors: no cells at once in one process


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
    """Copy a child's output to its log file (and to stderr when streaming) until EOF; its progress lines go to
    this process's progress listeners instead."""
    for line in source:
        if progress.forward_line(line, log.name):
            continue
        log.write(line)
        log.flush()
        if stream:
            sys.stderr.write(line)


def _infer_pass(
    produced: list[dict[str, Any]],
    suite: SuiteConfig,
    out_dir: Path,
    results_path: Path,
    inline: bool,
    on_message: Callable[[str], None] | None,
    executor: Executor,
) -> None:
    """The inference pass (``infer_pass``) over the latest records of every cell of the suite whose weights are
    still in the directory: this run's cells and those an interrupted earlier run left, timed together, where the
    executor ran them (``Executor.infer_pass``: here, or per node on a Ray cluster). Each re-timed cell gets a new
    record, appended (and put in ``produced`` in place of this run's record)."""
    wanted = {cell_key(asdict(cell)) for cell in suite.cells()}
    latest = [r for r in latest_by_cell(load_results(results_path)) if cell_key(r) in wanted]
    launch = None if inline else run_module_subprocess
    timed = executor.infer_pass(latest, suite, out_dir, launch=launch, on_message=on_message)
    updated = {cell_key(r): r for r in timed}
    for fresh in updated.values():
        append_result(results_path, fresh)
    for position, record in enumerate(produced):
        if cell_key(record) in updated:
            produced[position] = updated[cell_key(record)]


def run_suite(
    suite: SuiteConfig,
    out_dir: Path,
    timeout_s: float | None = None,
    stream: bool = False,
    on_result: Callable[[int, int, dict[str, Any]], None] | None = None,
    cell_runner: Callable[..., dict[str, Any]] = run_cell_subprocess,
    reuse_other_environments: bool = False,
    on_message: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run every unfinished cell of ``suite``, appending each record to ``out_dir/results.jsonl``.

    Cells already finished (``ok``) with the same run options, in an environment where cells run now, are
    skipped: re-running a suite resumes it, whatever the executor. A failing cell is recorded with
    ``status="failed"`` and its error; the others go on. With ``suite.options.infer_pass`` (on a Ray cluster: per node)
    the cells of each model are then timed again, interleaved in one fresh process (``infer_pass``), and each
    gets a second record with those inference figures. This function is the only writer of the results
    file: each record is appended exactly once, as soon as its cell finishes, with the ``environment_id`` of
    where it was measured (that environment is added to ``environment.json`` with its first record).

    SIGINT and SIGTERM (in the main thread) stop the running cells (their process groups get the signal,
    SIGKILL after ``STOP_GRACE_S``) and raise ``RunInterrupted``; records already appended stay, and a cell that
    finished as the signal came is appended first (``hold_interrupts``).

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
        executor: where cells run (``executors.LocalExecutor(parallel)``, ``executors.RayExecutor(address)``);
            default: this machine, one cell at a time.

    Returns:
        The records produced by this call (skipped cells excluded).

    Raises:
        RunInterrupted: SIGINT/SIGTERM arrived.
        ExecutorError: the executor cannot run this suite (one line).
    """
    executor = executor if executor is not None else LocalExecutor()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "suite.json", suite.to_dict())
    results_path = out_dir / RESULTS_FILE
    produced: list[dict[str, Any]] = []
    reset_stop()
    with _interrupts_raise() as rearm:
        try:
            executor.start(suite, out_dir, on_message)
            rearm()  # the executor may have installed its own handlers (Ray does)
            environments = executor.environments(suite)
            here = [e["environment_id"] for e in environments]
            run_id = local_run_id(out_dir)
            records = load_results(results_path)
            ours = [r for r in records if r.get("run_id") == run_id]
            done_here, _ = resume_plan(ours, suite, environments, False)
            any_code_here, _ = resume_plan(ours, suite, here, False)
            anywhere = completed_cells(records, suite)
            elsewhere = len(anywhere - any_code_here)
            other_code = len(any_code_here - done_here)
            done = anywhere if reuse_other_environments else done_here
            verb = "reused as finished (--reuse-results)" if reuse_other_environments else "re-run here"
            if elsewhere and on_message is not None:
                on_message(f"{elsewhere} cell(s) in {out_dir} were measured in another environment or checkout; {verb}")
            if other_code and on_message is not None:
                codes = ", ".join(sorted({code_label(e.get("code_version")) for e in environments}))
                on_message(
                    f"{other_code} cell(s) in {out_dir} were made by other code than this checkout's ({codes}); {verb}"
                )
            todo = [c for c in suite.cells() if cell_key(asdict(c)) not in done]
            progress.publish(progress.Event("planned", count=len(todo)))
            described: set[str] = set()

            def _append(record: dict[str, Any], environment: dict[str, Any] | None) -> None:
                record["environment_id"] = environment["environment_id"] if environment else None
                record["code_version"] = record_code_version(environment.get("code_version")) if environment else None
                record["run_id"] = run_id
                if environment and environment["environment_id"] not in described:
                    add_environment(out_dir, environment)  # only now: this environment measured a cell of the suite
                    described.add(environment["environment_id"])
                append_result(results_path, record)
                produced.append(record)

            outcomes = executor.run(todo, suite, out_dir, timeout_s=timeout_s, stream=stream, cell_runner=cell_runner)
            for index, outcome in enumerate(outcomes, 1):
                record = outcome.record
                try:
                    # a cell stopped by the signal is not a result; one that finished as it came is appended first
                    if not _PENDING or record.get("status") == "ok":
                        _append(record, outcome.environment)
                        if on_result is not None:
                            on_result(index, len(todo), record)
                finally:
                    release_interrupts()
                if not _HELD[0]:  # other finished records still on their way (parallel cells) come first
                    _check_interrupted()
            _check_interrupted()
            if suite.options.infer_pass:
                inline = getattr(cell_runner, "in_process", False)
                _infer_pass(produced, suite, out_dir, results_path, inline, on_message, executor)
        except KeyboardInterrupt as exc:  # RunInterrupted included: stop what still runs, keep what is appended
            # (a library may turn our exception into a plain KeyboardInterrupt: Ray's wait does; the handler noted
            # the signal)
            signum = (
                exc.signum if isinstance(exc, RunInterrupted) else (_PENDING[0] if _PENDING else int(signal.SIGINT))
            )
            executor.cancel(signum)
            stop_running_cells(signum)
            if isinstance(exc, RunInterrupted):
                raise
            raise RunInterrupted(signum) from None
        except BaseException:
            executor.cancel(int(signal.SIGTERM))
            stop_running_cells(int(signal.SIGTERM))
            raise
        finally:
            executor.close()
    return produced
