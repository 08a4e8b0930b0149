"""What the procedure of a kind of cell may use of the cell that runs it (``cell.CellRun`` implements it).

The kinds' modules (``cell_network.py``, ``cell_feature_head.py``) depend on this protocol, not on ``cell.py``, which
imports them: the procedure of a kind is written against the shared steps, never against the runner's internals.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...backends.base import Backend
from ...datasets import ArrayDataset, ResizePolicy, Split
from .config import CellConfig, RunOptions


class CellContext(Protocol):
    """The cell being run: its coordinates, options, record, log and the steps every kind shares."""

    cell: CellConfig
    options: RunOptions
    #: the result record being filled (``results.RESULT_COLUMNS``)
    record: dict[str, Any]
    #: the trained framework model whose weights the cell keeps (``None`` for scikit-learn heads)
    backend: Backend | None
    #: the cell's artifact directory (its id is the directory's name)
    cell_dir: Path

    def log(self, message: str) -> None:
        """One line to the cell's log."""

    def timed_window(self) -> contextlib.AbstractContextManager[None]:
        """The watched part of the cell: contention sampling and the speed canary around it."""

    def load_dataset(
        self, backend: Backend, model: str, weights: str, record_data: bool, image_size: int | None = None
    ) -> tuple[ArrayDataset, ResizePolicy]:
        """The cell's dataset resized for ``model``; its facts into the record when ``record_data``."""

    def add_mfu(self, dtype: str) -> None:
        """The record's MFU columns for the compute ``dtype``."""

    def save_artifacts(
        self,
        curve: list[dict[str, Any]],
        test: Split,
        labels: np.ndarray,
        probs: np.ndarray,
        class_names: list[str],
        latencies: tuple[float, ...],
        val_probs: np.ndarray | None = None,
        val_labels: np.ndarray | None = None,
    ) -> None:
        """Predictions, curve, latencies and (when kept) the trained weights."""
