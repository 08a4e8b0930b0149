"""The environment record stored once per suite: versions, CPU, GPU, threads, git sha.

Framework versions are read from package metadata, so recording them never imports a framework.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

#: distributions reported per backend (plus the core ones)
BACKEND_PACKAGES = {
    "timm": ["torch", "torchvision", "timm"],
    "torchvision": ["torch", "torchvision"],
    "keras": ["tensorflow", "tensorflow-cpu", "keras"],
}
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
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_record(backends: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Everything needed to interpret the suite's numbers later."""
    packages = list(CORE_PACKAGES)
    for backend in backends:
        packages += [p for p in BACKEND_PACKAGES.get(backend, []) if p not in packages]
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS") if k in os.environ},
        "gpus": gpu_names(),
        "packages": package_versions(packages),
        "git_sha": git_sha(),
    }
