"""The environment record stored once per suite: versions, CPU, GPU, threads, git sha.

Framework versions are read from package metadata, so recording them never imports a framework.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

CORE_PACKAGES = ["numpy", "pandas", "scikit-learn", "pillow"]


def package_versions(names: list[str]) -> dict[str, str]:
    """Installed versions of the given distributions (missing ones omitted)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """CPU model name from ``/proc/cpuinfo`` (Linux) or ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """GPU names from ``nvidia-smi`` if present (empty list otherwise)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def git_sha(repo: Path | None = None) -> str | None:
    """Commit of the tlbench checkout (``+dirty`` if modified), ``None`` outside git."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine_identity() -> dict[str, Any]:
    """What identifies the machine a number was measured on: host, machine id, CPU, core count, GPUs."""
    machine_id = None
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            machine_id = Path(path).read_text().strip() or None
            break
        except OSError:
            continue
    return {
        "host": socket.gethostname(),
        "machine_id": machine_id,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names(),
    }


#: environment variable naming the machine probe JSON (set by ``tlbench run`` for its cells)
PROBE_FILE_ENV = "TLBENCH_PROBE_FILE"


def load_probe_file() -> dict[str, Any] | None:
    """The machine probe ``tlbench run`` measured (or read from its cache) before the cells, if any."""
    path = os.environ.get(PROBE_FILE_ENV)
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def probe_summary() -> dict[str, Any] | None:
    """The machine probe handed to the cells (``TLBENCH_PROBE_FILE``): FLOP/s per op and dtype, threads, when."""
    probe = load_probe_file()
    if probe is None:
        return None
    keys = ("device", "threads", "torch", "measured_at", "matmul_flop_per_s", "conv_flop_per_s", "canary_gflop_per_s")
    return {**{k: probe.get(k) for k in keys}, "disturbed": (probe.get("contention") or {}).get("disturbed")}


def environment_id(record: dict[str, Any]) -> str:
    """A short stable id of an environment record: the machine, Python and package versions (not the time,
    not the git sha: re-running after a code change on the same machine is the same environment)."""
    keys = {k: record.get(k) for k in ("machine", "python", "platform", "packages", "runtime")}
    return hashlib.sha256(json.dumps(keys, sort_keys=True, default=str).encode()).hexdigest()[:12]


def environment_record(backends: tuple[str, ...] | list[str], runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything needed to interpret the suite's numbers later, with its ``environment_id``.

    Args:
        backends: registry names whose framework distributions are recorded (from their registry rows).
        runtime: the tuned runtime of the cell processes (threads, allocator), when known.
    """
    from ...backends import REGISTRY

    packages = list(CORE_PACKAGES)
    for backend in backends:
        entry = REGISTRY.get(backend)
        packages += [p for p in (entry.packages if entry else ()) if p not in packages]
    record = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": machine_identity(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads_env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
            if k in os.environ
        },
        "gpus": gpu_names(),
        "packages": package_versions(packages),
        "runtime": runtime,
        "probe": probe_summary(),
        "git_sha": git_sha(),
    }
    record["environment_id"] = environment_id(record)
    return record


ENVIRONMENT_FILE = "environment.json"


def load_environments(suite_dir: Path) -> dict[str, dict[str, Any]]:
    """The environments of a suite directory by id (an older single-record file becomes one ``legacy`` entry)."""
    path = Path(suite_dir) / ENVIRONMENT_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if isinstance(data, dict) and isinstance(data.get("environments"), dict):
        return data["environments"]
    return {"legacy": data} if isinstance(data, dict) else {}


def add_environment(suite_dir: Path, record: dict[str, Any]) -> None:
    """Add (or refresh) ``record`` under its id in ``environment.json``, keeping every other environment.

    Called only once a cell has been measured in this environment, so the file never describes a machine
    that produced none of the suite's records.
    """
    from .results import write_json_atomic

    environments = load_environments(suite_dir)
    environments[record["environment_id"]] = record
    write_json_atomic(Path(suite_dir) / ENVIRONMENT_FILE, {"environments": environments})
