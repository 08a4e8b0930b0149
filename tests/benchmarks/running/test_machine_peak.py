"""Machine probe: structure, bounded time per dtype, the per-machine cache, and its interpretation."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from tlbench.benchmarks.running import machine_peak as probe_mod
from tlbench.benchmarks.running.machine_peak import (
    amp_warning,
    default_cache_dir,
    load_or_probe,
    peak_flop_per_s,
    probe_machine,
    slower_dtypes,
)

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def steady_canary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed canary of a cache check reads what the synthetic probes recorded (80 GFLOP/s): no drift."""
    monkeypatch.setattr(probe_mod, "_canary", lambda: 80.0)


def _synthetic(bf16: tuple[float, float] = (1e9, 2e9), fp16: tuple[float | None, float | None] = (5e10, 9e10)) -> dict:
    return {
        "device": "cpu",
        "cpu": "test cpu",
        "cpu_count": 2,
        "threads": 2,
        "torch": "x",
        "measured_at": "now",
        "matmul_flop_per_s": {"float32": 1e11, "bfloat16": bf16[0], "float16": fp16[0]},
        "conv_flop_per_s": {"float32": 4e10, "bfloat16": bf16[1], "float16": fp16[1]},
        "details": {},
        "min_time_s": 0.5,
        "max_iteration_s": 2.0,
        "version": probe_mod.PROBE_VERSION,
        "canary_gflop_per_s": 80.0,
    }


@pytest.mark.slow  # measures this machine for real
def test_probe_structure_and_positive_numbers() -> None:
    result = probe_machine("cpu", dtypes=("float32", "bfloat16"), min_time_s=0.02, max_iteration_s=5.0)
    assert result["device"] == "cpu" and result["threads"] >= 1 and result["cpu"]
    assert result["engine"] == "torch" and result["engine_version"] and result["measured_at"].startswith("20")
    for table in ("matmul_flop_per_s", "conv_flop_per_s"):
        assert set(result[table]) == {"float32", "bfloat16"}
        assert all(v > 0 for v in result[table].values())
    entry = result["details"]["matmul"]["float32"]
    assert entry["iterations"] >= 1 and entry["median_s"] > 0 and entry["shape"] == "1024x1024@1024x1024"
    assert {"disturbed", "other_cpu_cores_mean"} <= result["contention"].keys()
    assert result["canary_gflop_per_s"] > 0  # what every cell's speed canary is compared with
    json.dumps(result)  # JSON-friendly
    assert peak_flop_per_s(result, "float32") == max(
        result["matmul_flop_per_s"]["float32"], result["conv_flop_per_s"]["float32"]
    )


def test_a_slow_dtype_is_bounded_to_one_pilot_iteration() -> None:
    """When even the pilot predicts an iteration above max_iteration_s, the pilot measurement is kept."""
    result = probe_machine("cpu", dtypes=("float32",), min_time_s=0.01, max_iteration_s=1e-9)
    for op in ("matmul", "conv"):
        entry = result["details"][op]["float32"]
        assert entry["bounded"] is True and entry["iterations"] == 1 and entry["flop_per_s"] > 0  # 1 call: over budget
    assert result["details"]["matmul"]["float32"]["shape"] == "256x256@256x256"


def test_bad_device_and_dtype() -> None:
    with pytest.raises(ValueError, match="'tpu'"):
        probe_machine("tpu")
    with pytest.raises(ValueError, match="'int8'.*float32"):
        probe_machine("cpu", dtypes=("int8",))


def test_cache_hit_does_not_measure_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_probe(device, dtypes, min_time_s, **kwargs):
        calls.append(device)
        return _synthetic()

    monkeypatch.setattr(probe_mod, "probe_machine", fake_probe)
    first = load_or_probe(tmp_path, "cpu")
    second = load_or_probe(tmp_path, "cpu")
    assert len(calls) == 1 and {k: v for k, v in second.items() if k != "canary_check"} == first
    assert second["canary_check"] == {"canary_gflop_per_s": 80.0, "drift": 0.0}
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1 and files[0].stem == probe_mod.machine_key("cpu")
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file
    load_or_probe(tmp_path, "cpu", refresh=True)
    assert len(calls) == 2


