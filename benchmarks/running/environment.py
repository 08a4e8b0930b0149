"""The environment record stored once per suite: versions, CPU, GPU, threads, code version (commit and diff).

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


#: what the code version ignores: the suite directories a run itself writes (tracked or not)
CODE_VERSION_IGNORED = ("results",)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, timeout=30)


def code_version(repo: Path | None = None) -> dict[str, Any] | None:
    """The code a number was measured with: the commit of the tlbench checkout and its uncommitted changes.

    The changes are the diff against the commit (staged or not) plus the untracked files git does not ignore,
    everything under ``results/`` left out: a run rewrites its own suite directory, so a clean checkout that has
    just run a suite is still clean.

    Args:
        repo: a directory inside the checkout (default: the one holding this module).

    Returns:
        ``{"commit": sha, "dirty": bool, "diff_sha": 12 hex digits of the changes, or None when clean}``;
        ``None`` outside a git checkout (an installed wheel).
    """
    start = repo or Path(__file__).resolve().parent
    try:
        top = _git(start, "rev-parse", "--show-toplevel")
        if top.returncode != 0:
            return None
        root = Path(top.stdout.decode().strip())
        sha = _git(root, "rev-parse", "HEAD")
        if sha.returncode != 0:
            return None
        outside = ["--", ".", *(f":(exclude){name}" for name in CODE_VERSION_IGNORED)]
        diff = _git(root, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff", *outside)
        untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z", *outside)
    except (OSError, subprocess.SubprocessError):
        return None
    digest = hashlib.sha256(diff.stdout)
    changed = bool(diff.stdout)
    for name in sorted(n for n in untracked.stdout.decode(errors="surrogateescape").split("\0") if n):
        changed = True
        digest.update(b"\0untracked\0" + name.encode(errors="surrogateescape") + b"\0")
        try:
            digest.update((root / name).read_bytes())
        except OSError:  # vanished or unreadable: its name still counts
            pass
    return {
        "commit": sha.stdout.decode().strip(),
        "dirty": changed,
        "diff_sha": digest.hexdigest()[:12] if changed else None,
    }


def record_code_version(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ``code_version`` column of a result record: ``{"commit", "diff_sha"}`` of ``code_version()``."""
    return None if version is None else {"commit": version.get("commit"), "diff_sha": version.get("diff_sha")}


def git_sha(repo: Path | None = None) -> str | None:
    """Commit of the tlbench checkout (``+dirty`` with changes outside ``results/``), ``None`` outside git."""
    version = code_version(repo)
    if version is None:
        return None
    return version["commit"] + ("+dirty" if version["dirty"] else "")


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
    """A short stable id of an environment record: the machine, Python and package versions and the commit (not
    the time, not uncommitted changes: those are in each record's ``code_version``, which resume compares)."""
    keys = {k: record.get(k) for k in ("machine", "python", "platform", "packages", "runtime")}
    keys["commit"] = (record.get("code_version") or {}).get("commit")
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
    }
    version = code_version()
    record["code_version"] = version
    record["git_sha"] = None if version is None else version["commit"] + ("+dirty" if version["dirty"] else "")
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
