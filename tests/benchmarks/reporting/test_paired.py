"""Paired tests: Holm by hand and against statsmodels, McNemar exact, sign-flip against full enumeration,
DeLong against the O(mn) definition and sklearn, and the paired bootstrap of a difference."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from tlbench.benchmarks.reporting.paired import (
    accuracy_test,
    auc_placements,
    delong_test,
    holm,
    mcnemar_exact,
    sign_flip_p,
)
from tlbench.benchmarks.reporting.stats import auc_rows


def test_holm_by_hand_and_nan_outside_the_family():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = holm([0.01, math.nan, 0.04])  # a family of two
    assert got[0] == pytest.approx(0.02) and math.isnan(got[1]) and got[2] == pytest.approx(0.04)
    assert holm([0.6, 0.9]).tolist() == [1.0, 1.0]  # capped at 1
    assert holm([]).tolist() == []


def test_holm_matches_statsmodels():
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(3).uniform(0, 0.2, 12)
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1], abs=1e-12)


def test_mcnemar_exact_counts_discordant_images():
    truth = np.ones(60, dtype=bool)
    worse = truth.copy()
    worse[:10] = False  # B wrong on 10 images A gets right, never the other way round
    result = mcnemar_exact(truth, worse)
    assert result.delta == pytest.approx(10 / 60)
    assert result.p == pytest.approx(2 * 0.5**10)  # binomial(10, 0.5), two-sided: both all-or-nothing tails
    assert result.detail == "10 vs 0 discordant"
    same = mcnemar_exact(worse, worse)
    assert (same.delta, same.p) == (0.0, 1.0)


def test_accuracy_test_one_seed_is_mcnemar_and_seeds_that_agree_stay_exact():
    rng = np.random.default_rng(0)
    a, b = rng.random(80) < 0.8, rng.random(80) < 0.6
    assert accuracy_test(a[None], b[None]).p == mcnemar_exact(a, b).p
    # three identical seeds: every per-image difference is -1, 0 or +1: McNemar again
    tripled = accuracy_test(np.stack([a] * 3), np.stack([b] * 3))
    assert tripled.p == pytest.approx(mcnemar_exact(a, b).p) and tripled.method == "sign-flip"


def test_sign_flip_matches_full_enumeration():
    d = np.array([0.3, 0.9, -0.2, 0.6, 0.5, 1.0, -0.1, 0.4, 0.7, 0.8])
    observed = abs(d.sum())
    exact = np.mean([abs(np.dot(s, d)) >= observed - 1e-9 for s in itertools.product((-1, 1), repeat=d.size)])
    # 10,000 seeded permutations: standard error sqrt(p(1-p)/1e4) < 0.005
    assert sign_flip_p(d) == pytest.approx(exact, abs=0.015)
    assert sign_flip_p(np.zeros(5)) == 1.0
    assert sign_flip_p(d) == sign_flip_p(d)  # seeded


def _delong_by_definition(labels, scores_a, scores_b):
    """DeLong (1988) from the psi kernel over all (positive, negative) pairs."""
    pos, neg = labels == 1, labels == 0

    def components(scores):
        psi = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    auc_a, v10_a, v01_a = components(scores_a)
    auc_b, v10_b, v01_b = components(scores_b)
    variance = np.var(v10_a - v10_b, ddof=1) / pos.sum() + np.var(v01_a - v01_b, ddof=1) / neg.sum()
    z = (auc_a - auc_b) / math.sqrt(variance)
    return auc_a, auc_b, 2 * sps.norm.sf(abs(z))


def test_delong_binary_matches_the_definition_and_sklearn():
    rng = np.random.default_rng(7)
    labels = (rng.random(150) < 0.35).astype(int)
    score_a = np.round(labels * 0.8 + rng.normal(0, 0.5, 150), 1)  # rounded: ties, halved by the midranks
    score_b = np.round(labels * 0.4 + rng.normal(0, 0.5, 150), 1)
    probs_a, probs_b = (np.stack([1 - s, s], axis=1) for s in (score_a, score_b))
    auc_a, z_a = auc_placements(labels, probs_a)
    auc_b, z_b = auc_placements(labels, probs_b)
    ref_a, ref_b, ref_p = _delong_by_definition(labels, score_a, score_b)
    assert auc_a == pytest.approx(roc_auc_score(labels, score_a)) == pytest.approx(ref_a)
    assert auc_b == pytest.approx(ref_b)
    assert z_a.sum() == pytest.approx(2 * auc_a)  # once over positives, once over negatives
    result = delong_test(labels, auc_a, z_a, auc_b, z_b)
    assert result.delta == pytest.approx(ref_a - ref_b)
    assert result.p == pytest.approx(ref_p, rel=1e-9)
    assert result.p < 0.05 and result.method == "DeLong"


def test_delong_identical_and_perfect_classifiers():
    labels = np.array([0, 1] * 30)
    rng = np.random.default_rng(1)
    noisy = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 60), 0, 1)
    probs = np.stack([1 - noisy, noisy], axis=1)
    auc, z = auc_placements(labels, probs)
    same = delong_test(labels, auc, z, auc, z)
    assert (same.delta, same.p) == (0.0, 1.0)
    perfect = np.stack([1.0 - labels, labels.astype(float)], axis=1) * 0.9 + 0.05
    auc_p, z_p = auc_placements(labels, perfect)
    assert auc_p == 1.0
    better = delong_test(labels, auc_p, z_p, auc, z)
    assert better.delta == pytest.approx(1.0 - auc)
    assert better.p == pytest.approx(_delong_by_definition(labels, perfect[:, 1], noisy)[2]) and better.p < 0.01


def test_delong_multiclass_macro_auc_and_its_variance_against_a_bootstrap():
    rng = np.random.default_rng(11)
    n, classes = 600, 3
    labels = np.arange(n) % classes

    def model(signal: float) -> np.ndarray:
        logits = rng.normal(0, 1, (n, classes))
        logits[np.arange(n), labels] += signal
        return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)

    probs_a, probs_b = model(1.2), model(0.8)
    auc_a, z_a = auc_placements(labels, probs_a)
    auc_b, z_b = auc_placements(labels, probs_b)
    assert auc_a == pytest.approx(roc_auc_score(labels, probs_a, multi_class="ovr", average="macro"))
    result = delong_test(labels, auc_a, z_a, auc_b, z_b)
    # the DeLong standard error of the difference agrees with a stratified bootstrap's (within 15 %)
    se_delong = abs(result.delta) / abs(sps.norm.isf(result.p / 2))
    members = [np.flatnonzero(labels == c) for c in range(classes)]
    idx = np.concatenate([rng.choice(m, size=(1000, m.size)) for m in members], axis=1)  # class counts kept
    diffs = auc_rows(labels[idx], probs_a[idx]) - auc_rows(labels[idx], probs_b[idx])  # stats' AUC, sklearn-checked
    assert se_delong == pytest.approx(np.std(diffs, ddof=1), rel=0.1)


def test_missing_class_gives_no_auc_and_no_test():
    labels = np.zeros(10, dtype=int)
    probs = np.tile([0.7, 0.3], (10, 1))
    auc, _ = auc_placements(labels, probs)
    assert math.isnan(auc)
    assert math.isnan(delong_test(labels, auc, np.zeros(10), auc, np.zeros(10)).p)
