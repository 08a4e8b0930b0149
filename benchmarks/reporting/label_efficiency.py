"""Label-efficiency curves (``--train-sizes``, ``--draws``): test accuracy and ROC-AUC against labelled training
images per strategy, training seconds beside them, and the crossover where fine-tuning overtakes the probes (in
accuracy, and in ROC-AUC where the cells have it).

Each point is the mean over the draws x seeds of a (dataset, backend, model, strategy, train size) with its 95 %
Student-t interval over those draw x seed values (a draw changes the images, a seed the training; both are
independent repeats of the point). The crossover compares, at each size, the best fine-tuning strategy (the
strategy row's ``train_backbone`` is not ``none``) with the best probe (``none``), the best being the highest mean
of the metric at that size; their difference is paired on (draw, seed), which share the very same images, and gets its
own 95 % t-interval. The crossover is the smallest size from which fine-tuning's mean difference stays above zero at
every larger size run; the interval tells whether that is resolved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import pandas as pd

from ...core.strategies import get_strategy
from .comparisons import METRIC_TITLES
from .stats import t_interval

#: what identifies a curve (one line of the plot)
CURVE_KEYS = ["dataset", "backend", "model", "strategy"]
#: what the crossover is computed within: one backbone on one dataset through one backend
GROUP_KEYS = ["dataset", "backend", "model"]
METRICS = ("accuracy", "roc_auc")

INTERVAL_NOTE = (
    "Label efficiency: each point is the mean over draws x seeds (a draw is another nested, stratified subset of the "
    "train split; every strategy of a draw trains on the same images) ± the half-width of its 95 % Student-t "
    "interval over those values; `images` is the labelled training images the size gave (mean over draws), "
    "`train_s` the mean training seconds. Validation and test are the whole splits at every size."
)
CROSSOVER_NOTE = (
    "Crossover: at each size, the best fine-tuning strategy (backbone trained) minus the best probe (frozen backbone) "
    "by the mean of the metric (test accuracy, and test ROC-AUC where the cells have it), the difference paired on "
    "(draw, seed) — the same images — with its 95 % t-interval. `from` is the smallest size from which fine-tuning's "
    "mean is ahead at every larger size; `resolved from` the smallest from which the interval's lower bound stays "
    "above 0; the probe is *ahead beyond noise* where the interval's upper bound is below 0. The best of each family "
    "is picked on test means at that size, so a small positive difference is optimistic."
)


def is_subset_record(record: dict[str, Any]) -> bool:
    """Whether a record trained on a label-efficiency subset (``train_size`` set)."""
    size = record.get("train_size")
    return size is not None and not (isinstance(size, float) and math.isnan(size))


def is_fine_tuning(strategy: str) -> bool | None:
    """``True`` for a strategy that trains the backbone, ``False`` for a probe, ``None`` for an unknown name."""
    try:
        return get_strategy(str(strategy)).train_backbone != "none"
    except KeyError:
        return None


def subset_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The finished label-efficiency cells of ``frame`` (``train_size`` set, status ok)."""
    if "train_size" not in frame.columns or frame.empty:
        return frame.iloc[0:0]
    ok = frame[frame["train_size"].notna() & (frame.get("status") == "ok")].copy()
    ok["draw"] = pd.to_numeric(ok["draw"], errors="coerce").fillna(0).astype(int)
    images = ok["train_images"] if "train_images" in ok.columns else pd.Series(math.nan, index=ok.index)
    ok["train_images"] = pd.to_numeric(images, errors="coerce")
    return ok


def whole_train_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells the other report tables show: those on the whole train split (no ``train_size``, or ``100%``);
    in a suite without them, the largest size's first draw (so no table mixes sizes or counts a draw as a seed)."""
    if "train_size" not in frame.columns:
        return frame
    sizes = frame["train_size"]
    whole = frame[sizes.isna() | (sizes == "100%")]
    if not whole.empty or frame.empty:
        return whole
    images = pd.to_numeric(frame.get("train_images"), errors="coerce")
    largest = frame.loc[images.groupby(frame["train_size"]).transform("mean").idxmax(), "train_size"]
    draws = pd.to_numeric(frame["draw"], errors="coerce").fillna(0)
    return frame[(sizes == largest) & (draws == draws[sizes == largest].min())]


