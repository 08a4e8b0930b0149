"""The tuned runtime of a cell process: thread counts and memory allocator, chosen once, recorded exactly.

Why this exists: on a CPU, glibc's ``malloc`` serves large blocks (activation buffers of a forward pass) with
``mmap`` and hands them back to the OS on ``free``; the next forward pays the page faults and zeroing again.
On the 2-core reference machine this costs 2–3x in CPU inference. Keeping those buffers on the heap (a high
``MALLOC_MMAP_THRESHOLD_``), never trimming the heap (a high ``MALLOC_TRIM_THRESHOLD_``) and growing it in
large steps (``MALLOC_TOP_PAD_``) removes it. jemalloc or tcmalloc, preloaded, do the same job when installed.

The runner resolves the settings once (``resolve_runtime``), launches each cell with ``cell_environment`` (the
variables must be in the environment before the process starts: glibc reads them at its first ``malloc``, and
``LD_PRELOAD`` is read by the dynamic loader), the cell calls ``apply_framework_threads`` right after importing
its framework, and ``runtime_record`` goes into ``environment.json`` and every result record.

Nothing here imports a framework at module level.
"""

from __future__ import annotations

import ctypes.util
import glob
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: allocator names accepted by ``resolve_runtime`` (``auto`` picks one of the others)
ALLOCATOR_CHOICES = ("auto", "glibc-tuned", "jemalloc", "tcmalloc", "system")
#: allocators a ``RuntimeSettings`` can hold
ALLOCATORS = ("glibc-tuned", "jemalloc", "tcmalloc", "system")

_GIB = 1024**3
_MIB = 1024**2

#: ``MALLOC_MMAP_THRESHOLD_`` for glibc >= 2.36. Blocks at least this large are ``mmap``-ed (and unmapped on
#: free); everything smaller comes from the heap and is reused. An activation buffer of a CNN at batch 32, 224 px
#: is tens of MiB (32 x 32 x 112 x 112 float32 = 49 MiB), training at larger batches reaches hundreds of MiB,
#: so the threshold is set far above any single buffer: 4 GiB. glibc >= 2.36 accepts any value (checked on
#: Debian's 2.36: with 4 GiB a 40 MiB block stays on the heap, with the default it is mmap-ed).
GLIBC_MMAP_THRESHOLD_BYTES = 4 * _GIB
#: ``MALLOC_MMAP_THRESHOLD_`` for older glibc: up to 2.34 (at least) ``mallopt``/the tunable silently ignore a
#: value above ``HEAP_MAX_SIZE / 2`` (= 2 x DEFAULT_MMAP_THRESHOLD_MAX / 2 = 32 MiB on 64-bit), which would leave
#: the dynamic 128 KiB default in force, so the largest accepted value is used there.
GLIBC_LEGACY_MMAP_THRESHOLD_BYTES = 32 * _MIB
#: ``MALLOC_TRIM_THRESHOLD_``: free memory at the top of the heap is given back to the OS only beyond this;
#: 4 GiB = practically never within a cell, so a freed activation buffer is reused by the next forward. (No cap.)
GLIBC_TRIM_THRESHOLD_BYTES = 4 * _GIB
#: ``MALLOC_TOP_PAD_``: extra bytes requested from the OS each time the heap grows (address space only, pages
#: are touched when used), so a growing heap needs few ``brk`` calls; 64 MiB covers one large activation.
GLIBC_TOP_PAD_BYTES = 64 * _MIB
#: first glibc version known to accept an mmap threshold above 32 MiB
_GLIBC_UNCAPPED = (2, 36)

#: jemalloc: never purge dirty pages during a cell (the same "keep the heap" policy), background purging thread
JEMALLOC_CONF = "background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"

#: directories searched for jemalloc/tcmalloc shared libraries (plus the active Python prefix and find_library)
LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/lib64",
    "/opt/homebrew/lib",
)
_LIBRARY_PATTERNS = {
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so", "libjemalloc.so.*"),
    "tcmalloc": (
        "libtcmalloc.so.4",
        "libtcmalloc_minimal.so.4",
        "libtcmalloc.so",
        "libtcmalloc_minimal.so",
        "libtcmalloc*.so*",
    ),
}
_FIND_LIBRARY_NAMES = {"jemalloc": ("jemalloc",), "tcmalloc": ("tcmalloc", "tcmalloc_minimal")}


THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
GLIBC_ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota when one is set.

    Falls back to ``os.cpu_count()`` where ``os.sched_getaffinity`` does not exist (macOS, Windows).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by ``/sys/fs/cgroup/cpu.max`` (cgroup v2), ``None`` when unlimited or absent."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def glibc_version() -> tuple[int, int] | None:
    """The running C library's glibc version, ``None`` when it is not glibc (musl, macOS, Windows)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None
    if not text or not text.startswith("glibc"):
        return None
    try:
        major, minor = text.split()[1].split(".")[:2]
        return int(major), int(minor)
    except (IndexError, ValueError):
        return None


def glibc_tuned_env(version: tuple[int, int] | None = None) -> dict[str, str]:
    """The three glibc malloc variables of the ``glibc-tuned`` allocator, for ``version`` (default: this glibc)."""
    version = version or glibc_version() or (0, 0)
    mmap_threshold = GLIBC_MMAP_THRESHOLD_BYTES if version >= _GLIBC_UNCAPPED else GLIBC_LEGACY_MMAP_THRESHOLD_BYTES
    return {
        "MALLOC_MMAP_THRESHOLD_": str(mmap_threshold),
        "MALLOC_TRIM_THRESHOLD_": str(GLIBC_TRIM_THRESHOLD_BYTES),
        "MALLOC_TOP_PAD_": str(GLIBC_TOP_PAD_BYTES),
    }


def find_allocator_library(name: str, search_dirs: tuple[str, ...] | None = None) -> str | None:
    """Path of the ``jemalloc`` or ``tcmalloc`` shared library, ``None`` when not installed.

    Searches ``search_dirs`` (default: ``LIBRARY_DIRS`` plus ``<sys.prefix>/lib`` and ``$CONDA_PREFIX/lib``),
    then ``ctypes.util.find_library`` (``ldconfig``'s cache).
    """
    if name not in _LIBRARY_PATTERNS:
        raise ValueError(f"unknown allocator library {name!r}: choose from jemalloc, tcmalloc")
    if search_dirs is None:
        prefixes = [os.path.join(sys.prefix, "lib")]
        if os.environ.get("CONDA_PREFIX"):
            prefixes.append(os.path.join(os.environ["CONDA_PREFIX"], "lib"))
        search_dirs = (*prefixes, *LIBRARY_DIRS)
    for directory in search_dirs:
        for pattern in _LIBRARY_PATTERNS[name]:
            for path in sorted(glob.glob(os.path.join(directory, pattern))):
                if os.path.isfile(path):
                    return os.path.realpath(path)
    for lib in _FIND_LIBRARY_NAMES[name]:
        found = ctypes.util.find_library(lib)
        if found:
            for directory in search_dirs:
                path = os.path.join(directory, found)
                if os.path.isfile(path):
                    return os.path.realpath(path)
            return found  # a bare soname: the dynamic loader resolves it in LD_PRELOAD
    return None


@dataclass(frozen=True)
class RuntimeSettings:
    """Threads and allocator of every cell process.

    Attributes:
        threads: intra-op threads (OpenMP/MKL/oneDNN, torch, TensorFlow); default: the cores available to this
            process (``available_cores``).
        allocator: ``glibc-tuned`` (glibc with the three ``MALLOC_*`` variables), ``jemalloc``/``tcmalloc``
            (preloaded from ``allocator_library``), or ``system`` (the environment is left untouched).
        allocator_library: the preloaded shared library for ``jemalloc``/``tcmalloc``, else ``None``.
        interop_threads: inter-op threads (TensorFlow's inter-op pool, torch's ``set_num_interop_threads``).
            1 by default: a CNN is a chain of ops, each already parallel across ``threads``; two concurrent ops
            would over-subscribe the cores and make the timings depend on scheduling.
    """

    threads: int = field(default_factory=available_cores)
    allocator: str = "glibc-tuned"
    allocator_library: str | None = None
    interop_threads: int = 1

    def __post_init__(self) -> None:
        _check_positive_int("threads", self.threads)
        _check_positive_int("interop_threads", self.interop_threads)
        if self.allocator not in ALLOCATORS:
            raise ValueError(f"invalid allocator {self.allocator!r}: choose from {', '.join(ALLOCATORS)}")
        if self.allocator in ("jemalloc", "tcmalloc") and not self.allocator_library:
            raise ValueError(f"allocator {self.allocator!r} needs allocator_library (the shared library to preload)")

    @property
    def env(self) -> dict[str, str]:
        """The environment variables a cell process gets (added to, or replacing, the parent's)."""
        env = {
            "OMP_NUM_THREADS": str(self.threads),
            "MKL_NUM_THREADS": str(self.threads),
            "TF_NUM_INTRAOP_THREADS": str(self.threads),
            "TF_NUM_INTEROP_THREADS": str(self.interop_threads),
        }
        if self.allocator == "glibc-tuned":
            env.update(glibc_tuned_env())
        elif self.allocator == "jemalloc":
            env["MALLOC_CONF"] = JEMALLOC_CONF
        elif self.allocator == "tcmalloc":
            # gperftools prints a line for every allocation above 1 GiB by default; keep cell logs clean
            env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] = str(64 * _GIB)
        return env


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"invalid {name} {value!r}: expected a positive integer (cores available: {available_cores()})"
        )


