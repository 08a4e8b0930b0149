"""The README's answer to "with N labels, which strategy, and when more arrive, continue or retrain?" (issue 23).

``labels_verdicts(datasets)`` reads, per dataset ``<d>``, the label-efficiency suite ``results/label_efficiency_<d>``
and the incremental suite ``results/incremental_<d>`` and renders one column per dataset (never typed):

- **most accurate with the fewest labels** / **on the whole split**: the strategy of highest mean test accuracy at the
  smallest and at the largest train size, with its mean ± 95 % t half-width over draws × seeds
  (``reporting.label_efficiency.curve_points``);
- **fine-tuning overtakes the probes**, in accuracy and in ROC-AUC: the crossover
  (``reporting.label_efficiency.crossovers``): the size from which the best fine-tuning leads the best probe at every
  larger size, its paired gap there, whether an interval resolves it, and the sizes at which the probe leads beyond
  noise;
- one row per strategy of the incremental suites and warm start (``continue``, and shrink-and-perturb whichever way
  it shrank): its final test accuracy minus ``retrain``'s, paired by seed (``reporting.incremental.paired_gaps``),
  ``level`` when the interval holds 0.

A dataset whose suites hold no results yet but have suite files reads "not run yet"; one without suite files is an
error (a typo in the page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..reporting import label_efficiency as le
from ..reporting.comparisons import METRIC_TITLES
from ..reporting.incremental import paired_gaps, step_frame, warm_start_modes
from ..reporting.tables import results_frame
from ..running.config import SHRINK_MODES
from .findings_cells import FindingsError, finished_records

#: the README's words for each shrink-and-perturb mode (``--increment-modes``)
SHRINK_WORDS = {"shrink_perturb": "to 0", "shrink_pretrained": "to pretrained"}
FEWEST = "most accurate with the fewest labels"
WHOLE = "most accurate on the whole split"
#: one row per crossover metric (``reporting.label_efficiency.METRICS``)
CROSSOVER = {metric: f"fine-tuning overtakes the probes in {METRIC_TITLES[metric]}" for metric in le.METRICS}


def _records(root: Path, prefix: str, dataset: str) -> list[dict[str, Any]] | None:
    """The finished records of ``results/<prefix>_<dataset>``; ``None`` when not run yet but its suite file exists.

    Raises:
        FindingsError: neither results nor ``suites/<prefix>_<dataset>.toml``.
    """
    records = finished_records(root / "results" / f"{prefix}_{dataset}")
    if records is None and not (root / "suites" / f"{prefix}_{dataset}.toml").is_file():
        raise FindingsError(
            f"labels_verdicts: results/{prefix}_{dataset} has no results and no suites/{prefix}_{dataset}.toml "
            "makes it; expected datasets named like the label-efficiency and incremental suite files"
        )
    return records


def _point_text(point: pd.Series) -> str:
    mean, low, high = point["accuracy"], point["accuracy_low"], point["accuracy_high"]
    value = f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {(high - low) / 2:.3f}"
    return f"`{point['strategy']}` {value} ({le.size_label(point['train_size'])})"


def _most_accurate(points: pd.DataFrame, smallest: bool) -> str:
    """The most accurate strategy at the smallest (or largest) train size, with its interval and size."""
    sizes = points.groupby("train_size", sort=False)["images"].mean().sort_values(kind="stable")
    at = points[points["train_size"] == sizes.index[0 if smallest else -1]].dropna(subset=["accuracy"])
    if at.empty:
        return "–"
    return _point_text(at.sort_values("accuracy", ascending=False, kind="stable").iloc[0])


def crossover_text(crossover: le.Crossover) -> str:
    """``from 100% (+0.022 [-0.027, +0.070]), not resolved``, ``no: the probe is ahead or level at 100%`` or why none
    was read, then ``; probe ahead beyond noise at 5–50/class`` where it is.

    Args:
        crossover: one dataset's crossover (``reporting.label_efficiency.crossovers``).
    """
    if not crossover.gaps:
        return "no size has both a fine-tuning and a probe"
    ahead = f"; {text}" if (text := crossover.probe_ahead_text()) else ""
    if crossover.at is None:
        return f"no: the probe is ahead or level at {le.size_label(crossover.gaps[-1].train_size)}{ahead}"
    gap = next(g for g in crossover.gaps if g.train_size == crossover.at)
    interval = "" if math.isnan(gap.low) else f" [{gap.low:+.3f}, {gap.high:+.3f}]"
    resolved = (
        f"resolved from {le.size_label(crossover.resolved_at)}" if crossover.resolved_at is not None else "not resolved"
    )
    return f"from {le.size_label(crossover.at)} ({gap.mean:+.3f}{interval}), {resolved}{ahead}"


def _gap_text(row: pd.Series) -> str:
    """``+0.019 [-0.023, +0.062] level``: a final paired gap to retrain with what its interval says."""
    text = f"{row['gap']:+.3f}"
    if not (math.isfinite(row["low"]) and math.isfinite(row["high"])):
        return f"{text} (n={int(row['n'])}, no interval)"
    verdict = "better" if row["low"] > 0 else "worse" if row["high"] < 0 else "level"
    return f"{text} [{row['low']:+.3f}, {row['high']:+.3f}] {verdict}"


def warm_start_cells(records: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Per (strategy, ``continue`` or ``shrink``): the final accuracy gap of that warm start to ``retrain``.

    Several shrink modes in one suite share the cell; each is named after its gap (``(to 0)``, ``(to pretrained)``).
    """
    steps = step_frame(records)
    cells: dict[tuple[str, str], list[str]] = {}
    if steps.empty:
        return {}
    for mode in warm_start_modes(steps["mode"]):
        family = "shrink" if mode in SHRINK_MODES else mode
        for _, row in paired_gaps(steps, mode).iterrows():
            text = _gap_text(row)
            if mode in SHRINK_MODES:
                text = f"{text} ({SHRINK_WORDS[mode]})"
            cells.setdefault((str(row["strategy"]), family), []).append(text)
    order = sorted(cells, key=lambda key: (key[0], key[1] != "continue", key[1]))
    return {key: "; ".join(cells[key]) for key in order}


