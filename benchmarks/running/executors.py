"""Executors: where, and how many at once, the cells of a suite run.

``run_suite`` (``runner.py``) decides *which* cells run (resume) and is the only writer of ``results.jsonl``;
an executor decides *where* each cell runs and hands back its record, in the order cells finish:

* ``LocalExecutor()`` — this machine, one cell after the other (the default, and today's behaviour).
  ``LocalExecutor(parallel=N)`` runs N cells at once; when the suite runs on GPUs that are visible here
  (``environment.gpu_names``), it runs one worker per GPU (at most N) and pins each cell to its GPU with
  ``CUDA_VISIBLE_DEVICES`` in the cell process' environment.
* ``RayExecutor(address)`` — a Ray cluster (``ray.init(address)``; a local one when no address is given). Each
  cell is one Ray task asking for ``num_gpus`` (1 when the suite runs on GPU, else 0) and ``num_cpus`` (the
  suite's threads); the task runs the *same* cell subprocess (``runner.run_cell_subprocess``) on its node,
  computes that node's environment record and returns both. Lost workers and nodes are retried
  (``max_retries``); a cell that fails is a failed record, never a retry (``retry_exceptions=False``). When the
  task ran on another node whose filesystem does not hold the suite directory, the cell's artifact directory
  comes back as bytes and the driver writes it.

Every record gets a ``concurrency`` column (``CellOccupancy``): the executor, the host and device it ran on,
and the largest number of cells (of any tlbench run of this user on that host) that ran at the same time as
it, on the host and on its device — so the report can flag timings measured on a shared machine.

Ray is imported lazily: nothing here needs it unless a ``RayExecutor`` is started.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

from .artifacts import cell_dir as artifact_dir
from .config import CellConfig, RunOptions, SuiteConfig
from .environment import environment_record, gpu_names
from .infer_pass import Launcher
from .results import cell_key, empty_record, write_json_atomic
from .runtime import runtime_settings

#: executor names accepted by ``make_executor`` (and ``tlbench run --executor``)
EXECUTORS = ("local", "ray")
#: environment variable naming the directory where running cells register (default: a per-user temp dir)
REGISTRY_ENV = "TLBENCH_CELL_REGISTRY"
#: environment variables of the driver passed on to every cell (``TLBENCH_BACKENDS``, ``TLBENCH_SAVE_WEIGHTS``...)
FORWARDED_PREFIX = "TLBENCH_"

CellRunner = Callable[..., dict[str, Any]]


class ExecutorError(ValueError):
    """An executor cannot run this suite as asked (one line naming the value and what to do)."""


@dataclass
class CellOutcome:
    """One finished cell as an executor hands it back.

    Attributes:
        cell: the cell.
        record: its result record (``concurrency`` filled in).
        environment: the environment record of where it was measured; ``None`` when no environment measured it
            (a Ray task lost on every attempt).
    """

    cell: CellConfig
    record: dict[str, Any]
    environment: dict[str, Any] | None


class Executor:
    """Runs cells somewhere; subclasses implement ``environments`` and ``run``.

    Lifecycle (driven by ``run_suite``): ``start`` → ``environments`` → ``run`` (iterate) → ``close``; on an
    interruption ``cancel`` first stops whatever is still running.
    """

    name = "executor"

    def start(self, suite: SuiteConfig, out_dir: Path, on_message: Callable[[str], None] | None = None) -> None:
        """Prepare a run of ``suite`` into ``out_dir`` (connect, detect devices); notes go to ``on_message``."""

    def environments(self, suite: SuiteConfig) -> list[dict[str, Any]]:
        """Environment records of every place a cell may run (resume counts their finished cells as done)."""
        raise NotImplementedError

    def run(
        self,
        cells: Sequence[CellConfig],
        suite: SuiteConfig,
        out_dir: Path,
        *,
        timeout_s: float | None,
        stream: bool,
        cell_runner: CellRunner,
    ) -> Iterator[CellOutcome]:
        """Run ``cells`` and yield each outcome as it finishes (each cell exactly once)."""
        raise NotImplementedError

    def infer_pass(
        self,
        records: Sequence[dict[str, Any]],
        suite: SuiteConfig,
        out_dir: Path,
        *,
        launch: Launcher | None,
        on_message: Callable[[str], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The inference pass (``infer_pass.run_infer_pass``) over ``records``, the latest records of the suite's
        cells, where this executor's cells ran; returns the re-timed records. Here: on this machine."""
        from .infer_pass import run_infer_pass

        return run_infer_pass(records, suite, out_dir, launch=launch, on_message=on_message)

    def cancel(self, signum: int) -> None:
        """Stop every running cell (forwarding ``signum``); called on an interruption, before ``close``."""

    def close(self) -> None:
        """Release what ``start`` acquired."""


