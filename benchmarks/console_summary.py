"""What ``tlbench run`` and ``tlbench report`` print at the end: the answer, one compact table, where the reports are.

The full tables (every pivot, every cell, data checks, warnings) are in ``summary.md`` and ``report.html``; the
console gets only what fits a terminal of ``width`` columns (100 by default): the report's answer section when it
has one (else the most accurate configuration per dataset and the cheapest one within its interval), one table
of the configurations (columns dropped, then identities shortened, until every line fits), the number of
warnings, and the paths of the written reports.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from .reporting.label_efficiency import all_crossovers, whole_train_frame
from .reporting.tables import (
    ROW_KEYS,
    Summarizer,
    data_warnings,
    format_value,
    header,
    results_frame,
    speed_warnings,
    timing_warnings,
)
from .running.results import load_results

#: console width the end-of-run text fits
WIDTH = 100
#: the compact table's value columns, most important first (the last ones are dropped when too wide)
COMPACT_COLUMNS = ["accuracy", "train_s", "infer_images_per_s", "roc_auc"]
#: the identity columns, shown only when they vary within the suite
IDENTITY_COLUMNS = ["dataset", "model", "backend"]
#: a section of ``summary.md`` whose heading starts with one of these is the report's answer
ANSWER_HEADINGS = ("answer", "the answer")


def markdown_section(text: str, starts: tuple[str, ...]) -> str:
    """The first ``## `` section of ``text`` whose heading starts with one of ``starts`` (case-insensitive),
    heading included, up to the next ``## `` heading; empty when there is none."""
    headings = list(re.finditer(r"^## +(.*)$", text, flags=re.M))
    for position, match in enumerate(headings):
        if match.group(1).strip().lower().startswith(starts):
            end = headings[position + 1].start() if position + 1 < len(headings) else len(text)
            return text[match.start() : end].strip()
    return ""


#: a paragraph of the answer section that explains the method: kept in the files, not on the console
METHOD_PARAGRAPH = "How this is decided"
#: the answer table's columns dropped first when it is too wide for the terminal (value and verdict stay)
ANSWER_DROP_ORDER = ("inference (images/s)", "p (Holm)", "training (s)", "Δ vs best [95% CI]", "metric")
#: columns shown only when they vary (a single value is said in the sentences)
ANSWER_CONSTANT_COLUMNS = ("metric", "dataset")


def terminal_answer(section: str, width: int = WIDTH) -> str:
    """The report's answer section for a terminal of ``width`` columns: sentences wrapped, the method paragraph
    left to the files, and its table re-drawn with columns dropped (constant ones first) until it fits."""
    out: list[str] = []
    table: list[list[str]] = []
    for line in section.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # the separator row
                table.append(cells)
            continue
        if table:
            out += [_fit_table(table, width), ""]
            table = []
        if line.startswith(METHOD_PARAGRAPH):
            continue
        line = line.replace("**", "")  # Markdown emphasis means nothing on a terminal
        if line.startswith("## "):
            out.append(line[3:].strip().upper())
        elif line.startswith("- "):
            out.append(textwrap.fill(line[2:], width, initial_indent="  - ", subsequent_indent="    "))
        elif line.strip():
            out.append(textwrap.fill(line, width))
        elif out and out[-1] != "":
            out.append("")
    return "\n".join(out).strip()


def _fit_table(rows: list[list[str]], width: int) -> str:
    """A Markdown table's rows as a plain table that fits ``width``: constant identity columns dropped, then the
    least important columns, then long names shortened, then (last) the dataset column."""
    frame = pd.DataFrame(rows[1:], columns=rows[0])
    for column in ANSWER_CONSTANT_COLUMNS:
        if column in frame.columns and frame[column].nunique() <= 1:
            frame = frame.drop(columns=column)

    def render(table: pd.DataFrame) -> str:
        return tabulate(table, headers="keys", tablefmt="simple", showindex=False)

    def fits(text: str) -> bool:
        return max(len(line) for line in text.splitlines()) <= width

    text = render(frame)
    for column in ANSWER_DROP_ORDER:
        if fits(text):
            return text
        if column in frame.columns:
            frame = frame.drop(columns=column)
            text = render(frame)
    for limit in (40, 32, 24):
        if fits(text):
            return text
        frame = frame.map(lambda value, n=limit: value if len(value) <= n else value[: n - 1] + "…")
        text = render(frame)
    if not fits(text) and "dataset" in frame.columns:
        text = render(frame.drop(columns="dataset"))
    return text


