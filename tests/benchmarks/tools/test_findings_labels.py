"""The README's "With N labels, which strategy?" table: label efficiency and warm starts, one column per dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlbench.benchmarks.running.results import append_result
from tlbench.benchmarks.tools.findings import main
from tlbench.benchmarks.tools.findings_cells import FindingsError
from tlbench.benchmarks.tools.findings_labels import labels_verdicts


def _label_efficiency(
    root: Path, dataset: str, accuracy: dict[tuple[str, str], list[float]], roc_auc: dict | None = None
) -> None:
    """One record per draw of each (strategy, size); size "5" holds 10 images, "100%" 50; ROC-AUC only where
    ``roc_auc`` gives it (same keys as ``accuracy``)."""
    for (strategy, size), values in accuracy.items():
        for draw, value in enumerate(values):
            record = {"backend": "timm", "model": "m", "strategy": strategy, "dataset": "medmnist:/x/breast.npz"}
            images = 50 if size.endswith("%") else 2 * int(size)
            record |= {"seed": 0, "train_size": size, "draw": draw, "train_images": images, "status": "ok"}
            path = root / "results" / f"label_efficiency_{dataset}" / "results.jsonl"
            auc = {"roc_auc": roc_auc[strategy, size][draw]} if roc_auc else {}
            append_result(path, {**record, "accuracy": value, "train_s": 1.0, **auc})


def _incremental(root: Path, dataset: str, finals: dict[str, list[float]]) -> None:
    """Two seeds of a 2-step full fine-tuning: ``finals[mode][seed]`` is the accuracy after the last step."""
    for seed in (0, 1):
        rows = []
        for mode, values in finals.items():
            for step, accuracy in ((1, 0.6), (2, values[seed])):
                rows.append({"increment_step": step, "increment_mode": mode, "train_images": 50 * step,
                             "accuracy": accuracy, "train_s": 5.0, "cumulative_train_s": 5.0 * step})  # fmt: skip
        record = {"backend": "timm", "model": "m", "strategy": "full_finetune", "dataset": "d", "seed": seed}
        append_result(
            root / "results" / f"incremental_{dataset}" / "results.jsonl",
            {**record, "status": "ok", "accuracy": finals["continue"][seed], "increments": {"rows": rows}},
        )


def _toy(root: Path) -> None:
    _label_efficiency(
        root,
        "toy",
        {
            ("linear_probe", "5"): [0.70, 0.72],
            ("full_finetune", "5"): [0.60, 0.62],
            ("linear_probe", "100%"): [0.80, 0.80],
            ("full_finetune", "100%"): [0.85, 0.89],
        },
    )
    _incremental(
        root,
        "toy",
        {
            "continue": [0.70, 0.74],
            "retrain": [0.80, 0.78],
            "shrink_perturb": [0.50, 0.49],
            "shrink_pretrained": [0.81, 0.83],
        },
    )


def test_one_column_per_dataset_answers_both_questions(tmp_path: Path) -> None:
    _toy(tmp_path)
    (tmp_path / "suites").mkdir()
    for prefix in ("label_efficiency", "incremental"):
        (tmp_path / "suites" / f"{prefix}_later.toml").write_text('strategies = ["linear_probe"]\n')
    lines = labels_verdicts(["toy", "later"], tmp_path).splitlines()
    assert lines[:2] == ["| | toy | later |", "|---|---|---|"]
    # t(0.975, 1) = 12.706: two draws 0.02 apart give ± 0.127; paired gaps +0.05, +0.09 at 100 % give +0.070 ± 0.254
    assert lines[2] == "| most accurate with the fewest labels | `linear_probe` 0.710 ± 0.127 (5/class) | – |"
    assert lines[3] == "| most accurate on the whole split | `full_finetune` 0.870 ± 0.254 (100%) | – |"
    # no ROC-AUC recorded: no ROC-AUC row; at 5/class the probe leads by 0.10 on both draws (no spread)
    assert lines[4] == (
        "| fine-tuning overtakes the probes in accuracy | from 100% (+0.070 [-0.184, +0.324]), not resolved; "
        "probe ahead beyond noise at 5/class | – |"
    )
    # continue - retrain: -0.10, -0.04; to 0: -0.30, -0.29; to pretrained: +0.01, +0.05
    assert lines[5] == "| `full_finetune`: continue − retrain | -0.070 [-0.451, +0.311] level | – |"
    assert lines[6] == (
        "| `full_finetune`: shrink-and-perturb − retrain | -0.295 [-0.359, -0.231] worse (to 0); "
        "+0.030 [-0.224, +0.284] level (to pretrained) | – |"
    )
    assert lines[7:] == [
        "",
        "Not run yet: `suites/label_efficiency_later.toml`, `suites/incremental_later.toml` (`tlbench run` each).",
    ]


def test_a_resolved_crossover_and_a_probe_that_stays_ahead_are_said(tmp_path: Path) -> None:
    _label_efficiency(tmp_path, "ahead", {("linear_probe", "5"): [0.7, 0.7], ("full_finetune", "5"): [0.8, 0.81]})
    behind = {("linear_probe", "5"): [0.7, 0.7], ("full_finetune", "5"): [0.6, 0.7]}
    # ROC-AUC ranks the other way on "level": the probe ahead by 0.20 and 0.18 at 5/class, beyond noise
    auc = {("linear_probe", "5"): [0.9, 0.9], ("full_finetune", "5"): [0.7, 0.72]}
    _label_efficiency(tmp_path, "level", behind, auc)
    _incremental(tmp_path, "ahead", {"continue": [0.9, 0.9], "retrain": [0.8, 0.79]})
    _incremental(tmp_path, "level", {"continue": [0.8, 0.8], "retrain": [0.8, 0.8]})
    table = labels_verdicts(["ahead", "level"], tmp_path)
    crossover = (
        "| fine-tuning overtakes the probes in accuracy | from 5/class (+0.105 [+0.041, +0.169]), resolved from "
    )
    assert crossover + "5/class | no: the probe is ahead or level at 5/class |" in table
    # gaps -0.20, -0.18: 12.706 x sd 0.0141 / sqrt(2) = 0.127 around -0.19, so [-0.317, -0.063] lies below 0
    roc = "| fine-tuning overtakes the probes in ROC-AUC | – | no: the probe is ahead or level at 5/class; "
    assert roc + "probe ahead beyond noise at 5/class |" in table
    assert "continue − retrain | +0.105 [+0.041, +0.169] better | +0.000 [+0.000, +0.000] level |" in table
    assert "Not run yet" not in table


def test_a_dataset_without_results_or_suite_files_is_an_error(tmp_path: Path, capsys) -> None:
    _toy(tmp_path)
    with pytest.raises(FindingsError, match="results/label_efficiency_typo has no results and no suites/"):
        labels_verdicts(["toy", "typo"], tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- findings: kind=labels_verdicts datasets=toy -->\n<!-- /findings -->\n")
    assert main([str(page), "--root", str(tmp_path), "--write"]) == 0
    assert "| most accurate with the fewest labels | `linear_probe` 0.710 ± 0.127 (5/class) |" in page.read_text()
    page.write_text("<!-- findings: kind=labels_verdicts datasets=toy,typo -->\n<!-- /findings -->\n")
    assert main([str(page), "--root", str(tmp_path)]) == 2
    assert "labels_verdicts: results/label_efficiency_typo has no results" in capsys.readouterr().err
