"""The data-incremental scenario in a report (``--increments``): the test metric and the cumulative training
seconds after each step per mode, and the final gap between continuing and retraining.

Reads the ``increments`` column of the records (one row per step and mode, ``running.cell_incremental``); a suite
without it gets no section. Intervals over seeds are Student-t (``stats.t_interval``); the gap is paired by seed:
``final(continue) - final(retrain)`` of the same seed, chunks and step-1 model, so the interval is that of the
per-seed differences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ..running.config import INCREMENT_MODES
from .evidence import Section
from .stats import t_interval
from .tables import format_value, summarize_values

#: the metrics a step table can show (the step rows' test metrics)
STEP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")
#: the configuration a step belongs to, before the mode and the step
CONFIGURATION = ("dataset", "backend", "model", "strategy")

INCREMENTAL_NOTE = (
    "Data-incremental scenario (`--increments K`): the train split arrives in K stratified chunks (patient-whole "
    "with `--group-by`), the same for every mode and strategy of a seed; step k trains on chunks 1..k. `continue` "
    "starts each step from the previous step's weights, `retrain` from the pretrained weights, `shrink_perturb` "
    "from the previous weights shrunk by lambda and perturbed by N(0, sigma^2) (Ash & Adams 2020), "
    "`shrink_pretrained` from the previous weights shrunk toward the pretrained ones, w0 + lambda (w - w0), and "
    "perturbed. Values: mean ± "
    "half-width of the 95 % t-interval over seeds (n); cumulative seconds add every step's training seconds of that "
    "mode (step 1 is shared)."
)
INCREMENTAL_PLOT_TITLE = "Incremental data: test metric and cumulative training seconds after each step"
GAP_NOTE = (
    "Final gap after the last step, paired by seed: each warm start minus `retrain` (`continue - retrain` "
    "negative: continuing is worse), mean [95 % t-interval] (n seeds); seconds saved: cumulative training seconds of "
    "retrain minus those of the mode."
)


def step_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per finished record × step × mode: the configuration, seed, mode, step, images, metrics, seconds."""
    rows = []
    for record in records:
        increments = record.get("increments")
        if record.get("status") != "ok" or not isinstance(increments, dict):
            continue
        for step in increments.get("rows") or []:
            rows.append(
                {
                    **{key: record.get(key) for key in CONFIGURATION},
                    "seed": record.get("seed"),
                    "mode": step["increment_mode"],
                    "step": int(step["increment_step"]),
                    "train_images": step.get("train_images"),
                    **{metric: step.get(metric) for metric in STEP_METRICS},
                    "train_s": step.get("train_s"),
                    "cumulative_train_s": step.get("cumulative_train_s"),
                }
            )
    columns = [*CONFIGURATION, "seed", "mode", "step", "train_images", *STEP_METRICS, "train_s", "cumulative_train_s"]
    return pd.DataFrame(rows, columns=columns)


def _mode_order(modes: Iterable[str]) -> list[str]:
    known = INCREMENT_MODES
    present = list(dict.fromkeys(modes))
    return [m for m in known if m in present] + [m for m in present if m not in known]


def warm_start_modes(modes: Iterable[str]) -> list[str]:
    """The modes of ``modes`` compared with ``retrain`` (all but ``retrain``), in the known order."""
    return [mode for mode in _mode_order(modes) if mode != "retrain"]


