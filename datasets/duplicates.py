"""Exact duplicates, leakage between splits and conflicting labels, found from the cache's per-image hashes.

Two images are identical when their cached arrays are (same 16-byte content digest, computed once when the
cache entry is written; so duplicates are judged at the cached, resized resolution). Among identical images:

- ``within_split``: extra copies inside one split (``n - 1`` for ``n`` copies in a split);
- ``cross_split``: images of a later split (order train, val, test) identical to an image of an earlier
  split (an extra copy in test of a train image counts here and in ``within_split``);
- ``conflicting_labels``: images whose content also occurs with another label (every copy counts), e.g. a
  labels CSV naming one file twice with two labels.

``load_dataset(..., dedup=POLICY)`` applies one policy after loading from the cache (the cache entry itself
never depends on it):

- ``"drop"`` (default): images with conflicting labels leave every split; of each other set of identical
  images only the first copy of the earliest split is kept (train before val before test), so leakage
  leaves val/test and within-split copies leave their split;
- ``"keep"``: nothing removed;
- ``"error"``: ``DatasetError`` when any cross-split duplicate or conflicting label exists (within-split
  copies alone are kept and reported).

Every policy reports ``meta["duplicates"]``: the three counts, ``dropped`` (images removed), ``policy`` and
``examples`` (up to ``MAX_EXAMPLES`` pairs of relative names, ``"test/PNEUMONIA/x.jpeg ==
train/PNEUMONIA/y.jpeg"``; array sources name images ``"test[12]"``). With ``near_duplicates=True`` it also
counts ``near_cross_split``: images of a later split, not exact copies of an earlier split, whose difference
hash is within ``NEAR_MAX_BITS`` bits of one in an earlier split (re-encoded or slightly edited copies; flat
images all share one hash). Near duplicates are reported, never dropped: a perceptual match may be another
patient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import SPLITS, ArrayDataset, DatasetError, Split
from .cache import kept_rows
from .hashing import hamming_within, image_hashes
from .progress import log

DEDUP_POLICIES = ("drop", "keep", "error")
#: pairs listed in ``meta["duplicates"]["examples"]``
MAX_EXAMPLES = 5
#: largest Hamming distance (of 128 bits) between difference hashes that counts as a near duplicate; on the
#: real data at 32 px, different patients' chest X-rays are at least 4 bits apart (most 10-16), while
#: BreastMNIST's known near copies form a cluster at 0-10 bits
NEAR_MAX_BITS = 6
#: query images compared per step in the near-duplicate search (bounds a queries × references matrix)
_NEAR_CHUNK = 256


def check_dedup_policy(value: object) -> str:
    """Return ``value`` when it is a dedup policy.

    Raises:
        DatasetError: anything else (one line quoting the value).
    """
    if not isinstance(value, str) or value not in DEDUP_POLICIES:
        raise DatasetError(f"unknown dedup policy {value!r}; expected one of: {', '.join(DEDUP_POLICIES)}")
    return value


@dataclass
class DuplicateScan:
    """What the hashes show, independent of the policy.

    Attributes:
        within_split, cross_split, conflicting_labels: the counts (see the module docstring).
        drop: split -> bool mask of the images the ``drop`` policy removes.
        cross_or_conflict: an example pair for the error message (``""`` when there is none).
        examples: up to ``MAX_EXAMPLES`` pairs, conflicts first, then cross-split, then within-split ones.
    """

    within_split: int = 0
    cross_split: int = 0
    conflicting_labels: int = 0
    drop: dict[str, np.ndarray] = field(default_factory=dict)
    cross_or_conflict: str = ""
    examples: list[str] = field(default_factory=list)


def split_order(dataset: ArrayDataset) -> list[str]:
    """The dataset's splits, earliest first: train, val, test, then any other in their own order."""
    return [s for s in SPLITS if s in dataset.splits] + [s for s in dataset.splits if s not in SPLITS]


def _hashes(split: Split) -> tuple[np.ndarray, np.ndarray]:
    if split.content_hashes is None or split.difference_hashes is None:  # an in-memory dataset, not from the cache
        return image_hashes(split.images)
    return np.asarray(split.content_hashes, dtype=np.uint8), np.asarray(split.difference_hashes, dtype=np.uint8)


def _name(dataset: ArrayDataset, split: str, index: int) -> str:
    names = dataset.splits[split].names
    return names[index] if names is not None else f"{split}[{index}]"


