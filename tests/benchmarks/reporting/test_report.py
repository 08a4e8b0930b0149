"""Report tables: golden Markdown/CSV from fixed fake results, intervals in the pivots, failed cells, CLI."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_suite import fake_predictions, make_suite
from scipy import stats as sps

from tlbench import backends
from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting import report
from tlbench.benchmarks.reporting import tables as report_tables
from tlbench.benchmarks.reporting.stats import bootstrap_metric_ci
from tlbench.benchmarks.running.results import load_results

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("TLBENCH_REGEN_GOLDEN") == "1"


@pytest.fixture
def no_model_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything asks the backend registry for a framework."""

    def refuse(name: str):
        raise AssertionError(f"the report tried to load backend {name!r}")

    monkeypatch.setattr(backends, "get_backend_class", refuse)


def _check_golden(path: Path, name: str) -> None:
    golden = GOLDEN / name
    if REGENERATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_bytes(path.read_bytes())
    assert path.read_bytes() == golden.read_bytes(), (
        f"{name} differs from the golden file (TLBENCH_REGEN_GOLDEN=1 rewrites it)"
    )


def test_golden_markdown_and_csv_byte_exact(tmp_path, no_model_building):
    suite = make_suite(tmp_path / "suite")
    paths = report.write_report(suite, plots=False)
    assert set(paths) == {"answer", "md", "csv", "tex", "html", "clinical"}
    _check_golden(paths["md"], "summary.md")
    _check_golden(paths["csv"], "summary.csv")


def test_pivot_numbers_are_t_intervals_and_bootstrap_cis(tmp_path):
    suite = make_suite(tmp_path / "suite")
    tables = report_tables.build_tables(report_tables.results_frame(load_results(suite / "results.jsonl")), suite)
    title, main_pivot = tables.pivots[0]
    assert title == "Accuracy and training cost"
    assert list(main_pivot.columns) == [
        "dataset",
        "model",
        "strategy",
        "timm: accuracy",
        "timm: training (s)",
        "timm: train (images/s)",
        "keras: accuracy",
        "keras: training (s)",
        "keras: train (images/s)",
    ]
    rows = main_pivot.set_index("strategy")
    # timm linear_probe: two seeds 54/60 and 55/60 right -> mean 0.908, half-width t(0.975, 1) * s / sqrt(2)
    half = sps.t.ppf(0.975, 1) * np.std([54 / 60, 55 / 60], ddof=1) / np.sqrt(2)
    assert f"{half:.3f}" == "0.106"
    assert rows.loc["linear_probe", "timm: accuracy"] == "0.908 ± 0.106 (n=2)"
    assert rows.loc["linear_probe", "timm: train (images/s)"].startswith("1170 ± ")
    # timm scratch: one seed -> bootstrap interval from the stored predictions
    labels, probs = fake_predictions(0.6, 0)
    interval = bootstrap_metric_ci("accuracy", labels, probs)
    assert rows.loc["scratch", "timm: accuracy"] == f"0.600 [{interval.low:.3f}, {interval.high:.3f}]"
    assert rows.loc["scratch", "timm: train (images/s)"] == "150"  # 3 significant digits
    assert rows.loc["scratch", "keras: accuracy"] == "failed"
    third = tables.pivots[2][1]
    assert "timm: peak GPU (MiB)" not in third.columns and "timm: peak RSS (MiB)" in third.columns
    assert list(tables.failed["error"]) == ["BackendError: keras model 'm' needs weights"]


def test_partly_failed_configuration_says_how_many_failed(tmp_path):
    suite = make_suite(tmp_path / "suite")
    from tlbench.benchmarks.running.results import append_result, load_results

    append_result(
        suite / "results.jsonl",
        {
            "backend": "timm",
            "model": "m",
            "strategy": "scratch",
            "dataset": "digits",
            "seed": 1,
            "status": "failed",
            "error": "RuntimeError: out of memory",
        },
    )
    frame = report_tables.results_frame(load_results(suite / "results.jsonl"))
    pivot = report_tables.build_tables(frame, suite).pivots[0][1].set_index("strategy")
    assert pivot.loc["scratch", "timm: accuracy"].endswith(" (1 failed)")
    assert pivot.loc["scratch", "timm: accuracy"].startswith("0.600 [")