# ---- occupancy: how many cells ran at once, measured on the host ---------------------------------------------
def registry_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where running cells of this user register on this host (``$TLBENCH_CELL_REGISTRY`` or a temp dir)."""
    env = os.environ if env is None else env
    configured = env.get(REGISTRY_ENV) or os.environ.get(REGISTRY_ENV)
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"tlbench-cells-{uid}"


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # gone, or not visible
        return None


def max_at_once(intervals: Sequence[tuple[float, float]], start: float, end: float) -> int:
    """Largest number of the half-open ``intervals`` ``[s, e)`` covering one instant of ``[start, end)``."""
    points = [start] + [s for s, _ in intervals if start <= s < end]
    return max((sum(1 for s, e in intervals if s <= t < e) for t in points), default=0)


class CellOccupancy:
    """A running cell, registered on its host for as long as the ``with`` block lasts.

    Each cell writes one small JSON file (host, device, start, end, owner pid) into ``registry_dir()``; on exit
    it reads every file of the same host and computes, over its own lifetime, the most cells that ran at once
    on the host and on its device (itself included). Entries of dead owners are dropped; ended entries are
    deleted once no running cell overlaps them. ``result`` holds ``{"cells_at_once_on_host",
    "cells_at_once_on_device", "host", "device"}`` after the block.
    """

    def __init__(self, device: str, directory: Path | None = None) -> None:
        self.device = device
        self.host = socket.gethostname()
        self.directory = Path(directory) if directory is not None else registry_dir()
        self.path = self.directory / f"{uuid.uuid4().hex}.json"
        self.start = self.end = 0.0
        self.result: dict[str, Any] = {
            "cells_at_once_on_host": 1,
            "cells_at_once_on_device": 1,
            "host": self.host,
            "device": device,
        }

    def _entry(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "device": self.device,
            "start": self.start,
            "end": self.end or None,
            "pid": os.getpid(),
            "pid_start": _process_start(os.getpid()),
        }

    def __enter__(self) -> CellOccupancy:
        self.start = time.time()
        try:
            write_json_atomic(self.path, self._entry())
        except OSError:  # a read-only temp dir must never cost a cell; the counts stay 1
            pass
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.end = time.time()
        try:
            write_json_atomic(self.path, self._entry())
            self.result = self._measure()
        except OSError:
            pass

    def _measure(self) -> dict[str, Any]:
        import json

        now = time.time()
        entries: list[tuple[Path, dict[str, Any]]] = []
        for path in self.directory.glob("*.json"):
            try:
                entry = json.loads(path.read_text())
                float(entry["start"]), float(entry.get("end") or 0), int(entry.get("pid", -1))
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue
            if entry.get("host") != self.host:
                continue
            if (
                entry.get("end") is None
                and path != self.path
                and _process_start(int(entry.get("pid", -1))) != entry.get("pid_start")
            ):
                path.unlink(missing_ok=True)  # its owner died mid-cell: not running any more
                continue
            entries.append((path, entry))
        intervals = [(float(e["start"]), float(e["end"] if e.get("end") is not None else now)) for _, e in entries]
        on_device = [iv for iv, (_, e) in zip(intervals, entries, strict=True) if e.get("device") == self.device]
        running_starts = [float(e["start"]) for p, e in entries if e.get("end") is None]
        for path, entry in entries:  # forget what no running cell overlaps (and no future cell can)
            end = entry.get("end")
            if end is not None and end < now - 60 and all(start > end for start in running_starts):
                path.unlink(missing_ok=True)
        return {
            "cells_at_once_on_host": max(1, max_at_once(intervals, self.start, max(self.end, self.start + 1e-6))),
            "cells_at_once_on_device": max(1, max_at_once(on_device, self.start, max(self.end, self.start + 1e-6))),
            "host": self.host,
            "device": self.device,
        }


def run_tracked(
    cell_runner: CellRunner,
    cell: CellConfig,
    suite: SuiteConfig,
    out_dir: Path,
    *,
    executor: str,
    device: str,
    timeout_s: float | None,
    stream: bool,
    env: Mapping[str, str] | None = None,
    registry: Path | None = None,
) -> dict[str, Any]:
    """Run one cell with ``cell_runner`` while it is registered on this host; its record gets ``concurrency``."""
    extra = {"env": dict(env)} if env else {}
    with CellOccupancy(device, registry) as occupancy:
        record = cell_runner(cell, suite, out_dir, timeout_s=timeout_s, stream=stream, **extra)
    record["concurrency"] = {"executor": executor, **occupancy.result}
    return record


# ---- devices ---------------------------------------------------------------------------------------------------
def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """Ids of the GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every GPU ``nvidia-smi`` lists."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [
            item.strip() for item in env["CUDA_VISIBLE_DEVICES"].split(",") if item.strip() and item.strip() != "-1"
        ]
    return [str(index) for index in range(len(gpu_names()))]