def _interval(values: pd.Series) -> tuple[float, float, float, int]:
    finite = [float(v) for v in values if v is not None and not pd.isna(v)]
    if not finite:
        return math.nan, math.nan, math.nan, 0
    interval = t_interval(finite)
    return interval.estimate, interval.low, interval.high, interval.n


def curve_points(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (dataset, backend, model, strategy, train size), in increasing labelled images: ``images``
    (mean over draws), ``n`` (draws x seeds), each metric's mean and 95 % t-interval (``<metric>``,
    ``<metric>_low``, ``<metric>_high``), ``train_s`` (mean) and ``fine_tuning``."""
    ok = subset_frame(frame)
    rows = []
    for key, group in ok.groupby([*CURVE_KEYS, "train_size"], sort=False):
        row: dict[str, Any] = dict(zip([*CURVE_KEYS, "train_size"], key, strict=True))
        row["images"] = float(group["train_images"].mean())
        row["n"] = len(group)
        for metric in METRICS:
            values = group[metric] if metric in group.columns else pd.Series(dtype=float)
            row[metric], row[f"{metric}_low"], row[f"{metric}_high"], _ = _interval(values)
        row["train_s"] = float(pd.to_numeric(group["train_s"], errors="coerce").mean()) if "train_s" in group else None
        row["fine_tuning"] = is_fine_tuning(row["strategy"])
        rows.append(row)
    points = pd.DataFrame(rows)
    if points.empty:
        return points
    return points.sort_values([*GROUP_KEYS, "images", "strategy"], kind="stable").reset_index(drop=True)


def _half(mean: float, low: float, high: float) -> str:
    if math.isnan(mean):
        return "—"
    if math.isnan(low):
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {(high - low) / 2:.3f}"


def size_label(size: str) -> str:
    return size if str(size).endswith("%") else f"{size}/class"


def sizes_label(sizes: list[str]) -> str:
    """``5–50/class`` for a run of sizes (first to last), ``25/class`` for one, ``10%–50%`` across fractions."""
    if len(sizes) == 1:
        return size_label(sizes[0])
    first, last = str(sizes[0]), str(sizes[-1])
    if not first.endswith("%") and not last.endswith("%"):
        return f"{first}–{last}/class"
    return f"{size_label(first)}–{size_label(last)}"


def curve_table(points: pd.DataFrame) -> pd.DataFrame:
    """The report's table of ``curve_points``: one row per strategy and size, formatted."""
    if points.empty:
        return points
    return pd.DataFrame(
        {
            "dataset": points["dataset"],
            "backend/model": points["backend"] + "/" + points["model"],
            "strategy": points["strategy"],
            "train size": points["train_size"].map(size_label),
            "images": points["images"].map(lambda v: "—" if math.isnan(v) else f"{v:.0f}"),
            "n": points["n"],
            "accuracy": [
                _half(m, lo, hi) for m, lo, hi in points[["accuracy", "accuracy_low", "accuracy_high"]].values
            ],
            "roc_auc": [_half(m, lo, hi) for m, lo, hi in points[["roc_auc", "roc_auc_low", "roc_auc_high"]].values],
            "train_s": points["train_s"].map(lambda v: "—" if v is None or math.isnan(v) else f"{v:.1f}"),
        }
    )


