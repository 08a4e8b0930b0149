"""The answer a report opens with, generated from the records: per dataset, which configuration to use.

Per dataset (and, when the backends train different networks, per backend instead of across them):

1. the best configuration by the selection metric (ROC-AUC when every configuration has one, else accuracy, or
   ``--select-by``), mean over seeds;
2. the configurations statistically tied with it: each compared with the best on the same test images (paired
   test: DeLong for ROC-AUC, McNemar / sign-flip for accuracy), Holm-adjusted over those comparisons; tied when
   the adjusted p >= alpha;
3. the cheapest member of that set: the fewest training seconds, and the most inference images/s;
4. what the data checks warn about, and the best configuration's calibration and operating point.

Configurations without stored predictions cannot be paired: the answer then names the best by the records and
says the tie was not tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .candidates import Candidate, network_mismatches, same_test_set
from .clinical import BINARY_ONLY, interval_text
from .clinical_tables import ClinicalMetrics, positive_name
from .comparisons import METRIC_TITLES, TEST_NAMES, Comparer, Comparison, adjust, delta_text, p_text, resolve_metric
from .options import ReportOptions
from .stats import t_interval


@dataclass
class Verdict:
    """One configuration of a pool, compared with the pool's best."""

    candidate: Candidate
    value: float
    value_text: str
    comparison: Comparison | None = None
    verdict: str = ""


@dataclass
class PoolAnswer:
    """The answer for one pool of configurations (a dataset, or one backend of it)."""

    dataset: str
    scope: str
    metric: str
    tested: bool
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def best(self) -> Verdict:
        return self.verdicts[0]

    @property
    def tied(self) -> list[Verdict]:
        """The best and every configuration statistically tied with it (all of them when untested)."""
        return [v for v in self.verdicts if v.verdict in ("best", "tied", "untested")]


def _value_text(comparer: Comparer | None, candidate: Candidate, metric: str) -> str:
    """The metric with its interval: from the predictions, else over the records' seeds (t) or the bare value."""
    if comparer is not None:
        return interval_text(comparer.scores[candidate.key].interval(metric))
    values = candidate.recorded(metric)
    return interval_text(t_interval(values)) if values else ""


def _value(comparer: Comparer | None, candidate: Candidate, metric: str) -> float:
    return comparer.value(candidate.key, metric) if comparer is not None else candidate.mean(metric)


def answer_pool(
    dataset: str, scope: str, pool: list[Candidate], comparer: Comparer | None, metric: str, alpha: float
) -> PoolAnswer:
    """Best, tied and worse configurations of one pool (Holm over the comparisons with the best)."""
    ordered = sorted(
        pool,
        key=lambda c: (-_finite(_value(comparer, c, metric)), _finite(c.median("train_s"), math.inf)),
    )
    answer = PoolAnswer(dataset, scope, metric, tested=comparer is not None)
    answer.verdicts = [Verdict(c, _value(comparer, c, metric), _value_text(comparer, c, metric)) for c in ordered]
    answer.best.verdict = "best"
    others = answer.verdicts[1:]
    if comparer is None:
        for verdict in others:
            verdict.verdict = "untested"
        return answer
    comparisons = adjust([comparer.compare(v.candidate.key, answer.best.candidate.key, metric) for v in others])
    for verdict, comparison in zip(others, comparisons, strict=True):
        verdict.comparison = comparison
        if not math.isfinite(comparison.p_holm):
            verdict.verdict = "untested"  # the metric is undefined for one of the two
        else:
            verdict.verdict = "worse" if comparison.p_holm < alpha and comparison.delta < 0 else "tied"
    return answer


def _finite(value: float, default: float = -math.inf) -> float:
    return value if math.isfinite(value) else default


@dataclass
class DatasetAnswer:
    """The answer for one dataset: its pools, why backends were not ranked together, its warnings."""

    dataset: str
    pools: list[PoolAnswer]
    mismatches: list[str]
    warnings: list[str]
    test_summary: str


