"""The cell runtime: validated settings, the environment a real subprocess sees, framework thread pools."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tlbench.benchmarks.running import runtime
from tlbench.benchmarks.running.runtime import (
    RuntimeSettings,
    apply_framework_threads,
    cell_environment,
    resolve_runtime,
    runtime_record,
)


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_defaults_use_the_available_cores() -> None:
    settings = RuntimeSettings()
    assert settings.threads == runtime.available_cores() >= 1
    assert settings.allocator == "glibc-tuned"
    if hasattr(os, "sched_getaffinity"):
        assert settings.threads <= len(os.sched_getaffinity(0))


def test_subprocess_sees_thread_and_glibc_variables() -> None:
    settings = resolve_runtime(threads=1, allocator="glibc-tuned")
    env = cell_environment(settings, {**os.environ, "MALLOC_TOP_PAD_": "1", "KEEP_ME": "yes"})
    names = list(runtime.THREAD_ENV_VARS) + list(runtime.GLIBC_ENV_VARS) + ["KEEP_ME"]
    seen = json.loads(_run(f"import os, json; print(json.dumps({{k: os.environ.get(k) for k in {names!r}}}))", env))
    assert seen["OMP_NUM_THREADS"] == seen["MKL_NUM_THREADS"] == seen["TF_NUM_INTRAOP_THREADS"] == "1"
    assert seen["TF_NUM_INTEROP_THREADS"] == "1"
    assert seen["KEEP_ME"] == "yes"
    assert seen["MALLOC_TOP_PAD_"] == str(runtime.GLIBC_TOP_PAD_BYTES)  # ours replace the parent's
    assert int(seen["MALLOC_MMAP_THRESHOLD_"]) >= 32 * 2**20
    assert int(seen["MALLOC_TRIM_THRESHOLD_"]) >= 2**30


@pytest.mark.skipif(runtime.glibc_version() is None, reason="glibc only")
def test_glibc_keeps_large_blocks_on_the_heap_in_the_subprocess() -> None:
    """With the tuned variables a 20 MiB block comes from the heap (mallinfo2.hblks counts mmap-ed blocks)."""
    code = (
        "import ctypes\n"
        "libc = ctypes.CDLL('libc.so.6'); libc.malloc.restype = ctypes.c_void_p\n"
        "class MI(ctypes.Structure): _fields_ = [(n, ctypes.c_size_t) for n in 'arena ordblks smblks hblks hblkhd "
        "usmblks fsmblks uordblks fordblks keepcost'.split()]\n"
        "libc.mallinfo2.restype = MI\n"
        "before = libc.mallinfo2().hblks; p = libc.malloc(20 * 2**20); after = libc.mallinfo2().hblks\n"
        "print(after - before)\n"
    )
    if runtime.glibc_version() < (2, 33):  # mallinfo2 is 2.33+
        pytest.skip("mallinfo2 needs glibc >= 2.33")
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    assert _run(code, base) == "1"  # untuned: mmap-ed
    assert _run(code, cell_environment(resolve_runtime(1, "glibc-tuned"), base)) == "0"


def test_system_allocator_leaves_the_allocator_environment_alone() -> None:
    env = cell_environment(
        RuntimeSettings(threads=2, allocator="system"), {"MALLOC_ARENA_MAX": "2", "LD_PRELOAD": "x.so"}
    )
    assert env["MALLOC_ARENA_MAX"] == "2" and env["LD_PRELOAD"] == "x.so"
    assert not any(k in env for k in runtime.GLIBC_ENV_VARS)
    assert env["OMP_NUM_THREADS"] == "2"


def test_preloaded_allocator_goes_first_in_ld_preload() -> None:
    settings = RuntimeSettings(threads=1, allocator="jemalloc", allocator_library="/opt/libjemalloc.so.2")
    env = cell_environment(settings, {"LD_PRELOAD": "/a/libx.so:/opt/libjemalloc.so.2"})
    assert env["LD_PRELOAD"] == "/opt/libjemalloc.so.2 /a/libx.so"
    assert "MALLOC_CONF" in env and "MALLOC_MMAP_THRESHOLD_" not in env


def test_auto_prefers_jemalloc_then_tcmalloc_then_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {"jemalloc": None, "tcmalloc": "/lib/libtcmalloc.so.4"}
    monkeypatch.setattr(runtime, "find_allocator_library", lambda name, search_dirs=None: found[name])
    assert resolve_runtime(1).allocator == "tcmalloc"
    found["jemalloc"] = "/lib/libjemalloc.so.2"
    assert resolve_runtime(1).allocator_library == "/lib/libjemalloc.so.2"
    found.update(jemalloc=None, tcmalloc=None)
    monkeypatch.setattr(runtime, "glibc_version", lambda: (2, 36))
    assert resolve_runtime(None).allocator == "glibc-tuned"
    with pytest.raises(ValueError, match="'jemalloc'.*auto, glibc-tuned, system"):
        resolve_runtime(1, "jemalloc")


def test_find_allocator_library_in_a_directory(tmp_path) -> None:
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert runtime.find_allocator_library("jemalloc", (str(tmp_path),)) == str(
        (tmp_path / "libjemalloc.so.2").resolve()
    )


@pytest.mark.parametrize(
    ("kwargs", "quoted"),
    [
        ({"threads": 0}, "0"),
        ({"threads": -3}, "-3"),
        ({"threads": 1.5}, "1.5"),
        ({"threads": "many"}, "'many'"),
        ({"threads": 1, "allocator": "mimalloc"}, "'mimalloc'"),
    ],
)
def test_bad_values_raise_one_line_value_errors(kwargs: dict, quoted: str) -> None:
    with pytest.raises(ValueError) as info:
        resolve_runtime(**kwargs)
    message = str(info.value)
    assert quoted in message and "\n" not in message
    if "allocator" in kwargs:
        assert "glibc-tuned" in message and "jemalloc" in message


def test_old_glibc_gets_the_largest_accepted_mmap_threshold() -> None:
    assert runtime.glibc_tuned_env((2, 31))["MALLOC_MMAP_THRESHOLD_"] == str(32 * 2**20)
    assert int(runtime.glibc_tuned_env((2, 36))["MALLOC_MMAP_THRESHOLD_"]) > 32 * 2**20


def test_runtime_record_is_exact_and_json_friendly() -> None:
    settings = RuntimeSettings(threads=3, allocator="glibc-tuned")
    record = json.loads(json.dumps(runtime_record(settings)))
    assert record["threads"] == 3 and record["interop_threads"] == 1 and record["allocator"] == "glibc-tuned"
    assert record["env"] == settings.env and record["allocator_library"] is None
    assert record["cores_available"] == runtime.available_cores()


@pytest.mark.slow  # a cell subprocess imports torch
def test_torch_threads_in_a_cell_subprocess() -> None:
    pytest.importorskip("torch")
    settings = RuntimeSettings(threads=1, allocator="system")
    code = (
        "import json, torch\n"
        "torch.set_num_threads(3)  # something else set it: apply_framework_threads wins\n"
        "from tlbench.benchmarks.running.runtime import RuntimeSettings, apply_framework_threads\n"
        "applied = apply_framework_threads(RuntimeSettings(threads=1, allocator='system'), 'timm')\n"
        "print(json.dumps([torch.get_num_threads(), torch.get_num_interop_threads(), applied]))\n"
    )
    env = cell_environment(settings, {k: v for k, v in os.environ.items() if k not in runtime.THREAD_ENV_VARS})
    threads, interop, applied = json.loads(_run(code, env))
    assert threads == 1 and interop == 1
    assert applied["intra_op_threads"] == 1 and applied["framework"] == "torch" and applied["warnings"] == []


def test_unknown_framework() -> None:
    with pytest.raises(ValueError, match="'mxnet'"):
        apply_framework_threads(RuntimeSettings(threads=1), "mxnet")


def test_modules_are_framework_free_at_import() -> None:
    code = (
        "import sys\n"
        "import tlbench.benchmarks.running.runtime, tlbench.benchmarks.running.machine_peak\n"
        "import tlbench.benchmarks.running.contention\n"
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))\n"
    )
    assert _run(code, dict(os.environ)) == "[]"
