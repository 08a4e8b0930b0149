"""Where a report's records and per-cell artifacts come from: one suite directory, or several read together.

``tlbench report A B C --out D`` reports suites A, B and C as one (e.g. one suite per dataset, ranked across
datasets): their records are concatenated in the order given, a cell present in two suites is taken from the later
one (as a re-run replaces an earlier record), and each cell's predictions and curve are read from the suite its
record came from. Predictions are loaded once per cell and kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..running.artifacts import Predictions, load_curve, load_predictions
from ..running.results import cell_key, latest_by_cell, load_results


class SuiteSources:
    """The suites of one report: where each cell's artifacts live, with the predictions cached per cell."""

    def __init__(self, suite_dirs: Sequence[Path], owners: dict[tuple, Path] | None = None) -> None:
        if not suite_dirs:
            raise ValueError("a report needs at least one suite directory")
        self.suite_dirs = [Path(d) for d in suite_dirs]
        self.owners = dict(owners or {})
        self._predictions: dict[tuple, Predictions | None] = {}

    def dir_of(self, record: dict[str, Any]) -> Path:
        """The suite directory whose ``cells/`` holds this record's artifacts (the last suite that has the cell)."""
        return self.owners.get(cell_key(record), self.suite_dirs[-1])

    def predictions(self, record: dict[str, Any]) -> Predictions | None:
        """The cell's stored predictions, or ``None`` when it saved none (loaded once per cell)."""
        key = cell_key(record)
        if key not in self._predictions:
            self._predictions[key] = load_predictions(self.dir_of(record), record)
        return self._predictions[key]

    def curve(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """The cell's per-epoch curve, empty when absent."""
        return load_curve(self.dir_of(record), record)


def as_sources(suite: Path | SuiteSources | None) -> SuiteSources | None:
    """A ``SuiteSources`` for a single suite directory (returned unchanged when it already is one)."""
    if suite is None or isinstance(suite, SuiteSources):
        return suite
    return SuiteSources([Path(suite)])


def load_suites(suite_dirs: Sequence[Path]) -> tuple[list[dict[str, Any]], SuiteSources]:
    """The latest record of every cell across ``suite_dirs`` (later suites win) and where their artifacts are.

    Raises:
        FileNotFoundError: a directory holds no ``results.jsonl`` records.
    """
    records: list[dict[str, Any]] = []
    owners: dict[tuple, Path] = {}
    for suite_dir in map(Path, suite_dirs):
        found = load_results(suite_dir / "results.jsonl")
        if not found:
            raise FileNotFoundError(
                f"{suite_dir} holds no results.jsonl records; expected a suite directory made by `tlbench run`"
            )
        for record in found:
            owners[cell_key(record)] = suite_dir
        records += found
    return latest_by_cell(records), SuiteSources(list(map(Path, suite_dirs)), owners)
