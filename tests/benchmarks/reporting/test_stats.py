"""Confidence intervals: t-interval against scipy, bootstrap reproducible and consistent with sklearn."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from tlbench.benchmarks.reporting.stats import (
    Interval,
    auc_rows,
    binary_auc_rows,
    bootstrap_indices,
    bootstrap_metric_ci,
    t_interval,
)


def test_t_interval_matches_scipy_on_known_data():
    values = [0.91, 0.87, 0.93, 0.89, 0.90]
    got = t_interval(values)
    low, high = sps.t.interval(0.95, df=4, loc=statistics.mean(values), scale=sps.sem(values))
    assert got.estimate == pytest.approx(0.90)
    assert (got.low, got.high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert got.n == 5 and got.method == "t"
    # by hand: t(0.975, 4) = 2.776445, s = 0.0223607
    assert got.half_width == pytest.approx(2.776445105 * 0.0223606798 / math.sqrt(5), rel=1e-7)


def test_t_interval_two_seeds_other_confidence_and_nan_ignored():
    got = t_interval([1.0, 3.0, math.nan], confidence=0.9)
    assert got.n == 2 and got.estimate == 2.0
    assert got.half_width == pytest.approx(sps.t.ppf(0.95, 1) * statistics.stdev([1.0, 3.0]) / math.sqrt(2))


def test_t_interval_single_value_has_no_bounds_and_zero_spread_is_a_point():
    single = t_interval([0.5])
    assert single.estimate == 0.5 and single.n == 1 and not single.defined and math.isnan(single.half_width)
    flat = t_interval([0.7, 0.7, 0.7])
    assert (flat.low, flat.high) == (pytest.approx(0.7), pytest.approx(0.7))


@pytest.mark.parametrize("bad", [0.0, 1.0, 1.5, -0.1])
def test_t_interval_rejects_bad_confidence(bad):
    with pytest.raises(ValueError, match=f"confidence must be in \\(0, 1\\), got {bad}"):
        t_interval([1.0, 2.0], confidence=bad)


def test_t_interval_rejects_no_finite_value():
    with pytest.raises(ValueError, match="at least one finite value"):
        t_interval([math.nan, None])


def test_rank_auc_equals_sklearn_binary_and_multiclass_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(rng.random(200) + 0.3 * labels, 1)  # rounding makes ties
    assert binary_auc_rows(scores[None], (labels == 1)[None])[0] == pytest.approx(roc_auc_score(labels, scores))
    labels3 = np.tile(np.arange(3), 40)
    probs3 = rng.dirichlet(np.ones(3), 120) + np.eye(3)[labels3] * 0.2
    expected = roc_auc_score(labels3, probs3 / probs3.sum(1, keepdims=True), multi_class="ovr", average="macro")
    assert auc_rows(labels3[None], probs3[None])[0] == pytest.approx(expected)


def test_rank_auc_is_nan_when_a_class_is_missing():
    assert math.isnan(binary_auc_rows(np.array([[0.1, 0.2]]), np.array([[True, True]]))[0])


def _predictions(n: int = 300, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    p1 = np.clip(0.5 + 0.35 * (labels - 0.5) * 2 * rng.random(n) + rng.normal(0, 0.2, n), 0, 1)
    return labels, np.stack([1 - p1, p1], axis=1)


def test_bootstrap_is_reproducible_with_a_seed_and_changes_with_another():
    labels, probs = _predictions()
    first = bootstrap_metric_ci("accuracy", labels, probs, seed=7)
    again = bootstrap_metric_ci("accuracy", labels, probs, seed=7)
    other = bootstrap_metric_ci("accuracy", labels, probs, seed=8)
    assert first == again
    assert (first.low, first.high) != (other.low, other.high)
    assert np.array_equal(bootstrap_indices(10, 5, seed=2), bootstrap_indices(10, 5, seed=2))


def test_bootstrap_accuracy_matches_a_by_hand_percentile_bootstrap():
    labels, probs = _predictions()
    got = bootstrap_metric_ci("accuracy", labels, probs, resamples=1000, seed=0)
    correct = (probs.argmax(1) == labels).astype(float)
    idx = np.random.default_rng(0).integers(0, len(labels), size=(1000, len(labels)))
    by_hand = correct[idx].mean(axis=1)
    assert got.estimate == pytest.approx(correct.mean())
    assert got.low == pytest.approx(np.percentile(by_hand, 2.5))
    assert got.high == pytest.approx(np.percentile(by_hand, 97.5))
    assert got.low < got.estimate < got.high and got.n == 300 and got.method == "bootstrap"
    # the normal approximation of a proportion gives about the same width
    normal_half = 1.96 * math.sqrt(correct.mean() * (1 - correct.mean()) / len(labels))
    assert got.half_width == pytest.approx(normal_half, rel=0.15)


def test_bootstrap_auc_matches_sklearn_on_resamples():
    labels, probs = _predictions(120)
    got = bootstrap_metric_ci("roc_auc", labels, probs, resamples=200, seed=4)
    idx = np.random.default_rng(4).integers(0, 120, size=(200, 120))
    by_hand = [roc_auc_score(labels[i], probs[i, 1]) for i in idx if len(np.unique(labels[i])) == 2]
    assert got.estimate == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert got.low == pytest.approx(np.percentile(by_hand, 2.5))
    assert got.high == pytest.approx(np.percentile(by_hand, 97.5))


def test_bootstrap_auc_undefined_with_one_class():
    got = bootstrap_metric_ci("roc_auc", np.zeros(5, int), np.full((5, 2), 0.5))
    assert math.isnan(got.estimate) and not got.defined


def test_bootstrap_rejects_unknown_metric_and_bad_shapes():
    labels, probs = _predictions(10)
    with pytest.raises(ValueError, match="unknown bootstrap metric 'f1'; expected one of: accuracy, roc_auc"):
        bootstrap_metric_ci("f1", labels, probs)
    with pytest.raises(ValueError, match=r"probs must be \(N, C\) with N=10 labels, got shape \(9, 2\)"):
        bootstrap_metric_ci("accuracy", labels, probs[:9])
    with pytest.raises(ValueError, match="at least one test image, got n=0"):
        bootstrap_indices(0)
    with pytest.raises(ValueError, match="at least one resample, got 0"):
        bootstrap_indices(3, 0)


def test_interval_properties():
    interval = Interval(0.5, 0.4, 0.7, 3, "t")
    assert interval.defined and interval.half_width == pytest.approx(0.15)


@pytest.mark.parametrize("classes", [2, 4])
def test_resampled_metric_counts_equal_ranking_every_resample(classes):
    """The count-based bootstrap (images sorted once) gives exactly the per-row rank AUC and accuracy, ties and
    resamples without a class included."""
    from tlbench.benchmarks.reporting.stats import metric_rows, resample_counts, resampled_metric

    rng = np.random.default_rng(classes)
    n = 120
    labels = rng.integers(0, classes, n)
    labels[:2] = classes - 1  # a rare class: some resamples miss it
    labels[2:] = np.where(labels[2:] == classes - 1, 0, labels[2:])
    probs = np.round(rng.dirichlet(np.ones(classes), n), 1)  # rounded: many ties
    idx = bootstrap_indices(n, 300, 1)
    counts = [resample_counts(idx[:120], n), resample_counts(idx[120:], n)]  # two row chunks
    for metric in ("accuracy", "roc_auc"):
        counted = resampled_metric(metric, labels, probs, counts)
        ranked = metric_rows(metric, labels[idx], probs[idx])
        assert np.array_equal(np.isnan(counted), np.isnan(ranked))
        assert counted[~np.isnan(counted)] == pytest.approx(ranked[~np.isnan(ranked)], abs=1e-12)
    assert np.isnan(resampled_metric("roc_auc", labels, probs, counts)).any()