@dataclass(frozen=True)
class SizeGap:
    """Best fine-tuning minus best probe at one size (paired on draw x seed)."""

    train_size: str
    images: float
    fine_tuning: str
    probe: str
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Crossover:
    """Where fine-tuning overtakes the probes on one dataset x backend x model."""

    dataset: str
    backend: str
    model: str
    gaps: list[SizeGap]
    #: the smallest size from which the mean gap is > 0 at every larger size; ``None``: no crossover in the run
    at: str | None
    #: the smallest size from which the gap's interval lies above 0 at every larger size
    resolved_at: str | None
    #: the test metric compared (``METRICS``)
    metric: str = "accuracy"

    @property
    def probe_ahead(self) -> list[list[str]]:
        """The runs of consecutive sizes at which the best probe leads beyond noise (the gap's interval below 0)."""
        runs = groupby(self.gaps, key=lambda gap: not math.isnan(gap.high) and gap.high < 0)
        return [[gap.train_size for gap in run] for ahead, run in runs if ahead]

    def probe_ahead_text(self) -> str:
        """``probe ahead beyond noise at 5–50/class`` (every run of sizes), or ``""`` when at none."""
        runs = self.probe_ahead
        return f"probe ahead beyond noise at {', '.join(sizes_label(run) for run in runs)}" if runs else ""

    def sentence(self) -> str:
        """``fine-tuning (x) overtakes the probes (y) in accuracy from 25/class (+0.031 [0.004, 0.058], n=6)...`` or
        the absence."""
        words = METRIC_TITLES.get(self.metric, self.metric)
        if not self.gaps:
            return f"no size has both a fine-tuning strategy and a probe with {words}"
        ahead = f"; {text}" if (text := self.probe_ahead_text()) else ""
        if self.at is None:
            return (
                f"no crossover in {words} within the sizes run (the best probe is ahead or level at the largest "
                f"size){ahead}"
            )
        gap = next(g for g in self.gaps if g.train_size == self.at)
        interval = "" if math.isnan(gap.low) else f" [{gap.low:+.3f}, {gap.high:+.3f}]"
        resolved = (
            f"; resolved (interval above 0) from {size_label(self.resolved_at)}"
            if self.resolved_at is not None
            else "; not resolved at any size (every interval reaches 0)"
        )
        return (
            f"fine-tuning ({gap.fine_tuning}) overtakes the probes ({gap.probe}) in {words} from {size_label(self.at)} "
            f"({gap.mean:+.3f}{interval}, n={gap.n}){resolved}{ahead}"
        )


def _best(points: pd.DataFrame, fine_tuning: bool, metric: str) -> str | None:
    family = points[points["fine_tuning"] == fine_tuning].dropna(subset=[metric])
    return None if family.empty else str(family.sort_values(metric, ascending=False, kind="stable").iloc[0]["strategy"])


def _paired(group: pd.DataFrame, size: str, first: str, second: str, metric: str) -> pd.Series:
    at = group[group["train_size"] == size]
    a = at[at["strategy"] == first].set_index(["draw", "seed"])[metric]
    b = at[at["strategy"] == second].set_index(["draw", "seed"])[metric]
    both = a.index.intersection(b.index)
    return (pd.to_numeric(a[both]) - pd.to_numeric(b[both])).dropna()


def _from(gaps: list[SizeGap], ahead: Any) -> str | None:
    """The smallest size from which ``ahead(gap)`` holds at every larger size (the last one included)."""
    at = None
    for gap in reversed(gaps):
        if not ahead(gap):
            break
        at = gap.train_size
    return at


def crossovers(frame: pd.DataFrame, metric: str = "accuracy") -> list[Crossover]:
    """The crossover in ``metric`` of each dataset x backend x model whose label-efficiency cells hold both a
    fine-tuning strategy and a probe with that metric.

    Raises:
        ValueError: ``metric`` is not one of ``METRICS``.
    """
    if metric not in METRICS:
        raise ValueError(f"crossover metric must be one of {', '.join(METRICS)}; got {metric!r}")
    return _crossovers(subset_frame(frame), curve_points(frame), metric)


def all_crossovers(frame: pd.DataFrame) -> list[Crossover]:
    """The crossovers of every metric in ``METRICS`` that the label-efficiency cells hold, metric by metric."""
    ok, points = subset_frame(frame), curve_points(frame)
    return [crossover for metric in METRICS for crossover in _crossovers(ok, points, metric)]


def _crossovers(ok: pd.DataFrame, points: pd.DataFrame, metric: str) -> list[Crossover]:
    """``crossovers`` over the finished subset cells ``ok`` and their ``curve_points``."""
    found: list[Crossover] = []
    if points.empty or ok.get(metric, pd.Series(dtype=float)).isna().all():
        return found
    for key, group in points.groupby(GROUP_KEYS, sort=False):
        cells = ok[(ok[GROUP_KEYS] == pd.Series(dict(zip(GROUP_KEYS, key, strict=True)))).all(axis=1)]
        gaps = []
        for size, at in group.groupby("train_size", sort=False):
            fine, probe = _best(at, True, metric), _best(at, False, metric)
            if fine is None or probe is None:
                continue
            mean, low, high, n = _interval(_paired(cells, size, fine, probe, metric))
            if n:
                gaps.append(SizeGap(str(size), float(at["images"].mean()), fine, probe, mean, low, high, n))
        at_size = _from(gaps, lambda g: g.mean > 0)
        resolved = _from(gaps, lambda g: not math.isnan(g.low) and g.low > 0)
        found.append(Crossover(*map(str, key), gaps, at_size, resolved, metric))
    return found


