"""Reproducibility: a torch CPU cell is bit-reproducible on one machine for a given seed and thread count."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_suite


def _run(root, cache_dir, seeds=(0,)):
    options = RunOptions(
        epochs=2,
        image_size=32,
        batch_size=16,
        device="cpu",
        weights="none",
        allow_random_init=True,
        max_train_images=96,
        infer_repeats=10,
        infer_warmup=1,
        infer_min_time_s=0.0,
        threads=2,
        cache_dir=str(cache_dir),
    )
    suite = SuiteConfig(
        name="repro",
        backends=("timm",),
        models=("resnet18",),
        strategies=("scratch",),
        datasets=("digits",),
        seeds=seeds,
        options=options,
    )
    run_suite(suite, root)
    return load_results(root / "results.jsonl")


@pytest.mark.slow  # trains real models twice
def test_same_seed_same_threads_gives_bit_identical_results(tmp_path, cache_dir):
    first = _run(tmp_path / "a", cache_dir)[0]
    second = _run(tmp_path / "b", cache_dir)[0]
    assert first["status"] == second["status"] == "ok", (first["error"], second["error"])
    cell = "cells/timm__resnet18__scratch__digits__s0"
    a = np.load(tmp_path / "a" / cell / "predictions.npz")["probs"]
    b = np.load(tmp_path / "b" / cell / "predictions.npz")["probs"]
    assert np.array_equal(a, b)  # bit-identical test probabilities, not merely close
    for column in ("accuracy", "roc_auc", "val_accuracy", "best_epoch"):
        assert first[column] == second[column], column
    assert first["environment_id"] == second["environment_id"]  # what cannot be bit-exact: another machine
    assert first["runtime"]["applied"]["intra_op_threads"] == 2
