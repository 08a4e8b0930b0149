"""Runner: in-process and subprocess launchers, atomic JSON-lines results, resume, failure isolation, signals, code
version (numpy fake backend)."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from tlbench.benchmarks.running import runner
from tlbench.benchmarks.running.config import CellConfig, RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import (
    RESULT_COLUMNS,
    append_result,
    empty_record,
    latest_by_cell,
    load_results,
    write_json_atomic,
)
from tlbench.benchmarks.running.runner import (
    RunInterrupted,
    exit_error,
    run_cell_inprocess,
    run_cell_subprocess,
    run_suite,
)

FAST = RunOptions(
    epochs=2, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    """Cells register in a directory of this test only (other test runs on the machine do not count)."""
    monkeypatch.setenv("TLBENCH_CELL_REGISTRY", str(tmp_path / "registry"))


def suite(cache_dir: Path, **changes) -> SuiteConfig:
    base = SuiteConfig(
        name="t",
        backends=("fake",),
        models=("softmax",),
        strategies=("linear_probe", "scratch"),
        datasets=("digits",),
        seeds=(0, 1),
        options=replace(FAST, cache_dir=str(cache_dir)),
    )
    return replace(base, **changes)


@pytest.mark.slow  # cell processes that import and train
@pytest.mark.parametrize("launcher", ["inprocess", "subprocess"])
def test_suite_records_every_column_and_resumes(fake_backend, cache_dir, tmp_path, launcher):
    out = tmp_path / "suite"
    runner = {"cell_runner": run_cell_inprocess} if launcher == "inprocess" else {}
    produced = run_suite(suite(cache_dir), out, **runner)
    assert len(produced) == 4
    lines = load_results(out / "results.jsonl")
    # each cell's own record, then the inference pass's (the four cells of one model timed again, interleaved)
    assert len(lines) == 8 and lines[4:] == produced
    records = latest_by_cell(lines)
    for own, record in zip(lines[:4], records, strict=True):
        assert own["infer_pass"] is None
        assert record["infer_pass"]["in_cell"]["infer_images_per_s"] == own["infer_images_per_s"]
        assert record["infer_pass"]["models"] == 4 and record["infer_repeats"] >= 10
        assert {k: v for k, v in record.items() if not k.startswith("infer_")} == {
            k: v for k, v in own.items() if not k.startswith("infer_")
        }
    assert not list(out.glob("cells/*/weights*"))  # saved for the pass only
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert list(record) == RESULT_COLUMNS  # one fixed schema, in order
        assert record["device"] == "cpu" and record["pretrained"] in ("none", "fake:init")
        # a 48-feature softmax regression reaches well above chance (0.1) on digits
        assert record["accuracy"] > 0.5
        for column in ("infer_images_per_s", "infer_latency_ms_p50", "wall_s", "peak_rss_mb", "train_s"):
            assert record[column] > 0
        if record["strategy"] == "linear_probe":  # features extracted once, timed apart; no inflated images/s
            assert record["train_images_per_s"] is None and record["phase_images_per_s"] is None
            assert record["feature_extract_images_per_s"] > 0 and record["feature_dim"] == 48
            assert record["plan"].startswith("probe: 30 epoch(s) on features")
        else:
            assert (
                record["train_images_per_s"] > 0
                and record["phase_images_per_s"]["main"] == record["train_images_per_s"]
            )
            assert record["feature_extract_s"] is None
        assert record["infer_latency_ms_p90"] >= record["infer_latency_ms_p50"]
        assert record["split_sizes"] == {"train": 1077, "val": 360, "test": 360}
    by_strategy = {r["strategy"]: r for r in records}
    assert by_strategy["linear_probe"]["epochs"] == 30  # min_epochs of the strategy table
    assert by_strategy["scratch"]["epochs"] == 2
    assert {(r["strategy"], r["seed"]) for r in records} == {
        (s, k) for s in ("linear_probe", "scratch") for k in (0, 1)
    }
    assert json.loads((out / "suite.json").read_text())["strategies"] == ["linear_probe", "scratch"]
    (env,) = json.loads((out / "environment.json").read_text())["environments"].values()
    assert env["cpu_count"] >= 1 and "numpy" in env["packages"]
    assert {r["environment_id"] for r in records} == {env["environment_id"]}
    cell_dir = out / "cells" / "fake__softmax__scratch__digits__s0"
    curve = json.loads((cell_dir / "curve.json").read_text())
    assert [e["epoch"] for e in curve] == [1, 2]
    assert (cell_dir / "predictions.npz").is_file() and (cell_dir / "log.txt").is_file()

    # resume: nothing left to do, nothing appended
    assert run_suite(suite(cache_dir), out, **runner) == []
    assert len(load_results(out / "results.jsonl")) == 8
    # different run options: same cells are not "finished" any more
    again = run_suite(
        suite(
            cache_dir, strategies=("scratch",), seeds=(0,), options=replace(FAST, epochs=1, cache_dir=str(cache_dir))
        ),
        out,
        **runner,
    )
    assert len(again) == 1 and again[0]["epochs"] == 1


@pytest.mark.slow  # cell processes that import and train
def test_failing_and_crashing_cells_are_recorded_and_the_rest_go_on(fake_backend, cache_dir, tmp_path):
    out = tmp_path / "suite"
    cfg = suite(cache_dir, models=("raise", "crash", "sigkill", "softmax"), strategies=("scratch",), seeds=(0,))
    produced = run_suite(cfg, out)
    status = {r["model"]: r for r in produced}
    assert status["softmax"]["status"] == "ok"
    assert status["raise"]["status"] == "failed"
    assert status["raise"]["error"] == "fake model 'raise' always fails to build"
    assert status["crash"]["status"] == "failed"
    assert status["crash"]["error"].startswith("cell process exited with code 3: ")
    # a cell killed by a signal says which, what that usually means, and its last log line
    assert status["sigkill"]["status"] == "failed"
    assert status["sigkill"]["error"].startswith(
        "cell process killed by signal 9 (SIGKILL): usually out of memory (the kernel OOM killer) "
        "or an external kill -9; last log line: ["
    ), status["sigkill"]["error"]
    # failed cells are retried on the next run, finished ones are not
    retried = run_suite(cfg, out)
    assert sorted(r["model"] for r in retried) == ["crash", "raise", "sigkill"]
    latest = latest_by_cell(load_results(out / "results.jsonl"))
    assert len(latest) == 4


def test_exit_errors_name_the_signal_and_what_it_usually_means():
    assert exit_error(-11, "step 3").startswith("cell process killed by signal 11 (SIGSEGV): a crash in native code")
    assert exit_error(-11, "step 3").endswith("; last log line: step 3")
    assert exit_error(-6, "x").startswith("cell process killed by signal 6 (SIGABRT): aborted by native code")
    assert exit_error(1, "Traceback") == "cell process exited with code 1: Traceback"


def _cell_processes(runner_pid: int, model: str) -> list[psutil.Process]:
    """Live cell processes of ``model`` under the runner."""
    found = []
    try:
        children = psutil.Process(runner_pid).children(recursive=True)
    except psutil.Error:
        return []
    for process in children:
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:  # exited meanwhile
            continue
        if "tlbench.benchmarks.running.cell" in command and f'"model": "{model}"' in command:
            found.append(process)
    return found


@pytest.mark.slow  # cell processes that import and train
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_tlbench_run_stops_the_cell_and_keeps_appended_records(
    fake_backend, cache_dir, tmp_path, signum, code
):
    out = tmp_path / "suite"
    command = [
        sys.executable,
        "-m",
        "tlbench",
        "run",
        "--backends",
        "fake",
        "--models",
        "softmax,slow",
        "--strategies",
        "scratch",
        "--dataset",
        "digits",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--image-size",
        "16",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--cache-dir",
        str(cache_dir),
        "--out",
        str(out),
        "--no-report",
    ]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 120
        cells: list[psutil.Process] = []
        while time.monotonic() < deadline and runner.poll() is None:  # the softmax cell is recorded, slow runs
            cells = _cell_processes(runner.pid, "slow")
            if cells and (out / "results.jsonl").is_file():
                break
            time.sleep(0.1)
        assert cells, f"no slow cell process appeared: {runner.communicate()}"
        (cell,) = cells
        group = os.getpgid(cell.pid)
        assert group != os.getpgid(runner.pid)  # its own process group
        runner.send_signal(signum)
        _, stderr = runner.communicate(timeout=15)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == code, stderr
    assert "tlbench: interrupted; finished cells are kept in results.jsonl" in stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(_in_group(p, group) for p in psutil.process_iter()):
        time.sleep(0.05)
    assert not [p for p in psutil.process_iter() if _in_group(p, group)], "a cell process outlived the runner by 2 s"
    (record,) = load_results(out / "results.jsonl")  # the finished cell is kept, the stopped one not recorded
    assert record["model"] == "softmax" and record["status"] == "ok"


def _in_group(process: psutil.Process, group: int) -> bool:
    try:
        return os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False


@pytest.mark.slow  # cell processes that import and train
def test_cell_timeout_is_a_failed_record(fake_backend, cache_dir, tmp_path):
    cfg = suite(cache_dir, models=("slow",), strategies=("scratch",), seeds=(0,))
    (record,) = run_suite(cfg, tmp_path / "s", timeout_s=8)
    assert record["status"] == "failed" and record["error"] == "cell timed out after 8 s"


def _append_many(path: str, worker: int) -> None:
    for i in range(50):
        append_result(
            Path(path),
            {"backend": "b", "model": f"w{worker}", "strategy": "s", "dataset": "d", "seed": i, "pad": "x" * 5000},
        )


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "results.jsonl"
    procs = [multiprocessing.Process(target=_append_many, args=(str(path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["pad"] == "x" * 5000 for line in lines)


def test_truncated_last_line_is_skipped_and_next_append_starts_a_new_line(tmp_path, capsys):
    path = tmp_path / "results.jsonl"
    append_result(path, {"backend": "a", "seed": 0})
    with open(path, "a") as f:
        f.write('{"backend": "half", "se')  # a crash mid-write
    append_result(path, {"backend": "b", "seed": 1, "accuracy": float("nan")})
    records = load_results(path)
    assert [r["backend"] for r in records] == ["a", "b"]
    assert records[1]["accuracy"] is None  # NaN is stored as JSON null, never as invalid JSON
    assert "skipping unreadable line 2" in capsys.readouterr().err


def test_cells_measured_in_another_environment_are_rerun_and_never_described_here(
    fake_backend, cache_dir, tmp_path, monkeypatch
):
    """A committed suite from another machine: resume re-runs its cells here (or reuses them when asked), and
    environment.json only ever gains an entry for an environment that measured a cell."""
    out = tmp_path / "suite"
    cfg = suite(cache_dir, strategies=("scratch",), seeds=(0,))
    _instant_cells(monkeypatch, cfg.options)
    (first,) = run_suite(cfg, out)
    records = load_results(out / "results.jsonl")
    # pretend the suite was measured on another machine and committed
    foreign = {**records[0], "environment_id": "elsewhere0001"}
    (out / "results.jsonl").write_text(json.dumps(foreign) + "\n")
    (out / "environment.json").write_text(
        json.dumps({"environments": {"elsewhere0001": {"cpu": "Other CPU", "cpu_count": 64}}})
    )
    before = (out / "environment.json").read_text()
    messages = []
    reused = run_suite(cfg, out, reuse_other_environments=True, on_message=messages.append)
    assert reused == [] and (out / "environment.json").read_text() == before  # nothing ran: nothing described
    assert messages == [
        f"1 cell(s) in {out} were measured in another environment or checkout; reused as finished (--reuse-results)"
    ]
    messages.clear()
    (rerun,) = run_suite(cfg, out, on_message=messages.append)
    assert messages == [f"1 cell(s) in {out} were measured in another environment or checkout; re-run here"]
    assert rerun["environment_id"] == first["environment_id"] != "elsewhere0001"
    environments = json.loads((out / "environment.json").read_text())["environments"]
    assert set(environments) == {"elsewhere0001", first["environment_id"]}
    # now finished here: a third run does nothing
    assert run_suite(cfg, out) == []


def test_a_cloned_suite_directory_reruns_its_committed_cells(fake_backend, cache_dir, tmp_path, monkeypatch):
    """Committed results (a clone: same machine, no local run id) are re-run, never re-rendered as finished."""
    import shutil

    cfg = suite(cache_dir, strategies=("scratch",), seeds=(0,))
    _instant_cells(monkeypatch, cfg.options)
    out = tmp_path / "main" / "suite"
    (first,) = run_suite(cfg, out)
    assert run_suite(cfg, out) == []  # same copy: resumes
    clone = tmp_path / "clone" / "suite"
    shutil.copytree(out, clone, ignore=shutil.ignore_patterns(".run-id"))  # what git clone gives (.run-id is ignored)
    messages = []
    (again,) = run_suite(cfg, clone, on_message=messages.append)
    assert again["run_id"] != first["run_id"] and again["environment_id"] == first["environment_id"]
    assert messages == [f"1 cell(s) in {clone} were measured in another environment or checkout; re-run here"]
    assert run_suite(cfg, clone) == []
    assert ".run-id" in (Path(__file__).resolve().parents[3] / ".gitignore").read_text()


@pytest.mark.slow  # cell processes that import and train
def test_wait_quiet_waits_outside_wall_time_and_records_the_wait(fake_backend, cache_dir, tmp_path):
    """``--wait-quiet``: a busy process outside the run keeps the machine above 10 % of its cores, so the cell
    waits the whole limit, says so, records it in ``contention`` and still runs (``wall_s`` excludes the wait)."""
    cores = psutil.cpu_count(logical=True) or 1
    if cores > 8:
        pytest.skip(f"one busy process is under 10 % of {cores} cores: the machine would count as quiet")
    # a busy loop *outside* this process tree (a child of ours would count as the cell's own work): started by a
    # launcher that exits at once, so the loop is re-parented away from us
    launcher = (  # the loop ends by itself after 2 minutes: an interrupted pytest cannot leave it spinning
        "import subprocess, sys\n"
        "loop = subprocess.Popen([sys.executable, '-c', 'import time\\nend = time.time() + 120\\n"
        "while time.time() < end:\\n    pass\\n'], stdin=subprocess.DEVNULL,\n"
        "                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"  # our pipe must close
        "print(loop.pid)\n"
    )
    busy_pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True).stdout)
    try:
        time.sleep(0.3)
        options = replace(FAST, cache_dir=str(cache_dir), wait_quiet_s=1.0)
        (record,) = run_suite(
            suite(cache_dir, strategies=("scratch",), seeds=(0,), options=options),
            tmp_path / "s",
            cell_runner=run_cell_inprocess,
        )
    finally:
        os.kill(busy_pid, signal.SIGKILL)
    assert record["status"] == "ok", record["error"]
    assert record["contention"]["quiet_at_start"] is False
    assert 0.9 <= record["contention"]["waited_quiet_s"] < 5.0
    log = (tmp_path / "s" / "cells" / "fake__softmax__scratch__digits__s0" / "log.txt").read_text()
    assert "still busy after --wait-quiet 1 s" in log
    # without the option nothing waits and nothing is added
    (plain,) = run_suite(
        suite(cache_dir, strategies=("scratch",), seeds=(0,)), tmp_path / "p", cell_runner=run_cell_inprocess
    )
    assert "waited_quiet_s" not in plain["contention"]
    # the wait is speed-only: it does not change which finished cells count
    assert options.fingerprint("fake") == replace(options, wait_quiet_s=0.0).fingerprint("fake")


# ---- a signal as a cell finishes: its record is appended first ---------------------------------------------------
def _one_cell_suite(cache_dir: Path, seeds: tuple[int, ...] = (0, 1)) -> SuiteConfig:
    return suite(
        cache_dir,
        strategies=("scratch",),
        seeds=seeds,
        options=replace(FAST, cache_dir=str(cache_dir), infer_pass=False),
    )


def _instant_cells(monkeypatch: pytest.MonkeyPatch, options: RunOptions) -> list[CellConfig]:
    """Cell processes that finish at once: each writes an ``ok`` record (accuracy 0.75) as its last act, the way a
    real cell does, through the real ``run_cell_subprocess``; returns the cells launched, in order."""
    launched: list[CellConfig] = []

    def cell_process(command, env, log_path, timeout_s=None, stream=False, append=False):
        cell = CellConfig(**json.loads(command[command.index("--cell") + 1]))
        launched.append(cell)
        record = empty_record(cell, options)
        record.update(status="ok", accuracy=0.75)
        write_json_atomic(Path(command[command.index("--result-file") + 1]), record)
        return 0, False

    monkeypatch.setattr(runner, "run_module_subprocess", cell_process)
    return launched


def _our_handler_is_installed(signum: int) -> bool:
    """Guard: never send a real SIGTERM/SIGINT to pytest unless run_suite's handler will take it."""
    return signal.getsignal(signum) not in (signal.SIG_DFL, signal.SIG_IGN, signal.default_int_handler, None)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("finished", [True, False], ids=["cell-wrote-its-record", "cell-still-running"])