def _warm_start_row(strategy: str, family: str) -> str:
    name = "continue" if family == "continue" else "shrink-and-perturb" if family == "shrink" else family
    return f"`{strategy}`: {name} − retrain"


def labels_verdicts(datasets: Sequence[str], root: Path = Path(".")) -> str:
    """The README's "With N labels, which strategy?" table: one column per dataset (module docstring).

    Args:
        datasets: names ``<d>`` of ``results/label_efficiency_<d>`` and ``results/incremental_<d>``.
        root: the repository root.

    Raises:
        FindingsError: a dataset with neither results nor suite files for one of the two suites.
    """
    columns: list[dict[str, str]] = []
    waiting: list[str] = []
    for dataset in datasets:
        labels = _records(root, "label_efficiency", dataset)
        increments = _records(root, "incremental", dataset)
        cells: dict[str, str] = {}
        if labels is None:
            waiting.append(f"`suites/label_efficiency_{dataset}.toml`")
        else:
            frame = results_frame(labels)
            points = le.curve_points(frame)
            if not points.empty:
                cells[FEWEST] = _most_accurate(points, smallest=True)
                cells[WHOLE] = _most_accurate(points, smallest=False)
            for crossover in le.all_crossovers(frame):
                row = CROSSOVER[crossover.metric]
                cells[row] = "; ".join(filter(None, [cells.get(row), crossover_text(crossover)]))
        if increments is None:
            waiting.append(f"`suites/incremental_{dataset}.toml`")
        else:
            for (strategy, family), text in warm_start_cells(increments).items():
                cells[_warm_start_row(strategy, family)] = text
        columns.append(cells)
    names = [FEWEST, WHOLE, *(row for row in CROSSOVER.values() if any(row in cells for cells in columns))]
    for cells in columns:
        names += [name for name in cells if name not in names]
    lines = ["| | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cells.get(name, "–") for cells in columns) + " |")
    if waiting:
        lines += ["", f"Not run yet: {', '.join(waiting)} (`tlbench run` each)."]
    return "\n".join(lines) + "\n"
