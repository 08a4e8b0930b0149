"""Across datasets: rank the configurations on each dataset, Friedman test, Nemenyi post-hoc, critical difference.

Demšar (2006): with N ≥ 3 datasets and k ≥ 3 configurations run on every one of them, each configuration's
mean metric (over seeds) is ranked within each dataset (1 = best, ties share the average rank); the Friedman test
asks whether the mean ranks differ at all; the Nemenyi post-hoc test (``scikit-posthocs``) gives a p-value for
each pair, and the critical difference ``q_α,k,∞ / √2 · √(k(k+1) / 6N)`` (``scipy.stats.studentized_range``)
is the gap in mean rank it needs. The critical-difference diagram is drawn by ``stat_plots``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .candidates import Candidate

#: fewest datasets (blocks) and configurations (groups) the Friedman test is run on
MIN_DATASETS = 3
MIN_CONFIGURATIONS = 3


@dataclass
class Ranking:
    """The across-datasets comparison.

    Attributes:
        metric: the metric ranked.
        scores: datasets × configurations, the mean metric over seeds.
        ranks: the same shape, 1 = best on that dataset.
        mean_ranks: each configuration's mean rank, best first.
        friedman_statistic: Friedman's chi-square; friedman_p: its p-value.
        nemenyi: configurations × configurations Nemenyi p-values.
        critical_difference: the Nemenyi critical difference of mean ranks at ``alpha``.
        alpha: the significance level.
    """

    metric: str
    scores: pd.DataFrame
    ranks: pd.DataFrame
    mean_ranks: pd.Series
    friedman_statistic: float
    friedman_p: float
    nemenyi: pd.DataFrame
    critical_difference: float
    alpha: float = 0.05

    @property
    def best(self) -> str:
        """The configuration with the best mean rank."""
        return str(self.mean_ranks.index[0])

    @property
    def significant(self) -> bool:
        """Whether the Friedman test finds the mean ranks to differ."""
        return math.isfinite(self.friedman_p) and self.friedman_p < self.alpha

    def tied_with_best(self) -> list[str]:
        """Configurations the Nemenyi test cannot tell from the best (all of them when Friedman is not significant)."""
        others = [str(c) for c in self.mean_ranks.index[1:]]
        if not self.significant:
            return others
        return [c for c in others if float(self.nemenyi.loc[self.best, c]) >= self.alpha]

    def table(self) -> pd.DataFrame:
        """Per configuration (best mean rank first): its rank and score on each dataset, and its mean rank."""
        from .plots import short_dataset

        rows = []
        for name in self.mean_ranks.index:
            row = {"configuration": name, "mean rank": f"{self.mean_ranks[name]:.2f}"}
            for dataset in self.scores.index:
                row[short_dataset(dataset)] = (
                    f"{self.scores.loc[dataset, name]:.3f} (#{self.ranks.loc[dataset, name]:g})"
                )
            if name != self.best:
                row["Nemenyi p vs best"] = f"{float(self.nemenyi.loc[self.best, name]):.3f}"
            rows.append(row)
        return pd.DataFrame(rows).fillna("")


def score_matrix(
    candidates_by_dataset: dict[str, list[Candidate]],
    value: Callable[[Candidate, str], float],
    metric: str,
    names: dict[tuple, str],
) -> pd.DataFrame:
    """datasets × configurations present (with a finite value) on every dataset."""
    columns: dict[str, dict[str, float]] = {}
    for dataset, candidates in candidates_by_dataset.items():
        for candidate in candidates:
            columns.setdefault(names[candidate.key], {})[dataset] = value(candidate, metric)
    datasets = list(candidates_by_dataset)
    complete = {
        name: values
        for name, values in columns.items()
        if all(math.isfinite(values.get(d, math.nan)) for d in datasets)
    }
    return pd.DataFrame(complete, index=datasets)


def rank_configurations(scores: pd.DataFrame, metric: str, alpha: float = 0.05) -> Ranking | None:
    """Friedman, Nemenyi and the critical difference of a datasets × configurations score matrix.

    Returns:
        ``None`` when there are fewer than ``MIN_DATASETS`` datasets or ``MIN_CONFIGURATIONS`` configurations.
    """
    from scipy import stats as sps

    n, k = scores.shape
    if n < MIN_DATASETS or k < MIN_CONFIGURATIONS:
        return None
    import scikit_posthocs as sp

    ranks = scores.rank(axis=1, ascending=False, method="average")
    mean_ranks = ranks.mean(axis=0).sort_values(kind="stable")
    if (ranks.nunique(axis=1) == 1).all():  # every configuration equal on every dataset: nothing to test
        statistic, p = 0.0, 1.0
    else:
        result = sps.friedmanchisquare(*[scores[c].to_numpy() for c in scores.columns])
        statistic, p = float(result.statistic), float(result.pvalue)
    nemenyi = sp.posthoc_nemenyi_friedman(scores.to_numpy())
    nemenyi.index = nemenyi.columns = list(scores.columns)
    q = float(sps.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    return Ranking(metric, scores, ranks, mean_ranks, statistic, p, nemenyi.astype(float), cd, alpha)


RANKING_NOTE = (
    "Across datasets (Demšar 2006): each configuration's mean metric over seeds is ranked within each dataset "
    "(#1 = best); the Friedman test asks whether the mean ranks differ, the Nemenyi post-hoc test "
    "(scikit-posthocs) compares pairs; two mean ranks closer than the critical difference are not distinguishable. "
    "Only configurations run on every dataset are ranked."
)
