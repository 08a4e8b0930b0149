"""Tables of the documentation generated from committed results, never typed: write them, or check them.

A Markdown page marks each generated block with an opening and a closing comment::

    <!-- findings: suites=results/strategies_breastmnist columns=accuracy,roc_auc,train_s -->
    | strategy | accuracy | ROC-AUC | training (s) |
    ...
    <!-- /findings -->

The opening comment holds ``key=value`` options, space-separated; ``kind=`` (default ``table``) says what the block
is, and each kind takes its own options (``KINDS``):

- ``table``: ``suites`` (comma-separated suite folders, relative to the repository root), ``columns`` (result
  columns, one table column each: ``accuracy``, ``roc_auc``, ``train_s``...), optional ``by`` (a matrix column such as
  ``backend`` or ``dataset`` whose values split every column in several) and ``rows`` (the matrix column naming a
  row, default ``strategy``). Each cell is the mean over the latest finished records of the row (one per seed) with
  the half-width of the 95 % Student-t interval when there are several; rows are sorted by the first column, best
  first, and the best value of each quality column is bold. Several suites are read as one set of records.
- ``label_efficiency``: ``suites`` of ``--train-sizes`` runs, ``columns`` (default ``accuracy``): one row per
  strategy, one column per train size and column, mean ± 95 % t half-width over draws × seeds
  (``reporting.label_efficiency``), then the crossover sentence of each dataset.
- ``incremental``: ``suites`` of ``--increments`` runs, ``metric`` (default ``accuracy``): one row per strategy and
  mode, the metric after each step, the cumulative training seconds after the last one, and the final gap to
  ``retrain`` paired by seed (``reporting.incremental``).
- ``race``: ``untuned`` and ``tuned`` suite folders, optional ``committed`` (the folder the committed conclusions
  came from): the fair race's sides and the verdict on each committed conclusion (``race.py``).
- ``race_verdicts``: ``datasets`` (names ``<d>`` of ``results/untuned_<d>`` and ``results/tuned_<d>``), optional
  ``committed`` (a prefix: ``results/<committed>_<d>``): the most accurate strategy and each conclusion's verdict,
  one column per dataset (``race.py``).
- ``labels_verdicts``: ``datasets`` (names ``<d>`` of ``results/label_efficiency_<d>`` and
  ``results/incremental_<d>``): the most accurate strategy with the fewest labels and on the whole split, where
  fine-tuning overtakes the probes (in accuracy and in ROC-AUC), and each warm start's final gap to retraining, one
  column per dataset (``findings_labels.py``).
- ``framework``: ``frameworks`` (suite folders), optional ``deploy`` (one suite folder) and ``reference`` (an engine,
  default ``torchvision``): the README's "Which framework" section (``which_framework.py``).
- ``deploy``: ``deploy`` (one suite folder run with ``--deploy``): its deployment table alone, each runtime's speed
  ratio to its framework, ROC-AUC and accuracy change and export seconds (``which_framework.py``).

Figures quoted in sentences are generated too, by inline ``<!-- value: ... -->FIGURE<!-- /value -->`` comments
(``findings_values.py``), and checked the same way; figures of the benchmark tools' tables (``results/bench_*.md``)
by ``<!-- bench: ... -->FIGURE<!-- /bench -->`` (``findings_bench.py``).

A suite folder that holds no results yet but whose suite file (``suites/<name>.toml``) exists reads "not measured
yet" with the command that makes it; one with neither is an error in the page.

``python -m tlbench.benchmarks.tools.findings docs/findings.md README.md --write`` rewrites the blocks;
``--check`` (the default) exits 1 and names each block that differs from its results (a test runs it).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..reporting import label_efficiency as le
from ..reporting.incremental import gap_text, paired_gaps, step_frame, warm_start_modes
from ..reporting.tables import header, results_frame
from .findings_bench import regenerate_bench
from .findings_cells import (
    LOWER_IS_BETTER,
    QUALITY_COLUMNS,
    FindingsError,
    format_cell,
    not_measured,
    split_label,
    suite_records,
)
from .findings_labels import labels_verdicts
from .findings_values import regenerate_values
from .race import race_page, race_verdicts
from .which_framework import render_deploy, render_which_framework

BLOCK = re.compile(r"(<!-- findings: (?P<options>[^>]*?) -->\n)(?P<body>.*?)(<!-- /findings -->)", re.S)
EXIT_DIFFERS = 1
EXIT_USAGE = 2
#: options holding comma-separated lists
LIST_OPTIONS = ("suites", "columns", "frameworks", "datasets")

__all__ = ["KINDS", "FindingsError", "main", "parse_options", "regenerate", "render"]


def _read(options: dict[str, Any], root: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The records of the block's ``suites`` and the "not measured yet" lines of those not run yet."""
    records: list[dict[str, Any]] = []
    missing: list[str] = []
    for suite in options["suites"]:
        found = suite_records(root, suite)
        if found is None:
            missing.append(not_measured(suite))
        else:
            records += found
    return records, missing


