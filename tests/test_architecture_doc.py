"""docs/architecture.md names every module of benchmarks/running/, every engine and every cell kind."""

from __future__ import annotations

from pathlib import Path

from tlbench.backends.engines import ENGINES
from tlbench.core.cell_kinds import CELL_KINDS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def test_every_running_module_is_in_the_architecture_page() -> None:
    text = DOC.read_text()
    modules = sorted(p.name for p in (ROOT / "benchmarks" / "running").glob("*.py") if p.name != "__init__.py")
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_engines_and_kinds_are_named() -> None:
    text = DOC.read_text()
    assert all(f"`{name}`" in text and f"{name}_engine.py" in text for name in ENGINES)
    assert all(f"`{kind}`" in text for kind in CELL_KINDS)