def resolve_runtime(threads: int | None, allocator: str = "auto", *, interop_threads: int = 1) -> RuntimeSettings:
    """Validate the user's choices and find the allocator library.

    Args:
        threads: intra-op threads, ``None`` for the cores available to this process. A value above that is
            allowed (it is the user's choice, and recorded) but must be a positive integer.
        allocator: one of ``ALLOCATOR_CHOICES``. ``auto`` = jemalloc when its library is found, else tcmalloc
            when found, else ``glibc-tuned`` (``system`` on a non-glibc C library).
        interop_threads: inter-op threads (see ``RuntimeSettings``).

    Raises:
        ValueError: one line quoting the bad value and the choices (unknown allocator, non-positive threads, a
            requested jemalloc/tcmalloc whose library is not installed, ``glibc-tuned`` without glibc).
    """
    if threads is None:
        threads = available_cores()
    elif isinstance(threads, str) and threads.strip().isdigit():
        threads = int(threads)
    _check_positive_int("threads", threads)
    _check_positive_int("interop_threads", interop_threads)
    if not isinstance(allocator, str) or allocator not in ALLOCATOR_CHOICES:
        raise ValueError(f"invalid allocator {allocator!r}: choose from {', '.join(ALLOCATOR_CHOICES)}")
    if allocator == "auto":
        for name in ("jemalloc", "tcmalloc"):
            library = find_allocator_library(name)
            if library:
                return RuntimeSettings(threads, name, library, interop_threads)
        return RuntimeSettings(threads, "glibc-tuned" if glibc_version() else "system", None, interop_threads)
    if allocator in ("jemalloc", "tcmalloc"):
        library = find_allocator_library(allocator)
        if not library:
            raise ValueError(
                f"allocator {allocator!r} is not installed (no lib{allocator} shared library found): "
                f"install it or choose from auto, glibc-tuned, system"
            )
        return RuntimeSettings(threads, allocator, library, interop_threads)
    if allocator == "glibc-tuned" and glibc_version() is None:
        raise ValueError("allocator 'glibc-tuned' needs glibc (this C library is not glibc): choose from auto, system")
    return RuntimeSettings(threads, allocator, None, interop_threads)


def cell_environment(settings: RuntimeSettings, base_env: Mapping[str, str]) -> dict[str, str]:
    """The environment of a cell subprocess: ``base_env`` plus the thread and allocator variables.

    ``LD_PRELOAD`` keeps whatever ``base_env`` already preloads, after the allocator library. With
    ``system`` the allocator variables of ``base_env`` are passed through unchanged.
    """
    env = dict(base_env)
    env.update(settings.env)
    if settings.allocator in ("jemalloc", "tcmalloc") and settings.allocator_library:
        previous = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p != settings.allocator_library]
        env["LD_PRELOAD"] = " ".join([settings.allocator_library, *previous])
    return env


def child_environment(settings: RuntimeSettings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a cell or inference-pass process: this process's, unbuffered output, TensorFlow's C++
    logs at warnings, ``extra`` (a pinned GPU), then the thread and allocator variables (``cell_environment``)."""
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    return cell_environment(settings, {**base, **(extra or {})})


def apply_framework_threads(settings: RuntimeSettings, engine: str) -> dict[str, Any]:
    """Set the engine's thread pools inside the cell process (call right after importing the framework).

    Each engine module says how (``backends.engines``: torch's ``set_num_threads``/``set_num_interop_threads``,
    TensorFlow's ``tf.config.threading``); settings that can no longer change are kept and reported.

    Args:
        settings: the resolved runtime.
        engine: an engine name (``torch``, ``tensorflow``) or a backend name (its registry row's engine).

    Returns:
        What the engine reports afterwards: ``{"framework", "intra_op_threads", "inter_op_threads",
        "warnings"}`` (``warnings`` lists the settings that could not be applied).

    Raises:
        ValueError: neither an engine nor a backend name.
    """
    from ...backends import REGISTRY
    from ...backends.engines import ENGINES, start_engine

    name = REGISTRY[engine].engine if engine in REGISTRY else engine
    if name not in ENGINES:
        raise ValueError(f"invalid framework {engine!r}: choose from {', '.join([*ENGINES, *REGISTRY])}")
    return start_engine(name).apply_threads(settings.threads, settings.interop_threads)


def runtime_settings(options: Any) -> RuntimeSettings:
    """The resolved runtime of every cell process of a suite (its ``RunOptions``' threads and allocator).

    Raises:
        ValueError: bad thread count or an allocator that is not installed (one line).
    """
    return resolve_runtime(options.threads, options.allocator)


def runtime_record(settings: RuntimeSettings) -> dict[str, Any]:
    """The exact runtime, JSON-friendly, for ``environment.json`` and every result record.

    Keys: ``threads``, ``interop_threads``, ``allocator``, ``allocator_library``, ``env`` (the variables set by
    ``cell_environment``, as strings), ``glibc`` (``"2.36"`` or ``None``), ``cores_available``, ``cpu_count``.
    """
    version = glibc_version()
    return {
        "threads": settings.threads,
        "interop_threads": settings.interop_threads,
        "allocator": settings.allocator,
        "allocator_library": settings.allocator_library,
        "env": dict(sorted(settings.env.items())),
        "glibc": f"{version[0]}.{version[1]}" if version else None,
        "cores_available": available_cores(),
        "cpu_count": os.cpu_count(),
    }
