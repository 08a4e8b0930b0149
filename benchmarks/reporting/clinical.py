"""Clinical metrics of a cell from its stored predictions: calibration, operating point, per-class recall.

- ECE: expected calibration error of the top-class confidence, 15 equal-width bins on (0, 1]
  (``sum_b n_b / n · |accuracy_b − confidence_b|``, Guo et al. 2017); the reliability diagram plots the bins.
- Operating point (binary tasks): the threshold on P(positive) is chosen on the **validation** predictions
  (Youden's J, or the highest threshold reaching a target sensitivity), then sensitivity and specificity are
  measured on test with that fixed threshold. Cells that stored no validation predictions get none: the threshold
  is never chosen on test.
- Per-class recall (argmax) and the confusion matrix, for any number of classes.

Intervals as for the other metrics: a single seed's value has a 95 % percentile-bootstrap interval over the test
images (the threshold stays fixed), several seeds a Student-t interval over seeds (``cell_interval``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..running.artifacts import Predictions
from .options import OperatingPoint
from .stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    Interval,
    bootstrap_counts,
    percentile_interval,
    t_interval,
)

#: equal-width confidence bins of the ECE and the reliability diagram
ECE_BINS = 15
#: class names read as the healthy / negative class when choosing the positive class of a binary task
NEGATIVE_WORDS = ("normal", "benign", "healthy", "negative", "no finding", "control")
NO_VALIDATION = "not available (no validation predictions)"
BINARY_ONLY = "binary tasks only"


def _bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of each confidence, bins ``(k/bins, (k+1)/bins]`` (0 falls in the first)."""
    return np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)


def ece_rows(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> np.ndarray:
    """ECE of each row: labels ``(R, n)``, probs ``(R, n, C)`` -> ``(R,)``."""
    confidence = probs.max(axis=-1)
    correct = (probs.argmax(axis=-1) == labels).astype(np.float64)
    rows, n = labels.shape
    flat = (np.arange(rows)[:, None] * bins + _bins(confidence, bins)).ravel()
    gap = np.zeros(rows * bins)
    np.add.at(gap, flat, (correct - confidence).ravel())
    return np.abs(gap.reshape(rows, bins)).sum(axis=1) / n


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE of the top-class confidence in ``bins`` equal-width bins."""
    return float(ece_rows(np.asarray(labels)[None], np.asarray(probs, dtype=np.float64)[None], bins)[0])


def reliability_bins(labels: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per non-empty bin: mean confidence, accuracy and image count (the reliability diagram's points)."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(labels)).astype(np.float64)
    index = _bins(confidence, bins)
    count = np.bincount(index, minlength=bins)
    keep = count > 0
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    right_sum = np.bincount(index, weights=correct, minlength=bins)
    return {
        "confidence": conf_sum[keep] / count[keep],
        "accuracy": right_sum[keep] / count[keep],
        "count": count[keep],
    }


def positive_class(class_names: list[str], requested: str | None = None) -> int:
    """Index of the positive class of a binary task: ``requested`` when it names a class, else the class that is
    not named like a healthy/negative one (``NORMAL`` → ``PNEUMONIA``), else class 1."""
    names = [str(c) for c in class_names]
    if requested is not None and requested in names:
        return names.index(requested)
    negative = [i for i, name in enumerate(names) if any(w in name.lower() for w in NEGATIVE_WORDS)]
    if len(names) == 2 and len(negative) == 1:
        return 1 - negative[0]
    return 1


def choose_threshold(positive: np.ndarray, scores: np.ndarray, point: OperatingPoint) -> float:
    """The threshold on ``scores`` (predict positive when ``score >= threshold``) chosen on validation.

    Args:
        positive: validation booleans, True for the positive class.
        scores: validation P(positive).
        point: Youden's J (the first, i.e. highest, threshold of maximal J) or a target sensitivity (the highest
            threshold whose sensitivity reaches it).

    Returns:
        The threshold; ``nan`` when validation lacks one of the two classes.
    """
    from sklearn.metrics import roc_curve

    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return math.nan
    fpr, tpr, thresholds = roc_curve(positive, scores, drop_intermediate=False)
    if point.kind == "youden":
        index = 1 + int(np.argmax((tpr - fpr)[1:]))  # thresholds[0] is +inf: nothing predicted positive
    else:
        index = int(np.flatnonzero(tpr >= point.target - 1e-12)[0])
    return float(thresholds[index])


def sens_spec_rows(positive: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sensitivity and specificity of each row of ``(R, n)`` truths and predictions (``nan`` without a class)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sens = (positive & predicted).sum(axis=1) / positive.sum(axis=1)
        spec = (~positive & ~predicted).sum(axis=1) / (~positive).sum(axis=1)
    return sens, spec


def recall_rows(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``(R, C)`` recall of each class on each row of ``(R, n)`` labels and argmax predictions."""
    out = np.empty((labels.shape[0], num_classes))
    with np.errstate(invalid="ignore", divide="ignore"):
        for c in range(num_classes):
            members = labels == c
            out[:, c] = (members & (predicted == c)).sum(axis=1) / members.sum(axis=1)
    return out


