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


# ---- the README's "Which framework" section ------------------------------------------------------------------


def test_the_readme_which_framework_section_matches_the_committed_results() -> None:
    from tlbench.benchmarks.tools.findings import regenerate_which_framework

    page = ROOT / "README.md"
    _, changed = regenerate_which_framework(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings README.md --write"
    assert page.read_text().count("<!-- which-framework: ") == 1


def _engine_cell(root: Path, suite: str, backend: str, seed: int, **figures) -> None:
    record = {"backend": backend, "model": "vgg16", "strategy": "linear_probe", "dataset": "medmnist:b", "seed": seed}
    append_result(root / "results" / suite / "results.jsonl", {**record, "status": "ok", **figures})


def test_engines_are_paired_cell_by_cell_and_deploy_paths_report_their_cost(tmp_path: Path) -> None:
    from tlbench.benchmarks.tools.findings import parse_which_options, render_which_framework

    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "fw.toml").write_text('backends = ["torchvision", "keras", "keras-jax"]\n')
    for seed, (acc_tv, acc_k) in enumerate([(0.80, 0.82), (0.70, 0.74)]):
        _engine_cell(tmp_path, "fw", "torchvision", seed, accuracy=acc_tv, train_s=10.0, infer_images_per_s=100.0)
        _engine_cell(
            tmp_path,
            "fw",
            "keras",
            seed,
            accuracy=acc_k,
            train_s=[5.0, 20.0][seed],
            infer_images_per_s=400.0,
            train_first_steps_s=[1.0, 3.0][seed],
            peak_rss_mb=1000.0,
        )
    deploy = {
        "onnxruntime": {"speedup": 2.0, "roc_auc_change": -0.001, "accuracy_change": 0.0, "export_s": 3.0},
        "openvino": {"error": "cannot load"},
    }
    _engine_cell(tmp_path, "dep", "timm", 0, accuracy=0.9, deploy=deploy)
    options = parse_which_options("frameworks=results/fw,results/missing deploy=results/dep")
    text = render_which_framework(options, tmp_path)
    lines = text.splitlines()
    assert "| `torchvision` | (reference) |  | 1.00x | 1.00x | – | – |" in lines
    # keras: +0.02 and +0.04 accuracy (mean 0.03, t(0.975, 1) x 0.01 = 0.127); training 2x and 0.5x: geometric 1x
    assert "| `keras` | +0.030 ± 0.127 (n=2) | – | 1.00x | 4.00x | 2.0 ± 12.7 | 1000.0 ± 0.0 |" in lines
    assert "| `keras-jax` | not measured yet | | | | | |" in lines
    assert "`results/missing/`: not measured yet (`tlbench run suites/missing.toml`)." in lines
    assert "| `onnxruntime` | 1 | 2.00x | -0.10 (n=1) | +0.00 (n=1) | 3.0 |" in lines
    assert "| `openvino` | 1 | failed: cannot load | | | |" in lines


def test_missing_suites_say_not_measured_yet_and_a_stale_readme_fails(tmp_path: Path, capsys) -> None:
    page = tmp_path / "README.md"
    block = "<!-- which-framework: frameworks=results/fw deploy=results/dep -->\n"
    page.write_text(f"# T\n{block}old\n<!-- /which-framework -->\n")
    assert main([str(page), "--root", str(tmp_path)]) == 1
    assert "differs from its results" in capsys.readouterr().err
    assert main([str(page), "--root", str(tmp_path), "--write"]) == 0
    assert page.read_text() == (
        f"# T\n{block}`results/fw/`: not measured yet (`tlbench run suites/fw.toml`).\n\n"
        "`results/dep/`: not measured yet (`tlbench run suites/dep.toml`).\n<!-- /which-framework -->\n"
    )
    assert main([str(page), "--root", str(tmp_path)]) == 0
    _engine_cell(tmp_path, "fw", "torchvision", 0, accuracy=0.8)
    assert main([str(page), "--root", str(tmp_path)]) == 1  # a result arrived: the section is stale