def test_corrupt_or_incomplete_cache_is_reprobed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(probe_mod, "probe_machine", lambda *a, **k: calls.append(1) or _synthetic())
    path = tmp_path / f"{probe_mod.machine_key('cpu')}.json"
    path.write_text('{"matmul_flop_per_s": {"float32": 1e1')  # truncated JSON
    assert load_or_probe(tmp_path, "cpu")["cpu"] == "test cpu"
    assert json.loads(path.read_text())["cpu"] == "test cpu" and len(calls) == 1
    path.write_text(json.dumps({**_synthetic(), "conv_flop_per_s": {"float32": "fast"}}))  # wrong type
    load_or_probe(tmp_path, "cpu")
    assert len(calls) == 2
    load_or_probe(tmp_path, "cpu", dtypes=("float32", "bfloat16"))  # valid: no re-probe
    assert len(calls) == 2
    path.write_text(json.dumps({**_synthetic(), "contention": {"disturbed": True}}))  # measured on a busy machine
    load_or_probe(tmp_path, "cpu")
    assert len(calls) == 3
    path.write_text(
        json.dumps({k: v for k, v in _synthetic().items() if k != "canary_gflop_per_s"})
    )  # cached before the canary
    load_or_probe(tmp_path, "cpu")
    assert len(calls) == 4


def test_slower_dtypes_on_synthetic_probes() -> None:
    # bf16 is 100x slower in matmul and 20x in conv: at least 20x slower
    assert slower_dtypes(_synthetic()) == {"bfloat16": 20.0}
    # fp16 faster in conv than fp32 -> not slower in BOTH -> not reported; with a missing op it is
    assert "float16" not in slower_dtypes(_synthetic())
    assert slower_dtypes(_synthetic(fp16=(None, None)))["float16"] == math.inf
    # factor: only dtypes more than factor times slower
    assert slower_dtypes(_synthetic(), factor=50.0) == {}
    assert slower_dtypes(_synthetic(bf16=(1e11, 4e10))) == {}  # as fast as fp32
    assert slower_dtypes({"matmul_flop_per_s": {}, "conv_flop_per_s": {}}) == {}


def test_peak_and_amp_warning() -> None:
    probe = _synthetic()
    assert peak_flop_per_s(probe, "float32") == 1e11
    assert peak_flop_per_s(probe, "bfloat16") == 2e9
    with pytest.raises(ValueError, match="'float64'"):
        peak_flop_per_s(probe, "float64")
    warning = amp_warning(probe, "bf16")
    assert warning and "20.0x slower" in warning and "\n" not in warning
    assert amp_warning(probe, "fp16") is None and amp_warning(probe, None) is None


def test_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(probe_mod, "probe_machine", lambda *a, **k: _synthetic())
    assert probe_mod.main(["--cache-dir", str(tmp_path), "--dtypes", "float32"]) == 0
    assert json.loads(capsys.readouterr().out)["cpu"] == "test cpu"
    assert probe_mod.main(["--cache-dir", str(tmp_path), "--dtypes", "int8"]) == 2
    assert "'int8'" in capsys.readouterr().err