@dataclass
class CellClinical:
    """One cell's clinical metrics on test, each with the rows of the shared bootstrap resamples.

    Attributes:
        values: metric name (``ece``, ``sensitivity``, ``specificity``, ``recall:<class>``) -> value on test.
        resampled: the same names -> ``(R,)`` values on the bootstrap resamples.
        threshold: the validation-chosen threshold on P(positive) (``nan`` when there is none).
        status: why there is no operating point (empty when there is one).
        n: test images.
    """

    values: dict[str, float] = field(default_factory=dict)
    resampled: dict[str, np.ndarray] = field(default_factory=dict)
    threshold: float = math.nan
    status: str = ""
    n: int = 0


def cell_clinical(
    preds: Predictions,
    point: OperatingPoint,
    positive_name: str | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> CellClinical:
    """ECE, per-class recall and (binary, with validation predictions) sensitivity/specificity of one cell.

    The bootstrap resamples are those of ``stats.bootstrap_counts`` (the same as for the other metrics), each
    statistic summed over the resampled images' counts.
    """
    labels, probs = preds.labels, preds.probs
    n, num_classes = probs.shape
    counts = bootstrap_counts(n, resamples, seed)
    result = CellClinical(n=int(n))
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    in_bin = _bins(confidence, ECE_BINS)[:, None] == np.arange(ECE_BINS)[None, :]
    result.values["ece"] = expected_calibration_error(labels, probs)
    result.resampled["ece"] = np.abs(_counted(counts, in_bin * (correct - confidence)[:, None])).sum(axis=1) / n
    names = _class_names(preds, num_classes)
    members = (labels[:, None] == np.arange(num_classes)[None, :]).astype(np.float64)
    full = recall_rows(labels[None], predicted[None], num_classes)[0]
    rows = _ratio(_counted(counts, members * correct[:, None]), _counted(counts, members))
    for c, name in enumerate(names):
        result.values[f"recall:{name}"] = float(full[c])
        result.resampled[f"recall:{name}"] = rows[:, c]
    if num_classes != 2:
        result.status = BINARY_ONLY
        return result
    if preds.val_probs is None or preds.val_labels is None:
        result.status = NO_VALIDATION
        return result
    pos = positive_class(names, positive_name)
    result.threshold = choose_threshold(preds.val_labels == pos, preds.val_probs[:, pos], point)
    if not math.isfinite(result.threshold):
        result.status = "not available (validation lacks a class)"
        return result
    truth, call = labels == pos, probs[:, pos] >= result.threshold
    sens, spec = sens_spec_rows(truth[None], call[None])
    result.values["sensitivity"], result.values["specificity"] = float(sens[0]), float(spec[0])
    sums = _counted(counts, np.stack([truth & call, truth, ~truth & ~call, ~truth], axis=1).astype(np.float64))
    result.resampled["sensitivity"] = _ratio(sums[:, 0], sums[:, 1])
    result.resampled["specificity"] = _ratio(sums[:, 2], sums[:, 3])
    return result


def _counted(counts: list[np.ndarray], columns: np.ndarray) -> np.ndarray:
    """``(R, K)``: per resample, the sum over the drawn images of each column of ``columns`` ``(n, K)``."""
    return np.concatenate([chunk @ columns for chunk in counts])


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / denominator, np.nan)


def _class_names(preds: Predictions, num_classes: int) -> list[str]:
    names = [str(c) for c in preds.class_names]
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def cell_interval(cells: list[CellClinical], name: str) -> Interval | None:
    """The interval of ``name`` over a configuration's seeds: t over seeds, or a single seed's bootstrap."""
    present = [c for c in cells if name in c.values and math.isfinite(c.values[name])]
    if not present:
        return None
    if len(present) > 1:
        return t_interval([c.values[name] for c in present])
    only = present[0]
    return percentile_interval(only.values[name], only.resampled[name], only.n)


def interval_text(interval: Interval | None) -> str:
    """``0.812 [0.741, 0.876]`` for a bootstrap, ``0.812 ± 0.031 (n=3)`` over seeds, empty for none."""
    if interval is None or not math.isfinite(interval.estimate):
        return ""
    if interval.method == "t" and interval.n > 1:
        return f"{interval.estimate:.3f} ± {interval.half_width:.3f} (n={interval.n})"
    text = f"{interval.estimate:.3f}"
    return text + (f" [{interval.low:.3f}, {interval.high:.3f}]" if interval.defined else "")


def confusion_counts(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``[true, predicted]`` counts of the argmax prediction."""
    num_classes = probs.shape[1]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), np.asarray(probs).argmax(axis=1)), 1)
    return matrix