def dataset_answer(
    dataset: str,
    candidates: list[Candidate],
    comparer: Comparer | None,
    options: ReportOptions,
    warnings: list[str],
) -> DatasetAnswer:
    """Pools of one dataset (one across backends, or one per backend when they train different networks)."""
    metric = resolve_metric(options.select_by, comparer, candidates)
    mismatches = network_mismatches(candidates)
    if mismatches:
        backends = list(dict.fromkeys(c.backend for c in candidates))
        pools = [(f"backend {b}", [c for c in candidates if c.backend == b]) for b in backends]
    else:
        pools = [("", candidates)]
    answers = [answer_pool(dataset, scope, pool, comparer, metric, options.alpha) for scope, pool in pools]
    return DatasetAnswer(dataset, answers, mismatches, warnings, _test_summary(candidates, options))


def _test_summary(candidates: list[Candidate], options: ReportOptions) -> str:
    """``155 test images: 42 malignant, 113 normal, benign (positive: malignant)``."""
    labelled = next((c for c in candidates if c.predictions), None)
    if labelled is None:
        return ""
    preds = next(iter(labelled.predictions.values()))
    counts = pd.Series(preds.labels).value_counts().sort_index()
    names = [str(c) for c in preds.class_names]
    parts = [f"{int(n)} {names[i] if i < len(names) else i}" for i, n in counts.items()]
    positive = positive_name(labelled, options.positive_class)
    text = f"{int(preds.labels.size)} test images" + (f" ({', '.join(parts)})" if len(parts) <= 4 else "")
    return text + (f"; positive class for sensitivity: {positive}" if positive else "")


def build_answers(
    candidates_by_dataset: dict[str, list[Candidate]],
    comparers: dict[str, Comparer],
    options: ReportOptions,
    warnings_of: Any,
) -> list[DatasetAnswer]:
    """One ``DatasetAnswer`` per dataset; ``warnings_of(dataset)`` gives its data-check sentences."""
    return [
        dataset_answer(dataset, candidates, comparers.get(dataset), options, warnings_of(dataset))
        for dataset, candidates in candidates_by_dataset.items()
    ]


def comparers_for(candidates_by_dataset: dict[str, list[Candidate]]) -> dict[str, Comparer]:
    """A ``Comparer`` for each dataset whose configurations all stored predictions on one test set."""
    return {d: Comparer(c) for d, c in candidates_by_dataset.items() if c and same_test_set(c)}


# ---- the compact table -------------------------------------------------------------------------------------
def answer_table(answers: list[DatasetAnswer], names: dict[tuple, str]) -> pd.DataFrame:
    """One row per configuration and pool: its metric, difference to the best, Holm p, verdict and cost."""
    from .plots import short_dataset

    rows: list[dict[str, Any]] = []
    for answer in answers:
        for pool in answer.pools:
            for verdict in pool.verdicts:
                comparison = verdict.comparison
                row = {"dataset": short_dataset(answer.dataset)}
                if pool.scope:
                    row["pool"] = pool.scope
                row["configuration"] = names[verdict.candidate.key]
                row["metric"] = METRIC_TITLES[pool.metric]
                row["value (95% CI)"] = verdict.value_text
                row["Δ vs best [95% CI]"] = delta_text(comparison) if comparison else ""
                row["p (Holm)"] = p_text(comparison.p_holm) if comparison else ""
                row["verdict"] = verdict.verdict
                row["training (s)"] = _number(verdict.candidate.median("train_s"), "{:.1f}")
                row["inference (images/s)"] = _number(verdict.candidate.median("infer_images_per_s"), "{:,.0f}")
                rows.append(row)
    return pd.DataFrame(rows).fillna("")


def _number(value: float, fmt: str) -> str:
    return fmt.format(value) if math.isfinite(value) else ""


# ---- the sentences -----------------------------------------------------------------------------------------
def _bold(text: str) -> str:
    return f"**{text}**"


