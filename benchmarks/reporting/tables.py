"""The report's tables from stored results: pivots with intervals, all cells, failed cells; Markdown/LaTeX text.

Made from the suite directory alone (``results.jsonl``, ``environment.json`` and the per-cell artifacts read
through ``running.artifacts``): no model is rebuilt, nothing is retrained.

Tables pivot configurations (dataset, model, strategy) against backends. A value over several seeds reads
``mean ± h (n=k)`` where ``h`` is the half-width of the 95 % Student-t interval; a single seed's accuracy and
ROC-AUC read ``value [low, high]``, the 95 % percentile-bootstrap interval over the stored test predictions
(1,000 resamples, fixed seed). Failed cells show ``failed`` and are listed with their one-line reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from ..running.results import RESULT_COLUMNS, SLOW_RATIO, latest_by_cell, load_results, other_code_warnings, spread
from .sources import SuiteSources, as_sources
from .stats import BOOTSTRAP_METRICS, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, bootstrap_metric_ci, t_interval

#: columns of the per-cell table in Markdown/LaTeX (the CSV has every column)
CELL_TABLE_COLUMNS = [
    "backend",
    "model",
    "strategy",
    "dataset",
    "seed",
    "status",
    "pretrained",
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "roc_auc",
    "pr_auc",
    "train_images_per_s",
    "infer_images_per_s",
    "infer_latency_ms_p50",
    "infer_latency_ms_p90",
    "time_to_best_s",
    "wall_s",
    "peak_rss_mb",
    "trainable_params",
    "error",
]

METRIC_COLUMNS = {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc", "val_accuracy"}
THROUGHPUT_COLUMNS = {"train_images_per_s", "infer_images_per_s"}

#: human headers, with units, for the Markdown/LaTeX/HTML tables (the CSV keeps the column names)
HEADERS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced acc.",
    "macro_f1": "macro-F1",
    "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC",
    "train_images_per_s": "train (images/s)",
    "infer_images_per_s": "inference (images/s)",
    "infer_latency_ms_p50": "latency p50 (ms)",
    "infer_latency_ms_p90": "latency p90 (ms)",
    "time_to_best_s": "time to best (s)",
    "train_s": "training (s)",
    "wall_s": "wall (s)",
    "peak_rss_mb": "peak RSS (MiB)",
    "peak_device_mb": "peak GPU (MiB)",
    "trainable_params": "trainable params",
}

#: the three comparison pivots: (title, value columns); ``peak_device_mb`` is dropped when no cell has it
PIVOTS = [
    ("Accuracy and training cost", ["accuracy", "train_s", "train_images_per_s"]),
    ("ROC-AUC and inference throughput", ["roc_auc", "infer_images_per_s"]),
    ("Time to best epoch and peak memory", ["time_to_best_s", "peak_rss_mb", "peak_device_mb"]),
]

ROW_KEYS = ["dataset", "model", "strategy"]
CI_NOTE = (
    "`mean ± h (n=k)`: mean over k seeds ± half-width of the 95 % Student-t interval; "
    f"`value [low, high]`: single seed, 95 % percentile-bootstrap interval over the test images "
    f"({BOOTSTRAP_RESAMPLES:,} resamples, seed {BOOTSTRAP_SEED}); `failed`: no seed finished (reasons below)."
)


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


def header(column: str) -> str:
    """The table header of ``column`` (with its unit)."""
    return HEADERS.get(column, column)


# ---- loading -----------------------------------------------------------------------------------------------
#: facts older records kept as top-level keys; read into ``backend_facts`` so every report has one schema
LEGACY_BACKEND_FACTS = ("memory_format", "compiled", "jit_compile", "keras_application", "head")


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The latest record per cell as a DataFrame with exactly the result columns, in order.

    The schema never depends on the backends in the suite: backend-specific facts live in ``backend_facts``
    (older records' top-level facts are moved there), and other unknown keys are dropped.
    """
    rows = []
    for record in latest_by_cell(records):
        row = {column: record.get(column) for column in RESULT_COLUMNS}
        legacy = {k: record[k] for k in LEGACY_BACKEND_FACTS if k in record}
        if legacy:
            row["backend_facts"] = {**legacy, **(row.get("backend_facts") or {})}
        rows.append(row)
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