def _label(row: dict[str, Any], varying: list[str]) -> str:
    parts = [str(row[c]) for c in ("backend", "model") if c in varying]
    return f"{row['strategy']} ({'/'.join(parts)})" if parts else str(row["strategy"])


def configurations(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per (dataset, model, strategy, backend) with ok seeds: mean accuracy and training seconds."""
    ok = frame[frame["status"] == "ok"]
    rows = []
    for key, group in ok.groupby([*ROW_KEYS, "backend"], sort=False):
        accuracy = pd.to_numeric(group["accuracy"], errors="coerce").dropna()
        if accuracy.empty:
            continue
        train_s = pd.to_numeric(group["train_s"], errors="coerce").dropna()
        rows.append(
            {
                **dict(zip([*ROW_KEYS, "backend"], key, strict=True)),
                "accuracy": float(accuracy.mean()),
                "train_s": float(train_s.mean()) if not train_s.empty else math.nan,
                "group": group,
            }
        )
    return rows


def fallback_answer(frame: pd.DataFrame, summarizer: Summarizer) -> list[str]:
    """Per dataset: the most accurate configuration (with its interval) and the one that trains fastest among
    those whose mean accuracy lies within that interval."""
    varying = [c for c in IDENTITY_COLUMNS if frame[c].nunique() > 1]
    lines = []
    rows = configurations(frame)
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        members = [r for r in rows if r["dataset"] == dataset]
        best = max(members, key=lambda r: r["accuracy"])
        text = summarizer.cell_text(best["group"], "accuracy")
        prefix = f"{dataset}: " if "dataset" in varying else ""
        lines.append(f"{prefix}most accurate: {_label(best, varying)}, accuracy {text}")
        low = _interval_low(text, best["accuracy"])
        tied = [r for r in members if r["accuracy"] >= low and math.isfinite(r["train_s"])]
        cheapest = min(tied, key=lambda r: r["train_s"], default=None)
        share = 100 * cheapest["train_s"] / best["train_s"] if cheapest and best["train_s"] > 0 else math.nan
        if share <= 90:  # a real saving (nan, no training seconds, is never one)
            lines.append(
                f"{prefix}within its interval and cheapest to train: {_label(cheapest, varying)}, accuracy "
                f"{format_value('accuracy', cheapest['accuracy'])} in {format_value('train_s', cheapest['train_s'])} s "
                f"of training ({share:.0f} % of {format_value('train_s', best['train_s'])} s)"
            )
    return lines


def _interval_low(text: str, estimate: float) -> float:
    """The lower bound in ``0.9 [0.85, 0.95]`` or ``0.9 ± 0.05 (n=3)``; the estimate itself without one."""
    bracket = re.search(r"\[([-\d.]+),", text)
    if bracket:
        return float(bracket.group(1))
    plus_minus = re.search(r"± ([\d.]+)", text)
    return estimate - float(plus_minus.group(1)) if plus_minus else estimate


#: how the compact table is made narrower until it fits: (longest identity text, value columns kept)
NARROWING = [
    (32, COMPACT_COLUMNS),
    (32, COMPACT_COLUMNS[:3]),
    (24, COMPACT_COLUMNS[:3]),
    (24, COMPACT_COLUMNS[:2]),
    (18, COMPACT_COLUMNS[:2]),
    (14, COMPACT_COLUMNS[:2]),
    (12, COMPACT_COLUMNS[:2]),
    (10, COMPACT_COLUMNS[:1]),
]


def compact_table(frame: pd.DataFrame, summarizer: Summarizer, width: int = WIDTH) -> str:
    """One row per configuration (``simple`` table): the identity columns that vary and the value columns, made
    narrower (long names shortened, the least important columns left out, see ``NARROWING``) until every line
    fits ``width`` columns."""
    varying = [c for c in IDENTITY_COLUMNS if frame[c].nunique() > 1]
    keys = [*ROW_KEYS, "backend"]
    groups = list(frame.groupby(keys, sort=False))
    identity = {c: [str(dict(zip(keys, k, strict=True))[c]) for k, _ in groups] for c in [*varying, "strategy"]}
    values = {c: [summarizer.cell_text(g, c) for _, g in groups] for c in COMPACT_COLUMNS}
    text = ""
    for limit, columns in NARROWING:
        table = {  # strategy names (at most 18 characters) are never shortened
            c: [_cut(v, max(limit, 18) if c == "strategy" else limit, keep_end=c == "dataset") for v in identity[c]]
            for c in identity
        }
        table.update({header(c): values[c] for c in columns})
        align = ["left"] * len(identity) + ["right"] * len(columns)
        rows = pd.DataFrame(table).values.tolist()
        text = tabulate(rows, headers=list(table), tablefmt="simple", disable_numparse=True, colalign=align)
        if max(len(line) for line in text.splitlines()) <= width:
            return text
    return "\n".join(line[:width] for line in text.splitlines())


def _cut(text: str, limit: int, keep_end: bool = False) -> str:
    """``text`` in at most ``limit`` characters: its start (or, for a dataset spec such as a path, its end)."""
    if len(text) <= limit:
        return text
    return "…" + text[len(text) - limit + 1 :] if keep_end else text[: limit - 1] + "…"


def console_summary(suite_dirs: Path | list[Path], paths: dict[str, Path], width: int = WIDTH) -> str:
    """The end-of-run text for the suite(s) in ``suite_dirs`` whose reports are at ``paths`` (``write_report``)."""
    dirs = [Path(d) for d in suite_dirs] if isinstance(suite_dirs, list) else [Path(suite_dirs)]
    frame = results_frame([r for d in dirs for r in load_results(d / "results.jsonl")])
    summarizer = Summarizer(frame, dirs[0])
    ok = int((frame["status"] == "ok").sum())
    where = ", ".join(str(d) for d in dirs)
    parts = [f"tlbench: {len(frame)} cell(s), {ok} ok, in {where}", ""]
    markdown = paths["md"].read_text() if "md" in paths and paths["md"].is_file() else ""
    answer = markdown_section(markdown, ANSWER_HEADINGS)
    if answer:  # the report's answer: its sentences and its one table, fitted to the terminal
        parts += [terminal_answer(answer, width), ""]
    else:
        whole = whole_train_frame(frame)  # label-efficiency subsets are summed up below, never mixed in
        lines = fallback_answer(whole, summarizer)
        if lines:
            wrapped = [textwrap.fill(line, width, initial_indent="  ", subsequent_indent="    ") for line in lines]
            parts += ["Answer", *wrapped, ""]
        parts += [compact_table(whole, summarizer, width), ""]
    for crossover in all_crossovers(frame):
        line = f"Label efficiency, {crossover.dataset} ({crossover.backend}/{crossover.model}): {crossover.sentence()}"
        parts += [textwrap.fill(line, width, subsequent_indent="    "), ""]
    warnings = data_warnings(frame) + speed_warnings(frame) + timing_warnings(frame)
    failed = len(frame) - ok
    notes = []
    if failed:
        notes.append(f"{failed} failed cell(s)")
    if warnings:
        notes.append(f"{len(warnings)} warning(s)")
    if notes:
        parts += [f"{' and '.join(notes)}: see the report.", ""]
    parts += report_paths(paths)
    return "\n".join(parts)


def report_paths(paths: dict[str, Path]) -> list[str]:
    """``Full report: …/report.html`` then the tables and the plots folder."""
    lines = []
    if "html" in paths:
        lines.append(f"Full report: {paths['html']}")
    tables = [paths[k] for k in ("md", "csv", "tex") if k in paths]
    if tables:
        lines.append(f"Tables:      {tables[0]}" + "".join(f", {p.name}" for p in tables[1:]))
    plots = [p for k, p in paths.items() if k.startswith("png:")]
    if plots:
        lines.append(f"Plots:       {plots[0].parent}/ ({len(plots)} PNG)")
    return lines
