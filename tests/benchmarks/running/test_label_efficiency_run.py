"""Label-efficiency subsets through a suite (numpy fake backend, in-process; one real tiny run marked slow)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from patients import PERSON, patient_tree

from tlbench.benchmarks.reporting import report
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import completed_cells, run_cell_inprocess, run_suite

FAST = RunOptions(
    epochs=1, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def _run(tmp_path, dataset: str, strategies=("linear_probe", "full_finetune"), seeds=(0, 1), draws=2, **options):
    suite = SuiteConfig(
        name="le",
        backends=("fake",),
        models=("softmax",),
        strategies=strategies,
        datasets=(dataset,),
        seeds=seeds,
        train_sizes=("2", "4", "100%"),
        draws=draws,
        options=replace(FAST, cache_dir=str(tmp_path / "cache"), infer_pass=False, **options),
    )
    run_suite(suite, tmp_path / "out", cell_runner=run_cell_inprocess)
    return suite, load_results(tmp_path / "out" / "results.jsonl")


def test_subsets_are_identical_across_strategies_and_seeds_nested_and_leave_val_test_whole(fake_backend, tmp_path):
    suite, records = _run(tmp_path, "digits")
    assert len(records) == (2 + 2 + 1) * 2 * 2 and all(r["status"] == "ok" for r in records), records[0]["error"]
    whole = next(r for r in records if r["train_size"] == "100%")
    for record in records:
        assert record["split_sizes"]["val"] == whole["split_sizes"]["val"]  # val and test stay whole at every size
        assert record["split_sizes"]["test"] == whole["split_sizes"]["test"]
        assert record["split_sizes"]["train"] == record["train_images"]
    for size, per_class in (("2", 2), ("4", 4)):
        for draw in (0, 1):
            cells = [r for r in records if (r["train_size"], r["draw"]) == (size, draw)]
            assert len(cells) == 4 and {r["train_images"] for r in cells} == {10 * per_class}
            assert len({r["train_subset"]["rows_sha"] for r in cells}) == 1  # every strategy and seed: same rows
            assert set(cells[0]["train_subset"]["per_class"].values()) == {per_class}
    shas = {(r["train_size"], r["draw"]): r["train_subset"]["rows_sha"] for r in records}
    assert shas[("2", 0)] != shas[("2", 1)] and shas[("2", 0)] != shas[("4", 0)]
    assert whole["train_images"] == whole["split_sizes"]["train"] > 40 and whole["draw"] == 0
    assert len(completed_cells(records, suite)) == len(records)  # resume knows every (size, draw) cell
    assert len(list((tmp_path / "out" / "cells").glob("*__2-d1__s1"))) == 2
    md = report.write_report(tmp_path / "out", plots=False)["md"].read_text()
    assert "## Label efficiency — accuracy and ROC-AUC against labelled images" in md
    assert "## Label efficiency — where fine-tuning overtakes the probes" in md


def test_grouped_subsets_take_whole_patients(fake_backend, tmp_path):
    root = patient_tree(tmp_path / "data")
    _, records = _run(tmp_path, f"folder:{root}", strategies=("logreg_probe",), seeds=(0,), draws=1, group_by=PERSON)
    assert len(records) == 3
    assert all(r["status"] == "ok" for r in records), records[0]["error"]
    for record in records:
        subset = record["train_subset"]
        if record["train_size"] == "100%":
            continue
        per_class = subset["per_class"]  # 3 images per patient: 2 or 4 per class take 1 or 2 whole patients
        assert set(per_class.values()) == ({3} if record["train_size"] == "2" else {6})
        assert subset["groups"] == sum(per_class.values()) // 3 and record["train_images"] == sum(per_class.values())


@pytest.mark.slow
def test_a_tiny_real_label_efficiency_run(tmp_path):
    out, cache_dir = tmp_path / "suite", tmp_path / "cache"  # a cache of its own: the feature cache starts empty
    argv = [sys.executable, "-m", "tlbench", "run", "--out", str(out), "--strategies", "logreg_probe,full_finetune"]
    argv += ["--train-sizes", "3,6", "--image-size", "32", "--epochs", "1", "--min-time", "0", "--no-infer-pass"]
    argv += ["--cache-dir", str(cache_dir), "--device", "cpu", "--no-probe"]  # the probe is end_to_end's to test
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = load_results(out / "results.jsonl")
    assert sorted((r["strategy"], r["train_size"], r["draw"]) for r in records) == [
        ("full_finetune", "3", 0),
        ("full_finetune", "6", 0),
        ("logreg_probe", "3", 0),
        ("logreg_probe", "6", 0),
    ]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["train_images"] == record["split_sizes"]["train"] == 10 * int(record["train_size"])
        assert 0.0 <= record["accuracy"] <= 1.0 and record["train_s"] > 0
    probe = {r["train_size"]: r for r in records if r["strategy"] == "logreg_probe"}
    assert probe["3"]["feature_cache"] == "miss"  # its own entry: the subset's rows only
    assert "Label efficiency" in (out / "summary.md").read_text() and "Label efficiency, digits" in proc.stdout