# ---- cell summaries ------------------------------------------------------------------------------------------
def summarize_values(column: str, values: list[float], bootstrap: Callable[[str], Any] | None = None) -> str:
    """Text for one pivot cell from the values of its ``ok`` seeds.

    Args:
        column: the result column (decides the rounding).
        values: one value per ok seed (``None``/``nan`` ignored).
        bootstrap: for a single seed, ``bootstrap(column)`` returns an ``Interval`` (or ``None``) from the
            stored predictions; used for accuracy and ROC-AUC.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not finite:
        return ""
    if len(finite) == 1:
        text = format_value(column, finite[0])
        interval = bootstrap(column) if bootstrap is not None and column in BOOTSTRAP_METRICS else None
        if interval is not None and interval.defined:
            text += f" [{format_value(column, interval.low)}, {format_value(column, interval.high)}]"
        return text
    interval = t_interval(finite)
    half = _format_half_width(column, interval.half_width)
    return f"{format_value(column, interval.estimate)} ± {half} (n={interval.n})"


def _format_half_width(column: str, half: float) -> str:
    if column in THROUGHPUT_COLUMNS:
        return significant(half, 2)
    return format_value(column, half)


class Summarizer:
    """Pivot cells of a suite, with bootstrap intervals computed once per cell and metric."""

    def __init__(self, frame: pd.DataFrame, suite_dir: Path | SuiteSources | None) -> None:
        self.frame = frame
        self.sources = as_sources(suite_dir)
        self._cache: dict[tuple, Any] = {}

    def _bootstrap(self, record: dict[str, Any]) -> Callable[[str], Any]:
        def compute(column: str):
            key = (record["backend"], record["model"], record["strategy"], record["dataset"], record["seed"], column)
            if key not in self._cache:
                preds = self.sources.predictions(record) if self.sources is not None else None
                self._cache[key] = None if preds is None else bootstrap_metric_ci(column, preds.labels, preds.probs)
            return self._cache[key]

        return compute

    def cell_text(self, group: pd.DataFrame, column: str) -> str:
        """Text of one (configuration, backend) group of records for ``column``."""
        ok = group[group["status"] == "ok"]
        failed = len(group) - len(ok)
        if ok.empty:
            return "failed" if failed else ""
        values = [None if pd.isna(v) else float(v) for v in ok[column]]
        boot = self._bootstrap(ok.iloc[0].to_dict()) if len(ok) == 1 else None
        text = summarize_values(column, values, boot)
        if failed:
            text = f"{text} ({failed} failed)".strip()
        return text

    def pivot(self, columns: list[str]) -> pd.DataFrame:
        """Rows (dataset, model, strategy) in order of appearance, a column per backend × value column."""
        frame = self.frame
        backends = list(dict.fromkeys(frame["backend"]))
        rows = list(dict.fromkeys(tuple(r) for r in frame[ROW_KEYS].itertuples(index=False)))
        groups = {key: g for key, g in frame.groupby(ROW_KEYS + ["backend"], sort=False)}
        table: dict[str, list[str]] = {key: [row[i] for row in rows] for i, key in enumerate(ROW_KEYS)}
        for backend in backends:
            for column in columns:
                label = f"{backend}: {header(column)}" if len(backends) > 1 else header(column)
                cells = []
                for row in rows:
                    group = groups.get((*row, backend))
                    cells.append("" if group is None else self.cell_text(group, column))
                table[label] = cells
        return pd.DataFrame(table)


def pivot_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """``columns`` without ``peak_device_mb`` when no cell measured device memory."""
    return [c for c in columns if c != "peak_device_mb" or pd.to_numeric(frame[c], errors="coerce").notna().any()]


def formatted(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Selected columns, each value formatted as text, under their human headers."""
    return pd.DataFrame({header(c): [format_value(c, v) for v in frame[c]] for c in columns if c in frame})


