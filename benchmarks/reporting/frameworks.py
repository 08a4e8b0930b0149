"""Which framework: do backends running the same model and strategy agree, and how fast is each?

A suite that runs one configuration (dataset, model, strategy) on several backends over several seeds answers
"which framework" only if the accuracies agree within seed noise; the speed difference is then the framework's.
For every configuration that at least two backends finished with at least two seeds each, this module gives:

- per metric (accuracy, ROC-AUC): each backend's ``mean ± h (n)``, the spread of the backend means, the pooled
  within-backend seed standard deviation, and the one-way ANOVA p-value of "all backends have the same mean"
  (``agree`` is ``yes`` when p >= 0.05: no evidence of a difference; with 3 seeds per backend the test only
  detects differences of a few seed standard deviations, which is why the spread and the seed SD are shown);
- per backend: the median training and inference images/s over seeds and their ratio to the fastest backend.

Framework-free (pandas, numpy, scipy); made from the result records alone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .stats import t_interval

#: the metrics compared across backends
AGREEMENT_METRICS = ("accuracy", "roc_auc")
#: p-value below which backends are said to disagree
ALPHA = 0.05
KEYS = ["dataset", "model", "strategy"]


def anova_p(groups: list[list[float]]) -> float:
    """One-way ANOVA p-value that every group has the same mean (scipy's ``f_oneway``).

    Groups with no spread at all are decided without the F-test: identical values everywhere give 1.0, identical
    values within groups but different means give 0.0.
    """
    from scipy.stats import f_oneway

    within = sum(float(np.var(g, ddof=0)) * len(g) for g in groups)
    if within == 0.0:
        means = {round(float(np.mean(g)), 12) for g in groups}
        return 1.0 if len(means) == 1 else 0.0
    return float(f_oneway(*groups).pvalue)


def pooled_sd(groups: list[list[float]]) -> float:
    """The pooled within-group standard deviation (degrees of freedom: sum of n - 1)."""
    dof = sum(len(g) - 1 for g in groups)
    if dof <= 0:
        return float("nan")
    return math.sqrt(sum(float(np.var(g, ddof=1)) * (len(g) - 1) for g in groups if len(g) > 1) / dof)


def _comparable(frame: pd.DataFrame) -> dict[tuple, dict[str, pd.DataFrame]]:
    """(dataset, model, strategy) → {backend: its ok records}, for configurations with >= 2 backends of >= 2 seeds
    that train the same network (parameters, head, weights: ``candidates.network_signature``)."""
    from .candidates import network_signature

    ok = frame[frame["status"] == "ok"]
    result: dict[tuple, dict[str, pd.DataFrame]] = {}
    for key, group in ok.groupby(KEYS, sort=False):
        by_backend = {b: g for b, g in group.groupby("backend", sort=False) if g["seed"].nunique() >= 2}
        networks = {network_signature(g.iloc[0].to_dict()) for g in by_backend.values()}
        if len(by_backend) >= 2 and len(networks) == 1:
            result[key] = by_backend
    return result


def _values(group: pd.DataFrame, column: str) -> list[float]:
    return [float(v) for v in pd.to_numeric(group[column], errors="coerce") if math.isfinite(float(v))]


def agreement_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, metric): backend means with intervals, spread, seed SD, ANOVA p, verdict.

    Empty when no configuration ran on two or more backends with two or more seeds each.
    """
    rows: list[dict[str, Any]] = []
    for key, by_backend in _comparable(frame).items():
        for metric in AGREEMENT_METRICS:
            groups = {b: _values(g, metric) for b, g in by_backend.items()}
            groups = {b: v for b, v in groups.items() if len(v) >= 2}
            if len(groups) < 2:
                continue
            row: dict[str, Any] = dict(zip(KEYS, key, strict=True))
            row["metric"] = metric
            means = []
            for backend, values in groups.items():
                interval = t_interval(values)
                means.append(interval.estimate)
                row[backend] = f"{interval.estimate:.3f} ± {interval.half_width:.3f} (n={interval.n})"
            p = anova_p(list(groups.values()))
            row["spread of means"] = f"{max(means) - min(means):.3f}"
            row["seed SD"] = f"{pooled_sd(list(groups.values())):.3f}"
            row["ANOVA p"] = f"{p:.2f}"
            row["agree"] = "yes" if p >= ALPHA else "NO"
            rows.append(row)
    return _ordered(rows, frame)


def speed_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: each backend's median train / inference images/s and ratio to the fastest."""
    rows: list[dict[str, Any]] = []
    for key, by_backend in _comparable(frame).items():
        row: dict[str, Any] = dict(zip(KEYS, key, strict=True))
        for column, label in (("train_images_per_s", "train"), ("infer_images_per_s", "inference")):
            medians = {b: float(np.median(v)) for b, g in by_backend.items() if (v := _values(g, column))}
            fastest = max(medians.values()) if medians else None
            for backend in by_backend:
                value = medians.get(backend)
                row[f"{backend}: {label} images/s"] = "" if value is None else f"{value:.0f} ({value / fastest:.2f}x)"
        rows.append(row)
    return _ordered(rows, frame)


def _ordered(rows: list[dict[str, Any]], frame: pd.DataFrame) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).fillna("")
    backends = [b for b in dict.fromkeys(frame["backend"])]
    first = [c for c in KEYS + ["metric"] if c in table.columns]
    rest = [c for c in table.columns if c not in first]
    by_backend = [c for b in backends for c in rest if c == b or c.startswith(f"{b}: ")]
    return table[first + by_backend + [c for c in rest if c not in by_backend]]


FRAMEWORKS_NOTE = (
    "Same model, strategy and data on several backends, seeds pooled per backend. `agree`: one-way ANOVA over "
    f"the seeds of each backend, p >= {ALPHA} (no evidence that the backends' means differ; with few seeds only a "
    "gap of several seed SDs is detectable). Speed: median over seeds, in parentheses the ratio to the fastest "
    "backend. Backends that train different networks (parameters, head, weights) are left out: see the answer."
)
