"""``tlbench run --increments 2`` end to end on each real backend (timm and torchvision on torch, Keras on
TensorFlow): digits, tiny images, one epoch; every mode's steps recorded (shrink-and-perturb toward zero on two,
toward the pretrained weights on the third), the report's incremental sections."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tlbench.backends import REGISTRY
from tlbench.backends.engines import engine_available
from tlbench.benchmarks.running.results import load_results

RANDOM_INIT = ["--weights", "none", "--allow-random-init"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, model, shrink_mode",
    [
        ("timm", "test_efficientnet", "shrink_perturb"),  # timm's tiny test network
        ("torchvision", "resnet18", "shrink_pretrained"),
        ("keras", "vgg16", "shrink_perturb"),  # Keras on TensorFlow (MobileNetV2: +20 s)
    ],
)
def test_an_incremental_run_records_every_step_on_each_backend(backend, model, shrink_mode, tmp_path, cache_dir):
    if not engine_available(REGISTRY[backend].engine):
        pytest.skip(f"{backend} not installed")
    out = tmp_path / "suite"
    argv = [sys.executable, "-m", "tlbench", "run", "--out", str(out), "--backends", backend, "--models", model]
    argv += ["--strategies", "full_finetune", "--image-size", "32", "--epochs", "1", "--min-time", "0"]
    argv += ["--max-train-images", "60", "--cache-dir", str(cache_dir), "--device", "cpu", "--no-infer-pass"]
    argv += ["--no-probe"]  # the machine probe is end_to_end's to test
    modes = ("continue", "retrain", shrink_mode)
    argv += ["--increments", "2", "--increment-modes", ",".join(modes), "--shrink-perturb", "0.5,0.001", *RANDOM_INIT]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = load_results(out / "results.jsonl")
    assert record["status"] == "ok", record["error"]
    inc = record["increments"]
    assert (inc["steps"], inc["shrink"], inc["sigma"], sum(inc["chunk_images"])) == (2, 0.5, 0.001, 60)
    assert len(inc["shrink_perturb_stages"]) >= 4  # full fine-tuning: every stage is shrunk with the head
    rows = {(r["increment_mode"], r["increment_step"]): r for r in inc["rows"]}
    assert set(rows) == {(m, k) for m in modes for k in (1, 2)}
    assert {rows[m, 1]["accuracy"] for m in modes} == {rows["continue", 1]["accuracy"]}  # step 1 is shared
    for mode in modes:
        first, second = rows[mode, 1], rows[mode, 2]
        assert (first["train_images"], second["train_images"]) == (30, 60)
        assert second["cumulative_train_s"] == pytest.approx(first["train_s"] + second["train_s"])
        assert 0 <= second["accuracy"] <= 1 and second["train_s"] > 0
    assert record["accuracy"] == pytest.approx(rows["continue", 2]["accuracy"])
    log = next((out / "cells").glob("*/log.txt")).read_text()
    assert f"increment 2/2 {shrink_mode}: 60 images" in log
    assert "; after 2 steps: continue " in proc.stdout + proc.stderr  # the console line
    summary = (out / "summary.md").read_text()
    assert "## Incremental data — continue or retrain?" in summary and (out / "plots" / "incremental.png").is_file()