def test_single_seed_without_predictions_shows_the_bare_value(tmp_path):
    suite = make_suite(tmp_path / "suite", with_artifacts=False)
    frame = report_tables.results_frame(load_results(suite / "results.jsonl"))
    pivot = report_tables.build_tables(frame, suite).pivots[0][1].set_index("strategy")
    assert pivot.loc["scratch", "timm: accuracy"] == "0.600"


def test_summarize_and_format_rounding():
    assert report_tables.summarize_values("train_images_per_s", [1234.5]) == "1230"
    assert report_tables.summarize_values("accuracy", [0.91234]) == "0.912"
    assert report_tables.summarize_values("accuracy", []) == ""
    assert report_tables.significant(0.012345) == "0.0123"
    assert report_tables.format_value("time_to_best_s", 3.25) == "3.2"
    assert report_tables.header("peak_rss_mb") == "peak RSS (MiB)"


@pytest.mark.slow  # draws every plot
def test_report_with_plots_lists_pngs_and_links_them(tmp_path, no_model_building):
    suite = make_suite(tmp_path / "suite")
    before = set(sys.modules)
    paths = report.write_report(suite)
    frameworks = ("torch", "tensorflow", "keras", "timm", "tlbench.backends.")
    assert not [m for m in set(sys.modules) - before if m.startswith(frameworks)]
    pngs = {k: v for k, v in paths.items() if k.startswith("png:")}
    assert set(pngs) == {
        f"png:{n}"
        for n in (
            "pareto_train",
            "pareto_inference",
            "roc_pr",
            "training_curves",
            "confusion",
            "predictions",
            "reliability",
        )
    }
    md = paths["md"].read_text()
    for path in pngs.values():
        assert path.is_file() and path.stat().st_size > 5000
        assert f"(plots/{path.name})" in md


def test_csv_has_every_record_and_nested_values_as_json(tmp_path):
    suite = make_suite(tmp_path / "suite")
    paths = report.write_report(suite, plots=False)
    frame = pd.read_csv(paths["csv"])
    assert len(frame) == 6 and frame["status"].tolist().count("failed") == 1
    assert frame.loc[0, "class_names"] == '["zero", "one", "two"]'