def _device_index(device: str) -> int | None:
    """``N`` of ``cuda:N``/``gpu:N``, else ``None``."""
    head, _, tail = device.partition(":")
    return int(tail) if head in ("cuda", "gpu") and tail.isdigit() else None


def runs_on_gpu(device: str, gpus_available: bool) -> bool:
    """Whether cells with ``--device device`` run on a GPU, given whether GPUs are there."""
    if device == "cpu":
        return False
    if device.startswith(("cuda", "gpu")):
        return True
    return gpus_available  # auto


# ---- local -----------------------------------------------------------------------------------------------------
class LocalExecutor(Executor):
    """Cells on this machine: one at a time (``parallel=1``, the default) or ``parallel`` at once.

    With a GPU suite and GPUs visible here (``--device auto|cuda``), ``parallel > 1`` means one worker per GPU
    (at most ``parallel``), each cell pinned to its worker's GPU by ``CUDA_VISIBLE_DEVICES``. On the CPU the
    cells share the cores: set ``--threads`` to cores / parallel, or the report flags their timings.

    Args:
        parallel: cells at once (>= 1).
        gpus: GPU ids to pin to (default: ``visible_gpus()``); for tests.
    """

    name = "local"

    def __init__(self, parallel: int = 1, gpus: Sequence[str] | None = None) -> None:
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            raise ExecutorError(f"invalid parallel {parallel!r}: expected a positive integer (cells at once)")
        self.parallel = parallel
        self._gpus = None if gpus is None else list(gpus)
        self.slots: list[str | None] = [None]
        self.device = "cpu"
        self._environment: dict[str, Any] | None = None

    def start(self, suite: SuiteConfig, out_dir: Path, on_message: Callable[[str], None] | None = None) -> None:
        from .runtime import available_cores, runtime_record

        note = on_message or (lambda line: None)
        settings = runtime_settings(suite.options)
        self._environment = environment_record(suite.backends, runtime_record(settings))
        gpus = visible_gpus() if self._gpus is None else self._gpus
        device = suite.options.device
        on_gpu = runs_on_gpu(device, bool(gpus))
        index = _device_index(device)
        if on_gpu and index is None and gpus and self.parallel > 1:  # one worker per GPU, pinned
            self.slots = list(gpus[: self.parallel])
            if self.parallel > len(gpus):
                note(
                    f"--parallel {self.parallel}: {len(gpus)} GPU(s) visible, so {len(gpus)} cell(s) at once, "
                    "one per GPU"
                )
            self.device = "cuda"
            return
        self.slots = [None] * self.parallel
        if on_gpu:
            if index is not None:
                self.device = f"cuda:{gpus[index]}" if index < len(gpus) else f"cuda:{index}"
            else:
                self.device = f"cuda:{gpus[0]}" if gpus else "cuda:0"
            if self.parallel > 1:
                note(
                    f"--parallel {self.parallel} on one GPU ({device}): the cells share it; "
                    "their timings are flagged in the report"
                )
        else:
            self.device = "cpu"
            cores = available_cores()
            if self.parallel * settings.threads > cores:
                note(
                    f"--parallel {self.parallel} x {settings.threads} thread(s) on {cores} core(s): the cells compete "
                    "for cores and their timings are flagged in the report "
                    f"(set --threads {max(1, cores // self.parallel)})"
                )

    def environments(self, suite: SuiteConfig) -> list[dict[str, Any]]:
        if self._environment is None:
            raise RuntimeError("LocalExecutor.environments before start")
        return [self._environment]

    def _device_of(self, slot: str | None) -> str:
        return f"cuda:{slot}" if slot is not None else self.device

    def _run_one(
        self, cell: CellConfig, suite: SuiteConfig, out_dir: Path, slot: str | None, timeout_s, stream, cell_runner
    ) -> CellOutcome:
        env = {"CUDA_VISIBLE_DEVICES": slot} if slot is not None else None
        record = run_tracked(
            cell_runner,
            cell,
            suite,
            out_dir,
            executor=self.name,
            device=self._device_of(slot),
            timeout_s=timeout_s,
            stream=stream,
            env=env,
        )
        return CellOutcome(cell, record, self._environment)

    def run(self, cells, suite, out_dir, *, timeout_s, stream, cell_runner) -> Iterator[CellOutcome]:
        if len(self.slots) == 1 or len(cells) <= 1:
            for cell in cells:  # in this thread: an interruption reaches the waiting launcher directly
                yield self._run_one(cell, suite, out_dir, self.slots[0], timeout_s, stream, cell_runner)
            return
        if getattr(cell_runner, "in_process", False):
            raise ValueError(
                "parallel cells need the subprocess launcher (run_cell_inprocess redirects this process' stderr)"
            )
        free: Queue[str | None] = Queue()
        for slot in self.slots:
            free.put(slot)

        def job(cell: CellConfig) -> CellOutcome:
            slot = free.get()
            try:
                return self._run_one(cell, suite, out_dir, slot, timeout_s, stream, cell_runner)
            finally:
                free.put(slot)

        self._pool = ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="tlbench-cell")
        futures = [self._pool.submit(job, cell) for cell in cells]
        for future in as_completed(futures):
            yield future.result()

    def cancel(self, signum: int) -> None:
        # queued cells never start; the running ones are this process' children: run_suite stops them
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


