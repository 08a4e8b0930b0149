"""Result records: the column set, cell identity, atomic JSON-lines append and tolerant loading."""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: the columns of one result record, in table order: every record has exactly these keys, whatever the
#: backend (backend-specific facts go into the one ``backend_facts`` column), so ``summary.csv`` has a stable
#: schema across backend sets
RESULT_COLUMNS = [
    "backend",
    "model",
    "strategy",
    "dataset",
    "seed",
    "status",
    "error",
    "pretrained",
    "device",
    "dtype",
    "batch_size",
    "image_size",
    "epochs",
    "trainable_params",
    "total_params",
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
    "peak_device_mb",
    # how it was trained and measured
    "val_accuracy",
    "best_epoch",
    "train_s",
    "train_first_steps_s",
    "phase_images_per_s",
    "feature_extract_s",
    "feature_extract_images_per_s",
    "feature_dim",
    "feature_cache",
    "feature_cache_read_s",
    "head_train_s",
    "infer_batch_size",
    "infer_repeats",
    "infer_prepare_s",
    "infer_timed_s",
    "infer_latency_cv",
    "flops_per_image",
    "train_flops_per_image",
    "train_mfu",
    "infer_mfu",
    "plan",
    # data
    "num_classes",
    "class_names",
    "split_sizes",
    "skipped_images",
    "duplicates",
    "dataset_meta",
    # provenance
    "options_hash",
    "environment_id",
    "run_id",
    "framework_versions",
    "backend_facts",
    "runtime",
    "contention",
    # the suite's inference pass (infer_pass.py): how the infer_* figures were re-timed, the cell's own kept
    "infer_pass",
    # the pass's deployment runtimes (--deploy): {engine: speed, export/prepare seconds, test metrics, |Δprob|}
    "deploy",
    # where and beside how many other cells it ran (executors.CellOccupancy)
    "concurrency",
]

#: a canary below this fraction of the probe's marks the cell's machine as slower than probed
SLOW_RATIO = 0.8


def spread(values: Iterable[float]) -> float:
    """``max / min - 1`` of positive figures (0 for fewer than two): how far one model's speed figures disagree."""
    values = [v for v in values if v]
    return max(values) / min(values) - 1 if len(values) > 1 else 0.0


#: the columns that identify a cell of the matrix
CELL_KEY = ("backend", "model", "strategy", "dataset", "seed")


def cell_key(record: dict[str, Any]) -> tuple:
    """The (backend, model, strategy, dataset, seed) identity of a record."""
    return tuple(record.get(k) for k in CELL_KEY)


def cell_id(backend: str, model: str, strategy: str, dataset: str, seed: int) -> str:
    """A filesystem-safe, readable identifier of a cell (its artifact directory's name)."""
    raw = f"{backend}__{model}__{strategy}__{dataset}__s{seed}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", raw)[:200]


def empty_record(cell: Any, options: Any) -> dict[str, Any]:
    """A record of ``cell`` (a ``CellConfig``) with every result column present (``None`` until measured).

    Args:
        cell: the cell.
        options: the suite's ``RunOptions`` (batch size, image size, epochs, the cell's options fingerprint).
    """
    record: dict[str, Any] = {column: None for column in RESULT_COLUMNS}
    record.update(
        backend=cell.backend,
        model=cell.model,
        strategy=cell.strategy,
        dataset=cell.dataset,
        seed=cell.seed,
        batch_size=options.batch_size,
        image_size=options.image_size,
        epochs=options.epochs,
        options_hash=options.fingerprint(cell.backend),
    )
    return record


def check_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with exactly the result columns, in order.

    Raises:
        KeyError: the record has a key outside ``RESULT_COLUMNS`` (a backend fact that belongs in
            ``backend_facts``): a programming error, caught by the tests.
    """
    unknown = [key for key in record if key not in RESULT_COLUMNS]
    if unknown:
        raise KeyError(f"record keys outside RESULT_COLUMNS: {', '.join(unknown)}; put backend facts in backend_facts")
    return {column: record.get(column) for column in RESULT_COLUMNS}


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def append_result(path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line, atomically: one ``write`` under an exclusive lock, then fsync.

    A reader never sees half a record from a finished write; a crash mid-write leaves at most one truncated
    last line, which ``load_results`` skips.
    """
    line = json.dumps(_jsonable(record), sort_keys=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # a previous crash may have left a line without newline: start on a fresh line
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    line = "\n" + line
        data = line.encode()
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def load_results(path: Path) -> list[dict[str, Any]]:
    """All records of a ``results.jsonl`` in file order; unparsable (truncated) lines are skipped with a warning."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            print(f"tlbench: warning: skipping unreadable line {number} of {path}", file=sys.stderr)
    return records


def latest_by_cell(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last record of each cell, in order of first appearance (a re-run replaces a failed attempt)."""
    latest: dict[tuple, dict[str, Any]] = {}
    for record in records:
        latest[cell_key(record)] = record
    return list(latest.values())


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` via a temp file and rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=1))
    os.replace(tmp, path)
