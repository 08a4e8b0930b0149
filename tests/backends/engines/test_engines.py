"""Engines as data: a test walks the registry; each installed engine sets threads, runs probe kernels, counts FLOPs.

Thread pools are process-wide, so the framework work runs in a fresh interpreter per engine.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types

import pytest

from tlbench.backends import REGISTRY
from tlbench.backends.engines import (
    ENGINE_FUNCTIONS,
    ENGINES,
    EngineEntry,
    EngineUnavailable,
    engine_available,
    engine_entry,
    load_engine,
    start_engine,
)


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_module_implements_the_functions(name: str) -> None:
    module = load_engine(name)  # the module only: no framework is imported
    missing = [f for f in ENGINE_FUNCTIONS if not callable(getattr(module, f, None))]
    assert not missing, f"engine {name!r} lacks {missing}"
    entry = engine_entry(name)
    assert entry.packages and entry.extra


def test_every_backend_names_a_registered_engine() -> None:
    for backend in ("timm", "torchvision", "keras"):
        assert REGISTRY[backend].engine in ENGINES
    assert REGISTRY["timm"].engine == REGISTRY["torchvision"].engine == "torch"
    assert REGISTRY["keras"].engine == "tensorflow"


def test_unknown_engine() -> None:
    with pytest.raises(KeyError, match="'mxnet'.*torch, tensorflow, jax"):
        engine_entry("mxnet")


def test_a_missing_framework_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("tlbench_test_absent_engine")

    def import_framework() -> None:
        import tlbench_no_such_framework  # noqa: F401

    module.import_framework = import_framework
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(ENGINES, "absent", EngineEntry("absent", module.__name__, ("tlbench-no-such",), "absent-x"))
    with pytest.raises(EngineUnavailable, match=r"pip install 'tlbench\[absent-x\]'"):
        start_engine("absent")
    assert not engine_available("absent")


PROBE_SCRIPT = """
import json, sys
import numpy as np
from tlbench.backends.engines import start_engine
engine = start_engine(sys.argv[1])
applied = engine.apply_threads(1, 1)
run = engine.probe_kernel("matmul", "float32", "cpu", (64,))
out = run()
conv = engine.probe_kernel("conv", "float32", "cpu", (1, 8, 16))()
engine.synchronizer("cpu")()
print(json.dumps({
    "applied": applied, "threads": engine.current_threads(), "version": engine.version(),
    "matmul_shape": list(out.shape), "conv_size": int(np.asarray(conv).size), "gpu": engine.gpu_name("cpu"),
}))
"""


@pytest.mark.slow  # starts each framework in a fresh process and runs its probe kernels
@pytest.mark.parametrize("name", list(ENGINES))
def test_an_installed_engine_sets_threads_and_runs_probe_kernels(name: str) -> None:
    if not engine_available(name):
        pytest.skip(f"{name} not installed")  # CI installs every extra
    proc = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT, name], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["applied"]["intra_op_threads"] == 1 and result["applied"]["warnings"] == []
    assert result["threads"] == 1 and result["version"]
    assert result["matmul_shape"] == [64, 64]
    assert result["conv_size"] == 8 * 16 * 16  # 'same' 3x3 convolution, 8 -> 8 channels
    assert result["gpu"] is None


def test_engine_availability_matches_the_import_system() -> None:
    for name, entry in ENGINES.items():
        top = entry.packages[0].replace("-", "_")
        assert engine_available(name) == (importlib.util.find_spec(top) is not None)


def test_jax_threads_are_xla_flags_set_before_jax_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    from tlbench.backends.engines import jax_engine

    assert jax_engine.thread_flags(4, "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=false") == (
        "--xla_dump_to=/tmp/x --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=4"
    )
    assert jax_engine.thread_flags(1) == "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    monkeypatch.setenv("XLA_FLAGS", "intra_op_parallelism_threads=3")
    assert jax_engine.current_threads() == 3


def test_the_torch_probe_kernels_leave_the_grad_mode_alone() -> None:
    torch = pytest.importorskip("torch")
    from tlbench.backends.engines import torch_engine

    torch_engine.probe_kernel("conv", "float32", "cpu", (1, 4, 8))()
    torch_engine.probe_kernel("matmul", "float32", "cpu", (8,))()
    assert torch.is_grad_enabled()  # a later training step in this process still records gradients
