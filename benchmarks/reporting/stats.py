"""Uncertainty of a reported number: Student-t intervals over seeds, bootstrap intervals over test images.

- Several seeds of a cell: ``t_interval`` of the per-seed values (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n).
- One seed: ``bootstrap_metric_ci`` resamples the stored test predictions (percentile bootstrap, seeded), for
  accuracy and ROC-AUC (binary, or macro one-vs-rest as in ``metrics.classification_metrics``).

The resamples (``bootstrap_counts``: how often each test image is drawn, 1,000 resamples, seed 0) are the same for
every configuration scored on a test set of the same size, so the difference of two resampled metrics is a paired
bootstrap of their difference. numpy and scipy only; the AUC of every resample comes from one sort of the scores
(``counted_binary_auc``), equal to the rank AUC of each resampled row (``binary_auc_rows``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: resamples of the single-seed bootstrap
BOOTSTRAP_RESAMPLES = 1000
#: seed of the single-seed bootstrap (fixed: a report is reproducible byte for byte)
BOOTSTRAP_SEED = 0
#: metrics the bootstrap knows how to recompute from predictions
BOOTSTRAP_METRICS = ("accuracy", "roc_auc")


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided confidence interval.

    Attributes:
        estimate: the mean over seeds (t-interval) or the metric on the full test set (bootstrap).
        low: lower bound (``nan`` when undefined, e.g. a single value).
        high: upper bound (``nan`` when undefined).
        n: number of seeds (t-interval) or of test images (bootstrap).
        method: ``"t"`` or ``"bootstrap"``.
        confidence: the coverage, e.g. 0.95.
    """

    estimate: float
    low: float
    high: float
    n: int
    method: str
    confidence: float = 0.95

    @property
    def defined(self) -> bool:
        """Whether both bounds are finite numbers."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    @property
    def half_width(self) -> float:
        """Half the interval's width (symmetric for the t-interval); ``nan`` when undefined."""
        return (self.high - self.low) / 2 if self.defined else math.nan


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and Student-t confidence interval of independent values (one per seed).

    Args:
        values: finite numbers; ``nan`` entries are ignored.
        confidence: two-sided coverage in (0, 1).

    Returns:
        The interval; with fewer than two values, or zero spread, the bounds equal the mean when the spread
        is zero and are ``nan`` when there is a single value.

    Raises:
        ValueError: ``confidence`` outside (0, 1) or no finite value.
    """
    _check_confidence(confidence)
    data = np.asarray([v for v in values if v is not None and math.isfinite(float(v))], dtype=np.float64)
    if data.size == 0:
        raise ValueError("t_interval needs at least one finite value, got none")
    mean = float(data.mean())
    if data.size == 1:
        return Interval(mean, math.nan, math.nan, 1, "t", confidence)
    sem = float(data.std(ddof=1) / math.sqrt(data.size))
    half = float(sps.t.ppf(0.5 + confidence / 2, df=data.size - 1)) * sem
    return Interval(mean, mean - half, mean + half, int(data.size), "t", confidence)


def bootstrap_indices(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """``(resamples, n)`` indices drawn with replacement from ``range(n)`` by a seeded generator."""
    if n < 1:
        raise ValueError(f"bootstrap needs at least one test image, got n={n}")
    if resamples < 1:
        raise ValueError(f"bootstrap needs at least one resample, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def binary_auc_rows(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row of ``scores`` against the boolean row of ``positive`` (Mann–Whitney U, ties halved).

    Args:
        scores: ``(R, n)`` scores.
        positive: ``(R, n)`` booleans, True for the positive class.

    Returns:
        ``(R,)`` AUCs; ``nan`` for a row without both classes.
    """
    ranks = sps.rankdata(scores, axis=1)
    n_pos = positive.sum(axis=1).astype(np.float64)
    n_neg = positive.shape[1] - n_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def auc_rows(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """ROC-AUC per resample row, as ``classification_metrics`` defines it.

    Args:
        labels: ``(R, n)`` int labels.
        probs: ``(R, n, C)`` probabilities.

    Returns:
        ``(R,)``: the positive-class AUC for two classes, else the macro one-vs-rest AUC over classes (rows
        missing a class are ``nan``, as sklearn refuses them).
    """
    num_classes = probs.shape[-1]
    if num_classes == 2:
        return binary_auc_rows(probs[..., 1], labels == 1)
    normalized = probs / np.clip(probs.sum(axis=-1, keepdims=True), 1e-12, None)
    per_class = np.stack([binary_auc_rows(normalized[..., c], labels == c) for c in range(num_classes)], axis=1)
    return per_class.mean(axis=1)  # nan if any class is absent from a row


def metric_rows(metric: str, labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``metric`` (``accuracy`` or ``roc_auc``) for each row of resampled labels ``(R, n)`` and probs ``(R, n, C)``."""
    if metric == "accuracy":
        return (probs.argmax(axis=-1) == labels).mean(axis=1)
    if metric == "roc_auc":
        return auc_rows(labels, probs)
    raise ValueError(f"unknown bootstrap metric {metric!r}; expected one of: {', '.join(BOOTSTRAP_METRICS)}")


def bootstrap_metric_ci(
    metric: str,
    labels: np.ndarray,
    probs: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = 0.95,
) -> Interval:
    """Percentile-bootstrap confidence interval of a test metric from stored predictions.

    Resamples the test images with replacement ``resamples`` times (seeded, so the interval is reproducible);
    resamples where the metric is undefined (a class missing for the AUC) are dropped.

    Args:
        metric: ``accuracy`` or ``roc_auc``.
        labels: true labels ``(n,)``.
        probs: probabilities ``(n, C)``.
        resamples: number of bootstrap resamples.
        seed: generator seed.
        confidence: two-sided coverage in (0, 1).

    Returns:
        ``estimate`` is the metric on the full test set; bounds are ``nan`` if it is undefined there.

    Raises:
        ValueError: unknown metric, mismatched shapes, bad confidence or empty input.
    """
    _check_confidence(confidence)
    labels = np.asarray(labels, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"probs must be (N, C) with N={labels.shape[0]} labels, got shape {probs.shape}")
    estimate = float(metric_rows(metric, labels[None], probs[None])[0])
    if not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, int(labels.size), "bootstrap", confidence)
    values = resampled_metric(metric, labels, probs, bootstrap_counts(labels.size, resamples, seed))
    return percentile_interval(estimate, values, int(labels.size), confidence)


def resampled_metric(metric: str, labels: np.ndarray, probs: np.ndarray, counts: list[np.ndarray]) -> np.ndarray:
    """``metric`` on each bootstrap resample of labels ``(n,)`` and probs ``(n, C)``.

    Args:
        metric: ``accuracy`` or ``roc_auc``.
        labels: true labels ``(n,)``.
        probs: probabilities ``(n, C)``.
        counts: the resamples as image counts, in row chunks (``bootstrap_counts``).

    Returns:
        ``(R,)`` values, ``nan`` where the metric is undefined on a resample. Two classifiers resampled with the
        same ``idx`` give a paired bootstrap of their difference.
    """
    labels, probs = np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"unknown bootstrap metric {metric!r}; expected one of: {', '.join(BOOTSTRAP_METRICS)}")
    n = labels.size
    if metric == "accuracy":
        correct = (probs.argmax(axis=1) == labels).astype(np.float64)
        return np.concatenate([chunk @ correct / n for chunk in counts])
    if probs.shape[1] == 2:
        columns = [(probs[:, 1], labels == 1)]
    else:
        normalized = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
        columns = [(normalized[:, c], labels == c) for c in range(probs.shape[1])]
    values = []
    for chunk in counts:
        values.append(np.mean([counted_binary_auc(scores, positive, chunk) for scores, positive in columns], axis=0))
    return np.concatenate(values)


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """``(R, n)``: how many times each image is drawn in each resample row of ``idx``."""
    rows = idx.shape[0]
    flat = (np.arange(rows)[:, None] * n + idx).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


@functools.lru_cache(maxsize=4)
def bootstrap_counts(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> list[np.ndarray]:
    """The resamples of ``bootstrap_indices`` as image counts, in row chunks of at most ~2 M entries.

    Computed once per ``(n, resamples, seed)``: every metric, cell and configuration of a test set of ``n`` images
    is resampled with the same images (which makes differences paired). The arrays are shared: do not modify them.
    """
    idx = bootstrap_indices(n, resamples, seed)
    chunks = [resample_counts(chunk, n) for chunk in row_chunks(idx, n)]
    for chunk in chunks:
        chunk.flags.writeable = False
    return chunks


def counted_binary_auc(scores: np.ndarray, positive: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC-AUC (ties halved) of fixed ``scores`` on resamples given as image ``counts`` ``(R, n)``.

    Equal to ``binary_auc_rows`` on the gathered resamples, without ranking every row: the images are sorted once
    by score, and each positive counts the (weighted) negatives below it plus half of those tied with it.
    """
    values, group = np.unique(scores, return_inverse=True)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(group[order]) != 0])
    weights = counts[:, order]
    pos = np.add.reduceat(weights * positive[order], starts, axis=1)
    neg = np.add.reduceat(weights * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def percentile_interval(estimate: float, values: np.ndarray, n: int, confidence: float = 0.95) -> Interval:
    """The percentile-bootstrap interval of resampled ``values`` (non-finite ones dropped) around ``estimate``.

    Args:
        estimate: the statistic on the full sample.
        values: the statistic on each resample.
        n: test images per resample (kept in the interval).
        confidence: two-sided coverage in (0, 1).
    """
    _check_confidence(confidence)
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0 or not math.isfinite(estimate):
        return Interval(estimate, math.nan, math.nan, n, "bootstrap", confidence)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(estimate, float(low), float(high), n, "bootstrap", confidence)


def row_chunks(idx: np.ndarray, n: int, max_elements: int = 2_000_000) -> list[np.ndarray]:
    """Split resample rows so that one chunk of gathered probabilities stays a few tens of MiB."""
    rows = max(1, max_elements // max(1, n))
    return [idx[i : i + rows] for i in range(0, len(idx), rows)]


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
