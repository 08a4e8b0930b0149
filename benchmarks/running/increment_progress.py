"""Step checkpoints of an ``--increments`` cell: an interrupted cell resumes at its next step, not at step 1.

An incremental cell trains ``K`` steps per mode (up to ``3K - 2`` trainings: a full fine-tuning cell of the
PneumoniaMNIST suite trains about 14 minutes). After each step the cell writes the step's weights (the backend's own
safe format, ``Backend.save_weights``) and what the step measured (its ``increments`` row and the loop's
``TrainOutcome``, as JSON) under ``<cell dir>/increments/``; when the same cell starts again, with the same options
and the same code, it loads them and trains only the steps still missing. The directory is removed once the cell's
record is written.

A resumed cell is not bit-identical to an uninterrupted one: a framework's global random state (dropout, data
augmentation) is not carried over, so the record says where it resumed (``increments.resumed_after``). Each step's
seconds are those measured when the step ran.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ...backends.base import Backend, ParamCounts
from .training import PhaseTiming, TrainOutcome

#: the sub-directory of the cell directory holding the steps
PROGRESS_DIR = "increments"
#: the index of the saved steps
PROGRESS_FILE = "progress.json"
#: format of ``progress.json`` (a different one is never read)
PROGRESS_FORMAT = 1


def progress_key(cell_id: str, options_fingerprint: str, code: dict[str, Any] | None) -> str:
    """What saved steps must match to be reused: the cell, the options that change its results, and the code
    (commit and uncommitted changes; ``None`` outside a checkout)."""
    code_text = json.dumps(code, sort_keys=True) if code is not None else "no checkout"
    return hashlib.sha256(f"{cell_id}|{options_fingerprint}|{code_text}".encode()).hexdigest()[:16]


def outcome_to_json(outcome: TrainOutcome) -> dict[str, Any]:
    """A ``TrainOutcome`` as plain JSON data (``outcome_from_json`` reads it back)."""
    return asdict(outcome)


def outcome_from_json(data: dict[str, Any]) -> TrainOutcome:
    """The ``TrainOutcome`` written by ``outcome_to_json``."""
    counts = data.get("counts")
    return TrainOutcome(
        **{
            **data,
            "phases": [PhaseTiming(**phase) for phase in data.get("phases", [])],
            "counts": ParamCounts(**counts) if counts else None,
        }
    )


class StepStore:
    """The saved steps of one incremental cell (see the module docstring).

    Steps are named ``first`` (step 1, shared by every mode) and ``<mode>`` (the latest finished step of that
    mode; its weights file is replaced at every step).
    """

    def __init__(self, cell_dir: Path, key: str, suffix: str) -> None:
        """
        Args:
            cell_dir: the cell's artifact directory.
            key: ``progress_key`` of this run of the cell.
            suffix: the backend's ``weights_suffix``.
        """
        self.directory = Path(cell_dir) / PROGRESS_DIR
        self.key = key
        self.suffix = suffix
        self.steps: dict[str, dict[str, Any]] = {}
        #: the ``increments`` rows written so far (every mode), as of the latest save
        self.rows: list[dict[str, Any]] = []

    def load(self) -> dict[str, dict[str, Any]]:
        """The saved steps of this key (``{name: {"step", "row", "outcome", "metrics", "weights"}}``; ``row``: the
        step's own ``increments`` row, ``None`` for ``first``), ``rows`` set to the rows saved last; saved steps of
        another key, format or unreadable are removed, and nothing is resumed."""
        index = self.directory / PROGRESS_FILE
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError):
            data = None
        valid = (
            isinstance(data, dict)
            and data.get("format") == PROGRESS_FORMAT
            and data.get("key") == self.key
            and isinstance(data.get("steps"), dict)
            and isinstance(data.get("rows"), list)
            and all((self.directory / step.get("weights", "")).is_file() for step in data["steps"].values())
        )
        if not valid:
            self.clear()
            return {}
        self.steps, self.rows = data["steps"], data["rows"]
        return dict(self.steps)

    def save(
        self,
        backend: Backend,
        name: str,
        step: int,
        rows: list[dict[str, Any]],
        outcome: TrainOutcome,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """Save the weights ``backend`` holds as step ``step`` of ``name`` (its own row: the last of ``rows``, the
        ``increments`` rows so far), with the step's outcome and (step 1) its test metrics; the index is replaced
        atomically after the weights."""
        self.directory.mkdir(parents=True, exist_ok=True)
        weights = f"{name}{self.suffix}"
        backend.save_weights(str(self.directory / weights))
        self.steps[name] = {
            "step": step,
            "row": dict(rows[-1]) if rows else None,
            "outcome": outcome_to_json(outcome),
            "metrics": metrics,
            "weights": weights,
        }
        tmp = self.directory / f".{PROGRESS_FILE}.tmp"
        self.rows = [dict(row) for row in rows]
        index = {"format": PROGRESS_FORMAT, "key": self.key, "steps": self.steps, "rows": self.rows}
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self.directory / PROGRESS_FILE)

    def weights(self, name: str) -> str:
        """The path of step ``name``'s weights file (for ``Backend.load_weights``)."""
        return str(self.directory / self.steps[name]["weights"])

    def clear(self) -> None:
        """Remove every saved step (the cell finished, or the saved steps belong to other options or code)."""
        shutil.rmtree(self.directory, ignore_errors=True)
        self.steps, self.rows = {}, []
