"""Packaging: namespaced modules only (no top-level ``datasets`` shadowing Hugging Face), lazy frameworks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # builds a wheel / starts interpreters
def test_wheel_contains_only_the_tlbench_namespace(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("tlbench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"tlbench", next(t for t in top_level if t.endswith(".dist-info"))}
    for package in ("backends", "benchmarks", "datasets"):
        assert f"tlbench/{package}/__init__.py" in names
    assert "tlbench/datasets/digits.py" in names and "tlbench/backends/base.py" in names


def test_installed_package_does_not_provide_top_level_datasets(tmp_path):
    # run from an unrelated directory so the repository folder itself is not on sys.path
    code = "import importlib.util, tlbench.datasets; print(importlib.util.find_spec('datasets'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    spec = proc.stdout.strip()
    assert spec == "None" or str(ROOT) not in spec


@pytest.mark.slow  # builds a wheel / starts interpreters
def test_core_imports_no_framework(tmp_path):
    code = (
        "import sys, tlbench.backends, tlbench.benchmarks.cli, tlbench.benchmarks.running.runner, "
        "tlbench.benchmarks.reporting.report, "
        "tlbench.datasets; from tlbench.backends import get_backend_class; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'timm', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
