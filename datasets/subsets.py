"""Nested, stratified, group-aware training subsets for label-efficiency curves (``--train-sizes``, ``--draws``).

A train size is images per class (``"25"``) or a fraction of each class of the train split (``"10%"``). Per draw
there is ONE ordering of the train split, seeded by the draw and the dataset only (never by a cell's seed): within
each class its units (patient groups with ``--group-by``, single images otherwise) are shuffled, and a size takes
whole units from the front of each class until the class's count is reached. Every smaller set is therefore inside
every larger one, and every strategy, backend and seed of a draw trains on the same rows. Subsets are drawn from
the train split as the dataset left it: validation and test are carved, de-duplicated and leakage-checked before,
and stay whole.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the one fraction that means the whole train split (it is the same set for every draw)
FULL = "100%"

_COUNT = re.compile(r"[0-9]+")
_FRACTION = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


def parse_train_size(text: Any) -> str:
    """A train size in its canonical text: ``"25"`` (images per class) or ``"12.5%"`` (of each class).

    Raises:
        ValueError: not a positive integer nor a percentage in (0, 100] (the message quotes the value).
    """
    raw = str(text).strip()
    if isinstance(text, bool):
        raw = "?"
    if _COUNT.fullmatch(raw) and int(raw) >= 1:
        return str(int(raw))
    match = _FRACTION.fullmatch(raw)
    if match and 0.0 < float(match.group(1)) <= 100.0:
        return f"{float(match.group(1)):g}%"
    raise ValueError(
        f"train size {text!r} is neither images per class (an integer >= 1, e.g. 25) nor a percentage in (0, 100] "
        "(e.g. 10%)"
    )


def parse_train_sizes(values: Any) -> tuple[str, ...]:
    """Canonical train sizes of ``"5,10,25%"`` or a list, in the order given.

    Raises:
        ValueError: an empty list, a bad size or a size given twice (one line).
    """
    items = [item.strip() for item in values.split(",")] if isinstance(values, str) else list(values)
    if not items or any(item == "" for item in items):
        raise ValueError(f"--train-sizes {values!r} names no size; expected e.g. 5,10,25,50 or 10%,25%,100%")
    sizes = tuple(parse_train_size(item) for item in items)
    twice = sorted({size for size in sizes if sizes.count(size) > 1})
    if twice:
        raise ValueError(f"--train-sizes {values!r} gives {', '.join(twice)} twice")
    return sizes


def draws_of(size: str, draws: int) -> range:
    """The draws a size runs: ``100%`` is the same set for every draw, so it runs draw 0 only."""
    return range(1) if size == FULL else range(draws)


def is_fraction(size: str) -> bool:
    """Whether ``size`` is a fraction of each class (``"10%"``) rather than images per class."""
    return size.endswith("%")


def class_target(size: str, class_count: int) -> int:
    """Images ``size`` asks of a class holding ``class_count``: the count, or ``ceil(fraction * count)`` (at least
    one); capped at the class (``subset_rows`` notes the cap)."""
    if is_fraction(size):
        return min(class_count, max(1, math.ceil(float(size[:-1]) / 100.0 * class_count)))
    return int(size)


def _draw_rng(key: str, draw: int, label: Any) -> np.random.Generator:
    digest = hashlib.sha256(f"{key}|draw={int(draw)}|class={label}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def class_units(labels: np.ndarray, groups: list[str | None] | None, key: str, draw: int) -> dict[Any, list]:
    """Per class, its units in the draw's order: lists of row indices (one patient group, or one image).

    The order depends on ``key`` (the dataset), ``draw`` and the class only.
    """
    labels = np.asarray(labels)
    units: dict[Any, list[np.ndarray]] = {}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if groups is None:
            members = [np.array([row]) for row in rows]
        else:
            by_group: dict[object, list[int]] = {}
            for row in rows:
                group = groups[row]
                by_group.setdefault(("file", int(row)) if group is None else ("group", group), []).append(int(row))
            members = [np.array(m) for m in by_group.values()]  # first-appearance order: deterministic
        order = _draw_rng(key, draw, label).permutation(len(members))
        units[label.item() if hasattr(label, "item") else label] = [members[i] for i in order]
    return units


def rows_sha(rows: np.ndarray) -> str:
    """12 hex digits of a hash of train row indices: equal hashes, the same images (a subset's ``rows_sha``, and the
    key of a feature-cache entry holding those rows only)."""
    return hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class Subset:
    """The train rows a (size, draw) keeps and what the record says about them."""

    #: sorted row indices into the train split
    rows: np.ndarray
    size: str
    draw: int
    #: images kept per class (in class order)
    per_class: dict[str, int]
    #: classes with fewer images (or whole groups) than the size asked: they give all they have
    capped: list[str]
    #: patient groups the subset holds (``None`` without ``--group-by``)
    groups: int | None

    def facts(self) -> dict[str, Any]:
        """The record's ``train_subset`` column: per-class counts, capped classes, groups, a hash of the rows
        (equal hashes: the same images, whatever the strategy, backend or seed)."""
        return {
            "per_class": self.per_class,
            "capped": self.capped,
            "groups": self.groups,
            "rows_sha": rows_sha(self.rows),
        }

    def note(self) -> str:
        """One line for the cell log."""
        counts = ", ".join(f"{name}={count}" for name, count in self.per_class.items())
        capped = f"; capped at the class size: {', '.join(self.capped)}" if self.capped else ""
        groups = f" in {self.groups} groups" if self.groups is not None else ""
        return f"train subset {self.size} draw {self.draw}: {len(self.rows)} images{groups} ({counts}){capped}"


def subset_rows(
    labels: np.ndarray,
    groups: list[str | None] | None,
    size: str,
    draw: int,
    key: str,
    class_names: list[str] | None = None,
) -> Subset:
    """The nested, stratified (group-aware) subset ``size`` of draw ``draw`` of a train split.

    Each class takes whole units from the front of its ordering (``class_units``) until it holds at least
    ``class_target`` images; with groups a class can overshoot by less than one group (the record says how many
    images that gave). A size larger than a class is capped at the class and noted in ``capped``.

    Args:
        labels: the train split's labels.
        groups: each row's group (``--group-by``), or ``None``.
        size: a canonical train size (``parse_train_size``).
        draw: the draw (0-based).
        key: what, with the draw, seeds the ordering: the dataset's name.
        class_names: names for the per-class counts (the label values otherwise).
    """
    size = parse_train_size(size)
    labels = np.asarray(labels)
    chosen: list[np.ndarray] = []
    per_class: dict[str, int] = {}
    capped: list[str] = []
    group_count = 0
    for label, units in class_units(labels, groups, key, draw).items():
        name = class_names[int(label)] if class_names is not None else str(label)
        total = sum(len(unit) for unit in units)
        target = class_target(size, total)
        taken = 0
        for unit in units:
            if taken >= target:
                break
            chosen.append(unit)
            taken += len(unit)
            group_count += 1
        if not is_fraction(size) and target > total:
            capped.append(name)
        per_class[name] = taken
    rows = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    return Subset(rows, size, int(draw), per_class, capped, group_count if groups is not None else None)
