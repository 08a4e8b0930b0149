"""Datasets: every source becomes per-split uint8 NHWC arrays + int labels + class names, cached on disk.

A dataset spec is ``KIND`` or ``KIND:ARGUMENT`` (``digits``, ``folder:PATH``, ``medmnist:PATH.npz``...). The
registry maps a kind to ``"module:factory"``; factories parse and check the argument (cheaply, no decoding)
and return a ``DatasetSource``.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from .base import SPLITS, ArrayDataset, DatasetError, DatasetSource, ResizePolicy, Split
from .cache import load_or_build
from .duplicates import DEDUP_POLICIES, apply_dedup, check_dedup_policy
from .grouping import GROUP_LEAKAGE_POLICIES, apply_group_leakage, check_group_leakage_policy, parse_group_by

#: kind -> (factory "module:function", usage shown by ``tlbench list datasets``)
DATASETS: dict[str, tuple[str, str]] = {
    "digits": ("tlbench.datasets.digits:make_source", "digits — scikit-learn handwritten digits, 10 classes, offline"),
    "folder": (
        "tlbench.datasets.folder:make_source",
        "folder:PATH — ImageFolder tree PATH/{train,val,test}/<class>/*; "
        "missing val/test carved from train (seeded, stratified)",
    ),
    "medmnist": (
        "tlbench.datasets.medmnist:make_source",
        "medmnist:PATH.npz | medmnist:NAME — MedMNIST v2 npz (official splits); "
        "NAME (e.g. breastmnist) downloads once, MD5-checked",
    ),
    "csv": (
        "tlbench.datasets.csv_labels:make_source",
        "csv:IMAGES_DIR:LABELS.csv[?image=COL&label=COL&split=COL] — ISIC-style image,label CSV; "
        "missing images reported",
    ),
    "hymenoptera": (
        "tlbench.datasets.hymenoptera:make_source",
        "hymenoptera — PyTorch tutorial ants/bees (downloaded once; val used as test, val carved from train)",
    ),
}

__all__ = [
    "DATASETS",
    "DEDUP_POLICIES",
    "GROUP_LEAKAGE_POLICIES",
    "SPLITS",
    "ArrayDataset",
    "DatasetError",
    "DatasetSource",
    "ResizePolicy",
    "Split",
    "dataset_usages",
    "load_dataset",
    "parse_dataset_spec",
    "parse_grouped_spec",
]


def dataset_usages() -> list[str]:
    """One usage line per dataset kind."""
    return [usage for _, usage in DATASETS.values()]


def parse_dataset_spec(spec: str) -> DatasetSource:
    """Parse and check a dataset spec without decoding any image.

    Raises:
        DatasetError: unknown kind or bad argument (one line naming the value and what was expected).
    """
    kind, sep, argument = spec.partition(":")
    if kind not in DATASETS:
        raise DatasetError(
            f"unknown dataset {spec!r}; expected one of: {', '.join(DATASETS)} (see `tlbench list datasets`)"
        )
    module_name, factory_name = DATASETS[kind][0].split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    return factory(spec, argument if sep else None)


def parse_grouped_spec(spec: str, group_by: str | None) -> DatasetSource:
    """``parse_dataset_spec``, then the source's images grouped by ``group_by`` (``--group-by``) when given.

    Raises:
        DatasetError: a bad spec, a bad grouping, or a source that cannot be grouped (one line each).
    """
    source = parse_dataset_spec(spec)
    if group_by is not None:
        source.set_grouping(parse_group_by(group_by))
    return source


def load_dataset(
    spec: str,
    policy: ResizePolicy,
    cache_dir: Path | str | None = None,
    progress: bool = False,
    dedup: str = "drop",
    near_duplicates: bool = False,
    group_by: str | None = None,
    group_leakage: str = "drop",
) -> ArrayDataset:
    """Load ``spec`` resized with ``policy``, from the on-disk cache when present, then apply ``dedup``.

    Args:
        spec: dataset spec string.
        policy: the model's resize policy.
        cache_dir: cache root, entries under ``<cache_dir>/datasets`` (default: ``$TLBENCH_CACHE`` or
            ``~/.cache/tlbench``, i.e. ``tlbench.datasets.cache.default_cache_dir()``).
        progress: show a progress bar while building.
        dedup: what to do with identical images (``tlbench.datasets.duplicates``): ``"drop"`` (default)
            removes cross-split copies from the later split (train, val, test order), extra copies inside a
            split and every image with conflicting labels; ``"keep"`` removes nothing; ``"error"`` raises
            when images are shared between splits or labelled twice. Counts go to ``meta["duplicates"]``.
        near_duplicates: also count near-identical cross-split images (``meta["duplicates"]["near_cross_split"]``).
        group_by: group the images by patient (``tlbench.datasets.grouping``): a regular expression whose first
            group names the patient in each file's path relative to the dataset root, or ``column:NAME`` for a
            ``csv:`` dataset; carved val/test splits then take whole groups, and ``meta["groups"]`` counts the
            groups present in more than one split. ``None``: no grouping.
        group_leakage: with ``group_by``, what to do with groups in more than one split (after ``dedup``):
            ``"drop"`` (the later split's images of such a group leave it), ``"keep"`` or ``"error"``.

    Raises:
        DatasetError: a bad spec, ``dedup``, ``group_by`` or ``group_leakage`` value, a dataset problem,
            duplicates under ``dedup="error"`` or a group in two splits under ``group_leakage="error"``.
    """
    check_dedup_policy(dedup)
    check_group_leakage_policy(group_leakage)
    source = parse_grouped_spec(spec, group_by)
    dataset = load_or_build(source, policy, Path(cache_dir) if cache_dir else None, progress=progress)
    dataset = apply_dedup(dataset, dedup, near_duplicates)
    return apply_group_leakage(dataset, group_by, group_leakage) if group_by is not None else dataset