def failed_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells whose latest attempt failed, with their one-line reason."""
    failed = frame[frame["status"] != "ok"]
    columns = ["backend", "model", "strategy", "dataset", "seed", "error"]
    return pd.DataFrame({c: [format_value(c, v) for v in failed[c]] for c in columns})


# ---- rendering -------------------------------------------------------------------------------------------------
def _markdown(frame: pd.DataFrame) -> str:
    return tabulate(frame.values.tolist(), headers=list(frame.columns), tablefmt="github", disable_numparse=True)


def _latex(frame: pd.DataFrame) -> str:
    return tabulate(
        frame.values.tolist(), headers=list(frame.columns), tablefmt="latex_booktabs", disable_numparse=True
    )


def environment_line(suite_dir: Path) -> str:
    """Where the numbers were measured: one sentence per environment that measured a reported cell (the latest
    record of a cell), with its cells when there are several; an environment whose cells were all re-run
    elsewhere (committed results re-made on a fresh clone) is not named."""
    from ..running.environment import load_environments

    counts: dict[str, int] = {}
    for record in latest_by_cell(load_results(Path(suite_dir) / "results.jsonl")):
        key = record.get("environment_id") or "legacy"
        counts[key] = counts.get(key, 0) + 1
    environments = {key: env for key, env in load_environments(suite_dir).items() if counts.get(key)}
    lines = []
    for key, env in environments.items():
        gpus = ", ".join(env.get("gpus") or []) or "no GPU"
        packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items())
        cells = f" [{counts[key]} cell(s), environment {key}]" if len(environments) > 1 else ""
        where = f"Measured on {env.get('cpu')} ({env.get('cpu_count')} CPUs), {gpus}"
        lines.append(f"{where}; {packages}; git {env.get('git_sha')}.{cells}")
    return " ".join(lines)


def _count(value: Any, key: str) -> int:
    return int(value.get(key) or 0) if isinstance(value, dict) else 0


def data_checks(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset (and resize policy): split sizes, skipped unreadable images, duplicates found and dropped.

    Empty when no record says anything about its data (older suites). A medical user reads here whether the
    test split shared images with train (``cross-split``) and what the suite did about it (``policy``).
    """
    rows = []
    seen = set()
    for record in frame.to_dict("records"):
        sizes = record.get("split_sizes")
        if not isinstance(sizes, dict):
            continue
        dups = record.get("duplicates") if isinstance(record.get("duplicates"), dict) else {}
        key = (
            record["dataset"],
            record.get("image_size"),
            json.dumps(sizes, sort_keys=True),
            json.dumps(dups, sort_keys=True),
            json.dumps(record.get("groups"), sort_keys=True),
        )
        if key in seen:
            continue
        seen.add(key)
        rows.append(
            {
                "dataset": record["dataset"],
                "image size": format_value("image_size", record.get("image_size")),
                "train / val / test": f"{sizes.get('train', '')} / {sizes.get('val', '')} / {sizes.get('test', '')}",
                "skipped images": str(int(record.get("skipped_images") or 0)),
                "cross-split duplicates": str(_count(dups, "cross_split")),
                "within-split duplicates": str(_count(dups, "within_split")),
                "conflicting labels": str(_count(dups, "conflicting_labels")),
                "dropped": str(_count(dups, "dropped")),
                "policy": str(dups.get("policy", "")) if dups else "not checked",
            }
        )
        groups = record.get("groups") if isinstance(record.get("groups"), dict) else None
        if groups:  # --group-by: patients in more than one split, and what was done about it
            rows[-1]["patients in 2+ splits"] = f"{_count(groups, 'shared_groups')} ({groups.get('policy', '')})"
    return pd.DataFrame(rows).fillna("-")


