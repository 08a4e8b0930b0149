"""Frozen-backbone features cached on disk, so another probe, seed or head reuses them instead of recomputing.

A probe's cost is almost all feature extraction; with the features on disk a second probe (another seed,
``logreg_probe`` after ``knn_probe``, a fusion of models already extracted) costs a file read. The key names
everything the features depend on: backend, model, where its weights came from, the backend's typed options
(``amp`` changes the numbers), the dataset's cache entry (content + resize policy), the duplicate policy and the
patient grouping (which rows the splits keep), the framework versions and this module's format. Files are plain ``.npy``
arrays (never pickles), written to a temporary directory and renamed, so a crash never leaves half an entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .backend_options import backend_options

#: bump when what is stored changes (2: weights files keyed by content; the extraction seconds kept in meta.json)
FEATURE_CACHE_FORMAT = 2


def feature_cache_root(cache_dir: str | Path | None = None) -> Path:
    """``<root>/features`` under the same root as the dataset cache (``--cache-dir``, ``$TLBENCH_CACHE``,
    ``~/.cache/tlbench``)."""
    root = cache_dir or os.environ.get("TLBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tlbench")
    return Path(root) / "features"


def weights_identity(weights: str) -> str:
    """What the features depend on of ``weights``: a local file's content (``sha256:<16 hex>``, so a checkpoint
    regenerated at the same path never reuses stale features), else the value itself (``default``, a name)."""
    path = Path(weights)
    if not path.is_file():
        return weights
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:16]}"


def feature_key(**facts: Any) -> str:
    """A readable, collision-safe entry name from everything the features depend on."""
    payload = json.dumps({**facts, "format": FEATURE_CACHE_FORMAT}, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
    slug = "-".join(str(facts.get(k, "")) for k in ("backend", "model")).replace("/", "_")
    return f"{slug}-{digest}"


@dataclass
class CachedFeatures:
    """Features per split and how they were obtained.

    Attributes:
        splits: the features per split.
        hit: read from the cache.
        seconds: seconds of the extraction (synchronized): measured now on a miss; on a hit, the seconds the entry's
            extraction took when it was made (``meta.json``), so a probe's cost never becomes a file read.
        images: images extracted.
        read_s: on a hit, the seconds spent reading the entry (``None`` on a miss).
        split_seconds: the extraction seconds of each split (an entry made before they were recorded: ``seconds``
            shared in proportion to the splits' images).
    """

    splits: dict[str, np.ndarray]
    hit: bool
    seconds: float
    images: int
    read_s: float | None = None
    split_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float | None:
        """Images/s of the extraction."""
        return self.images / self.seconds if self.seconds > 0 else None

    def seconds_of(self, names: Collection[str]) -> float:
        """The extraction seconds of the splits ``names`` (what a cell is charged for its training splits)."""
        if all(name in self.split_seconds for name in names):
            return sum(self.split_seconds[name] for name in names)
        share = self.images_of(names) / self.images if self.images else 0.0
        return self.seconds * share

    def images_of(self, names: Collection[str]) -> int:
        """Images of the splits ``names``."""
        return sum(len(self.splits[name]) for name in names)


class FeatureCache:
    """``.npy`` files per split under ``<root>/<key>/``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, key: str, splits: list[str], lengths: dict[str, int]) -> dict[str, np.ndarray] | None:
        """The cached splits, or ``None`` when any is missing or has another length (a changed dataset)."""
        directory = self.root / key
        found: dict[str, np.ndarray] = {}
        for split in splits:
            path = directory / f"{split}.npy"
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                return None
            if len(array) != lengths[split]:
                return None
            found[split] = array
        return found

    def meta(self, key: str) -> dict[str, Any]:
        """The entry's ``meta.json`` (``{}`` when missing or unreadable)."""
        try:
            data = json.loads((self.root / key / "meta.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, key: str, features: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Write every split atomically (a temporary directory renamed into place); a read-only cache is skipped."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        except OSError:
            return
        try:
            for split, array in features.items():
                np.save(tmp / f"{split}.npy", np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True, default=str))
            target = self.root / key
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)


