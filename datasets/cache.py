"""On-disk cache of resized uint8 arrays, keyed by source content and resize policy.

The cache root is the folder the user names (``--cache-dir``, the ``cache_dir`` argument), else
``$TLBENCH_CACHE``, else ``~/.cache/tlbench``; whichever it is, dataset entries live in ``<root>/datasets/``
(and downloads in ``<root>/downloads/``), so naming the default root explicitly reuses the same entries.

Layout of one entry: ``<root>/datasets/<slug>-<policy>-<key16>/`` with ``<split>_images.npy``,
``<split>_labels.npy``, ``<split>_hashes.npy`` (per image: 16-byte content digest, then 16-byte difference
hash; see ``hashing``), ``names.json`` (relative image names, file-based sources only), ``groups.json`` (each
image's group, sources grouped by ``--group-by`` only: the grouping is part of the key) and ``meta.json``
(written last, so an entry without it is incomplete and rebuilt). The hashes are computed while the entry is
written, so warm loads never rehash. Entries are written into a temporary directory and renamed into place,
so an interrupted build never leaves a half-written entry; a build holds a lock (``<root>/locks/<entry>.lock``), so
two processes asking for the same missing entry at once (cells of ``--parallel 2``) build it once: the second waits
and reads the first's entry, and a finished entry is never replaced while another process reads it. Arrays are
loaded with ``mmap_mode="r"``: a dataset larger than RAM still works. ``views/`` may later hold row subsets
written by ``kept_rows`` (e.g. a split without its duplicates); the entry itself never depends on such a policy.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .base import SPLITS, ArrayDataset, DatasetSource, ResizePolicy, Split
from .hashing import CONTENT_HASH_BYTES, DHASH_BYTES, image_hashes

#: bump when the decoding/resizing code or the entry layout changes (3: hashes and names in the entry)
CACHE_FORMAT = 3
#: sub-folder of the cache root holding the dataset entries
DATASETS_SUBDIR = "datasets"
#: sub-folder of the cache root holding one lock file per entry being built
LOCKS_SUBDIR = "locks"
#: images copied per step when writing a row subset
_COPY_CHUNK = 256


def default_cache_dir() -> Path:
    """The cache root: ``$TLBENCH_CACHE`` if set, else ``~/.cache/tlbench`` (entries go to ``<root>/datasets``)."""
    root = os.environ.get("TLBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tlbench")
    return Path(root)


def datasets_dir(cache_dir: Path | str | None = None) -> Path:
    """Folder of the dataset entries: ``<cache_dir>/datasets``, with ``default_cache_dir()`` as the default root."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / DATASETS_SUBDIR


def cache_key(source: DatasetSource, policy: ResizePolicy) -> str:
    """Hex digest identifying (source content, resize policy, cache format) and the source's grouping
    (``--group-by``: it decides how splits are carved; entries without one keep their keys)."""
    text = f"v{CACHE_FORMAT}|{source.fingerprint()}|{policy.key()}"
    if source.group_by is not None:
        text += f"|group-by:{source.group_by.text}"
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def entry_dir(source: DatasetSource, policy: ResizePolicy, cache_dir: Path | None = None) -> Path:
    """Directory of the cache entry for ``source`` resized with ``policy`` under the cache root ``cache_dir``."""
    return datasets_dir(cache_dir) / f"{source.slug}-{policy.key()}-{cache_key(source, policy)[:16]}"


def images_path(directory: Path, split: str) -> Path:
    """Path of a split's image array inside a cache entry (or its staging directory)."""
    return directory / f"{split}_images.npy"


def open_images_for_writing(directory: Path, split: str, count: int, image_size: int, suffix: str = "") -> np.ndarray:
    """Create ``<split>_images<suffix>.npy`` as a writable ``(count, S, S, 3)`` uint8 memory map.

    Loaders fill it image by image, so building a dataset never needs it all in RAM.
    """
    path = directory / f"{split}_images{suffix}.npy"
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, image_size, image_size, 3))


