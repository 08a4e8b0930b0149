"""The end of a run on the console: the answer, one table that fits 100 columns, the paths of the full reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_suite import make_suite

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.console_summary import console_summary, markdown_section
from tlbench.benchmarks.reporting.report import write_report
from tlbench.benchmarks.running.results import append_result


def test_the_fake_suite_ends_with_answer_table_and_paths(tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False)
    text = console_summary(suite, paths)
    lines = text.splitlines()
    assert max(len(line) for line in lines if str(suite) not in line) <= 100  # paths are as long as they are
    assert lines[0] == f"tlbench: 6 cell(s), 5 ok, in {suite}"
    # timm linear_probe: seeds at 0.9 and 0.92 accuracy (54/60 and 55/60 right), the best mean
    assert "  most accurate: linear_probe (timm), accuracy 0.908 ± 0.106 (n=2)" in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("backend "))
    table = lines[start:]
    assert table[0].split() == ["backend", "strategy", "accuracy", "training", "(s)", "inference", "(images/s)"]
    assert table[2].split() == "timm linear_probe 0.908 ± 0.106 (n=2) 0.2 ± 0.1 (n=2) 300 ± 130 (n=2)".split()
    assert table[5].split() == ["keras", "scratch", "failed", "failed", "failed"]
    assert "1 failed cell(s): see the report." in lines
    assert lines[-2:] == [
        f"Full report: {suite / 'report.html'}",
        f"Tables:      {suite / 'summary.md'}, summary.csv, summary.tex",
    ]
    assert "All cells" not in text and "|" not in text  # not the whole summary.md


def wide_suite(root: Path) -> Path:
    """3 backends x 2 long model names x 2 datasets x 2 seeds, records only."""
    root.mkdir(parents=True)
    for backend in ("timm", "torchvision", "keras"):
        for model in ("tf_efficientnet_lite0_very_long_name", "convnext_small.fb_in22k_ft_in1k_384"):
            for dataset in ("folder:/data/chest_xray_pneumonia", "pneumoniamnist"):
                for seed in (0, 1):
                    append_result(
                        root / "results.jsonl",
                        {
                            "backend": backend,
                            "model": model,
                            "strategy": "partial_finetune",
                            "dataset": dataset,
                            "seed": seed,
                            "status": "ok",
                            "accuracy": 0.8 + 0.01 * seed + (0.05 if backend == "keras" else 0.0),
                            "roc_auc": 0.9,
                            "train_s": 100.0 + seed,
                            "infer_images_per_s": 250.0,
                        },
                    )
    return root


def test_a_wide_suite_still_fits_100_columns(tmp_path: Path) -> None:
    suite = wide_suite(tmp_path / "wide")
    text = console_summary(suite, write_report(suite, plots=False))
    lines = text.splitlines()
    assert max(len(line) for line in lines if str(suite) not in line) <= 100
    header = next(line for line in lines if line.startswith("dataset"))
    # dataset, model and backend all vary; ROC-AUC (least important) made room, long names were shortened
    assert header.split()[:4] == ["dataset", "model", "backend", "strategy"] and "ROC-AUC" not in header
    assert any("…" in line for line in lines)
    # the answer names the best configuration of each dataset
    assert (
        text.count("most accurate: partial_finetune") == 2 and "Answer\n  folder:/data/chest_xray_pneumonia: " in text
    )
    assert "\n    (keras/tf_efficientnet_lite0_very_long_name), accuracy 0.855 ± 0.064 (n=2)\n" in text  # wrapped


def test_the_reports_own_answer_section_is_printed_when_it_has_one(tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False)
    paths["md"].write_text("# x\n\n## Answer\n\nUse the linear probe.\n\n## Accuracy\n\n| a |\n")
    text = console_summary(suite, paths)
    assert "## Answer\n\nUse the linear probe.\n" in text and "most accurate:" not in text
    assert markdown_section("# x\n## Other\nno\n", ("answer",)) == ""


def test_cli_report_prints_the_console_summary_not_summary_md(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = make_suite(tmp_path / "suite")
    assert main(["report", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "0.908 ± 0.106 (n=2)" in out and f"Full report: {suite / 'report.html'}" in out
    assert "## All cells" not in out and (suite / "summary.md").read_text().count("## All cells") == 1


def test_cli_run_shows_plain_progress_off_a_terminal_then_the_summary(
    fake_backend, cache_dir, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("TLBENCH_CELL_REGISTRY", str(tmp_path / "registry"))
    out_dir = tmp_path / "s"
    argv = ["run", "--backends", "fake", "--models", "softmax", "--strategies", "scratch", "--epochs", "2"]
    argv += ["--image-size", "16", "--out", str(out_dir), "--no-probe", "--no-infer-pass", "--min-time", "0"]
    argv += ["--cache-dir", str(cache_dir)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert "\x1b" not in captured.err  # capsys is no terminal: plain lines only
    assert "tlbench: started fake/softmax/scratch/digits/s0 [1/1]" in err
    assert any(line.startswith("[1/1] fake/softmax/scratch/digits/s0: accuracy=") for line in err)
    out = captured.out.splitlines()
    assert out[0] == f"tlbench: 1 cell(s), 1 ok, in {out_dir}"
    assert out[-3] == f"Full report: {out_dir / 'report.html'}" and out[-1].startswith("Plots:")
    assert max(len(line) for line in out if str(out_dir) not in line) <= 100 and "## All cells" not in captured.out
