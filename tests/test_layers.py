"""The package's layering, read from the source files: core ← backends ← running ← reporting ← cli.

Every ``tlbench`` import (relative or absolute, at module level or inside a function) is resolved to the module it
names; a module may import its own layer and the layers below it, never one above. Reporting reads records: of
``running`` it may import only the modules that define and load them (``RECORD_MODULES``). No import cycles.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: package prefix -> folder of the repository (the ``package-dir`` mapping of pyproject.toml)
FOLDERS = {
    "tlbench": ROOT / "tlbench",
    "tlbench.core": ROOT / "core",
    "tlbench.datasets": ROOT / "datasets",
    "tlbench.backends": ROOT / "backends",
    "tlbench.benchmarks": ROOT / "benchmarks",
}
#: lowest first; a module's layer is that of the longest matching prefix
LAYERS = (
    ("core", ("tlbench.core", "tlbench.datasets", "tlbench")),
    ("backends", ("tlbench.backends",)),
    ("running", ("tlbench.benchmarks.running",)),
    ("reporting", ("tlbench.benchmarks.reporting",)),
    ("cli", ("tlbench.__main__", "tlbench.benchmarks", "tlbench.benchmarks.cli", "tlbench.benchmarks.tools")),
)
#: what reporting may read of ``running``: the record format and the files a suite writes
RECORD_MODULES = {
    "tlbench.benchmarks.running",
    "tlbench.benchmarks.running.results",
    "tlbench.benchmarks.running.artifacts",
    "tlbench.benchmarks.running.config",
    "tlbench.benchmarks.running.environment",
    # the typed options a record was run with (explain rebuilds a cell's model with them)
    "tlbench.benchmarks.running.backend_options",
}


def module_files() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    modules = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((prefix, *parts)) if parts else prefix] = path
    return modules


def package_of(name: str, path: Path) -> str:
    """The package a module's relative imports start from."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``path`` imports (``from X import y`` counts ``X.y`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(name, path).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not target.startswith("tlbench"):
                continue
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tlbench"))
    return {m for m in found if m in modules and m != name}


def layer_of(name: str) -> int:
    """Index of ``name``'s layer in ``LAYERS`` (longest prefix wins)."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, name
    return best


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_walk_sees_relative_imports(graph):
    # a relative import resolves to the module it names (``from .config import RunOptions`` in running.cell)
    assert "tlbench.benchmarks.running.config" in graph["tlbench.benchmarks.running.cell"]
    assert "tlbench.core.plan" in graph["tlbench.backends.base"]
    assert "tlbench.benchmarks.running.results" in graph["tlbench.benchmarks.reporting.tables"]


def test_no_import_against_the_layers(graph):
    wrong = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
        for name, deps in graph.items()
        for dep in deps
        if layer_of(dep) > layer_of(name)
    ]
    assert not wrong, "\n".join(wrong)


def test_reporting_reads_records_only(graph):
    wrong = [
        f"{name} imports {dep}"
        for name, deps in graph.items()
        if layer_of(name) == 3
        for dep in deps
        if layer_of(dep) == 2 and dep not in RECORD_MODULES
    ]
    assert not wrong, "\n".join(wrong)


def test_core_and_datasets_import_nothing_above_them(graph):
    for name, deps in graph.items():
        if layer_of(name) == 0:
            assert all(layer_of(dep) == 0 for dep in deps), (name, deps)


def test_no_import_cycles(graph):
    modules = module_files()

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(node) :] + [node]))
        if node in done:
            return
        for dep in graph[node]:
            if modules[dep].name != "__init__.py":  # package re-exports are not cycles of code
                visit(dep, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        visit(name, [], done)


def test_the_layer_check_fails_on_a_backward_import(tmp_path):
    # the walk itself: a running module importing reporting is reported
    path = tmp_path / "fake.py"
    path.write_text("from ..reporting import tables\n")
    modules = {"tlbench.benchmarks.reporting.tables": path, "tlbench.benchmarks.running.fake": path}
    deps = imports_of("tlbench.benchmarks.running.fake", path, modules)
    assert deps == {"tlbench.benchmarks.reporting.tables"}
    assert layer_of("tlbench.benchmarks.reporting.tables") > layer_of("tlbench.benchmarks.running.fake")
