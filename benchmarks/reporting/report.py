"""Reports from stored results: ``answer.md``, ``summary.md``, ``summary.csv``, ``summary.tex``, ``report.html``,
``clinical.csv`` and PNG plots.

Everything is made from suite directories alone (``results.jsonl``, ``environment.json``, ``suite.json`` and
the per-cell artifacts in ``cells/<cell_id>/``): no model is rebuilt, nothing is retrained. One suite is reported
into its own directory; several (``tlbench report A B C --out D``) are reported together into ``D``, e.g. to rank
strategies across datasets. The answer and its evidence come from ``evidence``, the tables from ``tables``, the
plots from ``plots`` and ``stat_plots``, the HTML page from ``html_report``; this module only writes files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from . import label_efficiency
from .evidence import build_evidence
from .html_report import render_html
from .incremental import INCREMENTAL_PLOT_TITLE, draw_incremental_plot, incremental_sections, step_frame
from .options import ReportOptions
from .plots import draw_suite_plots
from .sources import load_suites
from .tables import (
    CI_NOTE,
    build_tables,
    csv_frame,
    data_warnings,
    environment_line,
    render_answer,
    render_latex,
    render_markdown,
    results_frame,
)


def suite_name_of(suite_dir: Path) -> str:
    """The suite's name from ``suite.json``, else the directory name."""
    suite_json = suite_dir / "suite.json"
    if suite_json.is_file():
        return json.loads(suite_json.read_text()).get("name", suite_dir.name)
    return suite_dir.name


def write_report(
    suite_dir: Path | Sequence[Path],
    plots: bool = True,
    out_dir: Path | None = None,
    options: ReportOptions | None = None,
) -> dict[str, Path]:
    """Write the answer, tables, plots and the HTML report of one suite, or of several together.

    Args:
        suite_dir: a directory made by ``tlbench run``, or several (their records are read as one report).
        plots: also draw the PNG plots (``plots/*.png``) and embed them in the HTML report.
        out_dir: where to write; default the suite directory (required for several suites).
        options: selection metric, operating point, positive class (default: ``ReportOptions()``).

    Returns:
        The written paths: ``answer``, ``md``, ``csv``, ``tex``, ``html``, ``clinical`` (when a cell stored
        predictions) and one ``png:<name>`` per plot.

    Raises:
        FileNotFoundError: a suite directory holds no ``results.jsonl`` records.
        ValueError: several suites without ``out_dir``.
    """
    dirs = [Path(suite_dir)] if isinstance(suite_dir, (str, Path)) else [Path(d) for d in suite_dir]
    if len(dirs) > 1 and out_dir is None:
        raise ValueError(f"{len(dirs)} suite directories given: name the report's directory with --out DIR")
    out = Path(out_dir) if out_dir is not None else dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    records, sources = load_suites(dirs)
    options = options or ReportOptions()
    every = results_frame(records)
    frame = label_efficiency.whole_train_frame(every)  # label-efficiency subsets have their own sections
    evidence = build_evidence(frame, sources, options, data_warnings)
    evidence.sections += label_efficiency.sections(every)
    latest = frame.to_dict("records")  # the latest record per cell
    evidence.sections += incremental_sections(latest)
    tables = build_tables(frame, sources, evidence)
    images: dict[str, Path] = {}
    if plots:
        from .stat_plots import draw_evidence_plots

        images = draw_suite_plots(frame, sources, out / "plots")
        images.update(draw_evidence_plots(evidence, out / "plots"))
        curves = label_efficiency.label_efficiency_plot(every, out / "plots" / "label_efficiency.png")
        if curves is not None:
            images["Label efficiency: accuracy and ROC-AUC against labelled images"] = curves
        incremental_plot = draw_incremental_plot(step_frame(latest), out / "plots" / "incremental.png")
        if incremental_plot is not None:
            images[INCREMENTAL_PLOT_TITLE] = incremental_plot
    relative = {title: path.relative_to(out) for title, path in images.items()}
    name = " + ".join(suite_name_of(d) for d in dirs)
    env_line = " ".join(line for line in map(environment_line, dirs) if line)
    paths = {
        "answer": out / "answer.md",
        "md": out / "summary.md",
        "csv": out / "summary.csv",
        "tex": out / "summary.tex",
        "html": out / "report.html",
    }
    paths["answer"].write_text(render_answer(evidence))
    paths["md"].write_text(render_markdown(tables, name, env_line, relative))
    csv_frame(every).to_csv(paths["csv"], index=False)
    paths["tex"].write_text(render_latex(tables))
    paths["html"].write_text(render_html(tables, name, env_line, images, CI_NOTE))
    if not evidence.clinical_cells.empty:
        paths["clinical"] = out / "clinical.csv"
        evidence.clinical_cells.to_csv(paths["clinical"], index=False)
    for path in images.values():
        paths[f"png:{path.stem}"] = path
    return paths
