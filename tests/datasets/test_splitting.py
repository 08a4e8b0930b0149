"""``increment_chunks``: K stratified, disjoint, covering chunks, whole groups per chunk, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.datasets.splitting import increment_chunks


def labels_of(counts: dict[int, int]) -> np.ndarray:
    return np.repeat(np.array(list(counts)), list(counts.values()))


def test_chunks_are_disjoint_cover_every_row_and_hold_each_label_in_equal_shares():
    labels = labels_of({0: 40, 1: 20, 2: 8})
    np.random.default_rng(3).shuffle(labels)
    chunks = increment_chunks(labels, None, 4, seed=7)
    assert len(chunks) == 4
    joined = np.concatenate(chunks)
    assert sorted(joined.tolist()) == list(range(len(labels)))  # disjoint and covering
    for chunk in chunks:
        assert np.all(np.diff(chunk) > 0)  # sorted
        counts = np.bincount(labels[chunk], minlength=3)
        assert counts.tolist() == [10, 5, 2]  # 40/4, 20/4, 8/4: exactly stratified


def test_uneven_labels_differ_by_at_most_one_image_per_chunk():
    labels = labels_of({0: 13, 1: 7})
    chunks = increment_chunks(labels, None, 3, seed=0)
    for label, total in ((0, 13), (1, 7)):
        counts = [int((labels[c] == label).sum()) for c in chunks]
        assert sum(counts) == total and max(counts) - min(counts) <= 1


def test_the_chunks_depend_on_the_seed_only():
    labels = labels_of({0: 30, 1: 30})
    first = increment_chunks(labels, None, 3, seed=5)
    again = increment_chunks(labels.copy(), None, 3, seed=5)
    other = increment_chunks(labels, None, 3, seed=6)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_a_group_never_spans_two_chunks_and_labels_stay_balanced():
    rng = np.random.default_rng(0)
    groups, labels = [], []
    for patient in range(24):  # 24 patients with 1-4 images each, one label per patient
        for _ in range(int(rng.integers(1, 5))):
            groups.append(f"p{patient}")
            labels.append(patient % 2)
    groups.append(None)  # an image without a patient stands alone
    labels.append(0)
    labels = np.asarray(labels)
    chunks = increment_chunks(labels, groups, 3, seed=1)
    chunk_of = {}
    for index, chunk in enumerate(chunks):
        for row in chunk:
            if groups[row] is not None:
                assert chunk_of.setdefault(groups[row], index) == index
    assert sorted(np.concatenate(chunks).tolist()) == list(range(len(labels)))
    for label in (0, 1):
        counts = [int((labels[c] == label).sum()) for c in chunks]
        assert max(counts) - min(counts) <= 4  # within one patient's images of each other


def test_too_few_units_or_increments_are_one_line_errors():
    with pytest.raises(ValueError, match="increments must be at least 2, got 1"):
        increment_chunks(np.zeros(10), None, 1, seed=0)
    with pytest.raises(ValueError, match=r"cannot cut 2 image group\(s\) into 3 increments"):
        increment_chunks(np.array([0, 0, 1, 1]), ["a", "a", "b", "b"], 3, seed=0)