def _is_file_backed_by(array: np.ndarray, path: Path) -> bool:
    base = array
    while base is not None and not isinstance(base, np.memmap):
        base = getattr(base, "base", None)
    filename = getattr(base, "filename", None)
    return filename is not None and Path(filename).resolve() == path.resolve()


def copy_rows(images: np.ndarray, rows: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = images[rows]`` chunk by chunk, so a memory-mapped source is never read into RAM at once."""
    for start in range(0, len(rows), _COPY_CHUNK):
        chunk = rows[start : start + _COPY_CHUNK]
        out[start : start + len(chunk)] = images[chunk]


def write_entry(dataset: ArrayDataset, tmp: Path) -> None:
    """Write ``dataset``'s arrays, per-image hashes, names and ``meta.json`` into the staging directory ``tmp``.

    Image arrays that are already memory maps of ``tmp/<split>_images.npy`` (streamed by ``build_to``) are
    left in place, not copied. The hashes are computed here, once per entry (see ``hashing``).
    """
    names: dict[str, list[str]] = {}
    groups: dict[str, list[str | None]] = {}
    for name, split in dataset.splits.items():
        target = images_path(tmp, name)
        if not _is_file_backed_by(split.images, target):  # streamed arrays were flushed by their writer
            np.save(target, np.ascontiguousarray(split.images, dtype=np.uint8))
        np.save(tmp / f"{name}_labels.npy", np.asarray(split.labels, dtype=np.int64))
        content, perceptual = image_hashes(np.load(target, mmap_mode="r"))
        np.save(tmp / f"{name}_hashes.npy", np.concatenate([content, perceptual], axis=1))
        if split.names is not None:
            names[name] = list(split.names)
        if split.groups is not None:
            groups[name] = list(split.groups)
    if names:
        (tmp / "names.json").write_text(json.dumps(names))
    if groups:
        (tmp / "groups.json").write_text(json.dumps(groups))
    meta = {"name": dataset.name, "class_names": dataset.class_names, "splits": list(dataset.splits), **dataset.meta}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


def _staging_dir(directory: Path) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))


def _commit(tmp: Path, directory: Path) -> None:
    """Rename the staged entry ``tmp`` into place. An incomplete entry there is replaced; a complete one (another
    process committed the same entry first: same source, same bytes) is kept, and ``tmp`` removed, so no reader of
    a finished entry ever sees it deleted under it."""
    try:
        os.replace(tmp, directory)  # onto a missing or empty directory
        return
    except OSError:
        if not directory.is_dir():
            raise
    if load_cached(directory) is not None:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    shutil.rmtree(directory)
    os.replace(tmp, directory)


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold the exclusive lock of building the entry ``directory`` (``<root>/locks/<entry>.lock``, ``flock``).

    Another process (or thread) building the same entry waits here. Where the lock file cannot be created (a
    read-only cache root), builds go unlocked: the commit alone still never replaces a complete entry.
    """
    locks = directory.parent.parent / LOCKS_SUBDIR
    try:
        locks.mkdir(parents=True, exist_ok=True)
        handle = open(locks / f"{directory.name}.lock", "a")  # noqa: SIM115 - closed below, after the unlock
    except OSError:
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def save_dataset(dataset: ArrayDataset, directory: Path) -> None:
    """Write ``dataset`` to ``directory`` atomically (temp dir + rename)."""
    tmp = _staging_dir(directory)
    try:
        write_entry(dataset, tmp)
        _commit(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_cached(directory: Path) -> ArrayDataset | None:
    """Load a complete cache entry memory-mapped, or return ``None`` if it is absent/incomplete."""
    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        names_path = directory / "names.json"
        names = json.loads(names_path.read_text()) if names_path.is_file() else {}
        groups_path = directory / "groups.json"
        groups = json.loads(groups_path.read_text()) if groups_path.is_file() else {}
        splits = {
            name: _load_split(directory, name, names.get(name), groups.get(name)) for name in meta.pop("splits", SPLITS)
        }
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    name = meta.pop("name")
    class_names = meta.pop("class_names")
    return ArrayDataset(name=name, class_names=class_names, splits=splits, meta={**meta, "cache_dir": str(directory)})


def _load_split(directory: Path, name: str, names: list[str] | None, groups: list[str | None] | None) -> Split:
    images = np.load(directory / f"{name}_images.npy", mmap_mode="r")
    labels = np.load(directory / f"{name}_labels.npy")
    hashes = np.load(directory / f"{name}_hashes.npy")
    if hashes.shape != (len(labels), CONTENT_HASH_BYTES + DHASH_BYTES) or any(
        values is not None and len(values) != len(labels) for values in (names, groups)
    ):
        raise ValueError(f"{directory}: {name} hashes, names or groups do not match its labels")
    return Split(
        images=images,
        labels=labels,
        names=names,
        content_hashes=hashes[:, :CONTENT_HASH_BYTES],
        difference_hashes=hashes[:, CONTENT_HASH_BYTES:],
        groups=groups,
    )


def kept_rows(directory: Path | None, split: str, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``images[rows]``, as a memory map saved once under ``<directory>/views/`` and reused by later loads.

    The file is named by a digest of ``rows``, written to a temporary name and renamed into place (two
    processes may write it at once). Without a cache entry, or when it cannot be written (read-only cache),
    the rows are copied into memory instead.

    Args:
        directory: the cache entry the images come from, or ``None``.
        split: split name (part of the file name).
        images: the split's images (a memory map of the entry).
        rows: sorted indices of the images to keep.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if directory is None:
        return np.asarray(images[rows])
    digest = hashlib.sha256(rows.tobytes() + repr(images.shape).encode()).hexdigest()[:16]
    path = Path(directory) / "views" / f"{split}-{digest}_images.npy"
    shape = (len(rows), *images.shape[1:])
    try:
        existing = np.load(path, mmap_mode="r")
        if existing.shape == shape:
            return existing
    except (OSError, ValueError):
        pass
    try:
        path.parent.mkdir(exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npy", dir=path.parent)
        os.close(handle)
    except OSError:
        return np.asarray(images[rows])
    try:
        out = np.lib.format.open_memmap(tmp_name, mode="w+", dtype=np.uint8, shape=shape)
        copy_rows(images, rows, out)
        out.flush()
        del out
        os.replace(tmp_name, path)
    except OSError:
        Path(tmp_name).unlink(missing_ok=True)
        return np.asarray(images[rows])
    return np.load(path, mmap_mode="r")


def load_or_build(
    source: DatasetSource, policy: ResizePolicy, cache_dir: Path | None = None, progress: bool = False
) -> ArrayDataset:
    """Return the cached dataset for (source, policy), building and caching it first if needed.

    Args:
        source: the parsed dataset spec.
        policy: the resize policy.
        cache_dir: cache root (entries under ``<cache_dir>/datasets``; default ``default_cache_dir()``).
        progress: show progress while building.
    """
    directory = entry_dir(source, policy, cache_dir)
    cached = load_cached(directory)
    if cached is not None:
        cached.meta["cache_hit"] = True
        return cached
    with build_lock(directory):
        cached = load_cached(directory)  # built by another process while this one waited for the lock
        if cached is not None:
            cached.meta["cache_hit"] = True
            return cached
        tmp = _staging_dir(directory)
        try:
            dataset = source.build_to(policy, tmp, progress=progress)
            write_entry(dataset, tmp)
            del dataset  # release the memory maps before the rename
            _commit(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    loaded = load_cached(directory)
    assert loaded is not None, f"cache entry {directory} unreadable right after writing it"
    loaded.meta["cache_hit"] = False
    return loaded