def render_table(options: dict[str, Any], root: Path) -> str:
    """A ``kind=table`` block: rows × result columns (split ``by`` a matrix column), mean ± t half-width."""
    records, missing = _read(options, root)
    if not records:
        return "\n".join(missing) + "\n"
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
    titles = [header(c) + (f" ({split_label(by, s)})" if s is not None else "") for c, s in columns]
    lines = [f"| {rows_key} | " + " | ".join(titles) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        row = []
        for key in columns:
            text = format_cell(key[0], cells[name].get(key, []))
            row.append(f"**{text}**" if best.get(key) is not None and mean(name, key) == best[key] else text)
        lines.append(f"| `{name}` | " + " | ".join(row) + " |")
    return "\n".join([*lines, *([""] + missing if missing else [])]) + "\n"


def render_label_efficiency(options: dict[str, Any], root: Path) -> str:
    """A ``kind=label_efficiency`` block: strategies × train sizes, then the crossover of each dataset."""
    records, missing = _read(options, root)
    points = le.curve_points(results_frame(records)) if records else None
    if points is None or points.empty:
        return "\n".join(missing or ["_No finished label-efficiency cell in these suites._"]) + "\n"
    lines = []
    for (dataset, backend, model), group in points.groupby(le.GROUP_KEYS, sort=False):
        sizes = list(dict.fromkeys(group.sort_values("images", kind="stable")["train_size"]))
        images = {size: group.loc[group["train_size"] == size, "images"].mean() for size in sizes}
        columns = [(column, size) for column in options["columns"] for size in sizes]
        titles = [f"{header(c)} @ {le.size_label(s)} ({images[s]:.0f} img)" for c, s in columns]
        lines += [f"{split_label('dataset', dataset)} ({backend}/{model}):", ""]
        lines += [f"| {options['rows']} | " + " | ".join(titles) + " |", "|---" * (len(columns) + 1) + "|"]
        for strategy, rows in group.groupby("strategy", sort=False):
            cells = [_point(rows[rows["train_size"] == size], column) for column, size in columns]
            lines.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
        lines.append("")
    for crossover in le.all_crossovers(results_frame(records)):
        lines.append(f"- {split_label('dataset', crossover.dataset)}: {crossover.sentence()}.")
    if missing:
        lines += ["", *missing]
    return "\n".join(lines).rstrip("\n") + "\n"


def _point(at: Any, column: str) -> str:
    """One label-efficiency cell: a curve point's mean ± half-width (``curve_points`` columns)."""
    if at.empty:
        return "–"
    row = at.iloc[0]
    if column in row.index and f"{column}_low" in row.index:
        mean, low, high = row[column], row[f"{column}_low"], row[f"{column}_high"]
        if math.isnan(mean):
            return "–"
        return f"{mean:.3f}" if math.isnan(low) else f"{mean:.3f} ± {(high - low) / 2:.3f}"
    value = row.get(column)
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def render_incremental(options: dict[str, Any], root: Path) -> str:
    """A ``kind=incremental`` block: per strategy and mode, ``metric`` after each step, the cumulative training
    seconds after the last one, and the final gap to ``retrain`` (mean [95 % t-interval] over seeds)."""
    metric = options["metric"]
    records, missing = _read(options, root)
    steps = step_frame(records)
    if steps.empty:
        return "\n".join(missing or ["_No finished --increments cell in these suites._"]) + "\n"
    several = steps["dataset"].nunique() > 1
    counts = steps.groupby("step")["train_images"].mean()
    titles = [f"{header(metric)} after {round(counts[k])} images" for k in counts.index]
    lines = ["| strategy | mode | " + " | ".join([*titles, "cumulative training (s)", "final gap to retrain"]) + " |"]
    lines.append("|---" * (len(titles) + 4) + "|")
    gaps = {mode: paired_gaps(steps, mode, metric) for mode in warm_start_modes(steps["mode"])}
    for (dataset, strategy), group in steps.groupby(["dataset", "strategy"], sort=False):
        name = f"`{strategy}`" + (f" ({split_label('dataset', dataset)})" if several else "")
        for mode in dict.fromkeys(group["mode"]):
            mine = group[group["mode"] == mode]
            cells = [format_cell(metric, [float(v) for v in mine[mine["step"] == k][metric]]) for k in counts.index]
            last = mine[mine["step"] == mine["step"].max()]
            cells.append(format_cell("cumulative_train_s", [float(v) for v in last["cumulative_train_s"]]))
            gap = gaps.get(mode)
            row = gap[(gap["dataset"] == dataset) & (gap["strategy"] == strategy)] if gap is not None else gap
            cells.append(gap_text(row.iloc[0], metric) if row is not None and not row.empty else "–")
            lines.append(f"| {name} | {mode} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, *([""] + missing if missing else [])]) + "\n"


@dataclass(frozen=True)
class Kind:
    """One kind of block: the options it requires, those it may take (with defaults), and how it renders.

    Attributes:
        required: options the opening comment must give.
        optional: other options it may give, with their defaults.
        render: ``(options, root) -> Markdown body``.
    """

    required: tuple[str, ...]
    optional: dict[str, Any] = field(default_factory=dict)
    render: Callable[[dict[str, Any], Path], str] = render_table


KINDS: dict[str, Kind] = {
    "table": Kind(("suites", "columns"), {"by": None, "rows": "strategy"}, render_table),
    "label_efficiency": Kind(("suites",), {"columns": ["accuracy"], "rows": "strategy"}, render_label_efficiency),
    "incremental": Kind(("suites",), {"metric": "accuracy"}, render_incremental),
    "race": Kind(
        ("untuned", "tuned"),
        {"committed": None},
        lambda o, root: race_page(o["untuned"], o["tuned"], root, o["committed"]),
    ),
    "race_verdicts": Kind(
        ("datasets",), {"committed": None}, lambda o, root: race_verdicts(o["datasets"], root, o["committed"])
    ),
    "labels_verdicts": Kind(("datasets",), {}, lambda o, root: labels_verdicts(o["datasets"], root)),
    "framework": Kind(("frameworks",), {"deploy": None, "reference": "torchvision"}, render_which_framework),
    "deploy": Kind(("deploy",), {}, render_deploy),
}


def parse_options(text: str) -> dict[str, Any]:
    """The options of one opening comment, checked against its kind.

    Raises:
        FindingsError: an unknown kind, an option without ``=``, one the kind does not take, or a missing one.
    """
    items = text.split()
    pairs = [item.partition("=") for item in items]
    kinds = [value for key, _, value in pairs if key == "kind"]
    name = kinds[-1] if kinds else "table"
    if name not in KINDS:
        raise FindingsError(f"findings option kind={name!r}: expected one of {', '.join(KINDS)}")
    kind = KINDS[name]
    allowed = ("kind", *kind.required, *kind.optional)
    options: dict[str, Any] = {"kind": name, **kind.optional}
    for item, (key, sep, value) in zip(items, pairs, strict=True):
        if not sep or key not in allowed:
            raise FindingsError(f"findings option {item!r}: kind={name} takes {'=, '.join(allowed)}=")
        options[key] = value.split(",") if key in LIST_OPTIONS else value
    for key in kind.required:
        if not options.get(key):
            raise FindingsError(f"findings block {text!r} has no {key}=")
    return options


def render(options: dict[str, Any], root: Path) -> str:
    """The Markdown body of one block (``parse_options``' result), by its kind."""
    return KINDS[options["kind"]].render(options, root)


def regenerate(text: str, root: Path) -> tuple[str, list[str]]:
    """The page with every block and quoted figure re-rendered, and the options of those that changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        body = render(parse_options(match.group("options")), root)
        if body != match.group("body"):
            changed.append(match.group("options"))
        return match.group(1) + body + match.group(4)

    text = BLOCK.sub(replace, text)
    text, figures = regenerate_values(text, root)
    text, quoted = regenerate_bench(text, root)
    return text, changed + figures + quoted


def main(argv: list[str] | None = None) -> int:
    """Check (default) or rewrite the generated blocks of Markdown pages."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.findings", description=__doc__.split("\n")[0]
    )
    parser.add_argument("pages", nargs="+", type=Path, help="Markdown pages with findings blocks")
    parser.add_argument("--write", action="store_true", help="rewrite the blocks from the results")
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
        except FindingsError as exc:
            print(f"findings: error: {page}: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.write:
            page.write_text(text)
            print(f"findings: {page}: {len(changed)} block(s) rewritten")
        elif changed:
            status = EXIT_DIFFERS
            for options in changed:
                print(f"findings: {page}: the block '{options}' differs from its results", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
