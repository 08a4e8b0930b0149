"""Seeded stratified splits, used to carve val/test from train when a source lacks them."""

from __future__ import annotations

import math

import numpy as np


def stratified_indices(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, carved) with ``fraction`` carved, stratified by label.

    The carved count is ``ceil(fraction * n)`` (scikit-learn's rule), raised to the number of classes and
    capped so every class can keep a member, so that small datasets still get every class on both sides.
    Falls back to a plain seeded split when stratification is impossible (a class with a single member, or
    fewer images than twice the number of classes). Both index arrays are sorted so the cached arrays keep
    the source order.

    Raises:
        ValueError: fewer than two labels, or ``fraction`` outside (0, 1).
    """
    from sklearn.model_selection import train_test_split  # slow import (~2 s): only when carving

    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"carve fraction must be in (0, 1), got {fraction}")
    if n < 2:
        raise ValueError(f"cannot split {n} image(s); expected at least 2")
    indices = np.arange(n)
    _, counts = np.unique(labels, return_counts=True)
    classes = len(counts)
    carve = min(max(1, math.ceil(fraction * n)), n - 1)
    stratify = labels if counts.min() >= 2 and n >= 2 * classes else None
    if stratify is not None:
        carve = min(max(carve, classes), n - classes)
    kept, carved = train_test_split(indices, test_size=carve, random_state=seed, stratify=stratify)
    return np.sort(kept), np.sort(carved)


def train_subset_rows(train_labels: np.ndarray, limit: int | None, seed: int) -> np.ndarray | None:
    """Rows of a train split to keep: ``None`` for all, else a sorted stratified subset of ``limit`` rows.

    The subset depends only on the labels, ``limit`` and ``seed``: every backend and strategy of a cell's seed sees
    the same rows (``--max-train-images``).
    """
    if limit is None or limit >= len(train_labels):
        return None
    _, keep = stratified_indices(np.asarray(train_labels), limit / len(train_labels), seed)
    return np.sort(keep)


def stratified_group_indices(
    labels: np.ndarray, groups: list[str | None], fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (kept, carved) by whole groups, about ``fraction`` carved per label.

    No group has images on both sides. Groups are visited largest first (ties in a seeded random order) and each
    goes to the carved side when that brings the carved side's per-label counts closer (squared error) to their
    targets, ``fraction`` of each label's images (at least one for a label with two images or more), so labels are
    stratified as far as the groups allow. An image whose group is ``None`` stands alone. The kept side always
    keeps at least one group. Both index arrays are sorted.

    Raises:
        ValueError: fewer than two groups, or ``fraction`` outside (0, 1).
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"carve fraction must be in (0, 1), got {fraction}")
    codes: dict[object, int] = {}
    member = np.array(
        [codes.setdefault(("file", i) if g is None else ("group", g), len(codes)) for i, g in enumerate(groups)],
        dtype=np.int64,
    )
    if len(member) != n:
        raise ValueError(f"{len(member)} groups for {n} labels; expected one group per image")
    if len(codes) < 2:
        raise ValueError(f"cannot carve by group: {len(codes)} group(s) among {n} image(s); expected at least 2")
    classes, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(codes), len(classes)), dtype=np.float64)
    np.add.at(counts, (member, label_index.reshape(-1)), 1.0)
    totals = counts.sum(axis=0)
    target = np.where(totals >= 2, np.maximum(fraction * totals, 1.0), fraction * totals)
    sizes = counts.sum(axis=1)
    shuffled = np.random.default_rng(seed).permutation(len(codes))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    carved_counts = np.zeros(len(classes))
    chosen = np.zeros(len(codes), dtype=bool)
    for group in order:
        after = carved_counts + counts[group]
        if after.sum() < n and ((after - target) ** 2).sum() < ((carved_counts - target) ** 2).sum():
            carved_counts = after
            chosen[group] = True
    if not chosen.any():  # every group alone overshoots: the one closest to the targets
        errors = ((counts - target) ** 2).sum(axis=1)
        chosen[int(np.argmin(np.where(sizes < n, errors, np.inf)))] = True
    carved = np.flatnonzero(chosen[member])
    kept = np.flatnonzero(~chosen[member])
    return kept, carved


def increment_chunks(labels: np.ndarray, groups: list[str | None] | None, count: int, seed: int) -> list[np.ndarray]:
    """Cut ``range(len(labels))`` into ``count`` stratified chunks (``--increments``), whole groups per chunk.

    Units are the groups (an image whose group is ``None``, or every image when ``groups`` is ``None``, stands
    alone), visited largest first with ties in a seeded random order; each unit joins the chunk whose per-label
    counts it brings closest (squared error) to the per-chunk targets, ``1/count`` of each label's images (ties: the
    chunk with fewest images), so every chunk holds about the same share of every label and no group spans two
    chunks. Step ``k`` of an incremental run trains on chunks ``0..k-1``. The chunks depend only on the labels, the
    groups, ``count`` and ``seed``.

    Returns:
        ``count`` sorted, disjoint index arrays covering every row.

    Raises:
        ValueError: ``count`` below 2, or fewer units (images or groups) than ``count``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if count < 2:
        raise ValueError(f"increments must be at least 2, got {count}")
    keys = [("file", i) if groups is None or groups[i] is None else ("group", groups[i]) for i in range(n)]
    codes: dict[object, int] = {}
    member = np.array([codes.setdefault(key, len(codes)) for key in keys], dtype=np.int64)
    if len(codes) < count:
        raise ValueError(f"cannot cut {len(codes)} image group(s) into {count} increments; expected at least {count}")
    classes, label_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(codes), len(classes)), dtype=np.float64)
    np.add.at(counts, (member, label_index.reshape(-1)), 1.0)
    target = counts.sum(axis=0) / count
    sizes = counts.sum(axis=1)
    shuffled = np.random.default_rng(seed).permutation(len(codes))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    chunk_counts = np.zeros((count, len(classes)))
    chunk_of = np.zeros(len(codes), dtype=np.int64)
    for unit in order:
        gain = ((chunk_counts + counts[unit] - target) ** 2).sum(axis=1) - ((chunk_counts - target) ** 2).sum(axis=1)
        tied = np.flatnonzero(np.isclose(gain, gain.min()))
        chunk = int(tied[np.argmin(chunk_counts[tied].sum(axis=1))])  # ties: the smallest chunk, then the first
        chunk_counts[chunk] += counts[unit]
        chunk_of[unit] = chunk
    rows = chunk_of[member]
    chunks = [np.flatnonzero(rows == chunk) for chunk in range(count)]
    empty = [index + 1 for index, chunk in enumerate(chunks) if len(chunk) == 0]
    if empty:
        raise ValueError(f"increment chunk(s) {empty} of {count} came out empty; expected fewer increments")
    return chunks