def cached_features(
    cache: FeatureCache | None,
    key: str,
    images: dict[str, np.ndarray],
    extract: Callable[[np.ndarray], np.ndarray],
    batch_size: int,
    sync: Callable[[], None],
    meta: dict[str, Any] | None = None,
) -> CachedFeatures:
    """Pooled features of every split: from the cache when present, else extracted (synchronized, timed) and stored.

    Args:
        cache: the cache (``None``: always extract).
        key: the entry (``feature_key``).
        images: uint8 images per split.
        extract: one batch of images → pooled features ``(N, D)``.
        batch_size: images per extraction call.
        sync: the backend's ``synchronize`` (called before each clock read).
        meta: facts written beside the arrays for people reading the cache.
    """
    import time

    from .training import predict_in_batches

    lengths = {split: len(array) for split, array in images.items()}
    total = sum(lengths.values())
    sync()
    start = time.perf_counter()
    loaded = cache.load(key, list(images), lengths) if cache is not None else None
    if loaded is not None:
        assert cache is not None
        read_s = time.perf_counter() - start
        entry = cache.meta(key)
        extract_s = entry.get("extract_s")
        if isinstance(extract_s, (int, float)) and extract_s > 0:
            by_split = entry.get("extract_s_by_split")
            split_seconds = {k: float(v) for k, v in by_split.items()} if isinstance(by_split, dict) else {}
            return CachedFeatures(loaded, True, float(extract_s), total, read_s=read_s, split_seconds=split_seconds)
        # an entry without its extraction seconds: extract again, so the cost reported is real
    features: dict[str, np.ndarray] = {}
    split_seconds: dict[str, float] = {}
    for split, array in images.items():
        sync()
        start = time.perf_counter()
        features[split] = predict_in_batches(extract, array, batch_size)
        sync()
        split_seconds[split] = time.perf_counter() - start
    seconds = sum(split_seconds.values())
    if cache is not None:
        facts = {"extract_s": seconds, "extract_s_by_split": split_seconds, "images": total}
        cache.save(key, features, {**(meta or {}), **facts})
    return CachedFeatures(features, False, seconds, total, split_seconds=split_seconds)


def backbone_features(
    backend: Any,
    *,
    backend_name: str,
    model: str,
    pretrained: str,
    weights: str,
    options: Any,
    dataset_entry: str,
    spec: str,
    policy_key: str,
    splits: dict[str, np.ndarray],
    pooled: bool,
    framework_versions: dict[str, str],
    log: Callable[[str], None],
    train_subset: str | None = None,
) -> CachedFeatures:
    """A cell's frozen-backbone features of ``splits`` through the on-disk cache (``cached_features``).

    Args:
        backend: the built backend (``extract_features``, ``synchronize``).
        backend_name, model, pretrained, weights: what made the backbone (part of the key).
        options: the suite's ``RunOptions`` (the backend's typed options, input channels, duplicate policy, batch
            size and cache directory).
        dataset_entry: the dataset cache entry (content + resize policy); ``spec``: the dataset spec as given.
        policy_key: the resize policy.
        splits: uint8 images per split.
        pooled: globally pooled ``(N, D)`` vectors (scikit-learn heads), else what the backend's head consumes.
        framework_versions: the framework's versions (part of the key).
        log: the cell's log.
        train_subset: the hash of the train rows (``cell_data.rows_key``) when ``splits["train"]`` holds only the
            cell's rows (a ``--train-sizes`` subset, or ``--max-train-images``): part of the key, so the entry holds
            those rows only and its extraction seconds are theirs (a cell is never charged for rows it does not use).
    """
    key = feature_key(
        backend=backend_name,
        model=model,
        pretrained=pretrained,
        weights=weights_identity(weights),
        pooled=pooled,
        options=backend_options(options, backend_name).to_dict(),
        in_chans=options.in_chans,
        policy=policy_key,
        dataset=dataset_entry,
        spec=spec,
        dedup=options.dedup,
        **({"groups": f"{options.group_by}|{options.group_leakage}"} if options.group_by is not None else {}),
        **({"train_subset": train_subset} if train_subset is not None else {}),
        sizes={k: len(v) for k, v in splits.items()},
        versions=framework_versions,
    )
    cached = cached_features(
        FeatureCache(feature_cache_root(options.cache_dir)),
        key,
        splits,
        lambda batch: backend.extract_features(batch, pooled=pooled),
        options.batch_size,
        backend.synchronize,
        meta={"backend": backend_name, "model": model, "dataset": spec, "pretrained": pretrained},
    )
    if cached.hit:
        how = f"read from the cache in {cached.read_s:.2f} s (extracted in {cached.seconds:.2f} s when cached)"
    else:
        how = f"extracted and cached in {cached.seconds:.2f} s"
    log(f"features of {model}: {how} ({key})")
    return cached
