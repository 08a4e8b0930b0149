"""What the arm-against-arm benchmark scripts share: each arm in a fresh process, rounds with a rotating opener,
medians, ratios to a reference arm, and the one-line usage errors of their arguments."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def run_arm_process(script: str, argv: Sequence[str], env: dict[str, str]) -> float:
    """Run ``python -c script *argv`` (one arm, a fresh process); the ``images_per_s`` of its last JSON line.

    Raises:
        RuntimeError: the arm failed (its last stderr line).
    """
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"arm {argv[0]} failed: {tail}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["images_per_s"])


def interleaved_rounds(arms: Sequence[str], rounds: int, measure: Callable[[str], float]) -> dict[str, list[float]]:
    """``rounds`` rounds of every arm, one after the other, the opening arm rotating (so no arm always runs first
    after a pause, or always after the same neighbour); a line per round on stderr."""
    figures: dict[str, list[float]] = {arm: [] for arm in arms}
    for index in range(rounds):
        order = list(arms[index % len(arms) :]) + list(arms[: index % len(arms)])
        for arm in order:
            figures[arm].append(measure(arm))
        done = ", ".join(f"{a} {figures[a][-1]:.0f}" for a in arms)
        print(f"round {index + 1}/{rounds}: {done}", file=sys.stderr, flush=True)
    return figures


def arm_table(title: str, command: str, conditions: str, figures: dict[str, list[float]], reference: str) -> str:
    """The Markdown page of an arm benchmark: title, the command that made it, the conditions, the ratio table."""
    lines = [f"# {title}", "", f"Command: `{command}`", "", conditions, ""]
    lines += [
        f"| arm | inference images/s (median of rounds) | ratio to {reference} | per round |",
        "|---|---|---|---|",
    ]
    return "\n".join(lines + ratio_rows(figures, reference)) + "\n"


def emit(text: str, out: Path | None) -> None:
    """Print the page, and write it to ``out`` when given."""
    print(text)
    if out is not None:
        out.write_text(text)


def ratio_rows(figures: dict[str, list[float]], reference: str) -> list[str]:
    """Markdown rows ``| arm | median | ratio to reference | per round |`` in the arms' order."""
    base = statistics.median(figures[reference])
    rows = []
    for arm, values in figures.items():
        median = statistics.median(values)
        per_round = ", ".join(f"{v:.0f}" for v in values)
        rows.append(f"| {arm} | {median:.0f} | {median / base:.3f} | {per_round} |")
    return rows


def arm_runtime() -> tuple[Any, dict[str, str]]:
    """The suite's tuned runtime (threads, allocator: ``runtime.runtime_settings`` of the default options) and the
    environment each arm's fresh process gets from it."""
    from ..running.config import RunOptions
    from ..running.runtime import cell_environment, runtime_settings

    runtime = runtime_settings(RunOptions())
    return runtime, cell_environment(runtime, os.environ)


def usage_error(
    prog: str, values: dict[str, float], at_least_one: Sequence[str], positive: Sequence[str]
) -> str | None:
    """The one-line error for the first bad value (``--name`` must be >= 1, or > 0 seconds), else ``None``."""
    for name in at_least_one:
        if values[name] < 1:
            return f"{prog}: error: --{name.replace('_', '-')} must be >= 1, got {values[name]}"
    for name in positive:
        if not values[name] > 0:
            return f"{prog}: error: --{name.replace('_', '-')} must be > 0 seconds, got {values[name]}"
    return None
