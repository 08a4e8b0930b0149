"""Paired comparisons of configurations on one dataset: differences with paired-bootstrap intervals and tests.

For a pair (A, B) scored on the same test images, over their seeds:

- ``delta``: mean metric of A over its seeds minus that of B;
- its 95 % interval: a paired percentile bootstrap (1,000 resamples, fixed seed): every resample draws one set of
  test images, used for every seed of both configurations, so the interval is that of the difference itself;
- the paired test (``paired``): McNemar's exact test or the sign-flip test for accuracy, DeLong for ROC-AUC;
- per seed both ran: the difference on that seed and its own test.

The families of comparisons (all pairs of strategies of one backend/model, all pairs of backends of one
model/strategy) are Holm-adjusted in ``pairwise_table``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .candidates import Candidate, labeler, network_mismatches
from .paired import PairedTest, accuracy_test, auc_placements, delong_test, holm
from .stats import (
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    Interval,
    bootstrap_counts,
    percentile_interval,
    resampled_metric,
    t_interval,
)

METRIC_TITLES = {"accuracy": "accuracy", "roc_auc": "ROC-AUC"}
TEST_NAMES = {"accuracy": "McNemar", "roc_auc": "DeLong"}


class CandidateScores:
    """A candidate's per-image quantities on one test set, computed once: correctness, AUC contributions and
    the metric on every bootstrap resample (the resamples are shared by all candidates of a dataset)."""

    def __init__(self, candidate: Candidate, counts: list[np.ndarray]) -> None:
        self.candidate = candidate
        self.counts = counts
        self.seeds = sorted(candidate.predictions)
        self.labels = candidate.predictions[self.seeds[0]].labels
        self.correct = {s: candidate.predictions[s].probs.argmax(axis=1) == self.labels for s in self.seeds}
        self.auc = {s: auc_placements(self.labels, candidate.predictions[s].probs) for s in self.seeds}
        self._rows: dict[tuple[str, int], np.ndarray] = {}

    def seed_value(self, metric: str, seed: int) -> float:
        """The metric of one seed on the full test set."""
        return float(self.correct[seed].mean()) if metric == "accuracy" else self.auc[seed][0]

    def value(self, metric: str, seeds: list[int] | None = None) -> float:
        """Mean over ``seeds`` (default: all) of the metric."""
        return float(np.mean([self.seed_value(metric, s) for s in seeds or self.seeds]))

    def rows(self, metric: str, seeds: list[int] | None = None) -> np.ndarray:
        """``(R,)``: the mean over ``seeds`` of the metric on each shared bootstrap resample."""
        for seed in seeds or self.seeds:
            if (metric, seed) not in self._rows:
                probs = self.candidate.predictions[seed].probs
                self._rows[(metric, seed)] = resampled_metric(metric, self.labels, probs, self.counts)
        return np.mean([self._rows[(metric, s)] for s in seeds or self.seeds], axis=0)

    def interval(self, metric: str) -> Interval:
        """The metric's interval as the tables give it: t over seeds, or the bootstrap for a single seed."""
        if len(self.seeds) > 1:
            return t_interval([self.seed_value(metric, s) for s in self.seeds])
        return percentile_interval(self.value(metric), self.rows(metric), int(self.labels.size))

    def test_inputs(self, metric: str, seeds: list[int] | None = None) -> Any:
        """What ``paired`` tests take: ``(seeds, n)`` correctness, or the seed-mean AUC and contributions."""
        seeds = seeds or self.seeds
        if metric == "accuracy":
            return np.stack([self.correct[s] for s in seeds])
        return self.value(metric, seeds), np.mean([self.auc[s][1] for s in seeds], axis=0)


