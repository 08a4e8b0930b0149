"""Plots of the report's statistics: reliability diagrams and the critical-difference diagram (matplotlib, Agg).

matplotlib and scikit-posthocs are imported inside the functions (a report without plots never loads them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .candidates import Candidate
from .clinical import ECE_BINS, expected_calibration_error, reliability_bins
from .comparisons import METRIC_TITLES
from .plots import _palette, _pyplot, _save, draw_each, short_dataset
from .ranking import Ranking


def reliability_plot(
    candidates_by_dataset: dict[str, list[Candidate]], names: dict[tuple, str], path: Path
) -> Path | None:
    """Accuracy against mean confidence per bin, first seed of each configuration, one panel per dataset."""
    plt = _pyplot()
    panels = {d: [c for c in cands if c.predictions] for d, cands in candidates_by_dataset.items()}
    panels = {d: cands for d, cands in panels.items() if cands}
    if not panels:
        return None
    colors = _palette([names[c.key] for cands in panels.values() for c in cands])
    fig, axes = plt.subplots(
        layout="constrained", nrows=1, ncols=len(panels), figsize=(5.6 * len(panels), 5.0), squeeze=False
    )
    for ax, (dataset, candidates) in zip(axes[0], panels.items(), strict=True):
        for candidate in candidates:
            seed = min(candidate.predictions)
            preds = candidate.predictions[seed]
            points = reliability_bins(preds.labels, preds.probs)
            ece = expected_calibration_error(preds.labels, preds.probs)
            name = names[candidate.key]
            ax.plot(
                points["confidence"],
                points["accuracy"],
                marker="o",
                markersize=4,
                color=colors[name],
                label=f"{name} s{seed} (ECE {ece:.3f})",
            )
        ax.plot([0, 1], [0, 1], ":", color="0.5", linewidth=1, label="perfectly calibrated")
        ax.set(
            xlabel="mean confidence in bin (top class)",
            ylabel="accuracy in bin",
            title=f"{short_dataset(dataset)}: reliability ({ECE_BINS} bins)",
            xlim=(0, 1.02),
            ylim=(0, 1.02),
        )
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    return _save(fig, path)


def critical_difference_plot(ranking: Ranking, path: Path) -> Path:
    """The critical-difference diagram (scikit-posthocs): mean ranks, configurations Nemenyi cannot separate joined."""
    import scikit_posthocs as sp

    plt = _pyplot()
    k = len(ranking.mean_ranks)
    fig, ax = plt.subplots(layout="constrained", figsize=(8.0, 1.2 + 0.32 * k))
    sp.critical_difference_diagram(
        ranking.mean_ranks.to_dict(), ranking.nemenyi, ax=ax, alpha=ranking.alpha, cd=ranking.critical_difference
    )
    ax.set_title(
        f"Mean rank by {METRIC_TITLES[ranking.metric]} over {len(ranking.scores)} datasets (1 = best): Friedman p = "
        f"{ranking.friedman_p:.3g}, Nemenyi critical difference {ranking.critical_difference:.2f}",
        fontsize=9,
    )
    return _save(fig, path)


def draw_evidence_plots(evidence: Any, out_dir: Path) -> dict[str, Path]:
    """The reliability diagrams and a critical-difference diagram per ranking (``evidence.Evidence``).

    Returns:
        title -> PNG path of the plots drawn.
    """
    plots: dict[str, Any] = {
        "Reliability diagrams (first seed)": lambda: reliability_plot(
            evidence.candidates, evidence.names, out_dir / "reliability.png"
        )
    }
    for i, (scope, ranking) in enumerate(evidence.rankings):
        name = "critical_difference" + (f"_{i + 1}" if len(evidence.rankings) > 1 else "")
        title = "Critical-difference diagram across datasets" + (f" ({scope})" if scope else "")
        plots[title] = lambda ranking=ranking, name=name: critical_difference_plot(ranking, out_dir / f"{name}.png")
    return draw_each(plots)
