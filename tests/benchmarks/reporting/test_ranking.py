"""Across datasets: Friedman, Nemenyi and the critical difference on score matrices with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tlbench.benchmarks.reporting.ranking import rank_configurations


def test_a_clear_winner_over_four_datasets():
    # A > B > C > D on every one of 4 datasets: mean ranks 1, 2, 3, 4
    scores = pd.DataFrame(
        {"A": [0.95, 0.91, 0.88, 0.97], "B": [0.90, 0.85, 0.80, 0.93], "C": [0.80, 0.84, 0.70, 0.90]}
        | {"D": [0.70, 0.60, 0.65, 0.85]},
        index=["d1", "d2", "d3", "d4"],
    )
    ranking = rank_configurations(scores, "accuracy")
    assert ranking.mean_ranks.to_dict() == {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0}
    # chi2_F = 12N / (k(k+1)) * (sum R_j^2 - k(k+1)^2 / 4) = 48/20 * (30 - 25) = 12, 3 degrees of freedom
    assert ranking.friedman_statistic == pytest.approx(12.0)
    assert ranking.friedman_p == pytest.approx(sps.chi2.sf(12.0, 3)) and ranking.significant
    # Nemenyi: |R_i - R_j| / sqrt(k(k+1) / 6N), times sqrt(2), against the studentized range with infinite df
    se = math.sqrt(4 * 5 / (6 * 4))
    for other, gap in (("B", 1), ("C", 2), ("D", 3)):
        expected = sps.studentized_range.sf(gap / se * math.sqrt(2), 4, np.inf)
        assert ranking.nemenyi.loc["A", other] == pytest.approx(expected, rel=1e-3)
    assert ranking.critical_difference == pytest.approx(2.569 * se, abs=2e-3)  # Demšar's table: q_0.05 = 2.569
    assert ranking.best == "A" and ranking.tied_with_best() == ["B", "C"]  # D is 3 > CD = 2.35 ranks away
    table = ranking.table().set_index("configuration")
    assert table.loc["D", "d1"] == "0.700 (#4)" and table.loc["A", "mean rank"] == "1.00"


def test_no_difference_ties_everything_and_too_few_blocks_rank_nothing():
    equal = pd.DataFrame({"A": [0.8, 0.7, 0.9], "B": [0.8, 0.7, 0.9], "C": [0.8, 0.7, 0.9]}, index=["x", "y", "z"])
    ranking = rank_configurations(equal, "roc_auc")
    assert ranking.friedman_p == 1.0 and not ranking.significant
    assert ranking.mean_ranks.tolist() == [2.0, 2.0, 2.0] and ranking.tied_with_best() == ["B", "C"]
    assert rank_configurations(equal.iloc[:2], "roc_auc") is None  # 2 datasets
    assert rank_configurations(equal[["A", "B"]], "roc_auc") is None  # 2 configurations
