"""The answer and its evidence, built once per report: paired comparisons, ranking across datasets, clinical metrics.

``build_evidence`` gathers the configurations of every dataset (``candidates``), compares them on their shared
test images (``comparisons``), ranks them across datasets (``ranking``), computes the clinical metrics of every
cell (``clinical``) and writes the answer (``answer``). The renderers (``tables``, ``html_report``) only lay out
the result: the ``answer`` lines and table open every output, the ``sections`` follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .answer import DatasetAnswer, answer_markdown, answer_table, build_answers, comparers_for
from .candidates import Candidate, build_candidates, labeler, network_mismatches
from .clinical import ECE_BINS, NO_VALIDATION
from .clinical_tables import ClinicalMetrics, calibration_table, clinical_csv, confusion_table, recall_tables
from .comparisons import METRIC_TITLES, PAIRED_NOTE, Comparer, pairwise_tables, resolve_metric
from .options import ReportOptionError, ReportOptions
from .ranking import MIN_DATASETS, RANKING_NOTE, Ranking, rank_configurations, score_matrix
from .sources import SuiteSources


@dataclass(frozen=True)
class Section:
    """A titled table of the evidence, with a note on how to read it."""

    title: str
    table: pd.DataFrame
    note: str = ""
    level: int = 2


@dataclass
class Evidence:
    """Everything the answer rests on.

    Attributes:
        answer: the answer's Markdown lines (bullets per dataset, the across-datasets sentence).
        table: the compact answer table (one row per configuration and pool).
        note: how the answer was decided.
        sections: the evidence tables, in report order.
        rankings: ``(scope, Ranking)`` across datasets (empty when fewer than 3 datasets).
        candidates: dataset -> configurations (for the reliability diagram).
        names: configuration key -> its short label.
        clinical_cells: one row per cell of clinical metrics (``clinical.csv``).
    """

    answer: list[str]
    table: pd.DataFrame
    note: str
    sections: list[Section] = field(default_factory=list)
    rankings: list[tuple[str, Ranking]] = field(default_factory=list)
    candidates: dict[str, list[Candidate]] = field(default_factory=dict)
    names: dict[tuple, str] = field(default_factory=dict)
    clinical_cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    answers: list[DatasetAnswer] = field(default_factory=list)


def answer_note(options: ReportOptions) -> str:
    """How the answer is decided (the note under its table)."""
    return (
        "How this is decided: the best configuration has the highest mean selection metric over its seeds "
        f"(`--select-by {options.select_by}`: ROC-AUC when every configuration has one, else accuracy). Every other "
        "configuration is compared with it on the same test images — DeLong's test for ROC-AUC, McNemar's exact "
        "test (sign-flip test over several seeds) for accuracy — and Holm-adjusted over those comparisons: `tied` "
        f"when the adjusted p ≥ {options.alpha:g}, `worse` below. `Δ vs best`: the difference with its 95 % paired-"
        "bootstrap interval. `value`: mean ± t half-width over seeds, or one seed's bootstrap interval. Backends are "
        "ranked together only when they train the same network (parameters, head, weights). Thresholds for "
        "sensitivity/specificity are chosen on validation, never on test."
    )


def _value_function(comparers: dict[str, Comparer]):
    def value(candidate: Candidate, metric: str) -> float:
        comparer = comparers.get(candidate.dataset)
        return comparer.value(candidate.key, metric) if comparer is not None else candidate.mean(metric)

    return value


def build_rankings(
    candidates: dict[str, list[Candidate]],
    comparers: dict[str, Comparer],
    options: ReportOptions,
    names: dict[tuple, str],
) -> list[tuple[str, Ranking]]:
    """Rankings across datasets: one over all configurations, or one per backend when backends train different
    networks on some dataset."""
    if len(candidates) < MIN_DATASETS:
        return []
    value = _value_function(comparers)
    mismatched = any(network_mismatches(c) for c in candidates.values())
    backends = list(dict.fromkeys(c.backend for group in candidates.values() for c in group))
    scopes = [(f"backend {b}", b) for b in backends] if mismatched else [("", None)]
    rankings = []
    for scope, backend in scopes:
        subset = {d: [c for c in group if backend is None or c.backend == backend] for d, group in candidates.items()}
        metric = options.select_by
        if metric == "auto":  # ROC-AUC when every configuration ranked by accuracy has one on every dataset
            auc, accuracy = (score_matrix(subset, value, m, names) for m in ("roc_auc", "accuracy"))
            metric = "roc_auc" if auc.shape[1] == accuracy.shape[1] else "accuracy"
        ranking = rank_configurations(score_matrix(subset, value, metric, names), metric, options.alpha)
        if ranking is not None:
            rankings.append((scope, ranking))
    return rankings


def across_sentence(rankings: list[tuple[str, Ranking]], datasets: int) -> str:
    """The answer's across-datasets sentence (empty below 3 datasets)."""
    if datasets < MIN_DATASETS:
        return ""
    if not rankings:
        return f"**Across {datasets} datasets**: not ranked (fewer than 3 configurations ran on every dataset)."
    lines = []
    for scope, ranking in rankings:
        tied = ranking.tied_with_best()
        verdict = (
            f"not distinguishable from it (Nemenyi, p ≥ {ranking.alpha:g}): {', '.join(tied) if tied else 'none'}"
            if ranking.significant
            else f"the Friedman test finds no difference between the {len(ranking.mean_ranks)} configurations"
        )
        lines.append(
            f"**Across {len(ranking.scores)} datasets**{f' ({scope})' if scope else ''} by "
            f"{METRIC_TITLES[ranking.metric]}: best mean rank **{ranking.best}** "
            f"({ranking.mean_ranks.iloc[0]:.2f} of {len(ranking.mean_ranks)}); Friedman p = {ranking.friedman_p:.3g}; "
            f"{verdict}."
        )
    return "\n".join(lines)