def test_the_probe_runs_any_engines_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's loop is engine-free: a numpy engine's kernels are timed, an unsupported dtype is recorded."""
    import types

    import numpy as np

    engine = types.SimpleNamespace()

    def probe_kernel(op, dtype, device, shape):
        if dtype != "float32":
            raise NotImplementedError(f"{dtype} matmul not implemented")
        n = shape[0] if op == "matmul" else 16
        a = np.ones((n, n), np.float32)
        return lambda: a @ a

    engine.probe_kernel = probe_kernel
    engine.synchronizer = lambda device: lambda: None
    ok = probe_mod._measure_kernel("matmul", "float32", "cpu", 0.01, 5.0, engine)
    assert ok["flop_per_s"] > 0 and ok["shape"] == "1024x1024@1024x1024" and not ok["bounded"]
    missing = probe_mod._measure_kernel("matmul", "bfloat16", "cpu", 0.01, 5.0, engine)
    assert missing == {"flop_per_s": None, "error": "bfloat16 matmul not implemented"}


@pytest.mark.slow  # starts TensorFlow in a fresh process and measures the machine with it
def test_a_machine_without_torch_is_probed_with_tensorflow(tmp_path: Path) -> None:
    """``--engine tensorflow``: the probe does not need torch to be the cells' engine."""
    import subprocess
    import sys

    pytest.importorskip("tensorflow")
    command = [sys.executable, "-m", "tlbench.benchmarks.running.machine_peak", "--engine", "tensorflow"]
    command += ["--dtypes", "float32", "--min-time-s", "0.01", "--threads", "1", "--cache-dir", str(tmp_path)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["engine"] == "tensorflow" and result["engine_version"] and result["threads"] == 1
    assert result["matmul_flop_per_s"]["float32"] > 0 and result["conv_flop_per_s"]["float32"] > 0
    assert len(list(tmp_path.glob("cpu-1t-*.json"))) == 1  # cached under its own key


def test_an_unknown_engine_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_mod.main(["--engine", "mxnet", "--dtypes", "float32"]) == 2
    assert "invalid engine 'mxnet'" in capsys.readouterr().err


def test_a_cached_probe_is_measured_again_when_the_canary_has_drifted(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_probe(device, dtypes, min_time_s, **kwargs):
        calls.append(device)
        return _synthetic()

    monkeypatch.setattr(probe_mod, "probe_machine", fake_probe)
    load_or_probe(tmp_path, "cpu")
    kept = load_or_probe(tmp_path, "cpu", canary=lambda: 87.0)  # +8.75 %: within PROBE_DRIFT
    assert len(calls) == 1 and kept["canary_check"]["drift"] == pytest.approx(0.0875, abs=1e-3)
    again = load_or_probe(tmp_path, "cpu", canary=lambda: 60.0)  # -25 %: another machine than the one probed
    assert len(calls) == 2
    assert again["reprobed_after_drift"]["cached_canary_gflop_per_s"] == 80.0
    assert again["reprobed_after_drift"]["canary_gflop_per_s"] == 60.0
    assert again["reprobed_after_drift"]["drift"] == pytest.approx(-0.25)
    cached = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert "reprobed_after_drift" in cached  # the new probe is the cache now, with the reason


def test_the_probe_cache_follows_the_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLBENCH_CACHE", raising=False)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tlbench" / "probe"
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env" / "probe"
    assert default_cache_dir(tmp_path / "given") == tmp_path / "given" / "probe"  # --cache-dir wins
    assert default_cache_dir(str(tmp_path / "given")) == tmp_path / "given" / "probe"


def test_tlbench_run_probes_into_its_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """``tlbench run --cache-dir DIR``: the probe is read from and cached in ``DIR/probe``, the user's home and
    ``$TLBENCH_CACHE`` untouched."""
    from tlbench.benchmarks.cli import probe_machine_for
    from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
    from tlbench.benchmarks.running.environment import PROBE_FILE_ENV

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "env"))
    monkeypatch.delenv(PROBE_FILE_ENV, raising=False)
    commands: list[list[str]] = []
    real_run = subprocess.run

    def run(command, *args, **kwargs):
        if "tlbench.benchmarks.running.machine_peak" not in command:
            return real_run(command, *args, **kwargs)
        commands.append(list(command))
        # what the probe process does with --cache-dir: load_or_probe(DIR) (a synthetic probe instead of timing)
        monkeypatch.setattr(probe_mod, "probe_machine", lambda *a, **k: _synthetic())
        cache = Path(command[command.index("--cache-dir") + 1])
        probe = load_or_probe(cache, "cpu")
        return subprocess.CompletedProcess(command, 0, stdout=json.dumps(probe), stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    cache_root = tmp_path / "cache"
    suite = SuiteConfig(backends=("timm",), options=RunOptions(device="cpu", cache_dir=str(cache_root)))
    probe = probe_machine_for(suite)
    assert probe is not None and probe["cpu"] == "test cpu"
    (command,) = commands
    assert command[command.index("--cache-dir") + 1] == str(cache_root / "probe")
    cached = sorted(p.name for p in (cache_root / "probe").iterdir())
    assert cached == sorted([f"{probe_mod.machine_key('cpu')}.json", f"last-{os.getpid()}.json"])
    assert Path(os.environ[PROBE_FILE_ENV]) == cache_root / "probe" / f"last-{os.getpid()}.json"
    assert not (tmp_path / "home").exists() and not (tmp_path / "env").exists()
    assert "machine probe (cpu" in capsys.readouterr().err