def step_table(steps: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per configuration and step: the labelled images, then per mode the test ``metric`` and the cumulative
    training seconds over seeds (text cells)."""
    if steps.empty:
        return pd.DataFrame()
    modes = _mode_order(steps["mode"])
    rows = []
    for key, group in steps.groupby([*CONFIGURATION, "step"], sort=True):
        row = dict(zip([*CONFIGURATION, "step"], key, strict=True))
        row["images"] = int(round(float(group["train_images"].mean())))
        for mode in modes:
            at = group[group["mode"] == mode]
            row[f"{mode} {metric}"] = summarize_values(metric, list(at[metric]))
            row[f"{mode} cumulative training (s)"] = summarize_values(
                "cumulative_train_s", list(at["cumulative_train_s"])
            )
        rows.append(row)
    return pd.DataFrame(rows)


def final_values(steps: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The last step's ``metric`` and cumulative seconds per configuration, seed and mode."""
    last = steps[steps["step"] == steps.groupby([*CONFIGURATION, "seed"])["step"].transform("max")]
    return last.set_index([*CONFIGURATION, "seed", "mode"])[[metric, "cumulative_train_s"]]


def paired_gaps(steps: pd.DataFrame, mode: str, metric: str = "accuracy", against: str = "retrain") -> pd.DataFrame:
    """Per configuration: the final ``metric`` of ``mode`` minus that of ``against``, one value per seed that ran
    both, with its mean and 95 % t-interval (``nan`` bounds for one seed), and the mean seconds saved."""
    columns = [*CONFIGURATION, "n", "gap", "low", "high", "seconds_saved"]
    if steps.empty:
        return pd.DataFrame(columns=columns)
    final = final_values(steps, metric).reset_index()
    rows = []
    for key, group in final.groupby(list(CONFIGURATION), sort=True):
        mine = group[group["mode"] == mode].set_index("seed")
        theirs = group[group["mode"] == against].set_index("seed")
        seeds = sorted(set(mine.index) & set(theirs.index))
        diffs = [float(mine.loc[s, metric]) - float(theirs.loc[s, metric]) for s in seeds]
        diffs = [d for d in diffs if math.isfinite(d)]
        if not diffs:
            continue
        saved = [float(theirs.loc[s, "cumulative_train_s"]) - float(mine.loc[s, "cumulative_train_s"]) for s in seeds]
        interval = t_interval(diffs)
        rows.append(
            {
                **dict(zip(CONFIGURATION, key, strict=True)),
                "n": interval.n,
                "gap": interval.estimate,
                "low": interval.low,
                "high": interval.high,
                "seconds_saved": sum(saved) / len(saved),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def gap_text(row: pd.Series, metric: str) -> str:
    """``-0.012 [-0.030, 0.006] (n=3)``, or ``-0.012 (n=1)``."""
    text = f"{row['gap']:+.3f}"
    if math.isfinite(row["low"]) and math.isfinite(row["high"]):
        text += f" [{row['low']:+.3f}, {row['high']:+.3f}]"
    return f"{text} (n={int(row['n'])})"


def gap_table(steps: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Per configuration: the final gap of each warm start (every mode but ``retrain``) against ``retrain``
    (text cells)."""
    parts = []
    for mode in warm_start_modes(steps["mode"] if not steps.empty else ()):
        gaps = paired_gaps(steps, mode, metric)
        if gaps.empty:
            continue
        gaps = gaps.set_index(list(CONFIGURATION))
        parts.append(
            pd.DataFrame(
                {
                    f"{mode} - retrain {metric}": [gap_text(r, metric) for _, r in gaps.iterrows()],
                    f"{mode} seconds saved (s)": [format_value("seconds_saved_s", v) for v in gaps["seconds_saved"]],
                },
                index=gaps.index,
            )
        )
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, axis=1).reset_index().fillna("")


def incremental_sections(records: Iterable[dict[str, Any]], metric: str = "accuracy") -> list[Section]:
    """The report's sections of the scenario: the step table, then the final gaps (none without ``increments``)."""
    steps = step_frame(records)
    if steps.empty:
        return []
    sections = [
        Section(
            f"Incremental data — {metric} and cumulative training seconds per step",
            step_table(steps, metric),
            INCREMENTAL_NOTE,
        )
    ]
    gaps = gap_table(steps, metric)
    if not gaps.empty:
        sections.append(Section("Incremental data — continue or retrain?", gaps, GAP_NOTE))
    return sections


def draw_incremental_plot(steps: pd.DataFrame, path: Path, metric: str = "accuracy") -> Path | None:
    """``metric`` (left) and cumulative training seconds (right) against labelled images, one line per
    configuration and mode, mean over seeds with the t-interval as a band; ``None`` without steps."""
    if steps.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, group in steps.groupby([*CONFIGURATION, "mode"], sort=True):
        label = f"{key[3]} {key[4]}" if steps["dataset"].nunique() == 1 else f"{key[0]} {key[3]} {key[4]}"
        for axis, column in ((left, metric), (right, "cumulative_train_s")):
            points = []
            for images, at in group.groupby("train_images", sort=True):
                values = [float(v) for v in at[column] if v is not None and math.isfinite(float(v))]
                if values:
                    interval = t_interval(values)
                    points.append((images, interval.estimate, interval.low, interval.high))
            if not points:
                continue
            xs, means, lows, highs = zip(*points, strict=True)
            line = axis.plot(xs, means, marker="o", label=label)[0]
            if all(math.isfinite(v) for v in lows + highs):
                axis.fill_between(xs, lows, highs, alpha=0.15, color=line.get_color())
    left.set(xlabel="labelled training images", ylabel=f"test {metric}", title=f"test {metric} after each step")
    right.set(xlabel="labelled training images", ylabel="cumulative training s", title="cumulative training seconds")
    left.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def increments_note(record: dict[str, Any]) -> str:
    """``; after 4 steps: continue 0.812 (30.1 s), retrain 0.830 (62.0 s)`` for a cell's console line: each mode's
    last-step test accuracy and cumulative training seconds; ``""`` without ``increments``."""
    increments = record.get("increments")
    if not isinstance(increments, dict) or not increments.get("rows"):
        return ""
    rows = increments["rows"]
    last = max(int(row["increment_step"]) for row in rows)
    parts = [
        f"{row['increment_mode']} {format_value('accuracy', row.get('accuracy'))} "
        f"({format_value('cumulative_train_s', row.get('cumulative_train_s'))} s)"
        for row in rows
        if int(row["increment_step"]) == last
    ]
    return f"; after {last} steps: " + ", ".join(parts)
