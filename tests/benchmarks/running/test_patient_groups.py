"""Patient groups through a suite (numpy fake backend, in-process): the record, the console line, the report, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from patients import PERSON, patient_tree

from tlbench.benchmarks.cli import data_notes, main
from tlbench.benchmarks.reporting import report
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import completed_cells, run_cell_inprocess, run_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

FAST = RunOptions(
    epochs=1, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def run(root: Path, out: Path, cache: Path, **options) -> tuple[SuiteConfig, dict]:
    suite = SuiteConfig(
        name="g",
        backends=("fake",),
        models=("softmax",),
        strategies=("scratch", "logreg_probe"),
        datasets=(f"folder:{root}",),
        options=replace(FAST, cache_dir=str(cache), infer_pass=False, **options),
    )
    run_suite(suite, out, cell_runner=run_cell_inprocess)
    return suite, {r["strategy"]: r for r in load_results(out / "results.jsonl")}


def test_a_grouped_suite_records_reports_and_resumes_by_its_grouping(fake_backend, tmp_path):
    root = patient_tree(tmp_path / "data")
    suite, records = run(root, tmp_path / "out", tmp_path / "cache", group_by=PERSON)
    for record in records.values():  # both kinds of cell see the same grouped data
        assert record["status"] == "ok", record["error"]
        groups = record["groups"]
        assert (groups["shared_groups"], groups["leaked_images"], groups["dropped"]) == (3, 6, 6)
        assert record["split_sizes"]["test"] == 5 and record["dataset_meta"]["grouped_by"] == PERSON
    scratch = records["scratch"]
    assert data_notes(scratch) == "; 3 patient group(s) in more than one split, 6 later-split image(s) dropped"
    log = "".join(p.read_text() for p in (tmp_path / "out" / "cells").glob("*scratch*/log.txt"))
    assert f"groups: groups=22 shared_groups=3 leaked_images=6 ungrouped=1 dropped=6 (by {PERSON}, policy drop)" in log
    md = report.write_report(tmp_path / "out", plots=False)["md"].read_text()
    assert "patients in 2+ splits" in md and "| 3 (drop)" in md
    # the grouping is part of the resume fingerprint: an ungrouped suite re-runs these cells
    records_list = load_results(tmp_path / "out" / "results.jsonl")
    assert len(completed_cells(records_list, suite)) == 2
    assert not completed_cells(records_list, replace(suite, options=replace(suite.options, group_by=None)))
    assert not completed_cells(records_list, replace(suite, options=replace(suite.options, group_leakage="keep")))


def test_an_ungrouped_suite_records_no_groups(fake_backend, tmp_path):
    root = patient_tree(tmp_path / "data")
    _, records = run(root, tmp_path / "out", tmp_path / "cache")
    assert records["scratch"]["status"] == "ok" and records["scratch"]["groups"] is None
    assert "patients in 2+ splits" not in report.write_report(tmp_path / "out", plots=False)["md"].read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--group-by", "person\\d+"], "--group-by 'person\\d+' has no group"),
        (["--group-by", "column:patient"], "names a CSV column, but"),
        (["--group-leakage", "maybe"], "unknown --group-leakage 'maybe'; expected one of: drop, keep, error"),
    ],
)
def test_bad_grouping_flags_exit_2_in_one_line(tmp_path, capsys, extra, message):
    root = patient_tree(tmp_path / "data")
    assert main(["run", "--dataset", f"folder:{root}", "--no-probe", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_digits_cannot_be_grouped(capsys):
    assert main(["run", "--group-by", PERSON]) == 2
    assert "dataset 'digits' has no image file paths to group" in capsys.readouterr().err