class _Index:
    """Every image of every split in one flat order (splits earliest first), with its content group."""

    def __init__(self, dataset: ArrayDataset) -> None:
        self.order = split_order(dataset)
        sizes = [len(dataset.splits[s]) for s in self.order]
        self.split_id = np.repeat(np.arange(len(self.order)), sizes)
        self.position = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, np.int64)
        self.labels = np.concatenate([np.asarray(dataset.splits[s].labels, dtype=np.int64) for s in self.order])
        content = np.concatenate([_hashes(dataset.splits[s])[0] for s in self.order])
        keys = np.ascontiguousarray(content).view(f"V{content.shape[1]}")[:, 0]
        _, self.group, counts = np.unique(keys, return_inverse=True, return_counts=True)
        self.group = self.group.reshape(-1)
        self.repeated = counts[self.group] > 1

    def groups(self) -> list[np.ndarray]:
        """Flat indices of each set of identical images (two or more), each in flat order, by first member."""
        members = np.flatnonzero(self.repeated)
        members = members[np.argsort(self.group[members], kind="stable")]
        cuts = np.flatnonzero(np.diff(self.group[members])) + 1
        groups = np.split(members, cuts) if len(members) else []
        return sorted(groups, key=lambda group: int(group[0]))

    def where(self, flat: int) -> tuple[str, int]:
        """Split and index inside it of a flat index."""
        return self.order[int(self.split_id[flat])], int(self.position[flat])


def scan_duplicates(dataset: ArrayDataset) -> DuplicateScan:
    """Find within-split copies, cross-split copies and conflicting labels from the content hashes.

    Args:
        dataset: a loaded dataset (hashes from the cache; computed here for an in-memory dataset).
    """
    index = _Index(dataset)
    scan = DuplicateScan()
    drop = np.zeros(len(index.labels), dtype=bool)
    found: dict[str, list[str]] = {"conflict": [], "cross": [], "within": []}
    for members in index.groups():
        splits, labels = index.split_id[members], index.labels[members]
        scan.within_split += len(members) - len(np.unique(splits))
        scan.cross_split += int(np.count_nonzero(splits != splits[0]))
        conflict = len(np.unique(labels)) > 1
        scan.conflicting_labels += len(members) if conflict else 0
        drop[members if conflict else members[1:]] = True
        for kind, pair in _example_pairs(index, members).items():
            found[kind].append(_describe(dataset, index, pair, with_labels=kind == "conflict"))
    scan.drop = {split: drop[index.split_id == i] for i, split in enumerate(index.order)}
    scan.cross_or_conflict = (found["conflict"] + found["cross"] + [""])[0]
    scan.examples = (found["conflict"] + found["cross"] + found["within"])[:MAX_EXAMPLES]
    return scan


def _example_pairs(index: _Index, members: np.ndarray) -> dict[str, tuple[int, int]]:
    """One ``(copy, original)`` pair of flat indices per kind found in a set of identical images."""
    splits, labels = index.split_id[members], index.labels[members]
    pairs: dict[str, tuple[int, int]] = {}
    if np.any(labels != labels[0]):
        pairs["conflict"] = (int(members[np.flatnonzero(labels != labels[0])[0]]), int(members[0]))
    if np.any(splits != splits[0]):
        pairs["cross"] = (int(members[np.flatnonzero(splits != splits[0])[0]]), int(members[0]))
    repeats = np.flatnonzero(splits[1:] == splits[:-1]) + 1
    if len(repeats):
        copy = repeats[0]
        pairs["within"] = (int(members[copy]), int(members[np.flatnonzero(splits == splits[copy])[0]]))
    return pairs


def _describe(dataset: ArrayDataset, index: _Index, pair: tuple[int, int], with_labels: bool) -> str:
    """``"copy == original"`` by image names, with the class names when the labels differ."""
    shown = []
    for flat in pair:
        split, position = index.where(flat)
        label = f" [{dataset.class_names[index.labels[flat]]}]" if with_labels else ""
        shown.append(_name(dataset, split, position) + label)
    return " == ".join(shown)


def count_near_cross_split(dataset: ArrayDataset, max_bits: int = NEAR_MAX_BITS) -> int:
    """Images of a later split, not an exact copy of an earlier split, whose difference hash is near one of it.

    Args:
        dataset: a loaded dataset.
        max_bits: largest Hamming distance (of 128 bits) that counts as near.
    """
    index = _Index(dataset)
    perceptual = np.concatenate([_hashes(dataset.splits[s])[1] for s in index.order])
    exact_cross = np.zeros(len(index.labels), dtype=bool)
    for members in index.groups():
        exact_cross[members[index.split_id[members] != index.split_id[members[0]]]] = True
    count = 0
    for split_number in range(1, len(index.order)):
        references = perceptual[index.split_id < split_number]
        queries = np.flatnonzero((index.split_id == split_number) & ~exact_cross)
        for start in range(0, len(queries), _NEAR_CHUNK):
            chunk = queries[start : start + _NEAR_CHUNK]
            count += int(hamming_within(perceptual[chunk], references, max_bits).any(axis=1).sum())
    return count