# ---- Ray -------------------------------------------------------------------------------------------------------
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            "--executor ray needs Ray: pip install 'tlbench[ray]' (on the driver and on every node)"
        ) from None
    return ray


def pack_cell_dir(directory: Path) -> dict[str, bytes]:
    """Every file under a cell's artifact directory, by relative path (they are small: logs, curves, predictions)."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def unpack_cell_dir(directory: Path, files: Mapping[str, bytes]) -> None:
    """Replace ``directory`` with ``files`` (as made by ``pack_cell_dir``); paths may not leave it."""
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    root = directory.resolve()
    for name, data in files.items():
        target = (directory / name).resolve()
        if root not in target.parents:
            raise ValueError(f"artifact path {name!r} leaves the cell directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def _node_environment(backends: tuple[str, ...], options: RunOptions) -> dict[str, Any]:
    """The environment record of the node this runs on (a Ray task)."""
    from .runtime import runtime_record

    return environment_record(backends, runtime_record(runtime_settings(options)))


def _ray_cell_task(
    cell: CellConfig,
    suite: SuiteConfig,
    out_dir: str,
    timeout_s: float | None,
    stream: bool,
    driver: dict[str, str],
    env: dict[str, str],
    cell_runner: CellRunner,
    ship: str,
) -> dict[str, Any]:
    """One cell as a Ray task: the cell subprocess on this node, its environment, and its artifacts when needed."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    in_place = _sees_suite_dir(out_dir, driver, ship, node_id)
    suite_dir = Path(out_dir) if in_place else Path(tempfile.mkdtemp(prefix="tlbench-ray-"))
    try:
        environment = _node_environment(suite.backends, suite.options)
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        device = f"cuda:{','.join(gpu_ids)}" if gpu_ids else "cpu"
        record = run_tracked(
            cell_runner,
            cell,
            suite,
            suite_dir,
            executor="ray",
            device=device,
            timeout_s=timeout_s,
            stream=stream,
            env=env,
            registry=registry_dir(env),
        )
        files = None if in_place else pack_cell_dir(artifact_dir(suite_dir, cell))
        return {
            "record": record,
            "environment": environment,
            "artifacts": files,
            "node_id": node_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
    finally:
        if not in_place:
            shutil.rmtree(suite_dir, ignore_errors=True)


def _sees_suite_dir(out_dir: str, driver: dict[str, str], ship: str, node_id: str) -> bool:
    """Whether a task on ``node_id`` works in the driver's suite directory itself: the driver's node, or a node that
    sees the driver's marker file there (a shared filesystem); ``ship`` (``always``/``never``) overrides."""
    return ship == "never" or (
        ship == "auto" and (node_id == driver["node_id"] or (Path(out_dir) / driver["marker"]).is_file())
    )


def _ray_infer_pass_task(
    records: list[dict[str, Any]],
    suite: SuiteConfig,
    out_dir: str,
    driver: dict[str, str],
    env: dict[str, str],
    launch: Launcher | None,
    ship: str,
    files_box: list[Any],
) -> dict[str, Any]:
    """The inference pass of one node's cells as a Ray task on that node (``RayExecutor.infer_pass``).

    In the suite directory itself when this node sees it; otherwise the cells' directories (weights included) come
    in ``files_box`` (one Ray object, fetched only then), the pass runs in a scratch suite directory and the cells'
    directories go back (their weights deleted by the completed pass, their latencies re-written) with its log.
    """
    import ray

    from .infer_pass import LOG_FILE, run_infer_pass

    node_id = ray.get_runtime_context().get_node_id()
    in_place = _sees_suite_dir(out_dir, driver, ship, node_id)
    suite_dir = Path(out_dir) if in_place else Path(tempfile.mkdtemp(prefix="tlbench-ray-pass-"))
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the driver's TLBENCH_* settings (backends, kept weights), for this task only
    try:
        if not in_place:
            shipped_in = ray.get(files_box[0])
            for record in records:
                directory = artifact_dir(suite_dir, record)
                unpack_cell_dir(directory, shipped_in[directory.name])
        messages: list[str] = []
        updated = run_infer_pass(records, suite, suite_dir, launch=launch, on_message=messages.append)
        log = suite_dir / LOG_FILE
        shipped = None
        if not in_place:
            shipped = {
                "cells": {r_dir.name: pack_cell_dir(r_dir) for r_dir in (artifact_dir(suite_dir, r) for r in records)},
                "log": log.read_text(errors="replace") if log.is_file() else "",
            }
        return {"records": updated, "messages": messages, "artifacts": shipped, "host": socket.gethostname()}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not in_place:
            shutil.rmtree(suite_dir, ignore_errors=True)


class RayExecutor(Executor):
    """Cells as Ray tasks on a cluster (``address``) or on a local one started for the run.

    Args:
        address: the cluster (``ray.init(address)``: ``auto``, ``ray://host:10001``, ``host:6379``); ``None``
            starts a local cluster — unless Ray is already initialized in this process, which is then used as is.
        max_retries: attempts after a lost worker or node (system failures only).
        ship_artifacts: ``auto`` (artifacts come back as bytes only from a node that does not see the suite
            directory), ``always`` (every cell's, e.g. to test the remote path on one machine), ``never`` (the
            suite directory is on a shared filesystem).
        init_kwargs: extra ``ray.init`` arguments when this executor starts Ray.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        max_retries: int = 3,
        ship_artifacts: str = "auto",
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if ship_artifacts not in ("auto", "always", "never"):
            raise ValueError(f"invalid ship_artifacts {ship_artifacts!r}: choose from auto, always, never")
        self.address = address
        self.max_retries = max_retries
        self.ship_artifacts = ship_artifacts
        self.init_kwargs = dict(init_kwargs or {})
        self._owns_ray = False
        self._marker: Path | None = None
        self._pending: list[Any] = []
        self._environments: list[dict[str, Any]] | None = None
        self.num_cpus = 1.0
        self.num_gpus = 0
        self._node_of: dict[tuple, str] = {}  # cell key -> the Ray node its cell ran on (this run's cells)

    def start(self, suite: SuiteConfig, out_dir: Path, on_message: Callable[[str], None] | None = None) -> None:
        ray = _import_ray()
        note = on_message or (lambda line: None)
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
            self._owns_ray = True
        resources = ray.cluster_resources()
        device = suite.options.device
        index = _device_index(device)
        if index not in (None, 0):
            raise ExecutorError(
                f"--device {device} with --executor ray: Ray gives each cell one GPU, use --device cuda or auto"
            )
        self.num_gpus = 1 if runs_on_gpu(device, resources.get("GPU", 0) > 0) else 0
        self.num_cpus = float(runtime_settings(suite.options).threads)
        nodes = self._nodes()
        if not nodes:
            need = f"{self.num_cpus:g} CPU(s)" + (" and a GPU" if self.num_gpus else "")
            raise ExecutorError(
                f"no alive Ray node has {need} (the suite's --threads and device): "
                "set --threads to at most a node's CPUs"
            )
        token = uuid.uuid4().hex[:12]
        self._marker = Path(out_dir) / f".tlbench-driver-{token}"
        self._marker.write_text(socket.gethostname())
        self._driver = {"node_id": ray.get_runtime_context().get_node_id(), "marker": self._marker.name}
        note(
            f"Ray: {len(nodes)} node(s) can run cells "
            f"({self.num_cpus:g} CPU(s){' + 1 GPU' if self.num_gpus else ''} per cell)"
        )

    def _nodes(self) -> list[dict[str, Any]]:
        import ray

        def fits(node: dict[str, Any]) -> bool:
            res = node.get("Resources", {})
            return bool(node.get("Alive")) and res.get("CPU", 0) >= self.num_cpus and res.get("GPU", 0) >= self.num_gpus

        return [node for node in ray.nodes() if fits(node)]

    def environments(self, suite: SuiteConfig) -> list[dict[str, Any]]:
        """The environment of every node that can run a cell (one probe task per node)."""
        if self._environments is None:
            import ray
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            probe = ray.remote(_node_environment)
            refs = [
                probe.options(
                    num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                ).remote(suite.backends, suite.options)
                for node in self._nodes()
            ]
            unique: dict[str, dict[str, Any]] = {}
            for environment in ray.get(refs, timeout=300):
                unique.setdefault(environment["environment_id"], environment)
            self._environments = list(unique.values())
        return self._environments

    def run(self, cells, suite, out_dir, *, timeout_s, stream, cell_runner) -> Iterator[CellOutcome]:
        import ray

        task = ray.remote(_ray_cell_task).options(
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_retries=self.max_retries,
            retry_exceptions=False,
        )
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}
        target = str(Path(out_dir).resolve())
        by_ref = {
            task.remote(
                cell, suite, target, timeout_s, stream, self._driver, env, cell_runner, self.ship_artifacts
            ): cell
            for cell in cells
        }
        self._pending = list(by_ref)
        while self._pending:
            ready, self._pending = ray.wait(self._pending, num_returns=1, timeout=1.0)  # a timeout: signals get in
            for ref in ready:
                cell = by_ref[ref]
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # lost on every attempt, or a bug in the task
                    record = empty_record(cell, suite.options)
                    message = " ".join(str(exc).split())
                    record.update(
                        status="failed",
                        error=f"ray task failed after {self.max_retries} retries: {type(exc).__name__}: {message}"[
                            :500
                        ],
                    )
                    record["concurrency"] = {
                        "executor": self.name,
                        "cells_at_once_on_host": None,
                        "cells_at_once_on_device": None,
                        "host": None,
                        "device": None,
                    }
                    yield CellOutcome(cell, record, None)
                    continue
                if result["artifacts"] is not None:
                    unpack_cell_dir(artifact_dir(out_dir, cell), result["artifacts"])
                self._node_of[cell_key(result["record"])] = result["node_id"]
                yield CellOutcome(cell, result["record"], result["environment"])

    def _pass_node(self, record: dict[str, Any], nodes: Mapping[str, str]) -> str | None:
        """The alive node whose cell made ``record``: the one this run's task ran on, else the one of the record's
        host (a resumed cell); ``None`` when neither is alive (any node then times it)."""
        node = self._node_of.get(cell_key(record))
        if node in nodes.values():
            return node
        return nodes.get((record.get("concurrency") or {}).get("host") or "")

    def infer_pass(self, records, suite, out_dir, *, launch, on_message=None) -> list[dict[str, Any]]:
        """The inference pass per node group, on the nodes: the cells that ran on one node are timed again by one
        Ray task pinned there (the same ``run_infer_pass`` as a local run, so each model's cells interleaved in one
        fresh process of that node). The task works in the suite directory when its node sees it (the driver's
        node, a shared filesystem), else it gets the cells' directories with their weights and sends them back."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .infer_pass import LOG_FILE, pass_groups

        say = on_message or (lambda line: None)
        out_dir = Path(out_dir)
        timed = {cell_key(r) for group in pass_groups(records, out_dir) for r in group}
        if not timed:
            return []
        nodes = {n.get("NodeManagerHostname", ""): n["NodeID"] for n in self._nodes()}
        by_node: dict[str | None, list[dict[str, Any]]] = {}
        for record in records:
            if cell_key(record) in timed:
                by_node.setdefault(self._pass_node(record, nodes), []).append(record)
        task = ray.remote(_ray_infer_pass_task)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIX)}
        target = str(out_dir.resolve())
        by_ref: dict[Any, list[dict[str, Any]]] = {}
        for node, group in by_node.items():
            files_box = []
            # the cells' directories, fetched by the task only where the suite directory is not seen
            if self.ship_artifacts == "always" or (self.ship_artifacts == "auto" and node != self._driver["node_id"]):
                files_box = [
                    ray.put({artifact_dir(out_dir, r).name: pack_cell_dir(artifact_dir(out_dir, r)) for r in group})
                ]
            placement = (
                {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)} if node is not None else {}
            )
            ref = task.options(
                num_cpus=self.num_cpus,
                num_gpus=self.num_gpus,
                max_retries=self.max_retries,
                retry_exceptions=False,
                **placement,
            ).remote(group, suite, target, self._driver, env, launch, self.ship_artifacts, files_box)
            by_ref[ref] = group
        updated: list[dict[str, Any]] = []
        self._pending = list(by_ref)
        while self._pending:
            ready, self._pending = ray.wait(self._pending, num_returns=1, timeout=1.0)  # a timeout: signals get in
            for ref in ready:
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the cells keep their figures and their weights
                    message = " ".join(str(exc).split())
                    say(
                        f"inference pass of {len(by_ref[ref])} cell(s) on a Ray node failed, the cells keep their own "
                        f"figures and their weights for the next run: {type(exc).__name__}: {message}"[:500]
                    )
                    continue
                shipped = result["artifacts"]
                if shipped is not None:
                    for record in by_ref[ref]:
                        directory = artifact_dir(out_dir, record)
                        unpack_cell_dir(directory, shipped["cells"][directory.name])
                    with open(out_dir / LOG_FILE, "a") as log:
                        log.write(shipped["log"])
                for message in result["messages"]:
                    say(f"{message} [Ray node {result['host']}]")
                updated += result["records"]
        return updated

    def cancel(self, signum: int) -> None:
        import ray

        for ref in self._pending:
            try:
                ray.cancel(ref, force=True)  # kills the worker; its cell process dies with it (parent-death signal)
            except Exception:
                pass
        self._pending = []

    def close(self) -> None:
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
            self._marker = None
        if self._owns_ray:
            import ray

            ray.shutdown()
            self._owns_ray = False


def make_executor(name: str = "local", *, parallel: int | None = None, ray_address: str | None = None) -> Executor:
    """The executor of ``tlbench run --executor NAME [--parallel N] [--ray-address ADDR]``.

    Raises:
        ExecutorError: one line naming the bad value (unknown executor, ``--parallel`` with Ray, ``--ray-address``
            without it, Ray not installed).
    """
    if name not in EXECUTORS:
        raise ExecutorError(f"unknown executor {name!r}; expected one of: {', '.join(EXECUTORS)}")
    if name == "local":
        if ray_address is not None:
            raise ExecutorError("--ray-address needs --executor ray")
        return LocalExecutor(1 if parallel is None else parallel)
    if parallel is not None:
        raise ExecutorError(
            "--parallel is for --executor local; Ray runs as many cells at once as the cluster's CPUs/GPUs allow"
        )
    _import_ray()
    return RayExecutor(ray_address)
