"""Tables of the documentation generated from committed results, never typed: write them, or check them.

A Markdown page marks each generated table with an opening and a closing comment::

    <!-- findings: suites=results/strategies_breastmnist columns=accuracy,roc_auc,train_s -->
    | strategy | accuracy | ROC-AUC | training (s) |
    ...
    <!-- /findings -->

Options of the opening comment (``key=value``, space-separated):

- ``suites``: comma-separated suite directories, relative to the repository root (the page's folder's parent);
- ``columns``: result columns, one table column each (``accuracy``, ``roc_auc``, ``train_s``, ``trainable_params``...);
- ``by``: optional, a matrix column (``backend``, ``dataset``) whose values split every metric column in several;
- ``rows``: the matrix column naming a row (default ``strategy``).

Each cell is the mean over the latest finished records of the row (one per seed) with the half-width of the 95 %
Student-t interval (``reporting.stats.t_interval``) when there are several; rows are sorted by the first column,
best first, and the best value of each quality column is bold. Several suites are read as one set of records.

A second kind of block, ``<!-- which-framework: frameworks=results/a,results/b deploy=results/c -->`` ...
``<!-- /which-framework -->`` (``render_which_framework``), is the README's "Which framework" section: each engine
of the framework suites paired with the reference engine (``reference=``, default ``torchvision``) cell by cell
(same model, strategy, dataset, seed): the accuracy and ROC-AUC differences, the training and inference speed
ratios, the first steps' seconds (tracing, compilation) and peak memory; then each deployment runtime of the deploy
suite against its framework on the same cells (speed ratio, ROC-AUC and accuracy change). A suite folder that is
missing, or an engine its suite file names without a record, reads "not measured yet".

``python -m tlbench.benchmarks.tools.findings docs/findings.md README.md --write`` rewrites the tables;
``--check`` (the default) exits 1 and names each table that differs from its results (a test runs it).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from ..reporting.stats import t_interval
from ..reporting.tables import header
from ..running.results import latest_by_cell, load_results
from ..suite_files import SuiteFileError, read_suite_file

#: columns where lower is better (never bold for "best"; sorted ascending when first)
LOWER_IS_BETTER = ("train_s", "time_to_best_s", "wall_s", "infer_latency_ms_p50", "infer_latency_ms_p90", "peak_rss_mb")
#: columns shown as counts, without an interval
COUNT_COLUMNS = ("trainable_params", "total_params", "feature_dim")
#: columns whose values are figures of merit (bold best)
QUALITY_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")
BLOCK = re.compile(r"(<!-- findings: (?P<options>[^>]*?) -->\n)(?P<body>.*?)(<!-- /findings -->)", re.S)
WHICH_BLOCK = re.compile(
    r"(<!-- which-framework: (?P<options>[^>]*?) -->\n)(?P<body>.*?)(<!-- /which-framework -->)", re.S
)
#: the pairing of two engines' cells in the "Which framework" section
PAIR_KEY = ("model", "strategy", "dataset", "seed")
EXIT_DIFFERS = 1
EXIT_USAGE = 2


class FindingsError(ValueError):
    """A bad block (unknown option, missing suite): one line naming it."""


def parse_options(text: str) -> dict[str, Any]:
    """The options of one opening comment.

    Raises:
        FindingsError: an option without ``=``, an unknown one, or no ``suites``/``columns``.
    """
    options: dict[str, Any] = {"rows": "strategy", "by": None}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or key not in ("suites", "columns", "by", "rows"):
            raise FindingsError(f"findings option {item!r}: expected suites=, columns=, by= or rows=")
        options[key] = value.split(",") if key in ("suites", "columns") else value
    for key in ("suites", "columns"):
        if not options.get(key):
            raise FindingsError(f"findings block {text!r} has no {key}=")
    return options


def _format(column: str, values: list[float]) -> str:
    if not values:
        return "–"
    if column in COUNT_COLUMNS:
        return f"{round(sum(values) / len(values)):,}"
    interval = t_interval(values)
    digits = 1 if column.endswith("_s") or column.endswith("_per_s") or column.endswith("_mb") else 3
    mean = f"{interval.estimate:.{digits}f}"
    if interval.n < 2:
        return mean
    half = (interval.high - interval.low) / 2
    return f"{mean} ± {half:.{digits}f}"


def _label(by: str, value: Any) -> str:
    """A split's name in a column title: a dataset spec's last path part (``folder:../x/chest`` → ``chest``)."""
    text = str(value)
    if by == "dataset":
        return text.partition(":")[2].rstrip("/").rsplit("/", 1)[-1] or text
    return text


def render(options: dict[str, Any], root: Path) -> str:
    """The Markdown table of one block.

    Raises:
        FindingsError: a suite directory without ``results.jsonl``.
    """
    records = []
    for suite in options["suites"]:
        path = root / suite / "results.jsonl"
        if not path.is_file():
            raise FindingsError(f"findings: {suite}/results.jsonl not found (a committed suite directory expected)")
        records += [r for r in latest_by_cell(load_results(path)) if r.get("status") == "ok"]
    rows_key, by = options["rows"], options["by"]
    splits = list(dict.fromkeys(r.get(by) for r in records)) if by else [None]
    columns = [(c, s) for c in options["columns"] for s in splits]
    names = list(dict.fromkeys(r.get(rows_key) for r in records))
    cells: dict[str, dict[tuple[str, Any], list[float]]] = {name: {} for name in names}
    for record in records:
        for column, split in columns:
            value = record.get(column)
            if (split is None or record.get(by) == split) and isinstance(value, (int, float)) and math.isfinite(value):
                cells[record.get(rows_key)].setdefault((column, split), []).append(float(value))

    def mean(name: str, key: tuple[str, Any]) -> float:
        values = cells[name].get(key, [])
        return sum(values) / len(values) if values else math.nan

    first = columns[0]
    sign = 1 if first[0] in LOWER_IS_BETTER else -1
    names.sort(
        key=lambda n: (math.isnan(mean(n, first)), sign * mean(n, first) if not math.isnan(mean(n, first)) else 0)
    )
    best = {}
    for key in columns:
        if key[0] in QUALITY_COLUMNS:
            finite = [mean(n, key) for n in names if not math.isnan(mean(n, key))]
            best[key] = max(finite) if finite else None
    titles = [header(c) + (f" ({_label(by, s)})" if s is not None else "") for c, s in columns]
    lines = [f"| {rows_key} | " + " | ".join(titles) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        row = []
        for key in columns:
            text = _format(key[0], cells[name].get(key, []))
            row.append(f"**{text}**" if best.get(key) is not None and mean(name, key) == best[key] else text)
        lines.append(f"| `{name}` | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def regenerate(text: str, root: Path) -> tuple[str, list[str]]:
    """The page with every block re-rendered, and the opening comments of the blocks that changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        table = render(parse_options(match.group("options")), root)
        if table != match.group("body"):
            changed.append(match.group("options"))
        return match.group(1) + table + match.group(4)

    return BLOCK.sub(replace, text), changed


