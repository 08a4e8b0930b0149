"""Patient-level groups: which images belong together, and how many groups two splits share.

Several images of one patient in train and val (or test) let a model be selected (or scored) on near-copies of what
it trained on. ``--group-by`` names each image's group:

- ``PATTERN``: a regular expression searched in the image file's path relative to the dataset root
  (``train/PNEUMONIA/person23_bacteria_1.jpeg``); its first group is the image's group (``23`` for ``person(\\d+)_``);
- ``column:NAME`` (``csv:`` datasets): the value of column ``NAME`` in the image's row.

An image the pattern does not match (or whose cell is empty) has no group (``ungrouped``): it stands alone. The
file sources keep each image's group in the cache entry (``groups.json``; the grouping is part of the entry's key)
and carve missing val/test splits from train by whole groups (``splitting.stratified_group_indices``).

``apply_group_leakage`` then counts, after loading, the groups present in more than one split, splits the dataset
brings included, and applies a policy like ``--dedup``'s:

- ``"drop"`` (default): the images of a later split (train, val, test order) whose group occurs in an earlier split
  leave it, so a patient's images stay in the earliest split that has them;
- ``"keep"``: nothing removed (reported);
- ``"error"``: ``DatasetError`` when any group is in two splits.

Every policy reports ``meta["groups"]``: ``by`` (the grouping as given), ``groups`` (distinct groups),
``per_split`` (groups per split), ``shared_groups`` (groups in more than one split), ``shared_by_pair``
(``{"train/test": n}``), ``leaked_images`` (images of a later split whose group is in an earlier one: what
``drop`` removes), ``ungrouped`` (images without a group), ``dropped``, ``policy`` and ``examples``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import COLUMN_PREFIX, ArrayDataset, DatasetError, GroupBy, Split
from .cache import kept_rows
from .duplicates import split_order
from .progress import log

GROUP_LEAKAGE_POLICIES = ("drop", "keep", "error")
#: shared groups listed in ``meta["groups"]["examples"]``
MAX_EXAMPLES = 5


def parse_group_by(text: str) -> GroupBy:
    """Check a ``--group-by`` value.

    Raises:
        DatasetError: empty, ``column:`` without a name, not a regular expression, or one without a group.
    """
    if not text:
        raise DatasetError("--group-by is empty; expected a regular expression such as 'person(\\d+)_' or column:NAME")
    if text.startswith(COLUMN_PREFIX):
        if not text[len(COLUMN_PREFIX) :]:
            raise DatasetError("--group-by column: needs a column name; expected column:NAME (e.g. column:patient_id)")
        return GroupBy(text)
    try:
        compiled = re.compile(text)
    except re.error as exc:
        raise DatasetError(f"--group-by '{text}' is not a regular expression ({exc})") from None
    if compiled.groups < 1:
        raise DatasetError(
            f"--group-by '{text}' has no group; expected a regular expression whose first group names the patient, "
            "e.g. 'person(\\d+)_'"
        )
    return GroupBy(text)


def check_group_leakage_policy(value: object) -> str:
    """Return ``value`` when it is a group-leakage policy.

    Raises:
        DatasetError: anything else (one line quoting the value).
    """
    if not isinstance(value, str) or value not in GROUP_LEAKAGE_POLICIES:
        raise DatasetError(
            f"unknown group leakage policy {value!r}; expected one of: {', '.join(GROUP_LEAKAGE_POLICIES)}"
        )
    return value


def groups_of_paths(group_by: GroupBy, relative_paths: list[str], spec: str) -> list[str | None]:
    """The group of each path (relative to the dataset root); at least one must have one.

    Raises:
        DatasetError: the pattern matches no path (names an example path).
    """
    groups = [group_by.of_path(path) for path in relative_paths]
    if relative_paths and all(group is None for group in groups):
        raise DatasetError(
            f"--group-by '{group_by.text}' matches none of the {len(relative_paths)} image paths of {spec!r} "
            f"(e.g. {relative_paths[0]!r}); expected a pattern whose first group names the patient"
        )
    return groups


@dataclass
class GroupScan:
    """Groups per split and the groups they share (see the module docstring for the counts)."""

    per_split: dict[str, int]
    groups: int
    shared_groups: int
    shared_by_pair: dict[str, int]
    leaked: dict[str, np.ndarray]
    ungrouped: int
    examples: list[str]


def _split_groups(dataset: ArrayDataset, name: str) -> list[str | None]:
    groups = dataset.splits[name].groups
    if groups is None:
        raise DatasetError(
            f"dataset {dataset.name!r}: split {name!r} has no image groups; expected them from a --group-by source"
        )
    return groups


def scan_groups(dataset: ArrayDataset) -> GroupScan:
    """Count the groups of each split and those present in more than one, in split order (train, val, test)."""
    return scan_split_groups({name: _split_groups(dataset, name) for name in split_order(dataset)})


def scan_split_groups(groups_by_split: dict[str, list[str | None]]) -> GroupScan:
    """``scan_groups`` over each split's image groups (``None``: an image without one), in the dict's order."""
    order = list(groups_by_split)
    members: dict[str, dict[str, int]] = {}  # group -> split -> images
    ungrouped = 0
    for name in order:
        for group in groups_by_split[name]:
            if group is None:
                ungrouped += 1
            else:
                counts = members.setdefault(group, {})
                counts[name] = counts.get(name, 0) + 1
    shared = {group: counts for group, counts in members.items() if len(counts) > 1}
    pairs: dict[str, int] = {}
    for i, first in enumerate(order):
        for second in order[i + 1 :]:
            pairs[f"{first}/{second}"] = sum(1 for counts in shared.values() if first in counts and second in counts)
    leaked = {}
    seen: set[str] = set()
    for name in order:
        groups = groups_by_split[name]
        leaked[name] = np.array([group is not None and group in seen for group in groups], dtype=bool)
        seen.update(group for group in groups if group is not None)
    examples = [
        f"{group}: " + ", ".join(f"{split} {count}" for split, count in counts.items())
        for group, counts in list(shared.items())[:MAX_EXAMPLES]
    ]
    return GroupScan(
        per_split={name: len({g for g in groups_by_split[name] if g is not None}) for name in order},
        groups=len(members),
        shared_groups=len(shared),
        shared_by_pair=pairs,
        leaked=leaked,
        ungrouped=ungrouped,
        examples=examples,
    )


def _drop_rows(split: Split, name: str, drop: np.ndarray, directory: Path | None) -> Split:
    if not drop.any():
        return split
    rows = np.flatnonzero(~drop)

    def pick(values: Any) -> Any:
        return None if values is None else [values[i] for i in rows]

    return Split(
        images=kept_rows(directory, name, split.images, rows),
        labels=np.asarray(split.labels)[rows],
        names=pick(split.names),
        content_hashes=None if split.content_hashes is None else np.asarray(split.content_hashes)[rows],
        difference_hashes=None if split.difference_hashes is None else np.asarray(split.difference_hashes)[rows],
        groups=pick(split.groups),
    )


def apply_group_leakage(dataset: ArrayDataset, group_by: str, policy: str = "drop") -> ArrayDataset:
    """Count the groups shared between splits, apply ``policy`` and report ``meta["groups"]``.

    Args:
        dataset: a dataset whose splits carry ``groups`` (a source grouped by ``group_by``).
        group_by: the grouping as given (recorded).
        policy: ``"drop"``, ``"keep"`` or ``"error"`` (see the module docstring).

    Returns:
        A new dataset (the given one is not changed) without the dropped images; ``meta["split_sizes"]`` updated.

    Raises:
        DatasetError: an unknown policy; with ``"error"``, a group in two splits; with ``"drop"``, a split left
            without any image of some class.
    """
    check_group_leakage_policy(policy)
    scan = scan_groups(dataset)
    leaked_images = int(sum(mask.sum() for mask in scan.leaked.values()))
    if policy == "error" and scan.shared_groups:
        pairs = ", ".join(f"{pair} {n}" for pair, n in scan.shared_by_pair.items() if n)
        raise DatasetError(
            f"dataset {dataset.name!r}: {scan.shared_groups} group(s) of --group-by '{group_by}' are in more than one "
            f"split ({pairs}; {leaked_images} image(s) of a later split), e.g. {scan.examples[0]}; expected none with "
            "--group-leakage error (drop removes them from the later split, keep keeps them)"
        )
    splits = dict(dataset.splits)
    dropped = 0
    if policy == "drop" and leaked_images:
        directory = Path(dataset.meta["cache_dir"]) if dataset.meta.get("cache_dir") else None
        splits = {name: _drop_rows(split, name, scan.leaked[name], directory) for name, split in splits.items()}
        dropped = leaked_images
        for name, split in splits.items():
            present = set(np.unique(np.asarray(split.labels)).tolist())
            missing = [c for i, c in enumerate(dataset.class_names) if i not in present]
            if missing:
                raise DatasetError(
                    f"dataset {dataset.name!r}: split {name!r} has no image of class {missing[0]!r} left after "
                    f"--group-leakage drop removed {dropped} image(s) of groups in an earlier split; expected every "
                    "class in every split (--group-leakage keep keeps them)"
                )
    report: dict[str, Any] = {
        "by": group_by,
        "groups": scan.groups,
        "per_split": scan.per_split,
        "shared_groups": scan.shared_groups,
        "shared_by_pair": scan.shared_by_pair,
        "leaked_images": leaked_images,
        "ungrouped": scan.ungrouped,
        "dropped": dropped,
        "policy": policy,
        "examples": scan.examples,
    }
    log(
        f"{dataset.name}: groups ({group_by}): {scan.groups} in all, {scan.shared_groups} in more than one split "
        f"({leaked_images} image(s) of a later split), {scan.ungrouped} image(s) ungrouped; "
        f"group-leakage={policy}, dropped {dropped}"
    )
    meta = {**dataset.meta, "groups": report, "split_sizes": {name: len(split) for name, split in splits.items()}}
    return ArrayDataset(name=dataset.name, class_names=list(dataset.class_names), splits=splits, meta=meta)