@dataclass
class Comparison:
    """A − B on one metric, on the same test images.

    Attributes:
        a: the first configuration's key; b: the second's.
        metric: ``accuracy`` or ``roc_auc``.
        delta: mean over seeds of A minus that of B.
        interval: paired-bootstrap 95 % interval of ``delta``.
        test: the paired test over all seeds.
        per_seed: ``(seed, delta, p)`` for every seed both ran.
        p_holm: ``test.p`` adjusted over the family it was compared in (set by the caller).
    """

    a: tuple[str, str, str]
    b: tuple[str, str, str]
    metric: str
    delta: float
    interval: Interval
    test: PairedTest
    per_seed: list[tuple[int, float, float]] = field(default_factory=list)
    p_holm: float = math.nan


def paired_test(metric: str, labels: np.ndarray, a: Any, b: Any) -> PairedTest:
    """The paired test of ``metric`` from ``CandidateScores.test_inputs`` of A and B."""
    if metric == "accuracy":
        return accuracy_test(a, b)
    return delong_test(labels, a[0], a[1], b[0], b[1])


class Comparer:
    """Paired comparisons between the candidates of one dataset that share a test set."""

    def __init__(
        self, candidates: list[Candidate], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
    ) -> None:
        first = candidates[0]
        labels = first.labels
        self.counts = bootstrap_counts(int(labels.size), resamples, seed)
        self.scores = {c.key: CandidateScores(c, self.counts) for c in candidates}

    def value(self, key: tuple, metric: str) -> float:
        """Mean over seeds of ``metric`` for a configuration."""
        return self.scores[key].value(metric)

    def compare(self, a: tuple, b: tuple, metric: str) -> Comparison:
        """A − B: difference, paired-bootstrap interval, paired test over all seeds and per shared seed."""
        sa, sb = self.scores[a], self.scores[b]
        delta = sa.value(metric) - sb.value(metric)
        interval = percentile_interval(delta, sa.rows(metric) - sb.rows(metric), int(sa.labels.size))
        test = paired_test(metric, sa.labels, sa.test_inputs(metric), sb.test_inputs(metric))
        per_seed = []
        for seed in (s for s in sa.seeds if s in sb.seeds):
            one = paired_test(metric, sa.labels, sa.test_inputs(metric, [seed]), sb.test_inputs(metric, [seed]))
            per_seed.append((seed, one.delta, one.p))
        return Comparison(a, b, metric, delta, interval, test, per_seed)


def adjust(comparisons: list[Comparison]) -> list[Comparison]:
    """Set ``p_holm`` of one family of comparisons (Holm over the family); returns the same list."""
    for comparison, p in zip(comparisons, holm([c.test.p for c in comparisons]), strict=True):
        comparison.p_holm = float(p)
    return comparisons


def resolve_metric(select_by: str, comparer: Comparer | None, candidates: list[Candidate]) -> str:
    """The selection metric: ``select_by`` itself, or for ``auto`` ROC-AUC when every candidate has a finite one."""
    if select_by != "auto":
        return select_by
    if comparer is not None:
        finite = all(math.isfinite(comparer.value(c.key, "roc_auc")) for c in candidates)
    else:
        finite = all(math.isfinite(c.mean("roc_auc")) for c in candidates)
    return "roc_auc" if finite else "accuracy"


# ---- text --------------------------------------------------------------------------------------------------
def signed(value: float, digits: int = 3) -> str:
    """``+0.012`` / ``-0.004``; empty for ``nan``."""
    return "" if not math.isfinite(value) else f"{value:+.{digits}f}"


def p_text(p: float) -> str:
    """A p-value: 3 significant digits, ``<0.0001`` below that."""
    if not math.isfinite(p):
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def delta_text(comparison: Comparison) -> str:
    """``+0.045 [+0.012, +0.080]``."""
    text = signed(comparison.delta)
    if comparison.interval.defined:
        text += f" [{signed(comparison.interval.low)}, {signed(comparison.interval.high)}]"
    return text


def per_seed_text(comparison: Comparison) -> str:
    """``s0 +0.010 (p 0.42), s1 ...``: the difference and its own test on each shared seed."""
    return ", ".join(f"s{seed} {signed(delta)} (p {p_text(p)})" for seed, delta, p in comparison.per_seed)


