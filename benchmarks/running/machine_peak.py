"""Machine probe: what this device can do per dtype, measured once per machine and cached.

Two kernels per dtype, run by an engine (``backends.engines``: torch by default, TensorFlow on a machine whose
cells use it): a square matmul and a 3x3 convolution (the two ops that dominate a CNN).
The result serves two purposes:

* ``slower_dtypes`` / ``amp_warning``: a dtype the hardware has no native support for (bf16 on a CPU
  without AVX512-BF16/AMX, fp16 on most CPUs) can be 10–100x slower than float32; the runner warns before any
  ``--amp`` cell runs instead of silently producing speed numbers nobody should trust.
* ``peak_flop_per_s``: the denominator of model FLOPs utilization (MFU = achieved FLOP/s / peak).

Conventions: a multiply-add counts as 2 FLOPs (as ``torch.utils.flop_counter``); each figure is the median
over timed repeats after a warm-up, with the device synchronized before every clock read. A dtype so slow
that one iteration of a kernel would take longer than ``max_iteration_s`` is measured on a small pilot size
instead (the fastest of 1-3 calls, flagged ``bounded``), so probing never takes minutes.

No framework is imported at module level. ``python -m tlbench.benchmarks.running.machine_peak`` prints the
(cached) probe as JSON, so a framework-free parent can run it in a subprocess with the cell's environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

DTYPES = ("float32", "bfloat16", "float16")
#: ``--amp`` spellings → dtype names
AMP_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16", "half": "float16"}
#: one iteration of a kernel may take at most this long before the pilot measurement is kept instead
MAX_ITERATION_S = 2.0
#: probe format version (part of the cache key: a new format is never read from an old file; 3: the canary runs
#: on one BLAS thread)
PROBE_VERSION = 3
#: a cached probe whose canary now runs more than this fraction faster or slower is measured again
PROBE_DRIFT = 0.10
#: the engine whose kernels are timed when none is named (``backends.engines``)
DEFAULT_ENGINE = "torch"

#: kernel sizes per device type: (matmul n, conv (batch, channels, side)); pilots are 1/64 and 1/32 of the work
SIZES = {
    "cpu": {"matmul_n": 1024, "conv": (8, 64, 56), "pilot_matmul_n": 256, "pilot_conv": (1, 64, 28)},
    # a GPU needs large kernels to reach its peak (1024^2 matmuls are launch-bound on an H100)
    "cuda": {"matmul_n": 8192, "conv": (32, 256, 56), "pilot_matmul_n": 2048, "pilot_conv": (1, 256, 56)},
}


def matmul_flops(n: int) -> int:
    """FLOPs of an ``n x n @ n x n`` matmul (2 per multiply-add)."""
    return 2 * n**3


def conv_flops(batch: int, channels: int, side: int, kernel: int = 3) -> int:
    """FLOPs of a ``kernel x kernel`` stride-1 'same' convolution, ``channels`` → ``channels`` on ``side``²."""
    return 2 * batch * channels * channels * kernel * kernel * side * side


def _device_type(device: str) -> str:
    kind = device.split(":")[0].lower()
    if kind not in SIZES:
        raise ValueError(f"invalid device {device!r}: choose from cpu, cuda, cuda:N")
    return kind


def _check_dtypes(dtypes: Sequence[str]) -> tuple[str, ...]:
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ValueError(f"invalid dtype {dtype!r}: choose from {', '.join(DTYPES)}")
    return tuple(dict.fromkeys(dtypes))


def _time_calls(
    run: Callable[[], object], sync: Callable[[], None], min_time_s: float, max_iteration_s: float
) -> dict[str, Any]:
    """One warm-up call, then timed calls for ``min_time_s`` (at least 3, but never much past ``max_iteration_s``
    when a kernel is slow); a warm-up call slower than ``max_iteration_s`` is the measurement itself."""
    sync()
    start = time.perf_counter()
    run()
    sync()
    first_s = time.perf_counter() - start
    if first_s > max_iteration_s:
        return {"median_s": first_s, "iterations": 1, "bounded": True}
    times: list[float] = []
    budget_s = max(min_time_s, max_iteration_s)  # a slow kernel stops after about this long, even below 3 repeats
    while len(times) < 10_000:
        sync()
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
        total = sum(times)
        if (total >= min_time_s and len(times) >= 3) or total >= budget_s:
            break
    return {"median_s": statistics.median(times), "iterations": len(times), "bounded": False}


def _kernel_shape(op: str, sizes: dict[str, Any], full: bool) -> tuple[int, ...]:
    if op == "matmul":
        return (sizes["matmul_n"] if full else sizes["pilot_matmul_n"],)
    return tuple(sizes["conv"] if full else sizes["pilot_conv"])


def _kernel_flops(op: str, shape: tuple[int, ...]) -> int:
    return matmul_flops(shape[0]) if op == "matmul" else conv_flops(*shape)


def _shape_text(op: str, shape: tuple[int, ...]) -> str:
    if op == "matmul":
        n = shape[0]
        return f"{n}x{n}@{n}x{n}"
    batch, channels, side = shape
    return f"{batch}x{channels}x{side}x{side},3x3"


def _measure_kernel(
    op: str, dtype: str, device: str, min_time_s: float, max_iteration_s: float, engine: ModuleType
) -> dict[str, Any]:
    """FLOP/s of ``op`` (``matmul``/``conv``) in ``dtype`` on ``device`` with ``engine``; the entry of ``details``."""
    kind = _device_type(device)
    sizes = SIZES[kind]
    sync = engine.synchronizer(device)
    try:
        # pilot: a small instance tells whether the full size can finish an iteration within the bound;
        # the fastest of up to 3 calls, so one scheduling hiccup on a busy machine does not trip the bound
        shape = _kernel_shape(op, sizes, full=False)
        run = engine.probe_kernel(op, dtype, device, shape)
        run()  # one-off setup (kernel selection, oneDNN primitive creation, tracing)
        pilot_s, spent_s, calls = math.inf, 0.0, 0
        while calls < 3:
            calls += 1
            sync()
            start = time.perf_counter()
            run()
            sync()
            elapsed = time.perf_counter() - start
            pilot_s, spent_s = min(pilot_s, elapsed), spent_s + elapsed
            if spent_s > max_iteration_s / 4:
                break
        flops = _kernel_flops(op, shape)
        full_shape = _kernel_shape(op, sizes, full=True)
        if pilot_s * _kernel_flops(op, full_shape) / flops > max_iteration_s:
            return {
                "flop_per_s": flops / pilot_s,
                "median_s": pilot_s,
                "iterations": calls,
                "bounded": True,
                "shape": _shape_text(op, shape),
            }
        run = engine.probe_kernel(op, dtype, device, full_shape)
        timing = _time_calls(run, sync, min_time_s, max_iteration_s)
    except (RuntimeError, TypeError, NotImplementedError) as err:  # dtype not implemented for this op/device
        return {"flop_per_s": None, "error": str(err).splitlines()[0][:200]}
    return {
        "flop_per_s": _kernel_flops(op, full_shape) / timing["median_s"],
        **timing,
        "shape": _shape_text(op, full_shape),
    }


def _cpu_model() -> str:
    """CPU model name (``environment.cpu_model``)."""
    from .environment import cpu_model

    return cpu_model()


def _machine_facts(device: str, engine: ModuleType) -> dict[str, Any]:
    """CPU model, cores, GPU name: what identifies the hardware (the engine is asked only for the GPU's name)."""
    facts: dict[str, Any] = {"cpu": _cpu_model(), "cpu_count": os.cpu_count()}
    if _device_type(device) == "cuda":
        facts["gpu"] = engine.gpu_name(device)
    return facts


def _start(engine: str, threads: int | None) -> ModuleType:
    """The engine's module, its framework imported and its threads set (when ``threads`` is given).

    Raises:
        ValueError: unknown engine. EngineUnavailable: its framework is not installed.
    """
    from ...backends.engines import ENGINES, start_engine

    if engine not in ENGINES:
        raise ValueError(f"invalid engine {engine!r}: choose from {', '.join(ENGINES)}")
    module = start_engine(engine)
    if threads is not None:
        module.apply_threads(threads, 1)
    return module


def probe_machine(
    device: str = "cpu",
    dtypes: Sequence[str] = DTYPES,
    min_time_s: float = 0.5,
    *,
    threads: int | None = None,
    max_iteration_s: float = MAX_ITERATION_S,
    engine: str = DEFAULT_ENGINE,
) -> dict[str, Any]:
    """Measure matmul and 3x3-conv FLOP/s per dtype on ``device`` with ``engine``'s kernels.

    Args:
        device: ``cpu``, ``cuda`` or ``cuda:N``.
        dtypes: among ``float32``, ``bfloat16``, ``float16``.
        min_time_s: timed repeats per kernel and dtype last at least this long (after one warm-up call).
        threads: the engine's intra-op threads first (default: leave its setting, e.g. from ``OMP_NUM_THREADS``).
        max_iteration_s: a kernel whose single iteration would take longer is measured once on a pilot size.
        engine: the engine whose kernels are timed (``backends.engines``: ``torch``, ``tensorflow``): a machine
            without torch is probed with the engine its cells use.

    Returns:
        ``{"device", "cpu", "cpu_count", "gpu" (cuda only), "threads", "engine", "engine_version",
        "measured_at" (ISO 8601, UTC),
        "matmul_flop_per_s": {dtype: float | None}, "conv_flop_per_s": {dtype: float | None},
        "canary_gflop_per_s" (``running.canary``: the numpy matmul every cell repeats around its timed part),
        "details": {"matmul"|"conv": {dtype: {"flop_per_s", "median_s", "iterations", "bounded", "shape"}
        or {"flop_per_s": None, "error"}}}, "contention" (``ContentionSampler.summary()`` over the probe),
        "min_time_s", "max_iteration_s", "version"}``. ``None`` marks a dtype the op does not support on this
        device.

    Raises:
        ValueError: unknown device or dtype.
    """
    _device_type(device)
    dtypes = _check_dtypes(dtypes)
    module = _start(engine, threads)
    from .canary import canary_gflop_per_s
    from .contention import ContentionSampler

    details: dict[str, dict[str, Any]] = {"matmul": {}, "conv": {}}
    with ContentionSampler(gpu=_device_type(device) == "cuda") as sampler:
        for dtype in dtypes:
            for op in ("matmul", "conv"):
                details[op][dtype] = _measure_kernel(op, dtype, device, min_time_s, max_iteration_s, module)
        canary = canary_gflop_per_s()  # what each cell's canary is compared with (running.canary)
    return {
        "device": device,
        **_machine_facts(device, module),
        "threads": module.current_threads(),
        "engine": engine,
        "engine_version": module.version(),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "matmul_flop_per_s": {d: details["matmul"][d]["flop_per_s"] for d in dtypes},
        "conv_flop_per_s": {d: details["conv"][d]["flop_per_s"] for d in dtypes},
        "details": details,
        "canary_gflop_per_s": canary,
        "contention": sampler.summary(),
        "min_time_s": min_time_s,
        "max_iteration_s": max_iteration_s,
        "version": PROBE_VERSION,
    }


# ---- cache -----------------------------------------------------------------------------------------


def default_cache_dir(root: str | Path | None = None) -> Path:
    """Where probes are cached: ``<root>/probe`` for a cache root (``tlbench run --cache-dir``), else
    ``$TLBENCH_CACHE/probe`` or ``~/.cache/tlbench/probe`` (the dataset cache's root, as ``datasets.cache``)."""
    root = root or os.environ.get("TLBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tlbench")
    return Path(root) / "probe"


def machine_key(device: str = "cpu", threads: int | None = None, engine: str = DEFAULT_ENGINE) -> str:
    """File-name-safe key of what the probe depends on: CPU model, core count, threads, device, engine and its
    version.

    ``threads`` defaults to the engine's current setting (imports the engine's framework).
    """
    module = _start(engine, None)
    facts = _machine_facts(device, module)
    threads = threads if threads is not None else module.current_threads()
    parts = [
        facts["cpu"],
        str(facts["cpu_count"]),
        str(threads),
        device,
        facts.get("gpu") or "",
        engine,
        module.version(),
        str(PROBE_VERSION),
    ]
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-")
    return f"{slug}-{threads}t-{digest}"


def _valid_probe(probe: Any, dtypes: Sequence[str]) -> bool:
    if not isinstance(probe, dict) or probe.get("version") != PROBE_VERSION:
        return False
    canary = probe.get("canary_gflop_per_s")  # probes cached before the canary existed are measured again
    if not isinstance(canary, (int, float)) or canary <= 0:
        return False
    for table in ("matmul_flop_per_s", "conv_flop_per_s"):
        values = probe.get(table)
        if not isinstance(values, dict) or any(d not in values for d in dtypes):
            return False
        if any(v is not None and (not isinstance(v, (int, float)) or v <= 0) for v in values.values()):
            return False
    return True


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_probe(
    cache_dir: Path | None = None,
    device: str = "cpu",
    dtypes: Sequence[str] = DTYPES,
    min_time_s: float = 0.5,
    *,
    threads: int | None = None,
    refresh: bool = False,
    engine: str = DEFAULT_ENGINE,
    canary: Callable[[], float] | None = None,
) -> dict[str, Any]:
    """The cached probe of this machine, measuring (and caching) it first when needed.

    The file is ``<cache_dir>/<machine_key>.json``, written atomically. A missing, unreadable or corrupt file,
    one that lacks a requested dtype, one measured while other processes disturbed the machine
    (``contention.disturbed``), or one whose speed canary has drifted by more than ``PROBE_DRIFT`` since (the
    machine is no longer the one probed) is re-probed (never a traceback).

    Args:
        cache_dir: default ``default_cache_dir()``.
        device, dtypes, min_time_s, threads, engine: as ``probe_machine``.
        refresh: probe again even when a valid cache file exists.
        canary: the speed canary's GFLOP/s now (default ``canary.canary_gflop_per_s``): a cached probe whose canary
            differs from it by more than ``PROBE_DRIFT`` is measured again (``reprobed_after_drift`` records both);
            a kept one carries ``canary_check``.
    """
    dtypes = _check_dtypes(dtypes)
    drifted: dict[str, Any] | None = None
    _start(engine, threads)
    path = Path(cache_dir or default_cache_dir()) / f"{machine_key(device, engine=engine)}.json"
    if not refresh:
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            cached = None
        if _valid_probe(cached, dtypes) and not (cached.get("contention") or {}).get("disturbed"):
            assert cached is not None
            now = (canary or _canary)()
            drift = now / cached["canary_gflop_per_s"] - 1
            check = {"canary_gflop_per_s": round(now, 2), "drift": round(drift, 3)}
            if abs(drift) <= PROBE_DRIFT:
                return {**cached, "canary_check": check}
            drifted = {**check, "cached_canary_gflop_per_s": cached["canary_gflop_per_s"]}
            drifted["cached_measured_at"] = cached.get("measured_at")
    probe = probe_machine(device, dtypes, min_time_s, engine=engine)
    if drifted is not None:  # both recorded: why it was measured again, and the new figures
        probe["reprobed_after_drift"] = drifted
    try:
        _write_json_atomic(path, probe)
    except OSError as err:  # a read-only cache costs a re-probe next time, nothing else
        print(f"tlbench: could not cache the machine probe in {path}: {err}", file=sys.stderr)
    return probe


def _canary() -> float:
    from .canary import canary_gflop_per_s

    return canary_gflop_per_s()


# ---- interpretation -----------------------------------------------------------------------------------


def slower_dtypes(probe: dict[str, Any], factor: float = 1.0) -> dict[str, float]:
    """Dtypes more than ``factor`` times slower than float32 in BOTH matmul and conv, with the slow-down.

    The slow-down is the smaller of the two ratios ``float32 FLOP/s / dtype FLOP/s`` (the dtype is at least
    that much slower); a dtype an op does not support at all counts as infinitely slower (``math.inf``).
    Used to warn about ``--amp bf16|fp16`` before any cell runs.
    """
    result: dict[str, float] = {}
    reference = {op: probe.get(f"{op}_flop_per_s", {}).get("float32") for op in ("matmul", "conv")}
    if not all(reference.values()):
        return result
    dtypes = set(probe.get("matmul_flop_per_s", {})) | set(probe.get("conv_flop_per_s", {}))
    for dtype in sorted(dtypes - {"float32"}):
        ratios = []
        for op in ("matmul", "conv"):
            table = probe.get(f"{op}_flop_per_s", {})
            if dtype not in table:
                break
            value = table[dtype]
            ratios.append(math.inf if not value else reference[op] / value)
        else:
            slowdown = min(ratios)
            if slowdown > factor:
                result[dtype] = slowdown if math.isinf(slowdown) else round(slowdown, 2)
    return result


def peak_flop_per_s(probe: dict[str, Any], dtype: str) -> float:
    """Peak FLOP/s of ``dtype``: the larger of the measured matmul and 3x3-conv rates (the MFU denominator).

    It is a measured, achievable peak on this machine and thread count, not the vendor's datasheet figure, so
    an MFU near 1 means "as fast as this machine's best kernel", not "as fast as the silicon".

    Raises:
        ValueError: the probe has no measurement for ``dtype``.
    """
    values = [probe.get(f"{op}_flop_per_s", {}).get(dtype) for op in ("matmul", "conv")]
    values = [v for v in values if v]
    if not values:
        raise ValueError(
            f"no measurement for dtype {dtype!r} in the probe: measured {', '.join(probe.get('matmul_flop_per_s', {}))}"
        )
    return float(max(values))


def amp_warning(probe: dict[str, Any], amp: str | None, factor: float = 1.5) -> str | None:
    """A one-line warning when ``--amp`` selects a dtype this device runs more than ``factor`` times slower."""
    if not amp or amp == "none":
        return None
    dtype = AMP_DTYPES.get(amp, amp)
    slowdown = slower_dtypes(probe, factor).get(dtype)
    if slowdown is None:
        return None
    where = probe.get("gpu") or probe.get("cpu") or probe.get("device")
    how = "is not supported" if math.isinf(slowdown) else f"runs {slowdown:.1f}x slower than float32"
    return (
        f"--amp {amp}: {dtype} {how} on this {probe.get('device', 'device')} ({where}); its speed figures will "
        "reflect that"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tlbench.benchmarks.running.machine_peak``: print the (cached) machine probe as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--min-time-s", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--refresh", action="store_true")
    parser.add_argument("--engine", default=DEFAULT_ENGINE, help="whose kernels are timed (torch, tensorflow)")
    args = parser.parse_args(argv)
    try:
        probe = load_or_probe(
            args.cache_dir,
            args.device,
            tuple(d for d in args.dtypes.split(",") if d),
            args.min_time_s,
            threads=args.threads,
            refresh=args.refresh,
            engine=args.engine,
        )
    except (ValueError, RuntimeError) as err:  # a bad value, or the engine is not installed (EngineUnavailable)
        print(f"tlbench probe: {err}", file=sys.stderr)
        return 2
    print(json.dumps(probe, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