# ---- the README's "Which framework" section ------------------------------------------------------------------


def parse_which_options(text: str) -> dict[str, Any]:
    """The options of a ``which-framework`` block: ``frameworks=`` (suite folders), ``deploy=`` (one suite
    folder, optional), ``reference=`` (an engine, default ``torchvision``).

    Raises:
        FindingsError: an option without ``=``, an unknown one, or no ``frameworks=``.
    """
    options: dict[str, Any] = {"frameworks": [], "deploy": None, "reference": "torchvision"}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or key not in options:
            raise FindingsError(f"which-framework option {item!r}: expected frameworks=, deploy= or reference=")
        options[key] = value.split(",") if key == "frameworks" else value
    if not options["frameworks"]:
        raise FindingsError(f"which-framework block {text!r} has no frameworks=")
    return options


def _suite_records(root: Path, suite: str) -> list[dict[str, Any]] | None:
    """The latest finished records of a committed suite folder, ``None`` when it has no ``results.jsonl``."""
    path = root / suite / "results.jsonl"
    if not path.is_file():
        return None
    return [r for r in latest_by_cell(load_results(path)) if r.get("status") == "ok"]


def _not_measured(suite: str) -> str:
    name = suite.rstrip("/").rsplit("/", 1)[-1]
    return f"`{suite}/`: not measured yet (`tlbench run suites/{name}.toml`)."


def _suite_engines(root: Path, suite: str) -> list[str]:
    """The backends the suite file of ``suite`` names (``suites/<name>.toml``), ``[]`` without one."""
    name = suite.rstrip("/").rsplit("/", 1)[-1]
    try:
        return list(read_suite_file(root / "suites" / f"{name}.toml").get("backends", []))
    except SuiteFileError:
        return []


