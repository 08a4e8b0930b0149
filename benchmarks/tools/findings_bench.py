"""Figures quoted from the benchmark tools' committed tables (``results/bench_*.md``): ``<!-- bench: ... -->``.

The benchmark tools of ``benchmarks/tools/`` print Markdown tables into ``results/bench_<name>.md`` (the command
that made each is written beside it). A sentence quoting one of their figures marks it with an inline pair of
comments, and the text between them is the cell of that table, as the tool printed it::

    1.55× eager inference (<!-- bench: file=results/bench_infer_compile.md variant=infer_compile
    column=infer_ratio -->1.55x<!-- /bench -->)

Options (``key=value``, space-separated; a header is named by its text in lower case, spaces as ``_``:
``infer img/s (median)`` is ``infer_img/s_(median)``):

- ``file`` (a Markdown file, relative to the repository root) and ``column`` (a header): required;
- ``stat``: ``cell`` (default: exactly one row may match), ``min`` or ``max`` (the matching cell of smallest or
  largest number, quoted as printed: the ends of a range);
- ``part``: ``text`` (default: the cell as printed) or ``number`` (its number only: ``0.97`` of ``0.97x``);
- any other key filters the rows: ``variant=infer_compile``, ``backend=timm,keras`` (any of the values).

Every table of the file is read (a tool printing one table per model writes several with the same headers).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .findings_cells import FindingsError, inline_options

BENCH = re.compile(r"<!-- bench: (?P<options>[^>]*?) -->(?P<body>[^<\n]*)<!-- /bench -->", re.S)
STATS = ("cell", "min", "max")
PARTS = ("text", "number")
RESERVED = ("file", "column", "stat", "part")
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


def header_key(text: str) -> str:
    """A table header as the options name it: ``infer ratio`` → ``infer_ratio``."""
    return "_".join(text.strip().lower().split())


def parse_bench_options(text: str) -> dict[str, Any]:
    """The options of one ``bench`` comment.

    Raises:
        FindingsError: an item without ``=``, a missing ``file``/``column``, an unknown ``stat`` or ``part``.
    """
    own, filters = inline_options(text, "bench", RESERVED)
    options: dict[str, Any] = {"stat": "cell", "part": "text", **own, "filters": filters}
    for key in ("file", "column"):
        if not options.get(key):
            raise FindingsError(f"bench {text!r} has no {key}=")
    if options["stat"] not in STATS:
        raise FindingsError(f"bench option stat={options['stat']!r}: expected one of {', '.join(STATS)}")
    if options["part"] not in PARTS:
        raise FindingsError(f"bench option part={options['part']!r}: expected one of {', '.join(PARTS)}")
    return options


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def markdown_rows(text: str) -> list[dict[str, str]]:
    """Every row of every pipe table in ``text``, as ``{header_key: cell}``."""
    rows: list[dict[str, str]] = []
    lines = text.splitlines()
    for i in range(len(lines) - 1):
        is_header = lines[i].lstrip().startswith("|") and re.fullmatch(r"\s*\|[\s|:-]+\|\s*", lines[i + 1])
        if not is_header or (i > 0 and lines[i - 1].lstrip().startswith("|")):
            continue
        headers = [header_key(h) for h in _cells(lines[i])]
        for line in lines[i + 2 :]:
            if not line.lstrip().startswith("|"):
                break
            cells = _cells(line)
            if len(cells) == len(headers):
                rows.append(dict(zip(headers, cells, strict=True)))
    return rows


def _number(cell: str) -> float | None:
    match = NUMBER.search(cell)
    return float(match.group()) if match else None


def render_bench(options: dict[str, Any], root: Path) -> str:
    """The figure one ``bench`` comment quotes.

    Raises:
        FindingsError: the file missing, no row matching (or, for ``stat=cell``, several), a cell without a number
            where one is needed.
    """
    path = root / options["file"]
    if not path.is_file():
        raise FindingsError(f"bench: {options['file']} is not committed; a quoted figure needs its benchmark table")
    column = options["column"]
    rows = markdown_rows(path.read_text())
    matching = [
        row
        for row in rows
        if column in row and all(row.get(key) in allowed for key, allowed in options["filters"].items())
    ]
    where = f"{options['file']} with {column}" + (f" and {options['filters']}" if options["filters"] else "")
    if not matching:
        headers = sorted({key for row in rows for key in row})
        raise FindingsError(f"bench: no row of {where}; its headers: {', '.join(headers) or 'none'}")
    if options["stat"] == "cell":
        if len(matching) > 1:
            raise FindingsError(f"bench: {len(matching)} rows of {where}; filter to one or use stat=min|max")
        cell = matching[0][column]
    else:
        numbered = [(value, row[column]) for row in matching if (value := _number(row[column])) is not None]
        if not numbered:
            raise FindingsError(f"bench: no number in the {column} cells of {where}")
        pick = min if options["stat"] == "min" else max
        cell = pick(numbered, key=lambda pair: pair[0])[1]
    if options["part"] == "number":
        match = NUMBER.search(cell)
        if match is None:
            raise FindingsError(f"bench: the cell {cell!r} of {where} holds no number")
        return match.group()
    return cell


def regenerate_bench(text: str, root: Path) -> tuple[str, list[str]]:
    """The page with every figure quoted from a benchmark table re-read, and the options of those that changed."""
    changed: list[str] = []

    def replace(match: re.Match[str]) -> str:
        options = " ".join(match.group("options").split())
        figure = render_bench(parse_bench_options(options), root)
        if figure != match.group("body"):
            changed.append(f"bench: {options} (page says {match.group('body')!r}, table {figure!r})")
        return f"<!-- bench: {match.group('options')} -->{figure}<!-- /bench -->"

    return BENCH.sub(replace, text), changed
