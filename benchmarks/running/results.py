"""Result records: the column set, cell identity, atomic JSON-lines append and tolerant loading."""

from __future__ import annotations

import fcntl
import hashlib
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
    # the epoch selection (metric, its score at the kept epoch, candidates, early stopping) and, for a probe phase
    # followed by fine-tuning (LP-FT), the probe phase's own best epoch
    "selection",
    "probe_best",
    # --tune: what was searched, the budget, what won on val, the scheduler and the trial-epochs really spent
    # (``tuning``) and the trials' total seconds
    "tuning",
    "tuning_s",
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
    "groups",
    "dataset_meta",
    # label efficiency (--train-sizes, --draws): the train subset's size and draw, the images it holds, and its facts
    # (per-class counts, capped classes, patient groups, a hash of the rows); None for cells on the whole train split
    "train_size",
    "draw",
    "train_images",
    "train_subset",
    # provenance
    "options_hash",
    # the code that made the record: {"commit": sha, "diff_sha": hash of uncommitted changes or None}
    "code_version",
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
    # --increments: the chunks, the modes, shrink-and-perturb's lambda and sigma, and one row per step and mode
    # (test metrics, the step's and the cumulative training seconds); ``None`` otherwise
    "increments",
]

#: a canary below this fraction of the probe's marks the cell's machine as slower than probed
SLOW_RATIO = 0.8


def spread(values: Iterable[float]) -> float:
    """``max / min - 1`` of positive figures (0 for fewer than two): how far one model's speed figures disagree."""
    values = [v for v in values if v]
    return max(values) / min(values) - 1 if len(values) > 1 else 0.0


#: the columns that identify a cell of the matrix
CELL_KEY = ("backend", "model", "strategy", "dataset", "seed", "train_size", "draw")


def cell_key(record: dict[str, Any]) -> tuple:
    """The (backend, model, strategy, dataset, seed, train size, draw) identity of a record (the last two ``None``
    on the whole train split, as in records made before they existed)."""
    return tuple(record.get(k) for k in CELL_KEY)


def subset_tag(train_size: str | None, draw: int | None) -> str | None:
    """``25-d0`` / ``10pct-d1``: the train subset part of a cell id, ``None`` on the whole train split."""
    return None if train_size is None else f"{str(train_size).replace('%', 'pct')}-d{int(draw or 0)}"


#: one part of a cell id kept as it is: filesystem-safe characters, single underscores inside
_PLAIN_PART = re.compile(r"[A-Za-z0-9.+-]+(?:_[A-Za-z0-9.+-]+)*")
#: a cell id made only of plain parts is kept as it is up to this length
PLAIN_ID_MAX = 120
#: characters of backend, model, strategy and dataset in the readable prefix of a hashed cell id (at most about
#: 190 characters in all, well below the usual 255 of a file name)
PREFIX_PART_MAX = (32, 48, 32, 48)


def _squash(part: str, limit: int) -> str:
    """``part`` in filesystem-safe characters, at most ``limit`` of them (its start and its end kept)."""
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "-", part).strip("-_") or "-"
    if len(safe) <= limit:
        return safe
    head = limit // 3
    return f"{safe[:head]}-{safe[-(limit - head - 1) :]}"


def cell_id(
    backend: str,
    model: str,
    strategy: str,
    dataset: str,
    seed: int,
    train_size: str | None = None,
    draw: int | None = None,
) -> str:
    """A filesystem-safe, readable identifier of a cell (its artifact directory's name), one per cell.

    A cell whose names are plain (filesystem-safe, no double underscore) keeps ``backend__model__strategy__
    dataset__s<seed>``; any other (a dataset spec with a path, a long name) gets a readable prefix, its parts cut
    to ``PREFIX_PART_MAX`` characters, and 12 hex digits of the hash of the full key, so two cells never share a
    directory: plain ids end in ``__s<seed>``, hashed ones in ``__<hex>``. A train subset (``--train-sizes``) adds
    ``__<size>-d<draw>`` before the seed.
    """
    parts = (backend, model, strategy, dataset)
    tag = subset_tag(train_size, draw)
    subset = f"__{tag}" if tag else ""
    plain = "__".join(parts) + f"{subset}__s{seed}"
    if all(_PLAIN_PART.fullmatch(p) for p in parts) and len(plain) <= PLAIN_ID_MAX:
        return plain
    digest = hashlib.sha256(json.dumps([*parts, int(seed), *([tag] if tag else [])]).encode()).hexdigest()[:12]
    prefix = "__".join(_squash(part, limit) for part, limit in zip(parts, PREFIX_PART_MAX, strict=True))
    return f"{prefix}{subset}__s{seed}__{digest}"


def legacy_cell_id(backend: str, model: str, strategy: str, dataset: str, seed: int) -> str:
    """The artifact directory name of cells run before ``cell_id`` hashed long or squashed keys (read only: two
    cells could share it)."""
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
        train_size=getattr(cell, "train_size", None),
        draw=getattr(cell, "draw", None),
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


def code_label(version: Any) -> str:
    """``abc1234`` for a commit, ``abc1234+diff 0f1e2d3c4b5a`` with uncommitted changes, ``unknown code``."""
    if not isinstance(version, dict) or not version.get("commit"):
        return "unknown code"
    label = str(version["commit"])[:7]
    return label + (f"+diff {version['diff_sha']}" if version.get("diff_sha") else "")


def other_code_warnings(records: Iterable[dict[str, Any]], shown: int = 4) -> list[str]:
    """One warning when a suite's cells were made by more than one code version (``--reuse-results`` kept cells
    finished by other code): the version of most cells, then each other version with its cells."""
    groups: dict[str, list[str]] = {}
    for record in records:
        tag = subset_tag(record.get("train_size"), record.get("draw"))
        name = (
            "/".join(str(record.get(k)) for k in CELL_KEY[:4]) + (f"/{tag}" if tag else "") + f"/s{record.get('seed')}"
        )
        groups.setdefault(code_label(record.get("code_version")), []).append(name)
    if len(groups) < 2:
        return []
    main, *others = sorted(groups, key=lambda label: -len(groups[label]))
    described = []
    for label in others:
        names = groups[label]
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        described.append(f"{len(names)} by {label} ({', '.join(names[:shown])}{more})")
    return [
        f"cells made by other code: {len(groups[main])} cell(s) by {main}, but "
        + "; ".join(described)
        + " (kept with --reuse-results; re-run them to compare one code version)"
    ]
