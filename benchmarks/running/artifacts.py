"""A cell's artifact directory, ``<suite>/cells/<cell_id>/``: the one module that names, writes and reads it.

Files (all written atomically, none pickled):

- ``log.txt``: the cell process' output;
- ``predictions.npz``: test probabilities, labels, class names and a few test images (for plots), and the
  validation probabilities and labels (``val_probs``, ``val_labels``) of the same weights;
- ``curve.json``: per-epoch train loss, validation accuracy/loss, phase and elapsed seconds;
- ``confusion_matrix.json``: the test confusion matrix of the tested (best-epoch) weights;
- ``latency.json``: every timed inference batch latency;
- ``weights.pth`` / ``weights.weights.h5``: the trained weights in the backend's own safe format, when
  ``TLBENCH_SAVE_WEIGHTS=1`` (``tlbench explain`` loads them back with ``Backend.load_weights``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .results import cell_id, legacy_cell_id, write_json_atomic

#: environment variable that makes every cell keep its trained weights
SAVE_WEIGHTS_ENV = "TLBENCH_SAVE_WEIGHTS"
#: test images saved per cell for the prediction grid
SAMPLE_IMAGES = 16
#: the stem of the trained-weights file; the backend's ``weights_suffix`` completes it
WEIGHTS_STEM = "weights"


def _key(cell_or_record: Any) -> tuple[str, str, str, str, int]:
    get = cell_or_record.get if isinstance(cell_or_record, dict) else lambda key: getattr(cell_or_record, key)
    return get("backend"), get("model"), get("strategy"), get("dataset"), int(get("seed"))


def _subset(cell_or_record: Any) -> tuple[str | None, int | None]:
    if isinstance(cell_or_record, dict):
        return cell_or_record.get("train_size"), cell_or_record.get("draw")
    return getattr(cell_or_record, "train_size", None), getattr(cell_or_record, "draw", None)


def cell_dir(suite_dir: Path, cell_or_record: Any) -> Path:
    """The artifact directory of a cell (a ``CellConfig``) or of a result record (a dict): where it is written."""
    return Path(suite_dir) / "cells" / cell_id(*_key(cell_or_record), *_subset(cell_or_record))


def existing_cell_dir(suite_dir: Path, cell_or_record: Any) -> Path:
    """Where to read a cell's artifacts: ``cell_dir``, or the directory a cell run before cell ids were hashed
    got (``results.legacy_cell_id``) when only that one exists."""
    current = cell_dir(suite_dir, cell_or_record)
    if current.is_dir():
        return current
    legacy = Path(suite_dir) / "cells" / legacy_cell_id(*_key(cell_or_record))
    return legacy if legacy.is_dir() else current


def save_weights_requested() -> bool:
    """Whether ``TLBENCH_SAVE_WEIGHTS`` asks every cell to keep its trained weights (for ``tlbench explain``)."""
    return os.environ.get(SAVE_WEIGHTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def weights_path(directory: Path, suffix: str) -> Path:
    """Where a cell keeps its trained weights, for a backend whose files end in ``suffix``."""
    return Path(directory) / f"{WEIGHTS_STEM}{suffix}"


def find_weights(directory: Path) -> Path | None:
    """The trained-weights file of a cell directory, if it saved one."""
    for path in sorted(Path(directory).glob(f"{WEIGHTS_STEM}.*")):
        if not path.name.endswith(".tmp") and ".tmp." not in path.name:
            return path
    return None


def confusion_record(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The test confusion matrix of the tested (best-epoch) weights: ``matrix[true][predicted]`` counts."""
    num_classes = probs.shape[1]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), probs.argmax(axis=1)), 1)
    return {"class_names": list(class_names), "matrix": matrix.tolist()}


def write_predictions(
    directory: Path,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    images: np.ndarray,
    val_probs: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
) -> None:
    """``predictions.npz`` (no pickled objects) and ``confusion_matrix.json``; keeps ``SAMPLE_IMAGES`` test images.

    ``val_probs``/``val_labels``: the same model's validation predictions, stored beside the test ones so that an
    operating point (a decision threshold) can be chosen on validation and only then applied to test.
    """
    directory.mkdir(parents=True, exist_ok=True)
    count = min(SAMPLE_IMAGES, len(images))
    sample_idx = np.linspace(0, len(images) - 1, count).astype(int) if count else np.zeros(0, int)
    samples = np.asarray(images[sample_idx]) if count else np.zeros((0, 1, 1, 3), np.uint8)
    tmp = directory / ".predictions.tmp.npz"
    np.savez_compressed(
        tmp,
        probs=probs.astype(np.float32),
        labels=np.asarray(labels),
        class_names=np.array(class_names, dtype=str),
        sample_indices=sample_idx,
        sample_images=samples,
        **(
            {"val_probs": np.asarray(val_probs, dtype=np.float32), "val_labels": np.asarray(val_labels)}
            if val_probs is not None and val_labels is not None
            else {}
        ),
    )
    os.replace(tmp, directory / "predictions.npz")
    write_json_atomic(directory / "confusion_matrix.json", confusion_record(labels, probs, class_names))


def write_curve(directory: Path, curve: list[dict[str, Any]]) -> None:
    """``curve.json``: one entry per epoch."""
    write_json_atomic(directory / "curve.json", curve)


def write_latencies(
    directory: Path, latencies_ms: list[float] | tuple[float, ...], batch_size: int, keep_in_cell: bool = False
) -> None:
    """``latency.json``: every timed inference batch latency of the cell.

    Args:
        directory: the cell's directory.
        latencies_ms: the latencies of the reported figure.
        batch_size: images per timed batch.
        keep_in_cell: the latencies come from the suite's inference pass: the ones the cell timed itself (the
            file's ``latencies_ms`` so far) move to ``in_cell_latencies_ms``.
    """
    path = directory / "latency.json"
    data: dict[str, Any] = {"batch_size": batch_size, "latencies_ms": list(latencies_ms)}
    if keep_in_cell and path.is_file():
        try:
            previous = json.loads(path.read_text())
            data["in_cell_latencies_ms"] = previous.get("in_cell_latencies_ms", previous.get("latencies_ms"))
        except (OSError, ValueError, AttributeError):
            pass
    write_json_atomic(path, data)


@dataclass(frozen=True)
class Predictions:
    """A cell's stored test predictions (``predictions.npz``)."""

    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sample_indices: np.ndarray
    sample_images: np.ndarray
    #: validation probabilities and labels of the tested (best-validation) weights; ``None`` in older cells
    val_probs: np.ndarray | None = None
    val_labels: np.ndarray | None = None


def load_predictions(suite_dir: Path, record: dict[str, Any]) -> Predictions | None:
    """The stored predictions of a record's cell, or ``None`` when the cell saved none (failed, or older run)."""
    path = existing_cell_dir(suite_dir, record) / "predictions.npz"
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return Predictions(
            probs=data["probs"].astype(np.float64),
            labels=data["labels"].astype(np.int64),
            class_names=[str(c) for c in data["class_names"]],
            sample_indices=data["sample_indices"],
            sample_images=data["sample_images"],
            val_probs=data["val_probs"].astype(np.float64) if "val_probs" in data else None,
            val_labels=data["val_labels"].astype(np.int64) if "val_labels" in data else None,
        )


def load_curve(suite_dir: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-epoch curve of a record's cell (``curve.json``), empty when absent."""
    path = existing_cell_dir(suite_dir, record) / "curve.json"
    return json.loads(path.read_text()) if path.is_file() else []
