"""On-disk cache of resized uint8 arrays, keyed by source content and resize policy.

Layout of one entry: ``<cache_dir>/<slug>-<key16>/`` with ``<split>_images.npy``, ``<split>_labels.npy`` and
``meta.json`` (written last, so an entry without it is incomplete and rebuilt). Entries are written into a
temporary directory and renamed into place, so an interrupted build never leaves a half-written entry.
Arrays are loaded with ``mmap_mode="r"``: a dataset larger than RAM still works.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tlbench.datasets.base import SPLITS, ArrayDataset, DatasetSource, ResizePolicy, Split

#: bump when the decoding/resizing code changes in a way that changes the bytes
CACHE_FORMAT = 2


def default_cache_dir() -> Path:
    """``$TLBENCH_CACHE/datasets`` if set, else ``~/.cache/tlbench/datasets``."""
    root = os.environ.get("TLBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tlbench")
    return Path(root) / "datasets"


def cache_key(source: DatasetSource, policy: ResizePolicy) -> str:
    """Hex digest identifying (source content, resize policy, cache format)."""
    text = f"v{CACHE_FORMAT}|{source.fingerprint()}|{policy.key()}"
    return hashlib.sha256(text.encode()).hexdigest()


def entry_dir(source: DatasetSource, policy: ResizePolicy, cache_dir: Path | None = None) -> Path:
    """Directory of the cache entry for ``source`` resized with ``policy``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return root / f"{source.slug}-{policy.key()}-{cache_key(source, policy)[:16]}"


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


def write_entry(dataset: ArrayDataset, tmp: Path) -> None:
    """Write ``dataset``'s arrays and ``meta.json`` into the staging directory ``tmp``.

    Image arrays that are already memory maps of ``tmp/<split>_images.npy`` (streamed by ``build_to``) are
    left in place, not copied.
    """
    for name, split in dataset.splits.items():
        target = images_path(tmp, name)
        if not _is_file_backed_by(split.images, target):  # streamed arrays were flushed by their writer
            np.save(target, np.ascontiguousarray(split.images, dtype=np.uint8))
        np.save(tmp / f"{name}_labels.npy", np.asarray(split.labels, dtype=np.int64))
    meta = {"name": dataset.name, "class_names": dataset.class_names, "splits": list(dataset.splits), **dataset.meta}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


def _staging_dir(directory: Path) -> Path:
    directory.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))


def _commit(tmp: Path, directory: Path) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)


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
        splits = {
            name: Split(
                images=np.load(directory / f"{name}_images.npy", mmap_mode="r"),
                labels=np.load(directory / f"{name}_labels.npy"),
            )
            for name in meta.pop("splits", SPLITS)
        }
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    name = meta.pop("name")
    class_names = meta.pop("class_names")
    return ArrayDataset(name=name, class_names=class_names, splits=splits, meta={**meta, "cache_dir": str(directory)})


def load_or_build(
    source: DatasetSource, policy: ResizePolicy, cache_dir: Path | None = None, progress: bool = False
) -> ArrayDataset:
    """Return the cached dataset for (source, policy), building and caching it first if needed."""
    directory = entry_dir(source, policy, cache_dir)
    cached = load_cached(directory)
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