def _paired(values: list[float], digits: int = 3) -> str:
    """Mean of paired differences ± the 95 % t half-width (``n`` pairs)."""
    if not values:
        return "–"
    interval = t_interval(values)
    if interval.n < 2:
        return f"{interval.estimate:+.{digits}f} (n=1)"
    return f"{interval.estimate:+.{digits}f} ± {(interval.high - interval.low) / 2:.{digits}f} (n={interval.n})"


def _ratio(values: list[float]) -> str:
    """Geometric mean of per-pair ratios, ``1.23x``."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return f"{math.exp(sum(map(math.log, finite)) / len(finite)):.2f}x" if finite else "–"


def _number(record: dict[str, Any], key: str) -> float | None:
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


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
                a, b = _number(record, metric), _number(other, metric)
                if a is not None and b is not None:
                    deltas[metric].append(a - b)
            a, b = _number(record, "train_s"), _number(other, "train_s")
            if a and b:
                deltas["train"].append(b / a)  # speed: the reference's seconds over this engine's
            a, b = _number(record, "infer_images_per_s"), _number(other, "infer_images_per_s")
            if a and b:
                deltas["infer"].append(a / b)
        first = [v for v in (_number(r, "train_first_steps_s") for r in cells.values()) if v is not None]
        memory = [v for v in (_number(r, "peak_rss_mb") for r in cells.values()) if v is not None]
        same = engine == reference
        lines.append(
            f"| `{engine}` | {'(reference)' if same else _paired(deltas['accuracy'])} "
            f"| {'' if same else _paired(deltas['roc_auc'])} | {_ratio(deltas['train'])} | {_ratio(deltas['infer'])} "
            f"| {_format('train_first_steps_s', first)} | {_format('peak_rss_mb', memory)} |"
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
            f"| `{engine}` | {len(ok)} | {_ratio([f.get('speedup') or 0.0 for f in ok])} | {_paired(roc, 2)} "
            f"| {_paired(acc, 2)} | {_format('export_s', export)} |"
        )
    return lines


def render_which_framework(options: dict[str, Any], root: Path) -> str:
    """The "Which framework" section's body: the engines table over the framework suites, the deployment table."""
    lines: list[str] = []
    records: list[dict[str, Any]] = []
    expected: list[str] = []
    measured = []
    for suite in options["frameworks"]:
        found = _suite_records(root, suite)
        expected += [e for e in _suite_engines(root, suite) if e not in expected]
        if found is None:
            lines.append(_not_measured(suite))
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
    if options["deploy"]:
        found = _suite_records(root, options["deploy"])
        with_deploy = [r for r in found or [] if r.get("deploy")]
        lines.append("")
        if not with_deploy:
            lines.append(_not_measured(options["deploy"]))
        else:
            lines += [
                f"Deployment paths on `{options['deploy']}/` (the trained model exported, timed in the same rounds "
                "as its framework; its test-split metrics minus the framework's):",
                "",
                *deploy_rows(with_deploy),
            ]
    return "\n".join(lines).strip("\n") + "\n"


def regenerate_which_framework(text: str, root: Path) -> tuple[str, list[str]]:
    """The page with every ``which-framework`` block re-rendered, and the opening comments of those that changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        body = render_which_framework(parse_which_options(match.group("options")), root)
        if body != match.group("body"):
            changed.append(match.group("options"))
        return match.group(1) + body + match.group(4)

    return WHICH_BLOCK.sub(replace, text), changed


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite the generated tables of Markdown pages."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.findings", description=__doc__.split("\n")[0]
    )
    parser.add_argument("pages", nargs="+", type=Path, help="Markdown pages with findings blocks")
    parser.add_argument("--write", action="store_true", help="rewrite the tables from the results")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="repository root (default: the page's folder, or its parent for a page in docs/)",
    )
    args = parser.parse_args(argv)
    status = 0
    for page in args.pages:
        if not page.is_file():
            print(f"findings: error: {str(page)!r} is not a file; expected a Markdown page", file=sys.stderr)
            return EXIT_USAGE
        folder = page.resolve().parent  # the README sits at the root, the docs one folder below it
        root = args.root or (folder if (folder / "pyproject.toml").is_file() else folder.parent)
        try:
            text, changed = regenerate(page.read_text(), root)
            text, more = regenerate_which_framework(text, root)
            changed += more
        except FindingsError as exc:
            print(f"findings: error: {page}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.write:
            page.write_text(text)
            print(f"findings: {page}: {len(changed)} table(s) rewritten")
        elif changed:
            status = EXIT_DIFFERS
            for options in changed:
                print(f"findings: {page}: the table '{options}' differs from its results", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