def test_a_signal_as_the_cell_process_exits_keeps_the_record_it_wrote(
    fake_backend, cache_dir, tmp_path, monkeypatch, signum, finished
):
    """The signal arrives the moment the cell process is gone, before the runner has read its ``result.json``
    (a stand-in for the process writes the record, or not, and the signal comes; no sleeps)."""
    cfg = _one_cell_suite(cache_dir)
    launched: list[int] = []

    def cell_process(command, env, log_path, timeout_s=None, stream=False, append=False):
        cell = CellConfig(**json.loads(command[command.index("--cell") + 1]))
        launched.append(cell.seed)
        if finished:  # the cell's last act: its record, written atomically
            record = empty_record(cell, cfg.options)
            record.update(status="ok", accuracy=0.75)
            write_json_atomic(Path(command[command.index("--result-file") + 1]), record)
        assert _our_handler_is_installed(signum)
        signal.raise_signal(signum)  # run_suite's handler raises RunInterrupted right here
        return 0, False

    monkeypatch.setattr(runner, "run_module_subprocess", cell_process)
    out = tmp_path / "suite"
    before = signal.getsignal(signum)
    with pytest.raises(RunInterrupted) as interrupted:
        run_suite(cfg, out)
    assert interrupted.value.signum == signum and launched == [0]  # the second cell never started
    records = load_results(out / "results.jsonl")
    if finished:
        (record,) = records
        assert (record["seed"], record["status"], record["accuracy"]) == (0, "ok", 0.75)
        assert record["environment_id"] and record["run_id"]
    else:  # a cell stopped by the signal is not a result
        assert records == []
    assert not list(out.glob("cells/*/result.json"))
    assert signal.getsignal(signum) == before  # the previous handler is back


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_record_is_read_is_honoured_once_it_is_appended(
    fake_backend, cache_dir, tmp_path, monkeypatch, signum
):
    """The window of the old runner: the cell's record in hand (``result.json`` already deleted), the interruption
    checked before the append: the finished cell was lost."""
    cfg = _one_cell_suite(cache_dir)
    launched = _instant_cells(monkeypatch, cfg.options)
    sent: list[int] = []

    def finished_then_signal(*args, **kwargs):
        record = run_cell_subprocess(*args, **kwargs)
        if not sent:
            sent.append(signum)
            assert _our_handler_is_installed(signum)
            signal.raise_signal(signum)  # held: the handler stops cells but raises nothing yet
        return record

    out = tmp_path / "suite"
    with pytest.raises(RunInterrupted) as interrupted:
        run_suite(cfg, out, cell_runner=finished_then_signal)
    assert interrupted.value.signum == signum and [c.seed for c in launched] == [0]
    (record,) = load_results(out / "results.jsonl")
    assert (record["seed"], record["status"], record["accuracy"]) == (0, "ok", 0.75)
    assert not list(out.glob("cells/*/result.json"))
    # the run can be resumed: the appended cell counts as finished, only the other one runs
    (rest,) = run_suite(cfg, out)
    assert rest["seed"] == 1 and [c.seed for c in launched] == [0, 1]


