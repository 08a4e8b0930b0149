"""A cell's data: the dataset decoded and resized once for the model (cached), the train rows it uses, and the
facts about the data that go into the record. The inference pass and a distillation teacher read the same bytes
through ``load_cell_dataset``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ...backends.base import Backend
from ...datasets import ArrayDataset, ResizePolicy, Split, load_dataset
from ...datasets.splitting import train_subset_rows
from ...datasets.subsets import Subset, rows_sha, subset_rows
from .config import RunOptions


def load_cell_dataset(
    backend: Backend,
    spec: str,
    model: str,
    weights: str,
    image_size: int,
    options: RunOptions,
    log: Callable[[str], None],
    progress: bool = False,
) -> tuple[ArrayDataset, ResizePolicy]:
    """Dataset ``spec`` decoded and resized once (cached) with ``model``'s resize policy at ``image_size``.

    The one place where a cell's images are made: the inference pass and a teacher read the same bytes.
    """
    data_config = backend.default_data_config(model, image_size, weights)
    policy = ResizePolicy(data_config.image_size, data_config.crop_pct, data_config.interpolation)
    log(f"dataset {spec} at {policy.key()}")
    dataset = load_dataset(
        spec,
        policy,
        options.cache_dir,
        progress=progress,
        dedup=options.dedup,
        near_duplicates=options.near_duplicates,
        group_by=options.group_by,
        group_leakage=options.group_leakage,
    )
    return dataset, policy


def without_test(dataset: ArrayDataset) -> ArrayDataset:
    """``dataset`` without its test split: what a tuning trial may see (it cannot read what it does not hold)."""
    splits = {name: split for name, split in dataset.splits.items() if name != "test"}
    meta = {**dataset.meta, "split_sizes": {name: len(split) for name, split in splits.items()}}
    return ArrayDataset(name=dataset.name, class_names=list(dataset.class_names), splits=splits, meta=meta)


def train_rows(
    dataset: ArrayDataset, limit: int | None, seed: int, train_size: str | None = None, draw: int | None = None
) -> np.ndarray | None:
    """Rows of the train split a cell uses: ``None`` for all. The one place a cell's train split is subset: a
    label-efficiency subset (``--train-sizes``: ``train_subset``, independent of ``seed``) or else
    ``--max-train-images`` (``train_subset_rows``)."""
    if train_size is not None:
        subset = train_subset(dataset, train_size, draw)
        return None if len(subset.rows) == len(dataset.splits["train"]) else subset.rows
    return train_subset_rows(np.asarray(dataset.splits["train"].labels), limit, seed)


def rows_key(keep: np.ndarray | None) -> str | None:
    """The hash of the train rows a cell keeps (``None``: all of them), as the ``rows_sha`` of a label-efficiency
    subset's facts: what a feature-cache entry of those rows only is keyed by."""
    return None if keep is None else rows_sha(keep)


def train_subset(dataset: ArrayDataset, train_size: str, draw: int | None) -> Subset:
    """The nested, stratified, group-aware subset ``train_size`` of draw ``draw`` of the train split, seeded by the
    draw and the dataset's name only (``datasets.subsets``): the same rows for every strategy, backend and seed."""
    train = dataset.splits["train"]
    return subset_rows(
        np.asarray(train.labels), train.groups, train_size, int(draw or 0), dataset.name, list(dataset.class_names)
    )


def train_split(dataset: ArrayDataset, keep: np.ndarray | None) -> Split:
    """The train split restricted to ``keep`` (all rows when ``None``), in memory when small enough."""
    train = dataset.splits["train"]
    if keep is None:
        return Split(images=in_memory(train.images), labels=np.asarray(train.labels))
    return Split(images=np.asarray(train.images[keep]), labels=np.asarray(train.labels[keep]))


def in_memory(images: np.ndarray, max_fraction_of_ram: float = 0.25) -> np.ndarray:
    """Load a memory-mapped array into RAM when it is small enough, so batches are plain copies."""
    try:
        import psutil

        budget = psutil.virtual_memory().available * max_fraction_of_ram
    except Exception:  # pragma: no cover - psutil is a core dependency
        budget = 0
    return np.asarray(images) if images.nbytes <= budget else images


def data_facts(dataset: ArrayDataset) -> dict[str, Any]:
    """The record's columns about the data a cell saw: duplicates, patient groups shared between splits (with
    ``--group-by``), dataset metadata, skipped images, classes."""
    meta = dict(dataset.meta)
    return {
        "duplicates": meta.pop("duplicates", None),
        "groups": meta.pop("groups", None),
        "dataset_meta": dataset_meta_for_record(meta),
        "skipped_images": int(dataset.meta.get("skipped_images", 0)),
        "num_classes": dataset.num_classes,
        "class_names": dataset.class_names,
    }


def dataset_meta_for_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The dataset's metadata as recorded: machine paths reduced to names (results are shared), long lists dropped."""
    record = {}
    for key, value in meta.items():
        if key == "skipped_examples":
            continue
        if key == "cache_dir" and isinstance(value, str):
            value = os.path.basename(value.rstrip("/"))  # the entry name identifies the cache, not this machine's path
            key = "cache_entry"
        record[key] = value
    return record


def duplicates_line(duplicates: dict[str, Any]) -> str:
    """``cross_split=4 within_split=28 conflicting_labels=0 dropped=32 (policy drop)`` for logs and the console."""
    keys = ("cross_split", "within_split", "conflicting_labels", "near_cross_split", "dropped")
    counts = " ".join(f"{k}={duplicates.get(k, 0)}" for k in keys if k in duplicates)
    return f"{counts} (policy {duplicates.get('policy')})"


def groups_line(groups: dict[str, Any]) -> str:
    """``shared_groups=170 leaked_images=320 dropped=320 (by person(\\d+)_, policy drop)`` for logs."""
    keys = ("groups", "shared_groups", "leaked_images", "ungrouped", "dropped")
    counts = " ".join(f"{k}={groups.get(k, 0)}" for k in keys)
    return f"{counts} (by {groups.get('by')}, policy {groups.get('policy')})"
