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


def test_the_methodology_page_quotes_the_benchmark_tables_it_names() -> None:
    """Every speed figure of docs/methodology.md is read from a committed results/bench_*.md or suite."""
    page = ROOT / "docs" / "methodology.md"
    _, changed = regenerate(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings docs/methodology.md --write"
    assert page.read_text().count("<!-- bench: ") >= 10


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
        "the block 'suites=results/s columns=accuracy by=dataset' differs from its results" in capsys.readouterr().err
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
    crossover = (
        "- breast.npz: fine-tuning (full_finetune) overtakes the probes (linear_probe) in accuracy from 10/class"
    )
    assert f"{crossover} (+0.120" in text
    assert main([str(page)]) == 0
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "later.toml").write_text('strategies = ["linear_probe"]\n')
    page.write_text(block.replace("results/le", "results/later") + "<!-- /findings -->\n")
    assert main([str(page), "--write"]) == 0
    assert "`results/later/`: not measured yet (`tlbench run suites/later.toml`)." in page.read_text()


def test_the_readme_label_efficiency_section_matches_the_committed_results() -> None:
    page = ROOT / "README.md"
    _, changed = regenerate(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings README.md --write"
    assert "kind=labels_verdicts datasets=breastmnist,pneumoniamnist,chest_xray" in page.read_text()


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


# ---- the README's "Which framework" section ------------------------------------------------------------------


def test_the_readme_which_framework_section_matches_the_committed_results() -> None:
    page = ROOT / "README.md"
    _, changed = regenerate(page.read_text(), ROOT)
    assert changed == [], "regenerate with: python -m tlbench.benchmarks.tools.findings README.md --write"
    assert page.read_text().count("<!-- findings: kind=framework ") == 1


def _engine_cell(root: Path, suite: str, backend: str, seed: int, **figures) -> None:
    record = {"backend": backend, "model": "vgg16", "strategy": "linear_probe", "dataset": "medmnist:b", "seed": seed}
    append_result(root / "results" / suite / "results.jsonl", {**record, "status": "ok", **figures})


def test_engines_are_paired_cell_by_cell_and_deploy_paths_report_their_cost(tmp_path: Path) -> None:
    import pytest

    from tlbench.benchmarks.tools.findings import parse_options, render
    from tlbench.benchmarks.tools.findings_cells import FindingsError

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
    options = parse_options("kind=framework frameworks=results/fw,results/missing deploy=results/dep")
    (tmp_path / "suites" / "missing.toml").write_text('backends = ["timm"]\n')
    (tmp_path / "suites" / "dep.toml").write_text('backends = ["timm"]\n')
    text = render(options, tmp_path)
    lines = text.splitlines()
    assert "| `torchvision` | (reference) |  | 1.00x | 1.00x | – | – |" in lines
    # keras: +0.02 and +0.04 accuracy (mean 0.03, t(0.975, 1) x 0.01 = 0.127); training 2x and 0.5x: geometric 1x
    assert "| `keras` | +0.030 ± 0.127 (n=2) | – | 1.00x | 4.00x | 2.0 ± 12.7 | 1000.0 ± 0.0 |" in lines
    assert "| `keras-jax` | not measured yet | | | | | |" in lines
    assert "`results/missing/`: not measured yet (`tlbench run suites/missing.toml`)." in lines
    assert "| `onnxruntime` | 1 | 2.00x | -0.10 (n=1) | +0.00 (n=1) | 3.0 |" in lines
    assert "| `openvino` | 1 | failed: cannot load | | | |" in lines
    # the deployment table alone (kind=deploy) is the framework block's last part, word for word
    alone = render(parse_options("kind=deploy deploy=results/dep"), tmp_path)
    assert alone.startswith("Deployment paths on `results/dep/`") and text.endswith("\n\n" + alone)
    assert render(parse_options("kind=deploy deploy=results/missing"), tmp_path) == (
        "`results/missing/`: not measured yet (`tlbench run suites/missing.toml`).\n"
    )
    with pytest.raises(FindingsError, match="has no deploy="):
        parse_options("kind=deploy")


def test_missing_suites_say_not_measured_yet_and_a_stale_readme_fails(tmp_path: Path, capsys) -> None:
    page = tmp_path / "README.md"
    block = "<!-- findings: kind=framework frameworks=results/fw deploy=results/dep -->\n"
    page.write_text(f"# T\n{block}old\n<!-- /findings -->\n")
    (tmp_path / "suites").mkdir()
    for name in ("fw", "dep"):
        (tmp_path / "suites" / f"{name}.toml").write_text('backends = ["torchvision"]\n')
    assert main([str(page), "--root", str(tmp_path)]) == 1
    assert "differs from its results" in capsys.readouterr().err
    assert main([str(page), "--root", str(tmp_path), "--write"]) == 0
    assert page.read_text() == (
        f"# T\n{block}`results/fw/`: not measured yet (`tlbench run suites/fw.toml`).\n\n"
        "`results/dep/`: not measured yet (`tlbench run suites/dep.toml`).\n<!-- /findings -->\n"
    )
    assert main([str(page), "--root", str(tmp_path)]) == 0
    _engine_cell(tmp_path, "fw", "torchvision", 0, accuracy=0.8)
    assert main([str(page), "--root", str(tmp_path)]) == 1  # a result arrived: the section is stale


def test_a_block_naming_a_suite_with_neither_results_nor_suite_file_is_an_error(tmp_path: Path, capsys) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    for kind in ("", " kind=label_efficiency", " kind=incremental"):
        page.write_text(f"<!-- findings: suites=results/typo columns=accuracy{kind} -->\n<!-- /findings -->\n")
        if kind == " kind=incremental":
            page.write_text("<!-- findings: suites=results/typo kind=incremental -->\n<!-- /findings -->\n")
        assert main([str(page)]) == 2
        assert "results/typo/results.jsonl not found and no suites/typo.toml makes it" in capsys.readouterr().err


def test_each_kind_takes_only_its_own_options(tmp_path: Path, capsys) -> None:
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("<!-- findings: kind=race untuned=results/a columns=accuracy -->\n<!-- /findings -->\n")
    assert main([str(page)]) == 2
    assert "findings option 'columns=accuracy': kind=race takes kind=, untuned=, tuned=" in capsys.readouterr().err
    page.write_text("<!-- findings: kind=pie suites=results/a -->\n<!-- /findings -->\n")
    assert main([str(page)]) == 2
    err = capsys.readouterr().err
    kinds = "table, label_efficiency, incremental, race, race_verdicts, labels_verdicts, framework"
    assert f"kind='pie': expected one of {kinds}" in err
