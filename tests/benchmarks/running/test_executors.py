"""Executors: local (sequential, N at once, one worker per GPU) and Ray (a real local cluster), the concurrency
column and its report warning, artifacts shipped back, resume across executors, a Ray worker killed mid-cell, SIGTERM
to the driver."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
import ray

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting.tables import results_frame, timing_warnings
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.executors import (
    REGISTRY_ENV,
    CellOccupancy,
    ExecutorError,
    LocalExecutor,
    RayExecutor,
    make_executor,
    max_at_once,
    pack_cell_dir,
    unpack_cell_dir,
)
from tlbench.benchmarks.running.results import cell_key, empty_record, latest_by_cell, load_results
from tlbench.benchmarks.running.runner import RunInterrupted, run_cell_inprocess, run_suite

SUPPORT = Path(__file__).resolve().parents[2] / "support"
#: threads=1: two cells fit the 2-CPU test cluster at once
FAST = RunOptions(
    epochs=2,
    image_size=16,
    batch_size=64,
    device="cpu",
    infer_repeats=10,
    infer_warmup=1,
    infer_min_time_s=0.0,
    threads=1,
)


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    """Cells register in a directory of this test only (other test runs on the machine do not count)."""
    monkeypatch.setenv(REGISTRY_ENV, str(tmp_path / "registry"))


def suite(cache_dir: Path, **changes) -> SuiteConfig:
    base = SuiteConfig(
        name="x",
        backends=("fake",),
        models=("softmax",),
        strategies=("linear_probe", "scratch"),
        datasets=("digits",),
        seeds=(0, 1),
        options=replace(FAST, cache_dir=str(cache_dir)),
    )
    return replace(base, **changes)


# ---- occupancy ---------------------------------------------------------------------------------------------------
def test_max_at_once_counts_the_busiest_instant():
    assert max_at_once([(0, 10)], 0, 10) == 1
    assert max_at_once([(0, 10), (2, 4), (3, 5), (6, 8)], 0, 10) == 3
    assert max_at_once([(0, 10), (10, 12)], 0, 10) == 1  # touching is not overlapping
    assert max_at_once([(0, 10), (-5, 1)], 0, 10) == 2  # started before, still running at the start


def test_occupancy_counts_cells_on_the_host_and_on_the_device(tmp_path):
    registry = tmp_path / "reg"
    with CellOccupancy("cuda:0", registry) as a:
        with CellOccupancy("cuda:1", registry) as b:
            with CellOccupancy("cuda:1", registry) as c:
                time.sleep(0.01)
    assert a.result["cells_at_once_on_host"] == 3 and a.result["cells_at_once_on_device"] == 1
    assert b.result["cells_at_once_on_device"] == c.result["cells_at_once_on_device"] == 2
    assert a.result["device"] == "cuda:0" and a.result["host"]
    # an entry whose owner died mid-cell is dropped, not counted
    (registry / "dead.json").write_text(
        json.dumps(
            {
                "host": a.host,
                "device": "cpu",
                "start": time.time() - 5,
                "end": None,
                "pid": 2**22 + 17,
                "pid_start": 1.0,
            }
        )
    )
    with CellOccupancy("cpu", registry) as d:
        pass
    assert d.result["cells_at_once_on_host"] == 1 and not (registry / "dead.json").exists()


def test_timing_warnings_flag_shared_gpus_and_hosts():
    def row(device, host_n, device_n, status="ok"):
        info = {
            "executor": "local",
            "cells_at_once_on_host": host_n,
            "cells_at_once_on_device": device_n,
            "host": "h",
            "device": device,
        }
        return {
            "backend": "b",
            "model": "m",
            "strategy": "s",
            "dataset": "d",
            "seed": host_n * 10 + device_n,
            "status": status,
            "concurrency": info,
        }

    assert timing_warnings(
        results_frame([row("cpu", 1, 1), row("cuda:0", 2, 1), {"backend": "old", "status": "ok"}])
    ) == [
        "**timing**: 1 timed cell(s) ran beside other cells on the same host (up to 2 at once), sharing its CPU cores "
        "and memory bandwidth: compare their speeds with care (--parallel 1, or --threads cores/N)."
    ]
    lines = timing_warnings(
        results_frame([row("cuda:0", 3, 2), row("cuda:1", 3, 3), row("cpu", 4, 4, status="failed")])
    )
    assert len(lines) == 1 and lines[0].startswith(
        "**timing**: 2 timed cell(s) shared their GPU with other cells (up to 3 at once)"
    )


# ---- local ---------------------------------------------------------------------------------------------------------
def _stub_cell(cell, suite, out_dir, timeout_s=None, stream=False, env=None):
    """A cell that only sleeps and reports the GPU it was pinned to."""
    time.sleep(0.5)
    record = empty_record(cell, suite.options)
    record.update(status="ok", backend_facts={"CUDA_VISIBLE_DEVICES": (env or {}).get("CUDA_VISIBLE_DEVICES")})
    return record


def test_parallel_local_pins_one_worker_per_gpu(cache_dir, tmp_path):
    cfg = suite(cache_dir, options=replace(FAST, device="cuda"))
    messages = []
    records = run_suite(
        cfg,
        tmp_path / "s",
        cell_runner=_stub_cell,
        executor=LocalExecutor(3, gpus=["4", "7"]),
        on_message=messages.append,
    )
    assert messages == ["--parallel 3: 2 GPU(s) visible, so 2 cell(s) at once, one per GPU"]
    assert len(records) == 4 and len({cell_key(r) for r in records}) == 4
    for record in records:
        pinned = record["backend_facts"]["CUDA_VISIBLE_DEVICES"]
        assert pinned in ("4", "7") and record["concurrency"]["device"] == f"cuda:{pinned}"
        assert record["concurrency"]["executor"] == "local" and record["concurrency"]["cells_at_once_on_device"] == 1
    assert max(r["concurrency"]["cells_at_once_on_host"] for r in records) == 2
    warnings = timing_warnings(results_frame(load_results(tmp_path / "s" / "results.jsonl")))
    assert len(warnings) == 1 and "ran beside other cells on the same host (up to 2 at once)" in warnings[0]


def test_sequential_local_records_one_cell_at_a_time(cache_dir, tmp_path):
    records = run_suite(suite(cache_dir, seeds=(0,)), tmp_path / "s", cell_runner=_stub_cell)
    assert [r["concurrency"]["cells_at_once_on_host"] for r in records] == [1, 1]
    assert {r["concurrency"]["device"] for r in records} == {"cpu"}
    assert timing_warnings(results_frame(records)) == []


def test_parallel_cells_need_the_subprocess_launcher(fake_backend, cache_dir, tmp_path):
    with pytest.raises(ValueError, match="subprocess launcher"):
        run_suite(suite(cache_dir), tmp_path / "s", cell_runner=run_cell_inprocess, executor=LocalExecutor(2, gpus=[]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--executor", "spark"], "unknown executor 'spark'; expected one of: local, ray"),
        (["--parallel", "0"], "invalid parallel 0: expected a positive integer"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--parallel", "2"], "--parallel is for --executor local"),
    ],
)
def test_executor_flags_are_checked_before_any_cell(fake_backend, argv, message, capsys, tmp_path):
    assert main(["run", "--backends", "fake", "--models", "softmax", "--out", str(tmp_path / "s"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_artifacts_pack_and_unpack(tmp_path):
    source = tmp_path / "a"
    (source / "sub").mkdir(parents=True)
    (source / "log.txt").write_text("hello")
    (source / "sub" / "x.bin").write_bytes(b"\x00\x01")
    target = tmp_path / "b"
    (target).mkdir()
    (target / "stale.txt").write_text("from an earlier attempt")
    unpack_cell_dir(target, pack_cell_dir(source))
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "log.txt",
        "sub/x.bin",
    ]
    with pytest.raises(ValueError, match="leaves the cell directory"):
        unpack_cell_dir(target, {"../evil.txt": b""})


# ---- Ray -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A local 2-CPU Ray cluster whose workers can import the fake backend."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "TLBENCH_BACKENDS", "TLBENCH_FAKE_NAP_S")}
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SUPPORT), saved["PYTHONPATH"]]))
    os.environ["TLBENCH_BACKENDS"] = "fake=fake_backend:FakeBackend"
    os.environ["TLBENCH_FAKE_NAP_S"] = "3"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _accuracies(records):
    return {cell_key(r): r["accuracy"] for r in records}


def test_ray_and_local_give_the_same_cells_once_and_resume_each_other(ray_cluster, fake_backend, cache_dir, tmp_path):
    cfg = suite(cache_dir)
    local_dir, ray_dir = tmp_path / "local", tmp_path / "ray"
    local = run_suite(cfg, local_dir, executor=LocalExecutor(2))
    messages = []
    remote = run_suite(cfg, ray_dir, executor=RayExecutor(ship_artifacts="always"), on_message=messages.append)
    assert messages[0] == "Ray: 1 node(s) can run cells (1 CPU(s) per cell)"
    # one pass for the model's cells, on their node (the line names it); the pass's log came back with the cells
    (line,) = messages[1:]
    assert line.startswith("inference pass: 4 cells of fake/softmax/digits interleaved") and "[Ray node " in line
    assert "loaded fake__" in (ray_dir / "infer_pass.log").read_text()
    for records, folder, executor in ((local, local_dir, "local"), (remote, ray_dir, "ray")):
        assert len(records) == 4 and all(r["status"] == "ok" for r in records), [r["error"] for r in records]
        lines = load_results(folder / "results.jsonl")
        stored = latest_by_cell(lines)
        assert (
            sorted(map(cell_key, stored)) == sorted(map(cell_key, records)) and len({cell_key(r) for r in stored}) == 4
        )
        # the inference pass re-times each cell (a second record per cell) where it ran: here, or by a Ray task on
        # the cells' node (their directories shipped there and back: ship_artifacts="always"); weights gone after
        assert len(lines) == 8
        assert all(r["infer_pass"] is not None and r["infer_pass"]["models"] == 4 for r in stored)
        assert not list(folder.glob("cells/*/weights*"))
        assert {r["concurrency"]["executor"] for r in stored} == {executor}
        assert {r["concurrency"]["device"] for r in stored} == {"cpu"}
        (env,) = json.loads((folder / "environment.json").read_text())["environments"].values()
        assert {r["environment_id"] for r in stored} == {env["environment_id"]}
        cell = folder / "cells" / "fake__softmax__scratch__digits__s1"
        assert {"log.txt", "predictions.npz", "curve.json", "latency.json"} <= {p.name for p in cell.iterdir()}
    assert _accuracies(remote) == _accuracies(local)
    assert min(r["accuracy"] for r in remote) > 0.5
    assert not list(ray_dir.glob(".tlbench-driver-*"))  # the driver's marker is gone after the run
    # the same machine, the same options: each executor resumes the other's suite (nothing to run)
    assert local[0]["environment_id"] == remote[0]["environment_id"]
    assert run_suite(cfg, local_dir, executor=RayExecutor()) == []
    assert run_suite(cfg, ray_dir, executor=LocalExecutor()) == []
    assert len(load_results(ray_dir / "results.jsonl")) == 8  # nothing run, nothing re-timed


def _kill_the_worker_of(out: Path, model: str, killed: list, stop: threading.Event) -> None:
    """Wait for the cell process of ``model`` under ``out``, then SIGKILL its parent: the Ray worker."""
    marker = f'"model": "{model}"'
    while not stop.is_set():
        for proc in psutil.process_iter(["cmdline", "ppid"]):
            command = " ".join(proc.info["cmdline"] or [])
            if "tlbench.benchmarks.running.cell" in command and marker in command and str(out) in command:
                worker = psutil.Process(proc.info["ppid"])
                killed.append((worker.pid, proc.pid))
                worker.kill()
                return
        time.sleep(0.05)


def test_a_ray_worker_killed_mid_cell_is_retried_and_recorded_once(ray_cluster, fake_backend, cache_dir, tmp_path):
    out = (tmp_path / "s").resolve()
    cfg = suite(cache_dir, models=("nap",), strategies=("scratch",), seeds=(0,))
    killed: list[tuple[int, int]] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_the_worker_of, args=(out, "nap", killed, stop), daemon=True)
    killer.start()
    try:
        (record,) = run_suite(cfg, out, executor=RayExecutor(max_retries=2))
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1, "the cell's Ray worker was never found"
    worker_pid, cell_pid = killed[0]
    assert not psutil.pid_exists(worker_pid)
    assert (
        not psutil.pid_exists(cell_pid) or psutil.Process(cell_pid).status() == psutil.STATUS_ZOMBIE
    )  # died with its worker
    assert record["status"] == "ok", record["error"]
    # recorded once (then once more by the inference pass on the node: the same cell, re-timed)
    stored, passed = load_results(out / "results.jsonl")
    assert stored["status"] == "ok" and stored["concurrency"]["executor"] == "ray" and stored["infer_pass"] is None
    assert cell_key(passed) == cell_key(stored) and passed["infer_pass"]["in_cell"]
    assert "dataset digits" in (out / "cells" / "fake__nap__scratch__digits__s0" / "log.txt").read_text()


def test_ray_executor_refuses_what_the_cluster_cannot_run(ray_cluster, fake_backend, cache_dir, tmp_path):
    with pytest.raises(ExecutorError, match="no alive Ray node has 64 CPU"):
        run_suite(suite(cache_dir, options=replace(FAST, threads=64)), tmp_path / "s", executor=RayExecutor())
    with pytest.raises(ExecutorError, match="Ray gives each cell one GPU"):
        run_suite(suite(cache_dir, options=replace(FAST, device="cuda:1")), tmp_path / "s", executor=RayExecutor())
    assert isinstance(make_executor("ray"), RayExecutor) and ray.is_initialized()  # a started cluster is kept


def test_sigterm_during_a_ray_run_stops_its_cells_and_keeps_the_records(ray_cluster, fake_backend, cache_dir, tmp_path):
    out = (tmp_path / "s").resolve()
    cfg = suite(cache_dir, models=("softmax", "slow"), strategies=("scratch",), seeds=(0,))
    cells: list[psutil.Process] = []
    seen: dict[str, float] = {}  # what the sender saw and when (s after it started), for the failure message
    # both cells must run at once: wait until the previous tests' tasks have handed back both CPUs
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ray.available_resources().get("CPU", 0) < 2:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) >= 2, ray.available_resources()

    def terminate_when_slow_runs() -> None:
        started = time.monotonic()
        deadline = started + 180  # Ray workers start slowly on a loaded machine; the signal waits for both events
        while time.monotonic() < deadline and not cells:
            for proc in psutil.process_iter(["cmdline"]):
                command = " ".join(proc.info["cmdline"] or [])
                if (
                    "tlbench.benchmarks.running.cell" in command
                    and '"model": "slow"' in command
                    and str(out) in command
                ):
                    cells.append(proc)
                    seen["slow cell running"] = time.monotonic() - started
            time.sleep(0.05)
        while time.monotonic() < deadline and not load_results(out / "results.jsonl"):
            time.sleep(0.05)
        seen["signal sent"] = time.monotonic() - started
        os.kill(os.getpid(), signal.SIGTERM)  # to this process, the driver

    sender = threading.Thread(target=terminate_when_slow_runs, daemon=True)
    sender.start()
    with pytest.raises(RunInterrupted) as caught:
        run_suite(cfg, out, executor=RayExecutor())
    sender.join()
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143
    records = load_results(out / "results.jsonl")
    assert len(records) == 1, f"sender saw {seen}; records: {[(r['model'], r['status']) for r in records]}"
    (record,) = records  # the finished cell stays; the stopped one is not a result
    assert record["model"] == "softmax" and record["status"] == "ok", record["error"]
    (cell,) = cells
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and cell.is_running() and cell.status() != psutil.STATUS_ZOMBIE:
        time.sleep(0.05)
    assert not cell.is_running() or cell.status() == psutil.STATUS_ZOMBIE, "the cell outlived its cancelled Ray task"
    assert not list(out.glob(".tlbench-driver-*"))


def test_the_ray_pass_times_a_cell_on_the_node_that_ran_it():
    """This run's cells go to the node their task ran on; a resumed cell to its record's host; else any node."""
    executor = RayExecutor()
    ran_here = {"backend": "fake", "model": "softmax", "strategy": "scratch", "dataset": "digits", "seed": 0}
    resumed = {**ran_here, "seed": 1, "concurrency": {"host": "gpu-2"}}
    orphan = {**ran_here, "seed": 2, "concurrency": {"host": "gone"}}
    executor._node_of[cell_key(ran_here)] = "node-a"
    nodes = {"gpu-1": "node-a", "gpu-2": "node-b"}
    assert [executor._pass_node(r, nodes) for r in (ran_here, resumed, orphan)] == ["node-a", "node-b", None]
    executor._node_of[cell_key(ran_here)] = "node-dead"  # its node left the cluster: no host either -> any node
    assert executor._pass_node(ran_here, nodes) is None
