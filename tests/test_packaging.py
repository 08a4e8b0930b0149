"""Packaging: namespaced modules only (no top-level ``datasets`` shadowing Hugging Face), lazy frameworks."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contains_only_the_tlbench_namespace(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True,
    )  # fmt: skip
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


def test_core_imports_no_framework(tmp_path):
    code = (
        "import sys, tlbench.backends, tlbench.benchmarks.cli, tlbench.benchmarks.running.runner, tlbench.benchmarks.reporting.report, "
        "tlbench.datasets; from tlbench.backends import get_backend_class; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'timm', 'torchvision') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _imports(path: Path) -> set[str]:
    """``tlbench.*`` modules imported anywhere in the file (lazy function-level imports too: a cycle hidden in a
    function is still a cycle)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tlbench"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tlbench"))
    return found


def _module_files() -> dict[str, Path]:
    roots = {"tlbench": ROOT / "tlbench", "tlbench.backends": ROOT / "backends", "tlbench.benchmarks": ROOT / "benchmarks", "tlbench.datasets": ROOT / "datasets"}
    modules = {}
    for prefix, folder in roots.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((prefix, *parts)) if parts else prefix
            if prefix == "tlbench" and parts and parts[0] in ("backends", "benchmarks", "datasets"):
                continue
            modules[name] = path
    return modules


def test_no_import_cycles_and_the_contract_does_not_depend_on_benchmarks():
    modules = _module_files()
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    assert {"tlbench.benchmarks.reporting.plots", "tlbench.benchmarks.reporting.tables"} <= graph["tlbench.benchmarks.reporting.report"]
    assert "tlbench.benchmarks.running.artifacts" in graph["tlbench.benchmarks.reporting.plots"]
    # the Backend contract and the framework-free core never import the benchmarks package
    for name in ("tlbench.backends.base", "tlbench.backends.options", "tlbench.plan", "tlbench.strategies"):
        assert not any(dep.startswith("tlbench.benchmarks") for dep in graph[name]), (name, graph[name])
    # no import cycle anywhere (package __init__ re-exports excluded from the walk)
    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in done:
            return
        for dep in graph[node]:
            if not modules[dep].name == "__init__.py":
                visit(dep, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        visit(name, [], done)