def data_warnings(frame: pd.DataFrame) -> list[str]:
    """Sentences for what a reader must not miss: leaked or conflicting images kept, images skipped."""
    lines = []
    for row in data_checks(frame).to_dict("records"):
        if row["policy"] == "keep" and (int(row["cross-split duplicates"]) or int(row["conflicting labels"])):
            lines.append(
                f"**{row['dataset']}**: {row['cross-split duplicates']} val/test image(s) also in an earlier split "
                f"and {row['conflicting labels']} with conflicting labels were KEPT (--dedup keep): test scores may be "
                "inflated."
            )
        if int(row["skipped images"]):
            lines.append(
                f"**{row['dataset']}**: {row['skipped images']} unreadable image(s) skipped (see cells/*/log.txt)."
            )
    return lines


#: cores busy beside a low speed canary from which a slow cell's warning names them (the canary then competed with
#: a process, rather than reading a slower host)
COMPANY_CORES = 0.1


def speed_warnings(frame: pd.DataFrame) -> list[str]:
    """Cells whose speed must not be trusted: measured while other processes (or hypervisor steal) used the
    machine (the cell's ``contention`` sample), while the machine ran slower than probed (its speed canary), or
    with an ``--amp`` dtype the machine probe shows slower than float32."""
    lines = []
    disturbed, slow, amp = [], [], set()
    for record in frame.to_dict("records"):
        contention = record.get("contention") if isinstance(record.get("contention"), dict) else {}
        name = f"{record['backend']}/{record['model']}/{record['strategy']}/s{record['seed']}"
        # the cell's own timed part, then the suite's inference pass that re-timed it
        for where, watch in (("", contention), ("its inference pass: ", _pass_info(record).get("contention") or {})):
            if watch.get("slower_than_probed"):
                company = max(watch.get("canary_company_cpu_cores") or [0.0])
                beside = f", {company:.2f} cores busy beside the canary" if company >= COMPANY_CORES else ""
                slow.append(f"{name} ({where}{100 * float(watch.get('canary_ratio_to_probe') or 0):.0f}%{beside})")
            if watch.get("disturbed"):
                why = f"{100 * float(watch.get('other_cpu_fraction_mean') or 0):.0f}% of the cores"
                steal = float(watch.get("steal_cpu_fraction_mean") or 0)
                if steal > float(watch.get("threshold") or 0.1):
                    why += f", {100 * steal:.0f}% stolen by the hypervisor"
                disturbed.append(f"{name} ({where}{why})")
        runtime = record.get("runtime") if isinstance(record.get("runtime"), dict) else {}
        amp.update(runtime.get("warnings") or [])
    if disturbed:
        lines.append(
            f"{len(disturbed)} cell(s) were timed while other processes (or, on a virtual machine, other guests of the "
            f"host) used more than 10 % of the cores; their speed figures are too low: "
            f"{', '.join(disturbed[:6])}{' ...' if len(disturbed) > 6 else ''}."
        )
    if slow:
        lines.append(
            f"{len(slow)} cell(s) ran while this machine computed slower than when it was probed (a fixed matmul, "
            f"timed before and after the cell, below {100 * SLOW_RATIO:.0f} % of the probe's rate): another guest on "
            f"the host's cores or a throttled CPU, invisible in the process list; their speed figures are too low: "
            f"{', '.join(slow[:6])}{' ...' if len(slow) > 6 else ''}."
        )
    lines += sorted(amp)
    return lines