def crossover_table(found: list[Crossover]) -> pd.DataFrame:
    """One row per dataset x backend x model and size: the two best strategies and their paired difference."""
    rows = []
    for crossover in found:
        for gap in crossover.gaps:
            interval = "" if math.isnan(gap.low) else f" [{gap.low:+.3f}, {gap.high:+.3f}]"
            rows.append(
                {
                    "dataset": crossover.dataset,
                    "backend/model": f"{crossover.backend}/{crossover.model}",
                    "metric": METRIC_TITLES.get(crossover.metric, crossover.metric),
                    "train size": size_label(gap.train_size),
                    "images": f"{gap.images:.0f}",
                    "best fine-tuning": gap.fine_tuning,
                    "best probe": gap.probe,
                    "difference": f"{gap.mean:+.3f}{interval}",
                    "n": gap.n,
                    "from": size_label(crossover.at) if crossover.at else "no crossover",
                    "resolved from": size_label(crossover.resolved_at) if crossover.resolved_at else "—",
                }
            )
    return pd.DataFrame(rows)


def label_efficiency_plot(frame: pd.DataFrame, path: Path) -> Path | None:
    """Test accuracy and ROC-AUC against labelled training images (log axis), one line per strategy, 95 % t-interval
    bars over draws x seeds; one row of panels per dataset x backend x model. ``None`` without subset cells."""
    points = curve_points(frame)
    if points.empty:
        return None
    from .plots import _palette, _plain_log_ticks, _pyplot, _save, short_dataset

    plt = _pyplot()
    groups = list(points.groupby(GROUP_KEYS, sort=False))
    fig, axes = plt.subplots(
        layout="constrained", nrows=len(groups), ncols=2, figsize=(11.0, 4.0 * len(groups)), squeeze=False
    )
    colors = _palette(list(dict.fromkeys(points["strategy"])))
    for row, ((dataset, backend, model), group) in zip(axes, groups, strict=True):
        for ax, metric in zip(row, METRICS, strict=True):
            for strategy, curve in group.groupby("strategy", sort=False):
                curve = curve.sort_values("images")
                low = (curve[metric] - curve[f"{metric}_low"]).fillna(0).clip(lower=0)
                high = (curve[f"{metric}_high"] - curve[metric]).fillna(0).clip(lower=0)
                ax.errorbar(
                    curve["images"],
                    curve[metric],
                    yerr=[low, high],
                    marker="o",
                    capsize=3,
                    color=colors[strategy],
                    linestyle="-" if curve["fine_tuning"].iloc[0] else "--",
                    label=strategy,
                )
            ax.set_xscale("log")
            _plain_log_ticks(ax)
            ax.set_xlabel("labelled training images")
            ax.set_ylabel(f"test {metric.replace('_', '-')}")
            ax.set_title(f"{short_dataset(dataset)} ({backend}/{model})")
            ax.grid(True, alpha=0.3)
        row[0].legend(fontsize=8, frameon=False)
    fig.text(
        0.01, -0.02, "mean over draws x seeds, bars: 95 % t-interval; dashed: probes (frozen backbone)", fontsize=8
    )
    return _save(fig, path)


def sections(frame: pd.DataFrame) -> list[Any]:
    """The report's label-efficiency sections (``evidence.Section``), empty without subset cells."""
    from .evidence import Section

    points = curve_points(frame)
    if points.empty:
        return []
    found = all_crossovers(frame)
    out = [
        Section("Label efficiency — accuracy and ROC-AUC against labelled images", curve_table(points), INTERVAL_NOTE)
    ]
    table = crossover_table(found)
    if not table.empty:
        lines = " ".join(f"{c.dataset} ({c.backend}/{c.model}): {c.sentence()}." for c in found)
        out.append(
            Section("Label efficiency — where fine-tuning overtakes the probes", table, f"{lines} {CROSSOVER_NOTE}")
        )
    return out
