"""The documentation's result tables are generated from the committed results, and a stale one fails here."""

from __future__ import annotations

from pathlib import Path

from tlbench.benchmarks.running.results import append_result
from tlbench.benchmarks.tools.findings import main, regenerate

ROOT = Path(__file__).resolve().parents[1]


def test_the_findings_page_matches_the_committed_results() -> None:
    page = ROOT / "docs" / "findings.md"
    _, changed = regenerate(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings docs/findings.md --write"
    assert page.read_text().count("<!-- findings: ") >= 5


def _suite(root: Path, accuracies: dict[str, list[float]]) -> None:
    for strategy, values in accuracies.items():
        for seed, accuracy in enumerate(values):
            record = {"backend": "timm", "model": "m", "strategy": strategy, "dataset": "folder:/x/chest", "seed": seed}
            append_result(root / "results" / "s" / "results.jsonl", {**record, "status": "ok", "accuracy": accuracy})


def test_a_table_is_written_then_a_changed_result_is_caught(tmp_path: Path, capsys) -> None:
    _suite(tmp_path, {"scratch": [0.5, 0.7], "linear_probe": [0.8, 0.8, 0.8]})
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("Intro\n<!-- findings: suites=results/s columns=accuracy by=dataset -->\n<!-- /findings -->\nEnd\n")
    assert main([str(page), "--write"]) == 0
    assert page.read_text() == (
        "Intro\n<!-- findings: suites=results/s columns=accuracy by=dataset -->\n"
        "| strategy | accuracy (chest) |\n|---|---|\n"
        "| `linear_probe` | **0.800 ± 0.000** |\n"
        "| `scratch` | 0.600 ± 1.271 |\n"  # t(0.975, 1) x sd/sqrt(2) = 12.706 x 0.1
        "<!-- /findings -->\nEnd\n"
    )
    assert main([str(page)]) == 0
    _suite(tmp_path, {"scratch": [0.9]})  # a newer record of seed 0 replaces the old one
    assert main([str(page)]) == 1
    assert (
        "the table 'suites=results/s columns=accuracy by=dataset' differs from its results" in capsys.readouterr().err
    )


def test_bad_blocks_are_one_line_usage_errors(tmp_path: Path, capsys) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("<!-- findings: suites=results/none columns=accuracy -->\n<!-- /findings -->\n")
    assert main([str(page)]) == 2
    assert "results/none/results.jsonl not found" in capsys.readouterr().err
    page.write_text("<!-- findings: suites=results/none colour=red -->\n<!-- /findings -->\n")
    assert main([str(page)]) == 2
    assert "findings option 'colour=red'" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.md")]) == 2
