"""PNG plots of a suite, drawn from stored results and per-cell artifacts (matplotlib, Agg backend).

``draw_suite_plots`` draws, when the data exist:

1. Pareto plots: test accuracy vs train (and inference) images/s, log x, colour = backend, marker = strategy,
   one point per configuration (mean over seeds, bars = min..max over seeds), the Pareto front drawn;
2. ROC and precision-recall curves (first seed of each configuration), one column per dataset, AUC / AP in the
   legend; multi-class: macro one-vs-rest (per-class curves interpolated on a common grid and averaged);
3. training curves: validation accuracy and train loss per epoch, one line per cell;
4. the test confusion matrix of the best cell (by accuracy) per backend and dataset;
5. a prediction grid of the best cell per backend: stored test images titled predicted / true, wrong in red.

matplotlib is imported inside the functions (report generation without plots never loads it).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..running.artifacts import Predictions
from .sources import SuiteSources, as_sources

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
DPI = 100
#: stored sample images shown per row of the prediction grid
GRID_IMAGES = 8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both axes (higher is better), sorted by ``x``.

    A point is dominated when another is at least as good on both axes and strictly better on one.
    """
    points = [
        (float(x), float(y), i)
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        if math.isfinite(x) and math.isfinite(y)
    ]
    front = [i for x, y, i in points if not any((ox >= x and oy >= y) and (ox > x or oy > y) for ox, oy, _ in points)]
    return sorted(front, key=lambda i: (float(xs[i]), float(ys[i])))


def short_dataset(spec: str) -> str:
    """A dataset spec for titles: paths reduced to their last component (``medmnist:breastmnist.npz``)."""
    kind, sep, rest = str(spec).partition(":")
    if not sep or "/" not in rest:
        return str(spec)
    return f"{kind}:{Path(rest.split(':')[0]).name}"


def _labels(frame: pd.DataFrame) -> pd.Series:
    """``backend/strategy`` (plus ``/model`` when the suite has several models) for each row."""
    label = frame["backend"].astype(str) + "/" + frame["strategy"].astype(str)
    if frame["model"].nunique() > 1:
        label = label + "/" + frame["model"].astype(str)
    return label


