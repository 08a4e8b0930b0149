"""A self-contained HTML report: the report's tables and its PNG plots embedded as base64 data URIs.

One file, no external CSS, scripts or images, so it can be mailed or attached to a CI run as is.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from .tables import ReportTables

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:nth-child(-n+3) { text-align: left; }
td.failed { color: #b00020; font-weight: 600; } td.error { text-align: left; white-space: normal; }
p.note { color: #555; font-size: 0.9em; } figure { margin: 1.5em 0; } img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; } p.warning { color: #8a4b00; font-weight: 600; }
"""


def table_html(frame: pd.DataFrame) -> str:
    """An escaped HTML table of a text DataFrame; cells saying ``failed`` get the ``failed`` class."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, values, strict=True):
            text = "" if value is None else str(value)
            classes = []
            if text == "failed" or text.endswith("failed)"):
                classes.append("failed")
            if column == "error":
                classes.append("error")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody>\n</table>"


def image_data_uri(path: Path) -> str:
    """``data:image/png;base64,...`` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _markdown_code_to_html(text: str) -> str:
    """Escape ``text`` and turn Markdown backtick spans into ``<code>`` and ``**bold**`` into ``<strong>``."""
    text = re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


def answer_html(evidence: Any) -> list[str]:
    """The answer section: a paragraph per dataset heading, its sentences as a list, the compact table, the note."""
    parts = ['<h2 id="answer">The answer</h2>']
    items: list[str] = []
    for line in list(evidence.answer) + [""]:
        if line.startswith("- "):
            items.append(f"<li>{_markdown_code_to_html(line[2:])}</li>")
            continue
        if items:
            parts += ["<ul>", *items, "</ul>"]
            items = []
        if line.strip():
            parts.append(f"<p>{_markdown_code_to_html(line)}</p>")
    if not evidence.table.empty:
        parts.append(table_html(evidence.table))
    parts.append(f'<p class="note">{_markdown_code_to_html(evidence.note)}</p>')
    return parts


def render_html(tables: ReportTables, suite_name: str, env_line: str, images: dict[str, Path], note: str) -> str:
    """The whole ``report.html`` text.

    Args:
        tables: the report's tables.
        suite_name: shown in the title.
        env_line: where the numbers were measured (may be empty).
        images: plot title -> PNG path, embedded in this order.
        note: how to read the intervals (Markdown backticks allowed).
    """
    title = f"tlbench suite {suite_name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>tlbench suite <code>{html.escape(suite_name)}</code></h1>",
    ]
    if env_line:
        parts.append(f'<p class="note">{html.escape(env_line)}</p>')
    if tables.evidence is not None:
        parts += answer_html(tables.evidence)
    if tables.warnings:
        parts.append("<h2>Warnings</h2>")
        parts += [
            f'<p class="warning">{_markdown_code_to_html(line.replace("**", "`"))}</p>' for line in tables.warnings
        ]
    for section in tables.evidence.sections if tables.evidence is not None else []:
        parts += [f"<h{section.level}>{html.escape(section.title)}</h{section.level}>", table_html(section.table)]
        if section.note:
            parts.append(f'<p class="note">{_markdown_code_to_html(section.note)}</p>')
    for heading, table in tables.pivots:
        parts += [f"<h2>{html.escape(heading)} — strategy × backend</h2>", table_html(table)]
    parts.append(f'<p class="note">{_markdown_code_to_html(note)}</p>')
    parts += [f'<p class="note">{_markdown_code_to_html(line)}</p>' for line in tables.notes]
    if not tables.framework_agreement.empty:
        from .frameworks import FRAMEWORKS_NOTE

        parts += ["<h2>Which framework — do the backends agree?</h2>", table_html(tables.framework_agreement)]
        parts += ["<h3>Which framework — speed</h3>", table_html(tables.framework_speed)]
        parts.append(f'<p class="note">{_markdown_code_to_html(FRAMEWORKS_NOTE)}</p>')
    if not tables.data.empty:
        parts += ["<h2>Data checks</h2>", table_html(tables.data)]
    if not tables.failed.empty:
        parts += ["<h2>Failed cells</h2>", table_html(tables.failed)]
    if images:
        parts.append("<h2>Plots</h2>")
        for caption, path in images.items():
            parts.append(
                f'<figure><img src="{image_data_uri(path)}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts += ["<h2>All cells</h2>", table_html(tables.cells.drop(columns=["error"])), "</body>", "</html>", ""]
    return "\n".join(parts)
