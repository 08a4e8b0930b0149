"""Decode labelled image files into per-split uint8 arrays: process pool, progress, skipped files.

Shared by the ``folder:``, ``csv:`` and ``hymenoptera`` sources. Images are decoded by a pool of worker
processes (one per usable core, ``TLBENCH_DATA_WORKERS`` overrides) in source order and, when the cache gives
a staging directory, written straight into memory-mapped ``.npy`` files, so a dataset larger than RAM still
builds. Unusable files are skipped, counted and listed (first few) in the log and in ``meta``.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .base import DatasetError, ResizePolicy, Split
from .cache import copy_rows, images_path, open_images_for_writing
from .decode import Decoded, decode_file
from .progress import log, progress_bar

#: skipped files listed in the log and in ``meta["skipped_examples"]``
MAX_SKIPPED_EXAMPLES = 10
#: below this many files the pool's start-up costs more than it saves
MIN_FILES_FOR_POOL = 64
#: folder names (any case) that mean each split
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def display_path(path: str) -> str:
    """``path`` as shown to the user: unchanged when it is valid text, else with its undecodable bytes escaped.

    A file name that is not valid UTF-8 reaches Python with surrogate escapes; this shows it as ``caf\\xe9.png``
    (the bytes as a ``repr`` would show them), which names the file and can be printed and written to JSON.
    """
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def image_name(split: str, relative: str) -> str:
    """Short name of an image of ``split`` whose path relative to the dataset root is ``relative``.

    The relative path itself when its first folder is that split's folder (``test/PNEUMONIA/x.jpeg``), else
    prefixed with the split (``val:train/NORMAL/y.jpeg`` for an image carved from train).
    """
    shown = display_path(relative).replace(os.sep, "/")
    first = shown.split("/", 1)[0].lower()
    return shown if first in SPLIT_ALIASES.get(split, ()) else f"{split}:{shown}"


@dataclass(frozen=True)
class LabelledFiles:
    """The files of one split, in order, with their int labels, optional names (relative to the root) and optional
    groups (``--group-by``: each file's patient, ``None`` for a file without one)."""

    paths: list[str]
    labels: np.ndarray
    names: list[str] | None = None
    groups: list[str | None] | None = None

    def subset(self, indices: np.ndarray) -> LabelledFiles:
        """The files at ``indices``, in that order."""
        names = [self.names[i] for i in indices] if self.names is not None else None
        groups = [self.groups[i] for i in indices] if self.groups is not None else None
        return LabelledFiles([self.paths[i] for i in indices], self.labels[indices], names, groups)


@dataclass
class DecodeReport:
    """What decoding found: ``skipped`` holds ``(path, reason)`` pairs, in source order."""

    skipped: list[tuple[str, str]] = field(default_factory=list)
    gray_images: int = 0
    decoded_images: int = 0

    def meta(self) -> dict[str, object]:
        """Provenance fields recorded in ``ArrayDataset.meta``."""
        return {
            "gray_to_rgb": self.gray_images > 0,
            "gray_images": self.gray_images,
            "skipped_images": len(self.skipped),
            "skipped_examples": [f"{path}: {reason}" for path, reason in self.skipped[:MAX_SKIPPED_EXAMPLES]],
        }


def data_workers() -> int:
    """Worker processes for decoding: ``$TLBENCH_DATA_WORKERS`` or the number of usable cores.

    Raises:
        DatasetError: ``TLBENCH_DATA_WORKERS`` is not a positive integer.
    """
    value = os.environ.get("TLBENCH_DATA_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise DatasetError(f"TLBENCH_DATA_WORKERS={value!r}; expected a positive integer")
        return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


#: frameworks whose thread pools (torch's OpenMP and inductor compile workers, TF's Eigen pools) make fork unsafe
THREADED_FRAMEWORKS = ("torch", "tensorflow", "jax")


def _pool_context() -> multiprocessing.context.BaseContext:
    """The start method of the decode workers.

    On Linux, a process without a deep-learning framework loaded forks (like torch's DataLoader: workers only run
    Pillow/numpy code, and unlike spawn/forkserver fork does not re-import the caller's ``__main__``). fork copies
    only the calling thread, so once a framework has started its thread pools (torch's OpenMP team, inductor's
    compile workers, TF's Eigen pools) a lock one of them held can stay locked in the child and the pool hangs:
    there a clean single-threaded fork server starts the workers. Elsewhere: spawn.
    """
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    threaded = any(name in sys.modules for name in THREADED_FRAMEWORKS)
    return multiprocessing.get_context("forkserver" if threaded else "fork")


def _decoded_stream(paths: list[str], policy: ResizePolicy, workers: int) -> Iterator[Decoded]:
    decode = functools.partial(decode_file, policy=policy)
    if workers <= 1 or len(paths) < MIN_FILES_FOR_POOL:
        yield from map(decode, paths)
        return
    chunksize = max(1, min(32, len(paths) // (workers * 8)))
    with _pool_context().Pool(workers) as pool:
        yield from pool.imap(decode, paths, chunksize=chunksize)


def _compact(directory: Path, split: str, partial: np.ndarray, keep: np.ndarray, image_size: int) -> np.ndarray:
    kept = np.flatnonzero(keep)
    out = open_images_for_writing(directory, split, len(kept), image_size)
    copy_rows(partial, kept, out)
    out.flush()
    return out


def decode_splits(
    files: dict[str, LabelledFiles],
    policy: ResizePolicy,
    directory: Path | None,
    progress: bool,
    desc: str,
) -> tuple[dict[str, Split], DecodeReport]:
    """Decode and resize every file of every split.

    Args:
        files: split name -> its labelled files.
        policy: the resize policy.
        directory: staging directory of the cache entry (arrays are streamed there as memory maps), or
            ``None`` to build in memory.
        progress: show a progress bar (or log lines when stderr is not a terminal).
        desc: label of the progress reports (e.g. the dataset spec).

    Returns:
        The splits (skipped files removed; ``names`` from ``files`` through ``image_name``, ``groups`` as given) and
        the report.
    """
    size = policy.image_size
    report = DecodeReport()
    workers = data_workers()
    all_paths = [path for part in files.values() for path in part.paths]
    total = len(all_paths)
    bar = progress_bar(total, f"caching {desc}", progress)
    outputs: dict[str, np.ndarray] = {}
    keeps: dict[str, np.ndarray] = {}
    for name, part in files.items():
        shape = (len(part.paths), size, size, 3)
        outputs[name] = (
            np.empty(shape, np.uint8)
            if directory is None
            else open_images_for_writing(directory, name, len(part.paths), size, ".partial")
        )
        keeps[name] = np.ones(len(part.paths), dtype=bool)
    owners = [(name, i) for name, part in files.items() for i in range(len(part.paths))]
    try:
        for (name, i), path, decoded in zip(
            owners, all_paths, _decoded_stream(all_paths, policy, workers), strict=True
        ):
            if decoded.array is None:
                keeps[name][i] = False
                report.skipped.append((display_path(path), decoded.reason))
            else:
                outputs[name][i] = decoded.array
                report.gray_images += int(decoded.gray)
                report.decoded_images += 1
            bar.update(1)
    finally:
        bar.close()
    splits = {
        name: _finish_split(name, outputs[name], keeps[name], files[name].labels, directory, size) for name in files
    }
    for name, part in files.items():
        if part.names is not None:
            splits[name].names = [image_name(name, n) for n, keep in zip(part.names, keeps[name], strict=True) if keep]
        if part.groups is not None:
            splits[name].groups = [g for g, keep in zip(part.groups, keeps[name], strict=True) if keep]
    if report.skipped:
        log(f"{desc}: skipped {len(report.skipped)} of {total} image files; first ones:")
        for path, reason in report.skipped[:MAX_SKIPPED_EXAMPLES]:
            log(f"  skipped {path}: {reason}")
    return splits, report


def _finish_split(
    name: str, images: np.ndarray, keep: np.ndarray, labels: np.ndarray, directory: Path | None, size: int
) -> Split:
    labels = np.asarray(labels, dtype=np.int64)[keep]
    if directory is None:
        return Split(images=images if keep.all() else images[keep], labels=labels)
    partial_path = directory / f"{name}_images.partial.npy"
    if keep.all():
        images.flush()
        del images
        os.replace(partial_path, images_path(directory, name))
    else:
        _compact(directory, name, images, keep, size)
        del images
        partial_path.unlink()
    return Split(images=np.load(images_path(directory, name), mmap_mode="r"), labels=labels)


def check_classes_present(splits: dict[str, Split], class_names: list[str], desc: str) -> None:
    """Fail when skipping left a split without any image of some class.

    Raises:
        DatasetError: naming the split and the class.
    """
    for name, split in splits.items():
        present = set(np.unique(np.asarray(split.labels)).tolist())
        for index, class_name in enumerate(class_names):
            if index not in present:
                raise DatasetError(
                    f"{desc}: split {name!r} has no readable image of class {class_name!r}; "
                    "every split needs every class"
                )
