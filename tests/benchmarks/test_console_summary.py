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
    # the report's answer (reporting/answer.py), fitted to the terminal
    assert lines[2] == "THE ANSWER"
    assert "  - Best by ROC-AUC (mean of 2 seed(s)): timm/linear_probe, 0.933 ± 0.034 (n=2)." in lines
    start = next(i for i, line in enumerate(lines) if line.startswith("configuration "))
    table = lines[start:]
    assert table[0].split()[:4] == ["configuration", "value", "(95%", "CI)"] and "verdict" in table[0]
    assert table[2].split()[:2] == ["timm/linear_probe", "0.933"] and " best " in table[2]
    assert table[3].startswith("keras/linear_probe") and " tied " in table[3]
    assert table[4].startswith("timm/scratch") and " worse " in table[4]
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
    # the dataset varies: kept; long configuration names were shortened to fit
    assert header.split()[:2] == ["dataset", "configuration"] and "verdict" in header
    assert any("…" in line for line in lines)
    # the answer names the best configuration of each dataset
    assert text.count("  - Best by ROC-AUC (mean of 2 seed(s)): ") == 2
    assert "\nfolder:chest_xray_pneumonia\n" in text and "\npneumoniamnist\n" in text


def test_the_reports_own_answer_section_is_printed_when_it_has_one(tmp_path: Path) -> None:
    suite = make_suite(tmp_path / "suite")
    paths = write_report(suite, plots=False)
    paths["md"].write_text("# x\n\n## Answer\n\nUse the linear probe.\n\n## Accuracy\n\n| a |\n")
    text = console_summary(suite, paths)
    assert "ANSWER\n\nUse the linear probe.\n" in text and "most accurate:" not in text
    assert markdown_section("# x\n## Other\nno\n", ("answer",)) == ""


def test_cli_report_prints_the_console_summary_not_summary_md(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    suite = make_suite(tmp_path / "suite")
    assert main(["report", str(suite)]) == 0
    out = capsys.readouterr().out
    assert "0.933 ± 0.034 (n=2)" in out and f"Full report: {suite / 'report.html'}" in out
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


def test_the_reports_answer_is_fitted_to_the_terminal() -> None:
    from tlbench.benchmarks.console_summary import terminal_answer

    long = "x" * 60
    section = "\n".join(
        [
            "## The answer",
            "",
            f"**digits** — the best by ROC-AUC: **a** {long} {long}",
            f"- Tied: b {long} {long}",
            "",
            "| dataset | configuration | metric | value (95% CI) | Δ vs best [95% CI] | p (Holm) | verdict |"
            " training (s) | inference (images/s) |",
            "|---|---|---|---|---|---|---|---|---|",
            "| digits | a | ROC-AUC | 0.933 ± 0.034 (n=2) | | | best | 0.2 | 300 |",
            "| digits | b | ROC-AUC | 0.911 ± 0.071 (n=2) | -0.022 [-0.052, +0.000] | 0.094 | tied | 0.2 | 119 |",
            "",
            "How this is decided: a long paragraph that stays in summary.md.",
        ]
    )
    text = terminal_answer(section, width=80)
    lines = text.splitlines()
    assert lines[0] == "THE ANSWER" and "**" not in text and "How this is decided" not in text
    assert max(len(line) for line in lines) <= 80
    header = next(line for line in lines if line.startswith("configuration"))
    assert "dataset" not in header and "metric" not in header  # one value each: said in the sentences
    assert "verdict" in header and "value (95% CI)" in header  # what the answer is never dropped
    assert any(line.startswith("b ") and "tied" in line for line in lines)
