"""Figures quoted in prose, generated from committed results like the tables: ``<!-- value: ... -->``.

A sentence of a page quotes a figure through an inline pair of comments; the text between them is the figure::

    the fused probe reaches <!-- value: suites=results/fusion_breastmnist column=accuracy -->0.826<!-- /value -->

Options (``key=value``, space-separated):

- ``suites`` (comma-separated suite folders) and ``column`` (a result column): required;
- ``stat``: ``mean`` (default), ``min``, ``max``, ``sd`` (sample standard deviation), ``halfwidth`` (of the 95 %
  t-interval) or ``n``, over the matching records (the latest finished record of each cell);
- ``over`` and ``of``: first the mean per value of the ``over`` column (``strategy``, ``dataset``...), then ``of``
  (``min`` or ``max``) over those means: the ends of a range quoted across strategies;
- ``digits`` (default 3; 1 for ``_s`` columns) and ``scale`` (a factor, ``100`` for points or per cent);
- any other key filters the records: ``strategy=fusion``, ``strategy=l2sp,full_finetune`` (any of the values),
  ``seed=0``.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any

from ..reporting.stats import t_interval
from .findings_cells import FindingsError, inline_options, suite_records

VALUE = re.compile(r"<!-- value: (?P<options>[^>]*?) -->(?P<body>[^<\n]*)<!-- /value -->")
STATS = ("mean", "min", "max", "sd", "halfwidth", "n")
#: options that are not record filters
RESERVED = ("suites", "column", "stat", "over", "of", "digits", "scale")


def parse_value_options(text: str) -> dict[str, Any]:
    """The options of one ``value`` comment.

    Raises:
        FindingsError: an item without ``=``, a missing ``suites``/``column``, an unknown ``stat`` or ``of``.
    """
    own, filters = inline_options(text, "value", RESERVED, lists=("suites",))
    options: dict[str, Any] = {"stat": "mean", "over": None, "of": None, "digits": None, "scale": "1"}
    options.update(own, filters=filters)
    for key in ("suites", "column"):
        if not options.get(key):
            raise FindingsError(f"value {text!r} has no {key}=")
    if options["stat"] not in STATS:
        raise FindingsError(f"value option stat={options['stat']!r}: expected one of {', '.join(STATS)}")
    if (options["over"] is None) != (options["of"] is None) or options["of"] not in (None, "min", "max"):
        raise FindingsError(f"value {text!r}: over= and of=min|max go together")
    return options


def _statistic(values: list[float], stat: str) -> float:
    if stat == "n":
        return float(len(values))
    if stat == "min":
        return min(values)
    if stat == "max":
        return max(values)
    if stat == "sd":
        return statistics.stdev(values) if len(values) > 1 else math.nan
    if stat == "halfwidth":
        interval = t_interval(values)
        return (interval.high - interval.low) / 2 if interval.n > 1 else math.nan
    return sum(values) / len(values)


def render_value(options: dict[str, Any], root: Path) -> str:
    """The figure one ``value`` comment quotes, formatted.

    Raises:
        FindingsError: a suite not committed, or no record matching the filters with a finite ``column``.
    """
    records: list[dict[str, Any]] = []
    for suite in options["suites"]:
        found = suite_records(root, suite)
        if found is None:
            raise FindingsError(f"value: {suite} is not committed yet; a quoted figure needs its results")
        records += found
    column = options["column"]
    matching = [
        r
        for r in records
        if all(str(r.get(key)) in allowed for key, allowed in options["filters"].items())
        and isinstance(r.get(column), (int, float))
        and math.isfinite(r[column])
    ]
    if not matching:
        raise FindingsError(
            f"value: no record of {','.join(options['suites'])} matches {options['filters']} with {column}"
        )
    if options["over"]:
        groups: dict[Any, list[float]] = {}
        for record in matching:
            groups.setdefault(record.get(options["over"]), []).append(float(record[column]))
        means = [sum(v) / len(v) for v in groups.values()]
        figure = _statistic(means, options["of"])
    else:
        figure = _statistic([float(r[column]) for r in matching], options["stat"])
    figure *= float(options["scale"])
    if options["stat"] == "n":
        return str(round(figure))
    default = 1 if column.endswith("_s") or column.endswith("_mb") else 3
    digits = int(options["digits"]) if options["digits"] is not None else default
    return f"{figure:.{digits}f}"


def regenerate_values(text: str, root: Path) -> tuple[str, list[str]]:
    """The page with every quoted figure re-computed, and the options of those that changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        figure = render_value(parse_value_options(match.group("options")), root)
        if figure != match.group("body"):
            changed.append(f"value: {match.group('options')} (page says {match.group('body')!r}, results {figure!r})")
        return f"<!-- value: {match.group('options')} -->{figure}<!-- /value -->"

    return VALUE.sub(replace, text), changed