def check_positive_class(candidates: dict[str, list[Candidate]], requested: str | None) -> None:
    """Refuse a ``--positive-class`` that names no class of any binary dataset of the report.

    Raises:
        ReportOptionError: naming the value and the binary datasets' classes.
    """
    if requested is None:
        return
    classes: dict[str, None] = {}
    for group in candidates.values():
        for candidate in group:
            for preds in candidate.predictions.values():
                if preds.probs.shape[1] == 2:
                    classes.update(dict.fromkeys(str(c) for c in preds.class_names))
    if requested not in classes:
        known = ", ".join(repr(c) for c in classes) or "none (no binary dataset with stored predictions)"
        raise ReportOptionError(
            f"--positive-class {requested!r} is not a class of a binary dataset here; classes: {known}"
        )


def build_evidence(frame: pd.DataFrame, sources: SuiteSources | None, options: ReportOptions, warnings_of) -> Evidence:
    """The answer and every evidence table of the records in ``frame``.

    Args:
        frame: the latest record per cell (``tables.results_frame``).
        sources: where the cells' predictions are (``None``: records only, nothing is tested).
        options: the selection metric, operating point, positive class, alpha.
        warnings_of: ``warnings_of(frame_of_one_dataset)`` -> the data-check sentences of that dataset.
    """
    candidates = build_candidates(frame, sources)
    check_positive_class(candidates, options.positive_class)
    names = labeler(c for group in candidates.values() for c in group)
    comparers = comparers_for(candidates)
    clinical = ClinicalMetrics(candidates, options)
    answers = build_answers(candidates, comparers, options, lambda d: warnings_of(frame[frame["dataset"] == d]))
    rankings = build_rankings(candidates, comparers, options, names)
    lines = answer_markdown(answers, names, clinical, options.alpha, across_sentence(rankings, len(candidates)))
    evidence = Evidence(lines, answer_table(answers, names), answer_note(options), rankings=rankings)
    evidence.candidates, evidence.names, evidence.answers = candidates, names, answers
    evidence.clinical_cells = clinical_csv(candidates, clinical)
    metrics = {d: resolve_metric(options.select_by, comparers.get(d), c) for d, c in candidates.items()}
    pairwise = pairwise_tables(candidates, comparers, metrics)
    if not pairwise.empty:
        evidence.sections.append(Section("Paired comparisons — strategies and backends", pairwise, PAIRED_NOTE))
    for scope, ranking in rankings:
        title = "Across datasets — mean ranks, Friedman and Nemenyi" + (f" ({scope})" if scope else "")
        note = (
            f"{RANKING_NOTE} Friedman chi² = {ranking.friedman_statistic:.2f}, p = {ranking.friedman_p:.3g}; "
            f"Nemenyi critical difference at α = {ranking.alpha:g}: {ranking.critical_difference:.2f} mean ranks."
        )
        evidence.sections.append(Section(title, ranking.table(), note))
    evidence.sections += clinical_sections(candidates, clinical, names, answers, options)
    return evidence


def clinical_sections(
    candidates: dict[str, list[Candidate]],
    clinical: ClinicalMetrics,
    names: dict[tuple, str],
    answers: list[DatasetAnswer],
    options: ReportOptions,
) -> list[Section]:
    """Calibration and operating point, per-class recall per dataset, the best configuration's confusion matrix."""
    sections = []
    calibration = calibration_table(candidates, clinical, names)
    if not calibration.empty:
        note = (
            f"ECE: expected calibration error of the top-class confidence, {ECE_BINS} equal-width bins. Threshold on "
            f"P(positive class) chosen on the validation split ({options.operating_point.describe()}; "
            "`--operating-point`), then fixed: sensitivity and specificity are measured on test. "
            f"`{NO_VALIDATION}`: the cells stored no validation predictions (older runs); the threshold is never "
            "chosen on test. Intervals as in the tables: mean ± t half-width over seeds, or one seed's bootstrap."
        )
        sections.append(Section("Clinical metrics — calibration and operating point", calibration, note))
    for dataset, table in recall_tables(candidates, clinical, names):
        sections.append(Section(f"Per-class recall — {dataset}", table, "Recall of each class (argmax).", level=3))
    for answer in answers:
        from .plots import short_dataset

        for pool in answer.pools:
            best = pool.best.candidate
            table = confusion_table(best)
            if table.empty:
                continue
            scope = f", {pool.scope}" if pool.scope else ""
            title = f"Confusion matrix — {short_dataset(answer.dataset)}{scope}: {names[best.key]}"
            note = f"Counts of the argmax prediction summed over {len(best.predictions)} seed(s) (rows: true class)."
            sections.append(Section(title, table, note, level=3))
    return sections
