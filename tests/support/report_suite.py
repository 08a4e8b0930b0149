"""A fixed fake suite directory (results, predictions, curves) for the report, plot and HTML tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tlbench.benchmarks.running.metrics import classification_metrics
from tlbench.benchmarks.running.results import append_result, cell_id

BASE = {
    "model": "m",
    "dataset": "digits",
    "pretrained": "imagenet:x",
    "device": "cpu",
    "dtype": "float32",
    "batch_size": 32,
    "image_size": 32,
    "epochs": 2,
    "trainable_params": 1000,
    "total_params": 5000,
    "num_classes": 3,
    "class_names": ["zero", "one", "two"],
    "split_sizes": {"train": 90, "val": 30, "test": 60},
}

#: (backend, strategy, seed, accuracy of the fake predictions,
#:  train_images_per_s, infer_images_per_s, time_to_best_s, peak_rss_mb)
OK_CELLS = [
    ("timm", "linear_probe", 0, 0.9, 1234.5, 310.0, 3.25, 900.0),
    ("timm", "linear_probe", 1, 0.92, 1100.0, 290.0, 3.75, 910.0),
    ("timm", "scratch", 0, 0.6, 150.25, 1000.0, 12.5, 1000.0),
    ("keras", "linear_probe", 0, 0.88, 800.0, 120.0, 5.0, 1500.0),
    ("keras", "linear_probe", 1, 0.86, 780.0, 118.0, 5.5, 1510.0),
]
FAILED_CELLS = [("keras", "scratch", 0, "BackendError: keras model 'm' needs weights")]


def fake_predictions(accuracy: float, seed: int, n: int = 60, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities whose argmax is right for ``round(accuracy * n)`` images."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    right = int(round(accuracy * n))
    predicted = labels.copy()
    predicted[right:] = (labels[right:] + 1) % classes
    probs = rng.uniform(0.0, 0.3, (n, classes))
    probs[np.arange(n), predicted] += 0.7
    return labels, (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def make_suite(root: Path, with_artifacts: bool = True, accuracy_shift: float = 0.0) -> Path:
    """Write a fake suite into ``root`` (records, and when asked predictions/curves per ok cell)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "suite.json").write_text(json.dumps({"name": "golden"}))
    for i, (backend, strategy, seed, acc, train, infer, ttb, rss) in enumerate(OK_CELLS):
        acc = min(1.0, acc + accuracy_shift)
        labels, probs = fake_predictions(acc, seed)
        record = {
            **BASE,
            "backend": backend,
            "strategy": strategy,
            "seed": seed,
            "status": "ok",
            "error": None,
            **classification_metrics(labels, probs),
            "train_images_per_s": train,
            "train_s": round(180 / train, 4),
            "infer_images_per_s": infer,
            "infer_latency_ms_p50": 100.0 + i,
            "infer_latency_ms_p90": 110.0 + i,
            "time_to_best_s": ttb,
            "wall_s": 20.0 + i,
            "peak_rss_mb": rss,
            "peak_device_mb": None,
            "best_epoch": 2,
        }
        append_result(root / "results.jsonl", record)
        if with_artifacts:
            cell_dir = root / "cells" / cell_id(backend, "m", strategy, "digits", seed)
            cell_dir.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(100 + i + int(round(accuracy_shift * 1000)))
            images = rng.integers(0, 256, (8, 16, 16, 3), dtype=np.uint8)
            np.savez_compressed(
                cell_dir / "predictions.npz",
                probs=probs,
                labels=labels,
                class_names=np.array(BASE["class_names"]),
                sample_indices=np.linspace(0, 59, 8).astype(int),
                sample_images=images,
            )
            curve = [
                {
                    "epoch": e,
                    "train_loss": 1.0 / e + i * 0.1,
                    "val_accuracy": acc - 0.1 / e,
                    "val_loss": 1.2 / e,
                    "elapsed_s": e * 1.5,
                }
                for e in (1, 2)
            ]
            (cell_dir / "curve.json").write_text(json.dumps(curve))
    for backend, strategy, seed, error in FAILED_CELLS:
        append_result(
            root / "results.jsonl",
            {
                **BASE,
                "backend": backend,
                "strategy": strategy,
                "seed": seed,
                "status": "failed",
                "error": error,
                "wall_s": 1.0,
            },
        )
    return root
