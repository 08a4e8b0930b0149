"""The report's clinical tables: calibration and operating point per configuration, per-class recall,
the confusion matrix of each dataset's best configuration, and one row per cell for ``clinical.csv``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .candidates import Candidate
from .clinical import (
    ECE_BINS,
    CellClinical,
    cell_clinical,
    cell_interval,
    confusion_counts,
    interval_text,
    positive_class,
)
from .options import ReportOptions


class ClinicalMetrics:
    """Clinical metrics of every cell with predictions, computed once per cell."""

    def __init__(self, candidates_by_dataset: dict[str, list[Candidate]], options: ReportOptions) -> None:
        self.options = options
        self.cells: dict[tuple, dict[int, CellClinical]] = {}
        for dataset, candidates in candidates_by_dataset.items():
            for candidate in candidates:
                self.cells[(dataset, candidate.key)] = {
                    seed: cell_clinical(preds, options.operating_point, options.positive_class)
                    for seed, preds in sorted(candidate.predictions.items())
                }

    def of(self, candidate: Candidate) -> list[CellClinical]:
        """The candidate's cells, by seed."""
        return list(self.cells.get((candidate.dataset, candidate.key), {}).values())

    def interval_text(self, candidate: Candidate, name: str) -> str:
        """``name`` over the candidate's seeds with its interval (empty when no cell has it)."""
        return interval_text(cell_interval(self.of(candidate), name))

    def operating_point_text(self, candidate: Candidate) -> str:
        """Sensitivity and specificity at the validation-chosen threshold, or why there are none."""
        cells = self.of(candidate)
        if not cells:
            return ""
        missing = [c.status for c in cells if c.status]
        if missing:
            return missing[0]
        return (
            f"sensitivity {self.interval_text(candidate, 'sensitivity')}, "
            f"specificity {self.interval_text(candidate, 'specificity')}"
        )


def positive_name(candidate: Candidate, requested: str | None) -> str:
    """The name of the class counted as positive (binary datasets; empty otherwise)."""
    if not candidate.predictions:
        return ""
    preds = next(iter(candidate.predictions.values()))
    names = [str(c) for c in preds.class_names]
    if preds.probs.shape[1] != 2 or len(names) != 2:
        return ""
    return names[positive_class(names, requested)]


def calibration_table(
    candidates_by_dataset: dict[str, list[Candidate]], metrics: ClinicalMetrics, names: dict[tuple, str]
) -> pd.DataFrame:
    """Per configuration: ECE, the threshold chosen on validation, sensitivity and specificity on test."""
    from .plots import short_dataset

    point = metrics.options.operating_point
    rows = []
    for dataset, candidates in candidates_by_dataset.items():
        for candidate in candidates:
            cells = metrics.of(candidate)
            if not cells:
                continue
            thresholds = [c.threshold for c in cells if math.isfinite(c.threshold)]
            status = next((c.status for c in cells if c.status), "")
            rows.append(
                {
                    "dataset": short_dataset(dataset),
                    "configuration": names[candidate.key],
                    f"ECE ({ECE_BINS} bins)": metrics.interval_text(candidate, "ece"),
                    "positive class": positive_name(candidate, metrics.options.positive_class),
                    f"threshold ({point.describe()}, on validation)": _threshold_text(thresholds) or status,
                    "sensitivity (test)": metrics.interval_text(candidate, "sensitivity"),
                    "specificity (test)": metrics.interval_text(candidate, "specificity"),
                }
            )
    return pd.DataFrame(rows)


def _threshold_text(thresholds: list[float]) -> str:
    if not thresholds:
        return ""
    if len(thresholds) == 1:
        return f"{thresholds[0]:.3f}"
    return f"{np.mean(thresholds):.3f} ({min(thresholds):.3f}..{max(thresholds):.3f})"


def recall_tables(
    candidates_by_dataset: dict[str, list[Candidate]], metrics: ClinicalMetrics, names: dict[tuple, str]
) -> list[tuple[str, pd.DataFrame]]:
    """Per dataset: the recall of every class (argmax) per configuration, with intervals."""
    from .plots import short_dataset

    tables = []
    for dataset, candidates in candidates_by_dataset.items():
        rows = []
        for candidate in candidates:
            cells = metrics.of(candidate)
            if not cells:
                continue
            row: dict[str, Any] = {"configuration": names[candidate.key]}
            for name in (k for k in cells[0].values if k.startswith("recall:")):
                row[f"recall: {name[len('recall:') :]}"] = metrics.interval_text(candidate, name)
            rows.append(row)
        if rows:
            tables.append((short_dataset(dataset), pd.DataFrame(rows)))
    return tables


def confusion_table(candidate: Candidate) -> pd.DataFrame:
    """The argmax confusion matrix of a configuration, counts summed over its seeds, with each class's recall."""
    if not candidate.predictions:
        return pd.DataFrame()
    first = next(iter(candidate.predictions.values()))
    matrix = sum(confusion_counts(p.labels, p.probs) for p in candidate.predictions.values())
    names = [str(c) for c in first.class_names]
    if len(names) != matrix.shape[0]:
        names = [str(i) for i in range(matrix.shape[0])]
    table = pd.DataFrame({"true \\ predicted": names})
    for j, name in enumerate(names):
        table[name] = [str(int(v)) for v in matrix[:, j]]
    totals = matrix.sum(axis=1)
    table["recall"] = [f"{matrix[i, i] / totals[i]:.3f}" if totals[i] else "" for i in range(len(names))]
    return table


def clinical_csv(candidates_by_dataset: dict[str, list[Candidate]], metrics: ClinicalMetrics) -> pd.DataFrame:
    """One row per cell with predictions: ECE, threshold, sensitivity, specificity, per-class recall."""
    rows = []
    for dataset, candidates in candidates_by_dataset.items():
        for candidate in candidates:
            cells = metrics.cells.get((dataset, candidate.key), {})
            for seed, cell in cells.items():
                row: dict[str, Any] = dict(zip(("backend", "model", "strategy"), candidate.key, strict=True))
                row.update(dataset=dataset, seed=seed, test_images=cell.n, threshold=cell.threshold)
                row["operating_point"] = metrics.options.operating_point.describe() if not cell.status else cell.status
                row.update(cell.values)
                rows.append(row)
    return pd.DataFrame(rows)
