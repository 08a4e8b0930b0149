"""Teachers for ``distill``, in one place: the ``--teacher`` option checked against the matrix, the teacher cell
found and checked, and its soft labels computed in the student's cell process.

A teacher is a finished cell of the same backend that saved its trained weights (``TLBENCH_SAVE_WEIGHTS=1``). A
strategy distills when a phase of its plan has a distillation (``plan_distills``), i.e. its row sets
``distill_temperature``: nothing here looks at strategy names.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.base import Backend, BackendError
from ...backends.inference import FrameworkInference, TrainedModel
from ...core.plan import TrainingPlan
from ...core.strategies import Strategy
from .artifacts import cell_dir, find_weights
from .backend_options import backend_options
from .config import RunOptions
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
            "strategy 'distill' needs --teacher <suite>/cells/<cell_id> (a finished cell run with "
            "TLBENCH_SAVE_WEIGHTS=1)"
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
            f"--teacher {path!r} ran on backend {record['backend']!r}; a {backend!r} student needs a {backend!r} "
            "teacher"
        )
    return Teacher(directory.name, record, weights)


def plan_distills(plan: TrainingPlan) -> bool:
    """Whether any phase of ``plan`` trains on a teacher's soft labels."""
    return any(phase.distillation is not None for phase in plan.phases)


def check_teacher_option(path: str | None, strategies: Sequence[Strategy], backends: Sequence[str]) -> str | None:
    """``--teacher`` checked against the matrix: a distilling strategy needs a teacher of the suite's one backend,
    other strategies take none.

    Returns:
        The teacher's path as recorded: relative to the working directory when inside it, else absolute.

    Raises:
        BackendError: a missing, unneeded or unusable teacher (one line naming the path).
    """
    distills = any(s.distill_temperature is not None for s in strategies)
    if path is None:
        if distills:
            raise BackendError(
                "strategy 'distill' needs --teacher <suite>/cells/<cell_id> "
                "(a finished cell run with TLBENCH_SAVE_WEIGHTS=1)"
            )
        return None
    if not distills:
        raise BackendError("--teacher is only used by --strategies distill")
    teacher = load_teacher(path)
    if set(backends) != {teacher.record["backend"]}:
        raise BackendError(
            f"--teacher {path!r} ran on backend {teacher.record['backend']!r}; "
            f"run distill with --backends {teacher.record['backend']}"
        )
    inside = os.path.relpath(os.path.abspath(path))
    return inside if not inside.startswith(os.pardir) else os.path.abspath(path)


@dataclass(frozen=True)
class SoftTargets:
    """A teacher's class probabilities on the student's train rows and the note the plan line gets."""

    probs: np.ndarray
    note: str


def soft_targets(
    options: RunOptions,
    backend_name: str,
    backend_class: type[Backend],
    train_labels: np.ndarray,
    num_classes: int,
    keep: np.ndarray | None,
    load_images: Callable[[Backend, str, int], np.ndarray],
    log: Callable[[str], None],
) -> SoftTargets:
    """The teacher's probabilities on the train split (soft labels), computed once in the student's process.

    Args:
        options: the suite's options (``--teacher``, device, batch size, the backend's options).
        backend_name, backend_class: the student's backend (the teacher ran on the same one).
        train_labels: the student's whole train split's labels (before ``keep``).
        num_classes: the student's classes.
        keep: the train rows the student uses (``None``: all).
        load_images: ``(backend, model, image_size) -> train images`` of the same dataset resized for the teacher.
        log: the cell's log.

    Raises:
        BackendError: another number of classes or another train split than the student's (one line).
    """
    teacher = load_teacher(options.teacher, backend_name)
    if int(teacher.record.get("num_classes") or num_classes) != num_classes:
        raise BackendError(
            f"teacher {teacher.name!r} has {teacher.record.get('num_classes')} classes, this dataset {num_classes}"
        )
    model, image_size = teacher.record["model"], int(teacher.record["image_size"])
    engine = FrameworkInference(backend_class, options.device)
    backend = engine.rebuild(
        TrainedModel(
            backend=backend_name,
            model=model,
            num_classes=num_classes,
            image_size=image_size,
            seed=int(teacher.record["seed"]),
            artifact=teacher.weights,
            in_chans=options.in_chans,
            options=backend_options(options, backend_name),
        )
    )
    images, labels = load_images(backend, model, image_size)
    if not np.array_equal(np.asarray(labels), np.asarray(train_labels)):
        raise BackendError(
            f"teacher {teacher.name!r}: its train split differs from this cell's (another dataset or --dedup?)"
        )
    from .training import predict_in_batches

    probs = predict_in_batches(backend.predict_proba, images, options.batch_size)
    accuracy = float((probs.argmax(1) == np.asarray(labels)).mean())
    log(f"teacher {teacher.name} ({model}): soft labels for {len(probs)} train images, train accuracy {accuracy:.3f}")
    note = f"teacher {teacher.name} (test accuracy {teacher.record.get('accuracy')})"
    return SoftTargets(probs if keep is None else probs[keep], note)