def _cheapest(pool: PoolAnswer, names: dict[tuple, str]) -> str:
    """The tied (or untested) set's cheapest member to train and fastest at inference, against the best."""
    tied = pool.tied
    if len(tied) < 2:
        return ""
    best = pool.best
    parts = []
    for column, pick, unit, what in (
        ("train_s", min, "s", "fewest training seconds"),
        ("infer_images_per_s", max, "images/s", "fastest inference"),
    ):
        measured = [v for v in tied if math.isfinite(v.candidate.median(column))]
        if not measured:
            continue
        chosen = pick(measured, key=lambda v: v.candidate.median(column))
        value = f"{chosen.candidate.median(column):,.1f}" if unit == "s" else f"{chosen.candidate.median(column):,.0f}"
        if chosen is best:
            parts.append(f"{what}: the best itself ({value} {unit})")
            continue
        reference = best.candidate.median(column)
        against = f"{reference:,.1f}" if unit == "s" else f"{reference:,.0f}"
        parts.append(f"{what}: {_bold(names[chosen.candidate.key])} ({value} {unit}; the best: {against} {unit})")
    label = "the tied set" if pool.tested else "all (ties not tested)"
    return f"Cheapest of {label}: " + "; ".join(parts) + "." if parts else ""


def pool_lines(pool: PoolAnswer, names: dict[tuple, str], clinical: ClinicalMetrics | None, alpha: float) -> list[str]:
    """The sentences of one pool's answer (Markdown)."""
    metric = METRIC_TITLES[pool.metric]
    best = pool.best
    seeds = len(best.candidate.records)
    lines = [f"Best by {metric} (mean of {seeds} seed(s)): {_bold(names[best.candidate.key])}, {best.value_text}."]
    others = pool.verdicts[1:]
    if not pool.tested:
        lines.append("Ties not tested: not every cell stored test predictions on one test set (re-run to compare).")
    elif others:
        tied = [names[v.candidate.key] for v in others if v.verdict == "tied"]
        worse = [names[v.candidate.key] for v in others if v.verdict == "worse"]
        how = f"{TEST_NAMES[pool.metric]} test on the same test images, Holm-adjusted p ≥ {alpha:g}"
        lines.append(f"Statistically tied with it ({how}): {', '.join(tied) if tied else 'none'}.")
        if worse:
            lines.append(f"Worse: {', '.join(worse)}.")
    cheapest = _cheapest(pool, names)
    if cheapest:
        lines.append(cheapest)
    if clinical is not None and clinical.of(best.candidate):
        lines.append(clinical_sentence(clinical, best.candidate))
    return lines


def clinical_sentence(clinical: ClinicalMetrics, candidate: Candidate) -> str:
    """The best configuration's calibration and, for binary tasks, its validation-chosen operating point on test."""
    text = f"Calibration of the best: ECE {clinical.interval_text(candidate, 'ece')}"
    status = next((c.status for c in clinical.of(candidate) if c.status), "")
    if status == BINARY_ONLY:
        return text + " (per-class recall below)."
    point = clinical.options.operating_point.describe()
    return f"{text}; at the threshold chosen on validation ({point}): {clinical.operating_point_text(candidate)}."


def answer_markdown(
    answers: list[DatasetAnswer],
    names: dict[tuple, str],
    clinical: ClinicalMetrics | None,
    alpha: float,
    across: str = "",
) -> list[str]:
    """The answer's Markdown lines (a bullet list per dataset), without the table."""
    from .plots import short_dataset

    if not answers:
        return ["No configuration finished (every cell failed): nothing to compare; see the failed cells.", ""]
    lines: list[str] = []
    for answer in answers:
        head = f"{_bold(short_dataset(answer.dataset))}" + (f" — {answer.test_summary}" if answer.test_summary else "")
        lines.append(head)
        if answer.mismatches:
            lines.append(
                "- Frameworks not ranked against each other: the backends train different networks ("
                + "; ".join(answer.mismatches)
                + "). Give them the same head and weights (e.g. `--head fcn`) to compare frameworks; "
                "the answer below is per backend."
            )
        for pool in answer.pools:
            prefix = f"{pool.scope}: " if pool.scope else ""
            for i, line in enumerate(pool_lines(pool, names, clinical, alpha)):
                lines.append(f"- {prefix if i == 0 else ''}{line}")
        if answer.warnings:
            lines += [f"- Data checks: {w}" for w in answer.warnings]
        else:
            lines.append("- Data checks: no warning.")
        lines.append("")
    if across:
        lines += [across, ""]
    return lines