@pytest.mark.slow  # draws every plot
def test_cli_report_regenerates_from_files_and_rejects_bad_dirs(tmp_path, capsys, no_model_building):
    suite = make_suite(tmp_path / "suite")
    assert main(["report", str(suite)]) == 0
    captured = capsys.readouterr()
    # the console shows the answer section only (also the top of summary.md); the full tables stay in the files
    answer = (suite / "answer.md").read_text()
    assert "\nTHE ANSWER\n" in captured.out and "timm/linear_probe" in captured.out  # answer.md, fitted to 100 cols
    assert answer.startswith("## The answer\n") and "| timm/linear_probe  | ROC-AUC" in answer
    assert "0.908 ± 0.106 (n=2)" not in captured.out and "0.908 ± 0.106 (n=2)" in (suite / "summary.md").read_text()
    assert (suite / "summary.md").read_text().startswith("# tlbench suite `golden`\n\n" + answer)
    assert f"Full report: {suite / 'report.html'}" in captured.out
    assert (suite / "report.html").is_file()
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    missing = str(tmp_path / "missing")
    assert err == (
        f"tlbench: error: suite directory {missing!r} does not exist; expected a directory made by `tlbench run`"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "holds no results.jsonl records" in capsys.readouterr().err


def test_summary_csv_schema_does_not_depend_on_the_backends(tmp_path):
    """Backend-specific facts (old top-level keys too) land in one ``backend_facts`` column."""
    import json

    from tlbench.benchmarks.running.results import RESULT_COLUMNS, append_result

    def suite(name: str, records: list[dict]) -> list[str]:
        root = tmp_path / name
        for record in records:
            append_result(root / "results.jsonl", record)
        report.write_report(root, plots=False)
        return pd.read_csv(root / "summary.csv").columns.tolist()

    base = {"model": "m", "strategy": "scratch", "dataset": "d", "seed": 0, "status": "failed", "error": "x"}
    torch_like = {**base, "backend": "timm", "memory_format": "contiguous", "compiled": False}
    keras_like = {**base, "backend": "keras", "jit_compile": True, "keras_application": "VGG16", "head": "fcn-1x1"}
    assert suite("torch", [torch_like]) == suite("both", [torch_like, keras_like]) == RESULT_COLUMNS
    facts = pd.read_csv(tmp_path / "both" / "summary.csv")["backend_facts"].map(json.loads).tolist()
    assert facts == [
        {"memory_format": "contiguous", "compiled": False},
        {"jit_compile": True, "keras_application": "VGG16", "head": "fcn-1x1"},
    ]


def test_data_checks_show_duplicates_and_skips_and_warn_when_leaks_are_kept(tmp_path):
    from tlbench.benchmarks.cli import data_notes
    from tlbench.benchmarks.running.results import append_result

    root = tmp_path / "leaky"
    dups = {
        "within_split": 28,
        "cross_split": 4,
        "conflicting_labels": 1,
        "dropped": 0,
        "policy": "keep",
        "examples": [],
    }
    record = {
        "backend": "fake",
        "model": "m",
        "strategy": "scratch",
        "dataset": "folder:mri",
        "seed": 0,
        "status": "ok",
        "accuracy": 0.9,
        "image_size": 64,
        "split_sizes": {"train": 100, "val": 20, "test": 30},
        "skipped_images": 3,
        "duplicates": dups,
    }
    append_result(root / "results.jsonl", record)
    paths = report.write_report(root, plots=False)
    md = paths["md"].read_text()
    assert "## Data checks" in md and "| folder:mri" in md and "100 / 20 / 30" in md
    assert "4 val/test image(s) also in an earlier split and 1 with conflicting labels were KEPT" in md
    assert "3 unreadable image(s) skipped" in md
    html_text = paths["html"].read_text()
    assert "Data checks" in html_text and "were KEPT" in html_text
    assert (
        data_notes(record) == "; 4 cross-split duplicate(s), 1 conflicting label(s) KEPT; 3 unreadable image(s) skipped"
    )
    assert data_notes({**record, "duplicates": {**dups, "policy": "drop"}, "skipped_images": 0}).endswith("dropped")


def test_speed_warnings_name_disturbed_cells_and_hypervisor_steal():
    from tlbench.benchmarks.reporting.tables import results_frame, speed_warnings

    def record(seed: int, other: float, steal: float, disturbed: bool) -> dict:
        contention = {
            "other_cpu_fraction_mean": other,
            "steal_cpu_fraction_mean": steal,
            "threshold": 0.1,
            "disturbed": disturbed,
        }
        return {
            "backend": "timm",
            "model": "m",
            "strategy": "scratch",
            "dataset": "d",
            "seed": seed,
            "status": "ok",
            "contention": contention,
        }

    slow = record(3, 0.0, 0.0, False)
    slow["contention"].update(canary_gflop_per_s=[60.0, 75.0], canary_ratio_to_probe=0.6, slower_than_probed=True)
    frame = results_frame([record(0, 0.01, 0.0, False), record(1, 0.45, 0.0, True), record(2, 0.02, 0.12, True), slow])
    line, canary = speed_warnings(frame)
    assert canary.startswith("1 cell(s) ran while this machine computed slower than when it was probed")
    assert canary.endswith("timm/m/scratch/s3 (60%).")
    assert line.startswith(
        "2 cell(s) were timed while other processes (or, on a virtual machine, other guests of the host)"
    )
    assert "timm/m/scratch/s1 (45% of the cores)" in line
    assert "timm/m/scratch/s2 (2% of the cores, 12% stolen by the hypervisor)" in line
    assert "/s0" not in line
    # a canary that competed with a busy process says so; one alone on the machine (company below 0.1) does not
    slow["contention"]["canary_company_cpu_cores"] = [0.02, 0.64]
    quiet = record(4, 0.0, 0.0, False)
    quiet["contention"].update(canary_ratio_to_probe=0.7, slower_than_probed=True, canary_company_cpu_cores=[0.05, 0.0])
    (canary,) = speed_warnings(results_frame([slow, quiet]))
    assert "timm/m/scratch/s3 (60%, 0.64 cores busy beside the canary), timm/m/scratch/s4 (70%)." in canary
