"""Teachers for ``distill``: a finished cell that saved its trained weights, found and checked in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...backends.base import BackendError
from .artifacts import cell_dir, find_weights
from .results import latest_by_cell, load_results


@dataclass(frozen=True)
class Teacher:
    """A teacher cell: its directory name, result record and weights file."""

    name: str
    record: dict[str, Any]
    weights: Path


def load_teacher(path: str | None, backend: str | None = None) -> Teacher:
    """The teacher cell at ``path`` (``<suite>/cells/<cell_id>``).

    Raises:
        BackendError: no such cell, it did not finish, saved no weights, or ran on another backend than
            ``backend`` (a student trains in its own framework's process); one line naming the path.
    """
    if not path:
        raise BackendError(
            "strategy 'distill' needs --teacher <suite>/cells/<cell_id> (a finished cell run with TLBENCH_SAVE_WEIGHTS=1)"
        )
    directory = Path(path)
    if not directory.is_dir() or directory.parent.name != "cells":
        raise BackendError(f"--teacher {path!r} is not a cell directory; expected <suite>/cells/<cell_id>")
    suite = directory.parent.parent
    records = [
        r for r in latest_by_cell(load_results(suite / "results.jsonl")) if cell_dir(suite, r).name == directory.name
    ]
    if not records or records[0].get("status") != "ok":
        raise BackendError(f"--teacher {path!r}: {suite / 'results.jsonl'} has no finished record of that cell")
    weights = find_weights(directory)
    if weights is None:
        raise BackendError(f"--teacher {path!r} saved no trained weights; re-run that cell with TLBENCH_SAVE_WEIGHTS=1")
    record = records[0]
    if backend is not None and record["backend"] != backend:
        raise BackendError(
            f"--teacher {path!r} ran on backend {record['backend']!r}; a {backend!r} student needs a {backend!r} teacher"
        )
    return Teacher(directory.name, record, weights)