def timing_warnings(frame: pd.DataFrame) -> list[str]:
    """Sentences when timed (``ok``) cells ran beside other cells: on one GPU, or on one host's cores.

    Reads the ``concurrency`` column (``cells_at_once_on_host``/``_on_device``: the most cells running at once
    during the cell, itself included); older records without it are not judged.
    """
    gpu, host = [], []
    for record in frame.to_dict("records"):
        info = record.get("concurrency")
        if record.get("status") != "ok" or not isinstance(info, dict):
            continue
        on_device, on_host = int(info.get("cells_at_once_on_device") or 1), int(info.get("cells_at_once_on_host") or 1)
        if str(info.get("device") or "").startswith("cuda") and on_device > 1:
            gpu.append(on_device)
        elif on_host > 1:
            host.append(on_host)
    lines = []
    if gpu:
        lines.append(
            f"**timing**: {len(gpu)} timed cell(s) shared their GPU with other cells (up to {max(gpu)} at once): their "
            f"images/s, latencies and memory peaks are not those of a dedicated GPU (run one cell per GPU)."
        )
    if host:
        lines.append(
            f"**timing**: {len(host)} timed cell(s) ran beside other cells on the same host (up to {max(host)} at "
            f"once), sharing its CPU cores and memory bandwidth: compare their speeds with care (--parallel 1, or "
            f"--threads cores/N)."
        )
    return lines


@dataclass(frozen=True)
class ReportTables:
    """Every table of a report, as text DataFrames (rendered to Markdown, LaTeX and HTML)."""

    pivots: list[tuple[str, pd.DataFrame]]
    cells: pd.DataFrame
    failed: pd.DataFrame
    data: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: tuple[str, ...] = ()
    #: which framework (``reporting.frameworks``): empty unless one configuration ran on >= 2 backends x >= 2 seeds
    framework_agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    framework_speed: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: how the figures were measured, below the pivots (the inference pass)
    notes: tuple[str, ...] = ()
    #: the answer and its evidence (``reporting.evidence.Evidence``); ``None`` when not built
    evidence: Any = None


def _pass_info(record: dict[str, Any]) -> dict[str, Any]:
    info = record.get("infer_pass")
    return info if isinstance(info, dict) else {}


def inference_note(frame: pd.DataFrame) -> str:
    """How the ``inference (images/s)`` column was timed: by the suite's inference pass (the cells of each model
    interleaved in one fresh process), with the spread of those figures and of the cells' own, per model."""
    records = [r for r in frame.to_dict("records") if r.get("status") == "ok" and _pass_info(r).get("in_cell")]
    if not records:
        return ""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault((record["backend"], record["model"], record["dataset"]), []).append(record)

    parts = []
    for (backend, model, dataset), members in groups.items():
        passed = spread([r["infer_images_per_s"] for r in members])
        in_cell = spread([_pass_info(r)["in_cell"].get("infer_images_per_s") for r in members])
        parts.append(
            f"{backend}/{model} on {dataset}: {len(members)} cells, spread {100 * passed:.1f} % "
            f"(in their cells {100 * in_cell:.1f} %)"
        )
    rounds = max(int(_pass_info(r).get("rounds") or 0) for r in records)
    return (
        "`inference (images/s)`: timed after the suite, the cells of each model loaded from their trained weights into "
        f"one fresh process and timed round-robin ({rounds} rounds, median batch latency), so that a drift of the "
        "machine falls on all of them and none is timed in the state its training left (the figure each cell measured "
        "right after its training stays in `infer_pass.in_cell`): " + "; ".join(parts) + "."
    )


def build_tables(frame: pd.DataFrame, suite_dir: Path | SuiteSources | None, evidence: Any = None) -> ReportTables:
    """The pivots (with intervals), the framework comparison, the all-cells and failed-cells tables of ``frame``.

    Args:
        frame: the latest record per cell.
        suite_dir: the suite directory, or the ``SuiteSources`` of several suites (where predictions are read).
        evidence: the answer and its evidence (``evidence.build_evidence``), rendered first; optional.
    """
    from .frameworks import agreement_table, speed_table
    from .tuning_note import tuning_note

    summarizer = Summarizer(frame, suite_dir)
    pivots = [(title, summarizer.pivot(pivot_columns(frame, columns))) for title, columns in PIVOTS]
    return ReportTables(
        pivots=pivots,
        cells=formatted(frame, CELL_TABLE_COLUMNS),
        failed=failed_cells(frame),
        data=data_checks(frame),
        warnings=tuple(
            data_warnings(frame)
            + speed_warnings(frame)
            + timing_warnings(frame)
            + other_code_warnings(frame.to_dict("records"))
        ),
        framework_agreement=agreement_table(frame),
        framework_speed=speed_table(frame),
        notes=tuple(note for note in (inference_note(frame), tuning_note(frame)) if note),
        evidence=evidence,
    )


