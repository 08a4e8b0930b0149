"""Tables from stored results: ``summary.md`` (GitHub Markdown), ``summary.csv``, ``summary.tex``.

Everything is made from ``results.jsonl`` (and ``environment.json``) alone: no model is rebuilt.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from tlbench.benchmarks.results import RESULT_COLUMNS, latest_by_cell, load_results

#: columns of the per-cell table in Markdown/LaTeX (the CSV has every column)
CELL_TABLE_COLUMNS = [
    "backend", "model", "strategy", "dataset", "seed", "status", "pretrained", "accuracy", "balanced_accuracy",
    "macro_f1", "roc_auc", "pr_auc", "train_images_per_s", "infer_images_per_s", "infer_latency_ms_p50",
    "infer_latency_ms_p90", "time_to_best_s", "wall_s", "peak_rss_mb", "trainable_params", "error",
]  # fmt: skip

METRIC_COLUMNS = {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc"}
THROUGHPUT_COLUMNS = {"train_images_per_s", "infer_images_per_s"}

#: pivots written to the summary: (title, value column)
PIVOTS = [("Test accuracy", "accuracy"), ("Train images/s", "train_images_per_s")]


def significant(value: float, digits: int = 3) -> str:
    """``value`` rounded to ``digits`` significant digits, without scientific notation for usual ranges."""
    if value == 0:
        return "0"
    magnitude = int(math.floor(math.log10(abs(value))))
    rounded = round(value, digits - 1 - magnitude)
    return f"{rounded:.{max(0, digits - 1 - magnitude)}f}"


def format_value(column: str, value: Any) -> str:
    """Human formatting: metrics to 3 decimals, throughput to 3 significant digits, times to 0.1 s."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if column in METRIC_COLUMNS:
        return f"{value:.3f}"
    if column in THROUGHPUT_COLUMNS:
        return significant(float(value))
    if column.endswith("_params") or column in ("seed", "epochs", "batch_size", "image_size"):
        return f"{int(value):,}" if column.endswith("_params") else str(int(value))
    if column.endswith("_ms_p50") or column.endswith("_ms_p90"):
        return f"{value:.1f}"
    if column.endswith("_s") or column.endswith("_mb"):
        return f"{value:.1f}"
    return str(value)


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The latest record per cell as a DataFrame with every result column (extra keys kept after them)."""
    latest = latest_by_cell(records)
    frame = pd.DataFrame(latest)
    for column in RESULT_COLUMNS:
        if column not in frame:
            frame[column] = None
    extra = [c for c in frame.columns if c not in RESULT_COLUMNS]
    return frame[RESULT_COLUMNS + extra]


def formatted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Selected columns, each value formatted as text."""
    out = pd.DataFrame({c: [format_value(c, v) for v in frame[c]] for c in columns if c in frame})
    return out


def pivot(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Rows (dataset, model, strategy), columns backend; the mean over seeds of ``value`` for ``ok`` cells.

    Cells that failed show ``failed``; cells with no record show nothing.
    """
    index = ["dataset", "model", "strategy"]
    ok = frame[frame["status"] == "ok"].copy()
    ok[value] = pd.to_numeric(ok[value], errors="coerce")
    table = ok.pivot_table(index=index, columns="backend", values=value, aggfunc="mean", dropna=False)
    failed = frame[frame["status"] != "ok"]
    all_keys = frame[index + ["backend"]].drop_duplicates()
    text = pd.DataFrame(index=pd.MultiIndex.from_frame(all_keys[index].drop_duplicates()), columns=sorted(frame["backend"].unique()), dtype=object)
    for _, row in all_keys.iterrows():
        key = tuple(row[i] for i in index)
        if key in table.index and row["backend"] in table.columns and not pd.isna(table.loc[key, row["backend"]]):
            text.loc[key, row["backend"]] = format_value(value, float(table.loc[key, row["backend"]]))
        elif ((failed[index + ["backend"]] == row.values).all(axis=1)).any():
            text.loc[key, row["backend"]] = "failed"
        else:
            text.loc[key, row["backend"]] = ""
    return text.reset_index()


def _markdown(frame: pd.DataFrame) -> str:
    return tabulate(frame.values.tolist(), headers=list(frame.columns), tablefmt="github", disable_numparse=True)


def _latex(frame: pd.DataFrame) -> str:
    return tabulate(frame.values.tolist(), headers=list(frame.columns), tablefmt="latex_booktabs", disable_numparse=True)


def environment_line(suite_dir: Path) -> str:
    """One line describing where the numbers were measured."""
    path = suite_dir / "environment.json"
    if not path.is_file():
        return ""
    env = json.loads(path.read_text())
    gpus = ", ".join(env.get("gpus") or []) or "no GPU"
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
    return f"Measured on {env.get('cpu')} ({env.get('cpu_count')} CPUs), {gpus}; {packages}; git {env.get('git_sha')}."


def render_markdown(frame: pd.DataFrame, suite_name: str, env_line: str) -> str:
    """The whole ``summary.md`` text."""
    parts = [f"# tlbench suite `{suite_name}`", ""]
    if env_line:
        parts += [env_line, ""]
    for title, value in PIVOTS:
        parts += [f"## {title} — strategy × backend", "", _markdown(pivot(frame, value)), ""]
    parts += ["## All cells", "", _markdown(formatted(frame, CELL_TABLE_COLUMNS)), ""]
    return "\n".join(parts)


def render_latex(frame: pd.DataFrame) -> str:
    """The whole ``summary.tex`` text (booktabs tables)."""
    parts = []
    for title, value in PIVOTS:
        parts += [f"% {title} -- strategy x backend", _latex(pivot(frame, value)), ""]
    columns = [c for c in CELL_TABLE_COLUMNS if c != "error"]
    parts += ["% All cells", _latex(formatted(frame, columns)), ""]
    return "\n".join(parts)


def write_report(suite_dir: Path) -> dict[str, Path]:
    """Write ``summary.md``, ``summary.csv`` and ``summary.tex`` for the suite in ``suite_dir``.

    Returns:
        The written paths by format.

    Raises:
        FileNotFoundError: ``suite_dir`` holds no ``results.jsonl`` records.
    """
    records = load_results(suite_dir / "results.jsonl")
    if not records:
        raise FileNotFoundError(f"{suite_dir} holds no results.jsonl records; expected a suite directory made by `tlbench run`")
    frame = results_frame(records)
    suite_name = suite_dir.name
    suite_json = suite_dir / "suite.json"
    if suite_json.is_file():
        suite_name = json.loads(suite_json.read_text()).get("name", suite_name)
    paths = {"md": suite_dir / "summary.md", "csv": suite_dir / "summary.csv", "tex": suite_dir / "summary.tex"}
    paths["md"].write_text(render_markdown(frame, suite_name, environment_line(suite_dir)))
    csv_frame = frame.copy()
    for column in csv_frame.columns:
        if csv_frame[column].map(lambda v: isinstance(v, (dict, list))).any():
            csv_frame[column] = csv_frame[column].map(lambda v: json.dumps(v) if isinstance(v, (dict, list)) else v)
    csv_frame.to_csv(paths["csv"], index=False)
    paths["tex"].write_text(render_latex(frame))
    return paths
