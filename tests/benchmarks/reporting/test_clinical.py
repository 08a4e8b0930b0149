"""Clinical metrics: ECE of calibrated and miscalibrated predictors, thresholds chosen on validation only,
sensitivity/specificity on test, per-class recall, intervals, and the option parsing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tlbench.benchmarks.reporting.clinical import (
    NO_VALIDATION,
    cell_clinical,
    cell_interval,
    choose_threshold,
    ece_rows,
    expected_calibration_error,
    positive_class,
    reliability_bins,
)
from tlbench.benchmarks.reporting.options import (
    OperatingPoint,
    ReportOptionError,
    ReportOptions,
    parse_operating_point,
)
from tlbench.benchmarks.running.artifacts import Predictions


def _binary(confidence: float, right: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """``total`` images predicted class 0 with ``confidence``, of which ``right`` truly are class 0."""
    probs = np.tile([confidence, 1 - confidence], (total, 1))
    labels = np.array([0] * right + [1] * (total - right))
    return labels, probs


def _joined(*parts):
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_ece_is_zero_for_a_calibrated_and_the_gap_for_a_miscalibrated_predictor():
    # calibrated: 80 % confident and right 8 times in 10, 60 % confident and right 6 times in 10
    labels, probs = _joined(_binary(0.8, 8, 10), _binary(0.6, 6, 10))
    assert expected_calibration_error(labels, probs) == pytest.approx(0.0, abs=1e-12)
    # miscalibrated: 95 % confident, right 12 times in 20 -> |0.60 - 0.95|
    labels, probs = _binary(0.95, 12, 20)
    assert expected_calibration_error(labels, probs) == pytest.approx(0.35)
    bins = reliability_bins(labels, probs)
    assert bins["confidence"].tolist() == pytest.approx([0.95])
    assert bins["accuracy"].tolist() == pytest.approx([0.6]) and bins["count"].tolist() == [20]
    # both halves together: weighted by their share of the images
    labels, probs = _joined(_binary(0.8, 8, 10), _binary(0.95, 6, 10))
    assert expected_calibration_error(labels, probs) == pytest.approx(0.5 * 0.0 + 0.5 * 0.35)


def test_ece_of_sampled_predictors_and_against_a_plain_loop():
    rng = np.random.default_rng(5)
    n = 20_000
    confidence = rng.uniform(0.5, 1.0, n)
    right = rng.random(n) < confidence  # calibrated by construction
    labels = np.where(right, 0, 1)
    probs = np.stack([confidence, 1 - confidence], axis=1)
    calibrated = expected_calibration_error(labels, probs)
    overconfident = np.stack([np.full(n, 0.99), np.full(n, 0.01)], axis=1)
    assert calibrated < 0.02
    assert expected_calibration_error(labels, overconfident) == pytest.approx(0.99 - right.mean(), abs=1e-9)
    # the vectorized bins against a loop over 15 bins (lower, upper]
    edges = np.linspace(0, 1, 16)
    loop = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        members = (confidence > low) & (confidence <= high)
        if members.any():
            loop += members.mean() * abs(right[members].mean() - confidence[members].mean())
    assert calibrated == pytest.approx(loop, abs=1e-12)
    idx = rng.integers(0, n, (3, n))
    rows = ece_rows(labels[idx], probs[idx])
    assert rows.tolist() == pytest.approx([expected_calibration_error(labels[i], probs[i]) for i in idx])


def test_positive_class_is_the_one_not_named_normal():
    assert positive_class(["malignant", "normal, benign"]) == 0
    assert positive_class(["NORMAL", "PNEUMONIA"]) == 1
    assert positive_class(["cat", "dog"]) == 1
    assert positive_class(["NORMAL", "PNEUMONIA"], requested="NORMAL") == 0


def test_thresholds_youden_and_target_sensitivity_on_validation():
    positive = np.array([True, True, True, False, False, False, False])
    scores = np.array([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1])
    # at 0.8: sensitivity 2/3, 1 - specificity 0 (J 0.667); at 0.4: 1 and 1/4 (J 0.75) -> Youden picks 0.4
    assert choose_threshold(positive, scores, OperatingPoint()) == 0.4
    # the highest threshold reaching sensitivity 0.6 is 0.8 (2 of 3 positives at or above it)
    assert choose_threshold(positive, scores, parse_operating_point("sens:0.6")) == 0.8
    assert choose_threshold(positive, scores, parse_operating_point("sens:0.95")) == 0.4
    assert math.isnan(choose_threshold(np.ones(3, bool), np.array([0.1, 0.2, 0.3]), OperatingPoint()))


def _predictions(test_labels, test_scores, val_labels=None, val_scores=None) -> Predictions:
    def probs(scores):
        scores = np.asarray(scores, dtype=float)
        return np.stack([1 - scores, scores], axis=1)

    return Predictions(
        probs=probs(test_scores),
        labels=np.asarray(test_labels),
        class_names=["NORMAL", "PNEUMONIA"],
        sample_indices=np.zeros(0, int),
        sample_images=np.zeros((0, 1, 1, 3), np.uint8),
        val_probs=None if val_scores is None else probs(val_scores),
        val_labels=None if val_labels is None else np.asarray(val_labels),
    )


def test_operating_point_is_chosen_on_validation_and_measured_on_test():
    val_labels = [1, 1, 1, 0, 0, 0, 0]
    val_scores = [0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1]  # Youden on validation: 0.4
    # on test a threshold of 0.65 would separate perfectly; the fixed 0.4 calls the 0.5-scored negatives positive
    test_labels = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    test_scores = [0.95, 0.9, 0.7, 0.35, 0.6, 0.5, 0.5, 0.2, 0.1]
    cell = cell_clinical(_predictions(test_labels, test_scores, val_labels, val_scores), OperatingPoint())
    assert cell.threshold == 0.4 and cell.status == ""
    assert cell.values["sensitivity"] == pytest.approx(3 / 4)  # 0.35 falls below 0.4
    assert cell.values["specificity"] == pytest.approx(2 / 5)  # 0.6, 0.5, 0.5 called positive
    assert cell.values["recall:PNEUMONIA"] == pytest.approx(3 / 4)  # argmax: score > 0.5
    assert cell.values["recall:NORMAL"] == pytest.approx(4 / 5)  # 0.5 ties go to class 0 under argmax
    interval = cell_interval([cell], "sensitivity")
    assert interval.method == "bootstrap" and interval.low <= 0.75 <= interval.high
    # a target sensitivity of 0.6 on validation -> threshold 0.8 -> 2 of 4 test positives
    strict = cell_clinical(
        _predictions(test_labels, test_scores, val_labels, val_scores), OperatingPoint("sensitivity", 0.6)
    )
    assert strict.threshold == 0.8 and strict.values["sensitivity"] == pytest.approx(2 / 4)


def test_no_validation_predictions_no_operating_point():
    cell = cell_clinical(_predictions([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.4]), OperatingPoint())
    assert cell.status == NO_VALIDATION and math.isnan(cell.threshold)
    assert "sensitivity" not in cell.values and cell.values["ece"] >= 0
    assert cell_interval([cell], "sensitivity") is None


def test_several_seeds_get_a_t_interval():
    cells = [
        cell_clinical(_predictions([1, 0, 1, 0], s, [1, 0], [0.8, 0.3]), OperatingPoint())
        for s in ([0.9, 0.2, 0.6, 0.4], [0.9, 0.2, 0.4, 0.4], [0.9, 0.6, 0.6, 0.4])
    ]
    interval = cell_interval(cells, "sensitivity")  # threshold 0.8 on validation: 1/2, 1/2, 1/2
    assert interval.method == "t" and interval.n == 3 and interval.estimate == pytest.approx(0.5)


@pytest.mark.parametrize(
    "text, message",
    [
        ("sens:1.5", "invalid --operating-point 'sens:1.5': expected youden or sens:X with 0 < X < 1"),
        ("spec:0.9", "invalid --operating-point 'spec:0.9'"),
        ("sens:x", "invalid --operating-point 'sens:x'"),
    ],
)
def test_bad_operating_points_and_selection_metrics_are_one_line(text, message):
    with pytest.raises(ReportOptionError, match="^" + message.replace("(", r"\(")):
        parse_operating_point(text)
    assert parse_operating_point(" Sens:0.95 ") == OperatingPoint("sensitivity", 0.95)
    with pytest.raises(ReportOptionError, match="invalid --select-by 'f1': expected one of auto, roc_auc, accuracy"):
        ReportOptions(select_by="f1")


def test_cell_bootstrap_counts_equal_the_gathered_resamples():
    from tlbench.benchmarks.reporting.clinical import recall_rows, sens_spec_rows
    from tlbench.benchmarks.reporting.stats import bootstrap_indices

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 90)
    scores = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 90), 0, 1)
    preds = _predictions(labels, scores, [0, 1, 0, 1], [0.2, 0.7, 0.4, 0.6])
    cell = cell_clinical(preds, OperatingPoint(), resamples=200, seed=4)
    idx = bootstrap_indices(90, 200, 4)
    assert cell.resampled["ece"] == pytest.approx(ece_rows(labels[idx], preds.probs[idx]), abs=1e-12)
    recall = recall_rows(labels[idx], preds.probs.argmax(axis=1)[idx], 2)
    assert cell.resampled["recall:PNEUMONIA"] == pytest.approx(recall[:, 1], abs=1e-12)
    call = scores >= cell.threshold
    sens, spec = sens_spec_rows((labels == 1)[idx], call[idx])
    assert cell.resampled["sensitivity"] == pytest.approx(sens) and cell.resampled["specificity"] == pytest.approx(spec)
