"""Seeded stratified splits, used to carve val/test from train when a source lacks them."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, carved) with ``fraction`` carved, stratified by label.

    Falls back to a plain seeded split when a class has a single member (stratification impossible).
    Both index arrays are sorted so the cached arrays keep the source order.
    """
    indices = np.arange(len(labels))
    _, counts = np.unique(labels, return_counts=True)
    stratify = labels if counts.min() >= 2 else None
    kept, carved = train_test_split(indices, test_size=fraction, random_state=seed, stratify=stratify)
    return np.sort(kept), np.sort(carved)
