"""Paired tests of two classifiers scored on the same test images: McNemar, DeLong, sign-flip, Holm.

Every test here takes the test images as the random sample and the trained models as fixed (the per-seed
differences show how much the training seed moves a comparison). Several seeds of one configuration enter as
their per-image average: the fraction of seeds that classify an image correctly, and the seed-averaged DeLong
placement values, whose means are exactly the mean accuracy and the mean ROC-AUC over seeds.

- accuracy: McNemar's exact test (``scipy.stats.binomtest`` on the discordant images) when every image's
  difference has the same size (one seed, or seeds that agree), else a seeded sign-flip permutation test of the
  per-image differences (the same test, generalized to fractions);
- ROC-AUC: DeLong, DeLong & Clarke-Pearson (1988) with the midrank algorithm of Sun & Xu (2014); for more than two
  classes the macro one-vs-rest AUC, each image's contributions to every class AUC summed and the variance taken
  within true classes (the stratification DeLong's variance conditions on);
- ``holm``: Holm's step-down adjustment of a family of p-values.

numpy and scipy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: sign-flip permutations when McNemar's exact test does not apply (p-value resolution 1e-4)
PERMUTATIONS = 10_000
#: seed of the sign-flip test (fixed: a report is reproducible byte for byte)
PERMUTATION_SEED = 0


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (``nan`` entries stay ``nan`` and do not count in the family).

    Args:
        p_values: raw p-values of one family of comparisons.

    Returns:
        Adjusted p-values in the input order: the i-th smallest is ``max_{j<=i} min(1, (m - j + 1) p_(j))``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired test of ``A − B``.

    Attributes:
        delta: the metric of A minus that of B (means over seeds).
        p: two-sided p-value of "no difference".
        method: ``McNemar exact``, ``sign-flip`` or ``DeLong``.
        detail: what the test saw (discordant images, z statistic).
    """

    delta: float
    p: float
    method: str
    detail: str = ""


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> PairedTest:
    """McNemar's exact test on one seed each: the images only A gets right against those only B gets right."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = 1.0 if only_a + only_b == 0 else float(sps.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    return PairedTest(float(a.mean() - b.mean()), p, "McNemar exact", f"{only_a} vs {only_b} discordant")


def sign_flip_p(differences: np.ndarray, permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> float:
    """Two-sided p-value that per-image differences are symmetric around 0 (random signs, seeded).

    Exact (a binomial test) when every non-zero difference has the same size, else Monte Carlo with
    ``(1 + hits) / (1 + permutations)``.
    """
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.abs(d) > 1e-12]
    if d.size == 0:
        return 1.0
    sizes = np.abs(d)
    if np.allclose(sizes, sizes[0], rtol=0, atol=1e-12):
        return float(sps.binomtest(int(np.sum(d > 0)), d.size, 0.5).pvalue)
    observed = abs(float(d.sum())) - 1e-9
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    rows = max(1, 2_000_000 // d.size)
    while done < permutations:
        count = min(rows, permutations - done)
        signs = rng.integers(0, 2, size=(count, d.size), dtype=np.int8) * 2 - 1
        hits += int(np.sum(np.abs(signs @ d) >= observed))
        done += count
    return (1 + hits) / (1 + permutations)


def accuracy_test(correct_a: np.ndarray, correct_b: np.ndarray) -> PairedTest:
    """Paired test of the mean accuracy over seeds: ``correct_*`` are ``(seeds, n)`` booleans on the same images.

    One seed each: McNemar's exact test. More: the sign-flip test of the per-image difference of the fractions of
    seeds right (exact when those differences are all of one size).
    """
    a, b = np.atleast_2d(correct_a).astype(np.float64), np.atleast_2d(correct_b).astype(np.float64)
    if a.shape[0] == 1 and b.shape[0] == 1:
        return mcnemar_exact(a[0] > 0.5, b[0] > 0.5)
    d = a.mean(axis=0) - b.mean(axis=0)
    return PairedTest(float(d.mean()), sign_flip_p(d), "sign-flip", f"{int(np.sum(np.abs(d) > 1e-12))} images differ")


def _binary_placements(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray]:
    """AUC and each image's DeLong contribution (placement value over the size of its own class group)."""
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        return math.nan, np.full(scores.shape, np.nan)
    ranks = sps.rankdata(scores)
    contribution = np.empty(scores.shape, dtype=np.float64)
    v10 = (ranks[positive] - sps.rankdata(scores[positive])) / n  # negatives below each positive (ties halved)
    v01 = 1.0 - (ranks[~positive] - sps.rankdata(scores[~positive])) / m  # positives above each negative
    contribution[positive] = v10 / m
    contribution[~positive] = v01 / n
    return float(v10.mean()), contribution


def auc_placements(labels: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """ROC-AUC (as ``stats.auc_rows`` defines it) and each image's DeLong contribution ``(n,)``.

    Binary: the positive-class AUC; the contributions sum to twice the AUC (once over positives, once over
    negatives). More classes: the macro one-vs-rest AUC and the class-average of each image's contributions.
    ``nan`` when a class is missing from ``labels``.
    """
    labels, probs = np.asarray(labels, dtype=np.int64), np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 2:
        return _binary_placements(probs[:, 1], labels == 1)
    normalized = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    parts = [_binary_placements(normalized[:, c], labels == c) for c in range(probs.shape[1])]
    return float(np.mean([auc for auc, _ in parts])), np.mean([z for _, z in parts], axis=0)


def delong_test(
    labels: np.ndarray, auc_a: float, contrib_a: np.ndarray, auc_b: float, contrib_b: np.ndarray
) -> PairedTest:
    """DeLong's test of ``auc_a − auc_b`` from per-image contributions (``auc_placements``, seed-averaged).

    The variance of the difference is ``sum_g n_g · var_g(z_a − z_b)`` over true classes ``g`` (DeLong's
    ``S10/m + S01/n`` for two classes); a zero variance gives p = 1 for equal AUCs, else 0.
    """
    delta = float(auc_a - auc_b)
    if not math.isfinite(delta):
        return PairedTest(delta, math.nan, "DeLong", "AUC undefined")
    labels = np.asarray(labels, dtype=np.int64)
    z = np.asarray(contrib_a, dtype=np.float64) - np.asarray(contrib_b, dtype=np.float64)
    variance = 0.0
    for group in np.unique(labels):
        values = z[labels == group]
        if values.size > 1:
            variance += values.size * float(np.var(values, ddof=1))
    if variance <= 1e-24:
        return PairedTest(delta, 1.0 if abs(delta) < 1e-12 else 0.0, "DeLong", "no variance")
    statistic = delta / math.sqrt(variance)
    return PairedTest(delta, float(2 * sps.norm.sf(abs(statistic))), "DeLong", f"z={statistic:.2f}")
