"""Reports from stored results: ``summary.md``, ``summary.csv``, ``summary.tex``, ``report.html`` and PNG plots.

Everything is made from the suite directory alone (``results.jsonl``, ``environment.json``, ``suite.json`` and
the per-cell artifacts in ``cells/<cell_id>/``): no model is rebuilt, nothing is retrained. The tables come
from ``tables``, the plots from ``plots``, the HTML page from ``html_report``; this module only writes files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..running.results import load_results
from .html_report import render_html
from .plots import draw_suite_plots
from .tables import CI_NOTE, build_tables, csv_frame, environment_line, render_latex, render_markdown, results_frame


def suite_name_of(suite_dir: Path) -> str:
    """The suite's name from ``suite.json``, else the directory name."""
    suite_json = suite_dir / "suite.json"
    if suite_json.is_file():
        return json.loads(suite_json.read_text()).get("name", suite_dir.name)
    return suite_dir.name


def write_report(suite_dir: Path, plots: bool = True) -> dict[str, Path]:
    """Write the tables, plots and the HTML report of the suite in ``suite_dir``.

    Args:
        suite_dir: a directory made by ``tlbench run``.
        plots: also draw the PNG plots (``plots/*.png``) and embed them in the HTML report.

    Returns:
        The written paths: ``md``, ``csv``, ``tex``, ``html`` and one ``png:<name>`` per plot.

    Raises:
        FileNotFoundError: ``suite_dir`` holds no ``results.jsonl`` records.
    """
    suite_dir = Path(suite_dir)
    records = load_results(suite_dir / "results.jsonl")
    if not records:
        raise FileNotFoundError(
            f"{suite_dir} holds no results.jsonl records; expected a suite directory made by `tlbench run`"
        )
    frame = results_frame(records)
    tables = build_tables(frame, suite_dir)
    images: dict[str, Path] = {}
    if plots:
        images = draw_suite_plots(frame, suite_dir, suite_dir / "plots")
    relative = {title: path.relative_to(suite_dir) for title, path in images.items()}
    name, env_line = suite_name_of(suite_dir), environment_line(suite_dir)
    paths = {
        "md": suite_dir / "summary.md",
        "csv": suite_dir / "summary.csv",
        "tex": suite_dir / "summary.tex",
        "html": suite_dir / "report.html",
    }
    paths["md"].write_text(render_markdown(tables, name, env_line, relative))
    csv_frame(frame).to_csv(paths["csv"], index=False)
    paths["tex"].write_text(render_latex(tables))
    paths["html"].write_text(render_html(tables, name, env_line, images, CI_NOTE))
    for path in images.values():
        paths[f"png:{path.stem}"] = path
    return paths
