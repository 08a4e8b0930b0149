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


def test_a_label_efficiency_block_renders_sizes_and_the_crossover(tmp_path: Path) -> None:
    accuracy = {("linear_probe", "5"): [0.7, 0.7], ("full_finetune", "5"): [0.6, 0.64]}
    accuracy |= {("linear_probe", "10"): [0.7, 0.7], ("full_finetune", "10"): [0.8, 0.84]}
    for (strategy, size), values in accuracy.items():
        for draw, value in enumerate(values):
            record = {"backend": "timm", "model": "m", "strategy": strategy, "dataset": "medmnist:/x/breast.npz"}
            record |= {"seed": 0, "train_size": size, "draw": draw, "train_images": 2 * int(size), "status": "ok"}
            append_result(tmp_path / "results" / "le" / "results.jsonl", {**record, "accuracy": value, "train_s": 1.0})
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    block = "<!-- findings: suites=results/le kind=label_efficiency columns=accuracy,train_s -->\n"
    page.write_text(block + "<!-- /findings -->\n")
    assert main([str(page), "--write"]) == 0
    text = page.read_text()
    assert "| strategy | accuracy @ 5/class (10 img) | accuracy @ 10/class (20 img) |" in text
    assert "| `full_finetune` | 0.620 ± 0.254 | 0.820 ± 0.254 | 1.0 | 1.0 |" in text  # t(0.975, 1) x 0.02
    assert "- breast.npz: fine-tuning (full_finetune) overtakes the probes (linear_probe) from 10/class (+0.120" in text
    assert main([str(page)]) == 0
    page.write_text(block.replace("results/le", "results/later") + "<!-- /findings -->\n")
    assert main([str(page), "--write"]) == 0
    assert "_No committed results yet: `tlbench run suites/later.toml`" in page.read_text()


def test_the_readme_label_efficiency_section_matches_the_committed_results() -> None:
    page = ROOT / "README.md"
    _, changed = regenerate(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings README.md --write"
    assert "kind=label_efficiency" in page.read_text()
def _incremental_suite(root: Path) -> None:
    finals = {0: {"continue": 0.70, "retrain": 0.80}, 1: {"continue": 0.74, "retrain": 0.78}}
    for seed, final in finals.items():
        rows = []
        for mode, accuracy in final.items():
            rows.append({"increment_step": 1, "increment_mode": mode, "train_images": 50, "accuracy": 0.6,
                         "train_s": 5.0, "cumulative_train_s": 5.0})  # fmt: skip
            rows.append({"increment_step": 2, "increment_mode": mode, "train_images": 100, "accuracy": accuracy,
                         "train_s": 4.0 if mode == "continue" else 9.0,
                         "cumulative_train_s": 9.0 if mode == "continue" else 14.0})  # fmt: skip
        record = {"backend": "timm", "model": "m", "strategy": "full_finetune", "dataset": "d", "seed": seed}
        append_result(
            root / "results" / "inc" / "results.jsonl",
            {**record, "status": "ok", "accuracy": final["continue"], "increments": {"rows": rows}},
        )


def test_an_incremental_table_shows_each_step_the_seconds_and_the_paired_gap(tmp_path: Path) -> None:
    _incremental_suite(tmp_path)
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("<!-- findings: suites=results/inc kind=incremental -->\n<!-- /findings -->\n")
    assert main([str(page), "--write"]) == 0
    body = page.read_text().splitlines()[1:-1]
    assert body[0] == (
        "| strategy | mode | accuracy after 50 images | accuracy after 100 images | cumulative training (s) "
        "| final gap to retrain |"
    )
    # continue - retrain per seed: -0.10, -0.04; mean -0.07, t(0.975, 1) x sd/sqrt(2) = 12.706 x 0.03 = 0.381
    assert body[2] == (
        "| `full_finetune` | continue | 0.600 ± 0.000 | 0.720 ± 0.254 | 9.0 ± 0.0 | -0.070 [-0.451, +0.311] (n=2) |"
    )
    assert body[3] == "| `full_finetune` | retrain | 0.600 ± 0.000 | 0.790 ± 0.127 | 14.0 ± 0.0 | – |"
    assert main([str(page)]) == 0
