"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlbench.benchmarks.running.metrics import classification_metrics


def test_binary_metrics_match_hand_computation():
    labels = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.7, 0.6, 0.9])
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(labels, probs)
    # predictions (argmax): 0 0 1 1 1 -> 4/5 correct; recall class0 = 2/3, class1 = 1
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # F1 class0: P=1 R=2/3 -> 0.8; class1: P=2/3 R=1 -> 0.8
    assert m["macro_f1"] == pytest.approx(0.8)
    # positives score 0.6, 0.9 vs negatives 0.1, 0.4, 0.7: 5 of 6 pairs ranked right
    assert m["roc_auc"] == pytest.approx(5 / 6)
    # ranking 0.9(+) 0.7(-) 0.6(+): AP = (1/1 + 2/3) / 2
    assert m["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)


def test_multiclass_uses_macro_one_vs_rest():
    labels = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[labels] * 0.7 + 0.1  # perfect ranking
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == 1.0 and m["roc_auc"] == pytest.approx(1.0) and m["pr_auc"] == pytest.approx(1.0)
    probs_wrong = np.roll(np.eye(3)[labels], 1, axis=1)  # always the next class
    m2 = classification_metrics(labels, probs_wrong)
    assert m2["accuracy"] == 0.0 and m2["macro_f1"] == 0.0 and m2["roc_auc"] == pytest.approx(0.25)


def test_undefined_ranking_metrics_are_nan_not_errors():
    labels = np.array([0, 0, 0])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    m = classification_metrics(labels, probs)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert math.isnan(m["roc_auc"]) and math.isnan(m["pr_auc"])


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"probs must be \(N, C\) with N=3"):
        classification_metrics(np.array([0, 1, 0]), np.zeros((2, 2)))