# ---- code version ------------------------------------------------------------------------------------------------
def test_cells_made_by_other_code_are_rerun_or_kept_with_reuse_results_and_marked(
    fake_backend, cache_dir, tmp_path, monkeypatch
):
    from tlbench.benchmarks.reporting.tables import build_tables, results_frame
    from tlbench.benchmarks.running import environment

    code = {"commit": "a" * 40, "dirty": False, "diff_sha": None}
    monkeypatch.setattr(environment, "code_version", lambda repo=None: dict(code))
    _instant_cells(monkeypatch, _one_cell_suite(cache_dir).options)
    out = tmp_path / "suite"
    (first,) = run_suite(_one_cell_suite(cache_dir, (0,)), out)
    assert first["code_version"] == {"commit": "a" * 40, "diff_sha": None}
    assert run_suite(_one_cell_suite(cache_dir, (0,)), out) == []  # same code

    code.update(dirty=True, diff_sha="0123456789ab")  # the same commit with uncommitted changes
    messages: list[str] = []
    (again,) = run_suite(_one_cell_suite(cache_dir, (0,)), out, on_message=messages.append)
    assert messages == [
        f"1 cell(s) in {out} were made by other code than this checkout's (aaaaaaa+diff 0123456789ab); re-run here"
    ]
    assert again["code_version"] == {"commit": "a" * 40, "diff_sha": "0123456789ab"}
    assert again["environment_id"] == first["environment_id"]  # same commit, same machine: one environment

    code.update(commit="b" * 40, dirty=False, diff_sha=None)  # a new commit: a new environment too
    messages.clear()
    kept = run_suite(
        _one_cell_suite(cache_dir, (0, 1)),
        out,
        reuse_other_environments=True,
        on_message=messages.append,
    )
    assert [r["seed"] for r in kept] == [1]  # seed 0 kept from the other code
    assert kept[0]["environment_id"] != first["environment_id"]
    assert messages == [
        f"1 cell(s) in {out} were measured in another environment or checkout; reused as finished (--reuse-results)"
    ]
    latest = latest_by_cell(load_results(out / "results.jsonl"))
    warnings = build_tables(results_frame(latest), None).warnings
    assert [w for w in warnings if w.startswith("cells made by other code")] == [
        "cells made by other code: 1 cell(s) by aaaaaaa+diff 0123456789ab, but 1 by bbbbbbb "
        "(fake/softmax/scratch/digits/s1) (kept with --reuse-results; re-run them to compare one code version)"
    ]
    # without --reuse-results the kept cell is re-run by this code
    (rerun,) = run_suite(_one_cell_suite(cache_dir, (0, 1)), out)
    assert rerun["seed"] == 0 and rerun["code_version"]["commit"] == "b" * 40
