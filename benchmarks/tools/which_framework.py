"""The README's "Which framework" block (``findings`` ``kind=framework``): engines paired cell by cell, deploy paths.

Each engine of the framework suites is paired with the reference engine (``reference=``, default ``torchvision``)
cell by cell (same model, strategy, dataset, seed): the accuracy and ROC-AUC differences (mean ± 95 % t half-width),
the training and inference speed ratios (geometric mean of the pairs' ratios), the first steps' seconds (tracing,
compilation) and peak memory. Then each deployment runtime of the deploy suite against its framework on the same
cells: speed ratio, ROC-AUC and accuracy change, export seconds. A suite folder that is missing, or an engine its
suite file names without a record, reads "not measured yet".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..suite_files import SuiteFileError, read_suite_file
from .findings_cells import format_cell, not_measured, number, paired_cell, suite_name, suite_records

#: the pairing of two engines' cells
PAIR_KEY = ("model", "strategy", "dataset", "seed")


def suite_engines(root: Path, suite: str) -> list[str]:
    """The backends the suite file of ``suite`` names (``suites/<name>.toml``), ``[]`` without one."""
    try:
        return list(read_suite_file(root / "suites" / f"{suite_name(suite)}.toml").get("backends", []))
    except SuiteFileError:
        return []


def ratio_cell(values: list[float]) -> str:
    """Geometric mean of per-pair ratios, ``1.23x``."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return f"{math.exp(sum(map(math.log, finite)) / len(finite)):.2f}x" if finite else "–"


def framework_rows(records: list[dict[str, Any]], reference: str, expected: list[str]) -> list[str]:
    """The engines table: each engine's cells paired with the reference engine's (``PAIR_KEY``)."""
    by_engine: dict[str, dict[tuple, dict[str, Any]]] = {}
    for record in records:
        by_engine.setdefault(str(record.get("backend")), {})[tuple(record.get(k) for k in PAIR_KEY)] = record
    lines = [
        f"| engine | Δ accuracy vs {reference} | Δ ROC-AUC | training speed | inference speed | first steps (s) "
        "| peak RSS (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = by_engine.get(reference, {})
    for engine in dict.fromkeys([*expected, *by_engine]):
        cells = by_engine.get(engine)
        if not cells:
            lines.append(f"| `{engine}` | not measured yet | | | | | |")
            continue
        deltas: dict[str, list[float]] = {"accuracy": [], "roc_auc": [], "train": [], "infer": []}
        for key, record in cells.items():
            other = base.get(key)
            if other is None:
                continue
            for metric in ("accuracy", "roc_auc"):
                a, b = number(record, metric), number(other, metric)
                if a is not None and b is not None:
                    deltas[metric].append(a - b)
            a, b = number(record, "train_s"), number(other, "train_s")
            if a and b:
                deltas["train"].append(b / a)  # speed: the reference's seconds over this engine's
            a, b = number(record, "infer_images_per_s"), number(other, "infer_images_per_s")
            if a and b:
                deltas["infer"].append(a / b)
        first = [v for v in (number(r, "train_first_steps_s") for r in cells.values()) if v is not None]
        memory = [v for v in (number(r, "peak_rss_mb") for r in cells.values()) if v is not None]
        same = engine == reference
        lines.append(
            f"| `{engine}` | {'(reference)' if same else paired_cell(deltas['accuracy'])} "
            f"| {'' if same else paired_cell(deltas['roc_auc'])} | {ratio_cell(deltas['train'])} "
            f"| {ratio_cell(deltas['infer'])} | {format_cell('train_first_steps_s', first)} "
            f"| {format_cell('peak_rss_mb', memory)} |"
        )
    return lines


def deploy_rows(records: list[dict[str, Any]]) -> list[str]:
    """The deployment table: each runtime of the records' ``deploy`` column against its framework, same cells."""
    figures: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        for engine, figure in (record.get("deploy") or {}).items():
            figures.setdefault(engine, []).append(figure)
    lines = [
        "| runtime | cells | speed vs framework | Δ ROC-AUC (points) | Δ accuracy (points) | export (s) |",
        "|---|---|---|---|---|---|",
    ]
    for engine, items in figures.items():
        ok = [f for f in items if "error" not in f]
        if not ok:
            lines.append(f"| `{engine}` | {len(items)} | failed: {items[0]['error']} | | | |")
            continue
        roc = [100 * f["roc_auc_change"] for f in ok if f.get("roc_auc_change") is not None]
        acc = [100 * f["accuracy_change"] for f in ok if f.get("accuracy_change") is not None]
        export = [f["export_s"] for f in ok if f.get("export_s") is not None]
        lines.append(
            f"| `{engine}` | {len(ok)} | {ratio_cell([f.get('speedup') or 0.0 for f in ok])} | {paired_cell(roc, 2)} "
            f"| {paired_cell(acc, 2)} | {format_cell('export_s', export)} |"
        )
    return lines


def render_which_framework(options: dict[str, Any], root: Path) -> str:
    """The block's body: the engines table over the framework suites, then the deployment table.

    Args:
        options: ``frameworks`` (suite folders), ``deploy`` (one suite folder or ``None``), ``reference`` (an engine).
        root: the repository root the folders are relative to.
    """
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    expected: list[str] = []
    measured = []
    for suite in options["frameworks"]:
        found = suite_records(root, suite)
        expected += [e for e in suite_engines(root, suite) if e not in expected]
        if found is None:
            lines.append(not_measured(suite))
        else:
            records += found
            measured.append(f"`{suite}/`")
    if records:
        lines = [
            f"{', '.join(measured)}: each cell paired with `{options['reference']}`'s (same model, strategy, "
            "dataset, seed); mean difference ± 95 % t half-width; speeds: geometric mean of the pairs' ratios; "
            "first steps: tracing and compilation.",
            "",
            *framework_rows(records, options["reference"], expected),
            *([""] + lines if lines else []),
        ]
    if options.get("deploy"):
        lines += ["", render_deploy(options, root)]
    return "\n".join(lines).strip("\n") + "\n"


def render_deploy(options: dict[str, Any], root: Path) -> str:
    """The deployment table alone (``kind=deploy``, and the end of ``kind=framework`` given ``deploy=``).

    Args:
        options: ``deploy``: the suite folder whose cells ran the deployment runtimes (``--deploy``).
        root: the repository root the folder is relative to.
    """
    found = suite_records(root, options["deploy"])
    with_deploy = [r for r in found or [] if r.get("deploy")]
    if not with_deploy:
        return not_measured(options["deploy"]) + "\n"
    lines = [
        f"Deployment paths on `{options['deploy']}/` (the trained model exported, timed in the same rounds as its "
        "framework; its test-split metrics minus the framework's):",
        "",
        *deploy_rows(with_deploy),
    ]
    return "\n".join(lines) + "\n"