def _palette(keys: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {key: cmap(i % 10) for i, key in enumerate(keys)}


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    ok = frame[frame["status"] == "ok"].copy()
    ok["label"] = _labels(ok) if not ok.empty else []
    return ok


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def pareto_plot(
    frame: pd.DataFrame, x_column: str, x_label: str, path: Path, lower_is_better: bool = False
) -> Path | None:
    """Accuracy vs ``x_column`` (log), one panel per dataset, Pareto front dashed; ``None`` if no ok cell.

    ``lower_is_better``: the x axis is a cost (training seconds), so the front is the cheapest for its accuracy.
    """
    plt = _pyplot()
    ok = _ok(frame)
    ok = ok[pd.to_numeric(ok[x_column], errors="coerce") > 0]
    ok = ok[pd.to_numeric(ok["accuracy"], errors="coerce").notna()]
    if ok.empty:
        return None
    datasets = list(dict.fromkeys(ok["dataset"]))
    backends = list(dict.fromkeys(frame["backend"]))
    strategies = list(dict.fromkeys(frame["strategy"]))
    colors = _palette(backends)
    fig, axes = plt.subplots(
        layout="constrained", nrows=1, ncols=len(datasets), figsize=(6.4 * len(datasets), 4.8), squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sub = ok[ok["dataset"] == dataset]
        grouped = sub.groupby(["backend", "strategy", "model"], sort=False)
        xs, ys = [], []
        for (backend, strategy, _), group in grouped:
            x = group[x_column].astype(float)
            y = group["accuracy"].astype(float)
            xs.append(x.mean())
            ys.append(y.mean())
            ax.errorbar(  # spreads clipped at 0: equal seeds give mean - min = -1e-17 in floating point
                x.mean(),
                y.mean(),
                xerr=[[max(0.0, x.mean() - x.min())], [max(0.0, x.max() - x.mean())]],
                yerr=[[max(0.0, y.mean() - y.min())], [max(0.0, y.max() - y.mean())]],
                fmt=MARKERS[strategies.index(strategy) % len(MARKERS)],
                color=colors[backend],
                markersize=8,
                capsize=3,
                linestyle="none",
            )
        front = pareto_front([-x for x in xs] if lower_is_better else xs, ys)
        ax.plot([xs[i] for i in front], [ys[i] for i in front], "--", color="0.4", linewidth=1, zorder=0)
        ax.scatter(
            [xs[i] for i in front],
            [ys[i] for i in front],
            s=220,
            facecolors="none",
            edgecolors="0.2",
            linewidths=1.2,
            zorder=3,
        )
        ax.set_xscale("log")
        ax.margins(x=0.12, y=0.1)  # markers and error caps never sit on the frame
        _plain_log_ticks(ax)
        ax.set_xlabel(x_label)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{short_dataset(dataset)}: accuracy vs {x_label}")
        ax.grid(True, which="both", alpha=0.3)
    handles = [
        plt.Line2D([], [], color=colors[b], marker="o", linestyle="none", label=f"backend {b}") for b in backends
    ]
    handles += [
        plt.Line2D([], [], color="0.3", marker=MARKERS[i % len(MARKERS)], linestyle="none", label=s)
        for i, s in enumerate(strategies)
    ]
    handles.append(
        plt.Line2D(
            [], [], color="0.4", linestyle="--", marker="o", markersize=11, markerfacecolor="none", label="Pareto front"
        )
    )
    axes[0][-1].legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=9, frameon=False)
    fig.text(
        0.01, -0.02, "one point per configuration: mean over seeds, bars: min..max over seeds", fontsize=8, color="0.4"
    )
    return _save(fig, path)


def _plain_number(value: float) -> str:
    """A tick label: ``500``, ``2000``, then ``10k``/``20k``/``1M`` so neighbouring labels never run together."""
    if value <= 0:
        return ""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _plain_log_ticks(ax) -> None:
    """Log-axis ticks as plain numbers (``300``, not ``3×10²``), minor labels only when few majors show."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _plain_number(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def roc_pr_curves(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """ROC (``fpr``, ``tpr``) and PR (``recall``, ``precision``) curves; macro one-vs-rest for > 2 classes.

    Multi-class curves interpolate each class's curve on a common 0..1 grid and average the classes.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    num_classes = probs.shape[1]
    if num_classes == 2:
        fpr, tpr, _ = roc_curve(labels, probs[:, 1])
        precision, recall, _ = precision_recall_curve(labels, probs[:, 1])
        return {"fpr": fpr, "tpr": tpr, "recall": recall[::-1], "precision": precision[::-1]}
    grid = np.linspace(0, 1, 201)
    tprs, precisions = [], []
    for c in range(num_classes):
        positive = labels == c
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_curve(positive, probs[:, c])
        tprs.append(np.interp(grid, fpr, tpr))
        precision, recall, _ = precision_recall_curve(positive, probs[:, c])
        # recall decreases along sklearn's output; interpolate on increasing recall, step-wise maximum precision
        precisions.append(np.interp(grid, recall[::-1], np.maximum.accumulate(precision)[::-1]))
    if not tprs:
        return {"fpr": grid, "tpr": np.full_like(grid, np.nan), "recall": grid, "precision": np.full_like(grid, np.nan)}
    return {"fpr": grid, "tpr": np.mean(tprs, axis=0), "recall": grid, "precision": np.mean(precisions, axis=0)}


def _first_seed(ok: pd.DataFrame) -> pd.DataFrame:
    return ok.sort_values("seed", kind="stable").drop_duplicates(["dataset", "label"], keep="first")


def roc_pr_plot(frame: pd.DataFrame, suite_dir: Path | SuiteSources, path: Path) -> Path | None:
    """ROC (top) and PR (bottom) curves per dataset; ``None`` when no cell stored predictions."""
    plt = _pyplot()
    ok = _first_seed(_ok(frame))
    curves = []
    for _, row in ok.iterrows():
        preds = as_sources(suite_dir).predictions(row.to_dict())
        if preds is not None and preds.probs.shape[1] >= 2:
            curves.append((row, roc_pr_curves(preds.labels, preds.probs)))
    if not curves:
        return None
    datasets = list(dict.fromkeys(row["dataset"] for row, _ in curves))
    colors = _palette(list(dict.fromkeys(row["label"] for row, _ in curves)))
    fig, axes = plt.subplots(
        layout="constrained", nrows=2, ncols=len(datasets), figsize=(6.0 * len(datasets), 10.0), squeeze=False
    )
    for col, dataset in enumerate(datasets):
        roc_ax, pr_ax = axes[0][col], axes[1][col]
        for row, curve in curves:
            if row["dataset"] != dataset:
                continue
            auc, ap = _fmt_metric(row.get("roc_auc")), _fmt_metric(row.get("pr_auc"))
            roc_ax.plot(curve["fpr"], curve["tpr"], color=colors[row["label"]], label=f"{row['label']} (AUC {auc})")
            pr_ax.plot(
                curve["recall"], curve["precision"], color=colors[row["label"]], label=f"{row['label']} (AP {ap})"
            )
        roc_ax.plot([0, 1], [0, 1], ":", color="0.6", linewidth=1)
        suffix = " (macro one-vs-rest)" if _num_classes(frame, dataset) > 2 else ""
        roc_ax.set(
            xlabel="false positive rate",
            ylabel="true positive rate",
            title=f"{short_dataset(dataset)}: ROC{suffix}",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        pr_ax.set(
            xlabel="recall",
            ylabel="precision",
            title=f"{short_dataset(dataset)}: precision-recall{suffix}",
            xlim=(0, 1),
            ylim=(0, 1.02),
        )
        for ax, loc in ((roc_ax, "lower right"), (pr_ax, "lower left")):
            ax.legend(loc=loc, fontsize=8)
            ax.grid(True, alpha=0.3)
    return _save(fig, path)


def _num_classes(frame: pd.DataFrame, dataset: str) -> int:
    values = pd.to_numeric(frame.loc[frame["dataset"] == dataset, "num_classes"], errors="coerce").dropna()
    return int(values.max()) if not values.empty else 2


def _fmt_metric(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3f}"


def training_curves_plot(frame: pd.DataFrame, suite_dir: Path | SuiteSources, path: Path) -> Path | None:
    """Validation accuracy (left) and train loss (right) per epoch, a row per dataset, a line per cell."""
    plt = _pyplot()
    ok = _ok(frame)
    runs = []
    for _, row in ok.iterrows():
        curve = as_sources(suite_dir).curve(row.to_dict())
        if curve:
            runs.append((row, curve))
    if not runs:
        return None
    datasets = list(dict.fromkeys(row["dataset"] for row, _ in runs))
    labels = list(dict.fromkeys(row["label"] for row, _ in runs))
    colors = _palette(labels)
    fig, axes = plt.subplots(
        layout="constrained", nrows=len(datasets), ncols=2, figsize=(12.8, 4.4 * len(datasets)), squeeze=False
    )
    for r, dataset in enumerate(datasets):
        shown: set[str] = set()
        for row, curve in runs:
            if row["dataset"] != dataset:
                continue
            epochs = [e["epoch"] for e in curve]
            label = None if row["label"] in shown else row["label"]
            shown.add(row["label"])
            style = dict(color=colors[row["label"]], marker="o", markersize=3, linewidth=1.2, alpha=0.85)
            axes[r][0].plot(epochs, [e["val_accuracy"] for e in curve], label=label, **style)
            axes[r][1].plot(epochs, [e["train_loss"] for e in curve], label=label, **style)
        axes[r][0].set(
            xlabel="epoch", ylabel="validation accuracy", title=f"{short_dataset(dataset)}: validation accuracy"
        )
        axes[r][1].set(
            xlabel="epoch", ylabel="train loss (cross-entropy)", title=f"{short_dataset(dataset)}: train loss"
        )
        axes[r][1].set_yscale("log")
        for ax in axes[r]:
            ax.grid(True, alpha=0.3)
        axes[r][1].legend(
            loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False, title="one line per seed"
        )
    return _save(fig, path)


def _best_per_backend(ok: pd.DataFrame) -> list[pd.Series]:
    """The ok cell with the highest accuracy per (dataset, backend), in order of appearance."""
    best = []
    for _, group in ok.groupby(["dataset", "backend"], sort=False):
        accuracy = pd.to_numeric(group["accuracy"], errors="coerce")
        if accuracy.notna().any():
            best.append(group.loc[accuracy.idxmax()])
    return best


def confusion_matrix_of(preds: Predictions) -> np.ndarray:
    """Counts ``[true, predicted]`` of stored predictions."""
    num_classes = preds.probs.shape[1]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (preds.labels, preds.probs.argmax(axis=1)), 1)
    return matrix


def confusion_plot(frame: pd.DataFrame, suite_dir: Path | SuiteSources, path: Path) -> Path | None:
    """Row-normalized confusion matrices (counts annotated) of the best cell per backend and dataset."""
    plt = _pyplot()
    panels = []
    for row in _best_per_backend(_ok(frame)):
        preds = as_sources(suite_dir).predictions(row.to_dict())
        if preds is not None:
            panels.append((row, preds))
    if not panels:
        return None
    fig, axes = plt.subplots(
        layout="constrained", nrows=1, ncols=len(panels), figsize=(5.6 * len(panels), 5.2), squeeze=False
    )
    for ax, (row, preds) in zip(axes[0], panels, strict=True):
        matrix = confusion_matrix_of(preds)
        rates = matrix / np.clip(matrix.sum(axis=1, keepdims=True), 1, None)
        image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        n = matrix.shape[0]
        names = [_short(c) for c in preds.class_names] if len(preds.class_names) == n else [str(i) for i in range(n)]
        ax.set_xticks(
            range(n),
            names,
            rotation=45 if max(map(len, names)) > 3 else 0,
            ha="right" if max(map(len, names)) > 3 else "center",
        )
        ax.set_yticks(range(n), names)
        if n <= 12:
            for i in range(n):
                for j in range(n):
                    ax.text(
                        j,
                        i,
                        str(matrix[i, j]),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black",
                    )
        ax.set(xlabel="predicted", ylabel="true")
        ax.set_title(
            f"{short_dataset(row['dataset'])}: best {row['backend']} cell\n"
            f"{row['strategy']} seed {row['seed']} (accuracy {_fmt_metric(row['accuracy'])})",
            fontsize=10,
        )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return _save(fig, path)


def _short(text: str, limit: int = 14) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prediction_grid_plot(frame: pd.DataFrame, suite_dir: Path | SuiteSources, path: Path) -> Path | None:
    """Stored test images of the best cell per backend, titled ``pred / true``; wrong predictions in red."""
    plt = _pyplot()
    rows = []
    for row in _best_per_backend(_ok(frame)):
        preds = as_sources(suite_dir).predictions(row.to_dict())
        if preds is not None and len(preds.sample_indices):
            rows.append((row, preds))
    if not rows:
        return None
    cols = min(GRID_IMAGES, max(len(p.sample_indices) for _, p in rows))
    fig, axes = plt.subplots(
        layout="constrained", nrows=len(rows), ncols=cols, figsize=(1.7 * cols, 2.1 * len(rows) + 0.3), squeeze=False
    )
    for r, (row, preds) in enumerate(rows):
        picks = np.linspace(0, len(preds.sample_indices) - 1, min(cols, len(preds.sample_indices))).astype(int)
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(picks):
                continue
            k = picks[c]
            index = int(preds.sample_indices[k])
            image = preds.sample_images[k]
            predicted, true = int(preds.probs[index].argmax()), int(preds.labels[index])
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
            wrong = predicted != true

            def name(i: int, class_names: Sequence[str] = preds.class_names) -> str:
                return _short(class_names[i], 18) if i < len(class_names) else str(i)

            ax.set_title(
                f"pred {name(predicted)}\ntrue {name(true)}", fontsize=8, color="#c00000" if wrong else "black"
            )
            if wrong:
                ax.add_patch(
                    plt.Rectangle(
                        (-0.5, -0.5), image.shape[1], image.shape[0], fill=False, edgecolor="#c00000", linewidth=3
                    )
                )
        axes[r][0].text(
            -0.15,
            0.5,
            f"{short_dataset(row['dataset'])}\n{row['backend']}/{row['strategy']}\nseed {row['seed']}",
            transform=axes[r][0].transAxes,
            ha="right",
            va="center",
            fontsize=8,
        )
    fig.suptitle("Test predictions of the best cell per backend (red: wrong)", fontsize=10)
    return _save(fig, path)


def sweep_stages(strategy: str) -> int | str | None:
    """Trainable final stages of a sweep strategy name (``partial_finetune@3`` → 3, ``@all`` → ``"all"``, the
    table's ``partial_finetune`` → its ``last_k_stages``), ``None`` for other strategies."""
    from ...core.strategies import get_strategy, trained_stages

    try:
        return trained_stages(get_strategy(strategy))
    except KeyError:
        return None


def stage_sweep_plot(frame: pd.DataFrame, path: Path) -> Path | None:
    """Test accuracy vs the number of trainable final stages, one line per backend/model, one panel per dataset.

    Drawn when the suite has at least two sweep points (``partial_finetune@K``); ``all`` sits right of the largest K.
    """
    plt = _pyplot()
    ok = _ok(frame)
    if ok.empty:
        return None
    ok["k"] = ok["strategy"].map(sweep_stages)
    ok = ok[ok["k"].notna()]
    if ok["strategy"].nunique() < 2:
        return None
    numeric = [k for k in ok["k"] if k != "all"]
    top = max(numeric) if numeric else 0
    ok["x"] = ok["k"].map(lambda k: top + 1 if k == "all" else k)
    datasets = list(dict.fromkeys(ok["dataset"]))
    fig, axes = plt.subplots(
        layout="constrained", nrows=1, ncols=len(datasets), figsize=(5.6 * len(datasets), 4.2), squeeze=False
    )
    for ax, dataset in zip(axes[0], datasets, strict=True):
        sub = ok[ok["dataset"] == dataset]
        for (backend, model), group in sub.groupby(["backend", "model"], sort=False):
            stats = group.groupby("x")["accuracy"].agg(["mean", "min", "max"]).sort_index()
            ax.errorbar(
                stats.index,
                stats["mean"],
                yerr=[(stats["mean"] - stats["min"]).clip(lower=0), (stats["max"] - stats["mean"]).clip(lower=0)],
                marker="o",
                capsize=3,
                label=f"{backend}/{model}",
            )
        ticks = sorted(set(ok["x"]))
        ax.set_xticks(ticks, [("all" if t == top + 1 and "all" in set(ok["k"]) else str(int(t))) for t in ticks])
        ax.set_xlabel("trainable final stages (+ head)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{short_dataset(dataset)}: frozen-layer sweep")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    fig.text(0.01, -0.03, "mean over seeds, bars: min..max over seeds", fontsize=8, color="0.4")
    return _save(fig, path)


def draw_suite_plots(frame: pd.DataFrame, suite_dir: Path | SuiteSources, out_dir: Path) -> dict[str, Path]:
    """Draw every plot the suite's files allow; returns title -> PNG path (absent plots are left out)."""
    suite_dir = as_sources(suite_dir)
    plots = {
        "Accuracy vs training cost (Pareto)": lambda: pareto_plot(
            frame, "train_s", "training seconds", out_dir / "pareto_train.png", lower_is_better=True
        ),
        "Accuracy vs inference throughput (Pareto)": lambda: pareto_plot(
            frame, "infer_images_per_s", "inference images/s", out_dir / "pareto_inference.png"
        ),
        "ROC and precision-recall curves (first seed)": lambda: roc_pr_plot(frame, suite_dir, out_dir / "roc_pr.png"),
        "Accuracy vs trainable stages (frozen-layer sweep)": lambda: stage_sweep_plot(
            frame, out_dir / "stage_sweep.png"
        ),
        "Training curves": lambda: training_curves_plot(frame, suite_dir, out_dir / "training_curves.png"),
        "Confusion matrix of the best cell per backend": lambda: confusion_plot(
            frame, suite_dir, out_dir / "confusion.png"
        ),
        "Prediction grid of the best cell per backend": lambda: prediction_grid_plot(
            frame, suite_dir, out_dir / "predictions.png"
        ),
    }
    return draw_each(plots)


def draw_each(plots: dict[str, Any]) -> dict[str, Path]:
    """Call each plot maker; a failing one is a warning on stderr (it never costs the tables or other plots).

    Args:
        plots: title -> a function drawing the plot and returning its path (or ``None`` when there is no data).

    Returns:
        title -> path of the plots drawn.
    """
    written = {}
    for title, draw in plots.items():
        try:
            result = draw()
        except Exception as exc:  # one broken plot never costs the tables (or the results already written)
            print(
                f"tlbench: warning: plot {title!r} not drawn: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}",
                file=sys.stderr,
            )
            continue
        if result is not None:
            written[title] = result
    return written