def _families(candidates: list[Candidate]) -> list[tuple[str, list[Candidate]]]:
    """The families of pairs: strategies of one backend/model, backends of one model/strategy (same network)."""
    families: list[tuple[str, list[Candidate]]] = []
    by_engine: dict[tuple, list[Candidate]] = {}
    by_config: dict[tuple, list[Candidate]] = {}
    for candidate in candidates:
        by_engine.setdefault((candidate.backend, candidate.model), []).append(candidate)
        by_config.setdefault((candidate.model, candidate.strategy), []).append(candidate)
    families += [(f"strategies of {b}/{m}", group) for (b, m), group in by_engine.items() if len(group) > 1]
    families += [
        (f"backends on {m}/{s}", group)
        for (m, s), group in by_config.items()
        if len(group) > 1 and not network_mismatches(group)
    ]
    return families


def pairwise_table(
    dataset_label: str, candidates: list[Candidate], comparer: Comparer, metric: str, names: dict[tuple, str]
) -> pd.DataFrame:
    """Every pair within each family of one dataset: A − B (A the better by ``metric``) on both metrics.

    Columns: dataset, family, A, B, then per metric the difference with its paired-bootstrap interval and the
    Holm-adjusted p of its paired test (Holm within the family and metric), then the per-seed differences of
    ``metric``.
    """
    rows: list[dict[str, Any]] = []
    for family, members in _families(candidates):
        ordered = sorted(members, key=lambda c: -_finite(comparer.value(c.key, metric)))
        pairs = [(a.key, b.key) for i, a in enumerate(ordered) for b in ordered[i + 1 :]]
        results = {m: adjust([comparer.compare(a, b, m) for a, b in pairs]) for m in _metrics(comparer, members)}
        for index, (a, b) in enumerate(pairs):
            row = {"dataset": dataset_label, "family": family, "A": names[a], "B": names[b]}
            for m, comparisons in results.items():
                row[f"Δ {METRIC_TITLES[m]} [95% CI]"] = delta_text(comparisons[index])
                row[f"p {TEST_NAMES[m]} (Holm)"] = p_text(comparisons[index].p_holm)
            if metric in results:
                row[f"per seed: Δ {METRIC_TITLES[metric]} (p)"] = per_seed_text(results[metric][index])
            rows.append(row)
    return pd.DataFrame(rows)


def _metrics(comparer: Comparer, members: list[Candidate]) -> list[str]:
    finite_auc = all(math.isfinite(comparer.value(c.key, "roc_auc")) for c in members)
    return ["accuracy", "roc_auc"] if finite_auc else ["accuracy"]


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


PAIRED_NOTE = (
    "Paired comparisons on the same test images. `Δ`: mean over seeds of A minus that of B, with a 95 % paired "
    f"percentile-bootstrap interval ({BOOTSTRAP_RESAMPLES:,} resamples of the test images, seed {BOOTSTRAP_SEED}, "
    "each resample used for every seed of both). Tests: accuracy — McNemar's exact test (one seed; with several, "
    "the sign-flip permutation test of the per-image fraction of seeds right, 10,000 permutations); ROC-AUC — "
    "DeLong's test (macro one-vs-rest for > 2 classes) on the seed-averaged placement values. p-values are "
    "Holm-adjusted within each family (all pairs of strategies of one backend/model, all pairs of backends of one "
    "model/strategy). The tests treat the test images as the sample and the trained models as fixed; the per-seed "
    "differences show how much the training seed moves a comparison."
)


def pairwise_tables(
    candidates_by_dataset: dict[str, list[Candidate]], comparers: dict[str, Comparer], metrics: dict[str, str]
) -> pd.DataFrame:
    """The pairwise table of every dataset with a shared test set, concatenated (empty when there is none)."""
    from .plots import short_dataset

    names = labeler(c for group in candidates_by_dataset.values() for c in group)
    frames = [
        pairwise_table(short_dataset(dataset), candidates_by_dataset[dataset], comparer, metrics[dataset], names)
        for dataset, comparer in comparers.items()
    ]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True).fillna("") if frames else pd.DataFrame()