def _drop_rows(split: Split, name: str, drop: np.ndarray, directory: Path | None) -> Split:
    if not drop.any():
        return split
    rows = np.flatnonzero(~drop)
    return Split(
        images=kept_rows(directory, name, split.images, rows),
        labels=np.asarray(split.labels)[rows],
        names=[split.names[i] for i in rows] if split.names is not None else None,
        content_hashes=None if split.content_hashes is None else np.asarray(split.content_hashes)[rows],
        difference_hashes=None if split.difference_hashes is None else np.asarray(split.difference_hashes)[rows],
        groups=[split.groups[i] for i in rows] if split.groups is not None else None,
    )


def _error_message(dataset: ArrayDataset, scan: DuplicateScan) -> str:
    return (
        f"dataset {dataset.name!r} has identical images across splits or with two labels (cross_split "
        f"{scan.cross_split}, conflicting_labels {scan.conflicting_labels}, within_split {scan.within_split}), "
        f"e.g. {scan.cross_or_conflict}; expected none with dedup='error' (dedup='drop' removes them, "
        "dedup='keep' keeps them)"
    )


def _check_classes_left(dataset: ArrayDataset, splits: dict[str, Split], dropped: int) -> None:
    for name, split in splits.items():
        present = set(np.unique(np.asarray(split.labels)).tolist())
        missing = [c for i, c in enumerate(dataset.class_names) if i not in present]
        if missing:
            raise DatasetError(
                f"dataset {dataset.name!r}: split {name!r} has no image of class {missing[0]!r} left after "
                f"dedup='drop' removed {dropped} duplicate(s); expected every class in every split "
                "(dedup='keep' keeps them)"
            )


def apply_dedup(dataset: ArrayDataset, policy: str = "drop", near_duplicates: bool = False) -> ArrayDataset:
    """Apply a dedup policy to a loaded dataset and report ``meta["duplicates"]`` and ``meta["split_sizes"]``.

    Args:
        dataset: a dataset from the cache (its ``meta["cache_dir"]`` receives the row subsets of dropped
            images as memory-mapped views) or built in memory.
        policy: ``"drop"``, ``"keep"`` or ``"error"`` (see the module docstring).
        near_duplicates: also count ``near_cross_split`` from the difference hashes.

    Returns:
        A new dataset (the given one is not changed) whose splits lack the dropped images.

    Raises:
        DatasetError: an unknown policy; with ``"error"``, any cross-split duplicate or conflicting label;
            with ``"drop"``, a split left without any image of some class.
    """
    check_dedup_policy(policy)
    scan = scan_duplicates(dataset)
    if policy == "error" and (scan.cross_split or scan.conflicting_labels):
        raise DatasetError(_error_message(dataset, scan))
    splits = dict(dataset.splits)
    dropped = 0
    if policy == "drop":
        directory = Path(dataset.meta["cache_dir"]) if dataset.meta.get("cache_dir") else None
        splits = {name: _drop_rows(split, name, scan.drop[name], directory) for name, split in splits.items()}
        dropped = int(sum(mask.sum() for mask in scan.drop.values()))
    report: dict[str, Any] = {
        "within_split": scan.within_split,
        "cross_split": scan.cross_split,
        "conflicting_labels": scan.conflicting_labels,
        "dropped": dropped,
        "policy": policy,
        "examples": scan.examples,
    }
    if near_duplicates:
        report["near_cross_split"] = count_near_cross_split(dataset)
    if scan.within_split or scan.cross_split or scan.conflicting_labels or report.get("near_cross_split"):
        counts = ", ".join(f"{key} {value}" for key, value in report.items() if isinstance(value, int))
        log(f"{dataset.name}: duplicates: {counts} (dedup={policy}); e.g. {'; '.join(scan.examples) or '-'}")
    if dropped:
        _check_classes_left(dataset, splits, dropped)
    meta = {**dataset.meta, "duplicates": report, "split_sizes": {name: len(split) for name, split in splits.items()}}
    return ArrayDataset(name=dataset.name, class_names=list(dataset.class_names), splits=splits, meta=meta)
