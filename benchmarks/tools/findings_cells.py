"""What every kind of generated block shares: reading committed suites, formatting a cell, naming a dataset.

A suite folder named by a block is read through ``suite_records``: its latest finished records, or ``None`` when the
folder has no results yet but its suite file exists (the block then says "not measured yet" and names the command,
``not_measured``); a folder with neither is a typo in the page (``FindingsError``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..reporting.stats import t_interval
from ..running.results import latest_by_cell, load_results

#: columns where lower is better (never bold for "best"; sorted ascending when first)
LOWER_IS_BETTER = ("train_s", "time_to_best_s", "wall_s", "infer_latency_ms_p50", "infer_latency_ms_p90", "peak_rss_mb")
#: columns shown as counts, without an interval
COUNT_COLUMNS = ("trainable_params", "total_params", "feature_dim")
#: columns whose values are figures of merit (bold best)
QUALITY_COLUMNS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")


class FindingsError(ValueError):
    """A bad block (unknown option, a suite folder that is neither committed nor named by a suite file): one line."""


def inline_options(
    text: str, what: str, reserved: tuple[str, ...], lists: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The ``key=value`` items of an inline comment (``value``, ``bench``): its own options, then the record filters.

    ``reserved`` keys are options (those in ``lists`` split at commas); any other key filters the records or rows
    (comma-separated values: any of them).

    Raises:
        FindingsError: an item without ``=`` or without a value.
    """
    options: dict[str, Any] = {}
    filters: dict[str, list[str]] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise FindingsError(f"{what} option {item!r}: expected key=value")
        if key in reserved:
            options[key] = value.split(",") if key in lists else value
        else:
            filters[key] = value.split(",")
    return options, filters


def suite_name(suite: str) -> str:
    """``results/strategies_breastmnist`` → ``strategies_breastmnist`` (its suite file's stem)."""
    return suite.rstrip("/").rsplit("/", 1)[-1]


def finished_records(directory: Path) -> list[dict[str, Any]] | None:
    """The finished records of a suite directory (latest per cell), ``None`` when it has no ``results.jsonl``."""
    path = Path(directory) / "results.jsonl"
    if not path.is_file():
        return None
    return [r for r in latest_by_cell(load_results(path)) if r.get("status") == "ok"]


def suite_records(root: Path, suite: str) -> list[dict[str, Any]] | None:
    """The latest finished records of the suite folder ``suite`` (relative to ``root``).

    Returns:
        The records, or ``None`` when the folder holds no ``results.jsonl`` yet but ``suites/<name>.toml`` exists.

    Raises:
        FindingsError: neither the folder's results nor its suite file exist.
    """
    found = finished_records(root / suite)
    if found is not None:
        return found
    if (root / "suites" / f"{suite_name(suite)}.toml").is_file():
        return None
    raise FindingsError(
        f"findings: {suite}/results.jsonl not found and no suites/{suite_name(suite)}.toml makes it "
        "(a committed suite directory expected)"
    )


def not_measured(suite: str) -> str:
    """The line a block holds for a suite that has not been run yet."""
    return f"`{suite}/`: not measured yet (`tlbench run suites/{suite_name(suite)}.toml`)."


def format_cell(column: str, values: list[float]) -> str:
    """Mean ± 95 % t half-width of ``values`` (a count column: the rounded mean; none: ``–``)."""
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


def paired_cell(values: list[float], digits: int = 3) -> str:
    """Mean of paired differences ± the 95 % t half-width, with the number of pairs."""
    if not values:
        return "–"
    interval = t_interval(values)
    if interval.n < 2:
        return f"{interval.estimate:+.{digits}f} (n=1)"
    return f"{interval.estimate:+.{digits}f} ± {(interval.high - interval.low) / 2:.{digits}f} (n={interval.n})"


def number(record: dict[str, Any], key: str) -> float | None:
    """A record's finite number under ``key``, else ``None``."""
    value = record.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def split_label(by: str, value: Any) -> str:
    """A split's name in a title: a dataset spec's last path part (``folder:../x/chest`` → ``chest``)."""
    text = str(value)
    if by == "dataset":
        return text.partition(":")[2].rstrip("/").rsplit("/", 1)[-1] or text
    return text