def render_answer(evidence: Any) -> str:
    """The answer section in Markdown (``## The answer``, its sentences, the compact table, how it was decided):
    the top of ``summary.md`` and what ``tlbench report`` prints."""
    if evidence is None:
        return ""
    parts = ["## The answer", ""] + list(evidence.answer)
    if not evidence.table.empty:
        parts += [_markdown(evidence.table), ""]
    parts += [evidence.note, ""]
    return "\n".join(parts)


def render_markdown(tables: ReportTables, suite_name: str, env_line: str, images: dict[str, Path] | None = None) -> str:
    """The whole ``summary.md`` text (images linked relative to the suite directory)."""
    parts = [f"# tlbench suite `{suite_name}`", ""]
    if env_line:
        parts += [env_line, ""]
    if tables.evidence is not None:
        parts += [render_answer(tables.evidence)]
    if tables.warnings:
        parts += ["## Warnings", ""] + [f"- {line}" for line in tables.warnings] + [""]
    for section in tables.evidence.sections if tables.evidence is not None else []:
        parts += [f"{'#' * section.level} {section.title}", "", _markdown(section.table), ""]
        parts += [section.note, ""] if section.note else []
    for title, table in tables.pivots:
        parts += [f"## {title} — strategy × backend", "", _markdown(table), ""]
    parts += [CI_NOTE, ""]
    for note in tables.notes:
        parts += [note, ""]
    if not tables.framework_agreement.empty:
        from .frameworks import FRAMEWORKS_NOTE

        parts += ["## Which framework — do the backends agree?", "", _markdown(tables.framework_agreement), ""]
        parts += ["### Which framework — speed", "", _markdown(tables.framework_speed), "", FRAMEWORKS_NOTE, ""]
    if not tables.data.empty:
        parts += ["## Data checks", "", _markdown(tables.data), ""]
    if not tables.failed.empty:
        parts += ["## Failed cells", "", _markdown(tables.failed), ""]
    parts += ["## All cells", "", _markdown(tables.cells.drop(columns=["error"])), ""]
    if images:
        parts += ["## Plots", ""]
        parts += [f"![{title}]({path.as_posix()})" for title, path in images.items()]
        parts += [""]
    return "\n".join(parts)


def render_latex(tables: ReportTables) -> str:
    """The whole ``summary.tex`` text (booktabs tables)."""
    parts = []
    if tables.evidence is not None and not tables.evidence.table.empty:
        parts += ["% The answer", _latex(tables.evidence.table), ""]
    for section in tables.evidence.sections if tables.evidence is not None else []:
        parts += [f"% {section.title.replace('—', '--')}", _latex(section.table), ""]
    for title, table in tables.pivots:
        parts += [f"% {title} -- strategy x backend", _latex(table), ""]
    if not tables.framework_agreement.empty:
        parts += ["% Which framework -- do the backends agree?", _latex(tables.framework_agreement), ""]
        parts += ["% Which framework -- speed", _latex(tables.framework_speed), ""]
    if not tables.failed.empty:
        parts += ["% Failed cells", _latex(tables.failed), ""]
    parts += ["% All cells", _latex(tables.cells.drop(columns=["error"])), ""]
    return "\n".join(parts)


def csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column of every latest record, nested values (dicts, lists) as JSON text."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, (dict, list))).any():
            out[column] = out[column].map(lambda v: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v)
    return out
