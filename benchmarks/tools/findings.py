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
- ``rows``: the matrix column naming a row (default ``strategy``);
- ``kind=incremental``: instead of ``columns``, the ``--increments`` suites' table (``metric=`` names the test metric,
  default ``accuracy``): one row per strategy and mode, the metric after each step (labelled images in the title),
  the cumulative training seconds after the last step, and the final gap to ``retrain`` paired by seed
  (``reporting.incremental``).

Each cell is the mean over the latest finished records of the row (one per seed) with the half-width of the 95 %
Student-t interval (``reporting.stats.t_interval``) when there are several; rows are sorted by the first column,
best first, and the best value of each quality column is bold. Several suites are read as one set of records.

``python -m tlbench.benchmarks.tools.findings docs/findings.md --write`` rewrites the tables;
``--check`` (the default) exits 1 and names each table that differs from its results (a test runs it).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

from ..reporting.incremental import gap_text, paired_gaps, step_frame
from ..reporting.stats import t_interval
from ..reporting.tables import header
from ..running.results import latest_by_cell, load_results

#: columns where lower is better (never bold for "best"; sorted ascending when first)
LOWER_IS_BETTER = ("train_s", "time_to_best_s", "wall_s", "infer_latency_ms_p50", "infer_latency_ms_p90", "peak_rss_mb")
#: columns shown as counts, without an interval
COUNT_COLUMNS = ("trainable_params", "total_params", "feature_dim")
#: columns whose values are figures of merit (bold best)
QUALITY_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")
BLOCK = re.compile(r"(<!-- findings: (?P<options>[^>]*?) -->\n)(?P<body>.*?)(<!-- /findings -->)", re.S)
EXIT_DIFFERS = 1
EXIT_USAGE = 2


class FindingsError(ValueError):
    """A bad block (unknown option, missing suite): one line naming it."""


def parse_options(text: str) -> dict[str, Any]:
    """The options of one opening comment.

    Raises:
        FindingsError: an option without ``=``, an unknown one, or no ``suites``/``columns``.
    """
    options: dict[str, Any] = {"rows": "strategy", "by": None, "kind": "table", "metric": "accuracy"}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or key not in ("suites", "columns", "by", "rows", "kind", "metric"):
            raise FindingsError(f"findings option {item!r}: expected suites=, columns=, by=, rows=, kind= or metric=")
        options[key] = value.split(",") if key in ("suites", "columns") else value
    if options["kind"] not in ("table", "incremental"):
        raise FindingsError(f"findings option kind={options['kind']!r}: expected table or incremental")
    for key in ("suites",) if options["kind"] == "incremental" else ("suites", "columns"):
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


def _records(options: dict[str, Any], root: Path) -> list[dict[str, Any]]:
    records = []
    for suite in options["suites"]:
        path = root / suite / "results.jsonl"
        if not path.is_file():
            raise FindingsError(f"findings: {suite}/results.jsonl not found (a committed suite directory expected)")
        records += [r for r in latest_by_cell(load_results(path)) if r.get("status") == "ok"]
    return records


def render_incremental(options: dict[str, Any], root: Path) -> str:
    """The ``kind=incremental`` table: per strategy and mode, ``metric`` after each step, the cumulative training
    seconds after the last one, and the final gap to ``retrain`` (mean [95 % t-interval] over seeds)."""
    metric = options["metric"]
    steps = step_frame(_records(options, root))
    if steps.empty:
        raise FindingsError(f"findings: {','.join(options['suites'])} holds no --increments record")
    several = steps["dataset"].nunique() > 1
    counts = steps.groupby("step")["train_images"].mean()
    titles = [f"{header(metric)} after {round(counts[k])} images" for k in counts.index]
    lines = ["| strategy | mode | " + " | ".join([*titles, "cumulative training (s)", "final gap to retrain"]) + " |"]
    lines.append("|---" * (len(titles) + 4) + "|")
    gaps = {mode: paired_gaps(steps, mode, metric) for mode in ("continue", "shrink_perturb")}
    for (dataset, strategy), group in steps.groupby(["dataset", "strategy"], sort=False):
        name = f"`{strategy}`" + (f" ({_label('dataset', dataset)})" if several else "")
        for mode in dict.fromkeys(group["mode"]):
            mine = group[group["mode"] == mode]
            cells = [_format(metric, [float(v) for v in mine[mine["step"] == k][metric]]) for k in counts.index]
            last = mine[mine["step"] == mine["step"].max()]
            cells.append(_format("cumulative_train_s", [float(v) for v in last["cumulative_train_s"]]))
            gap = gaps.get(mode)
            row = gap[(gap["dataset"] == dataset) & (gap["strategy"] == strategy)] if gap is not None else gap
            cells.append(gap_text(row.iloc[0], metric) if row is not None and not row.empty else "–")
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(options: dict[str, Any], root: Path) -> str:
    """The Markdown table of one block.

    Raises:
        FindingsError: a suite directory without ``results.jsonl``.
    """
    if options["kind"] == "incremental":
        return render_incremental(options, root)
    records = _records(options, root)
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


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite the generated tables of Markdown pages."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.findings", description=__doc__.split("\n")[0]
    )
    parser.add_argument("pages", nargs="+", type=Path, help="Markdown pages with findings blocks")
    parser.add_argument("--write", action="store_true", help="rewrite the tables from the results")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: the page's folder's parent)")
    args = parser.parse_args(argv)
    status = 0
    for page in args.pages:
        if not page.is_file():
            print(f"findings: error: {str(page)!r} is not a file; expected a Markdown page", file=sys.stderr)
            return EXIT_USAGE
        root = args.root or page.resolve().parent.parent
        try:
            text, changed = regenerate(page.read_text(), root)
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
