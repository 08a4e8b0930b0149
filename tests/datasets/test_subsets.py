"""Label-efficiency subsets: nested, stratified, group-aware, seeded by the draw and the dataset only."""

from __future__ import annotations

import numpy as np
import pytest

from tlbench.datasets.subsets import class_target, draws_of, parse_train_size, parse_train_sizes, subset_rows

LABELS = np.array([0] * 40 + [1] * 20 + [2] * 10)


def test_parse_train_sizes_canonical_and_errors():
    assert parse_train_sizes("5, 10,25%,100%") == ("5", "10", "25%", "100%")
    assert parse_train_sizes(["5", 10, "12.50%"]) == ("5", "10", "12.5%")
    assert parse_train_size("007") == "7"
    for bad in ("0", "-3", "abc", "0%", "101%", "5.5", True):
        with pytest.raises(ValueError, match="train size"):
            parse_train_size(bad)
    with pytest.raises(ValueError, match="twice"):
        parse_train_sizes("5,10,5")
    with pytest.raises(ValueError, match="names no size"):
        parse_train_sizes("5,,10")


def test_sizes_are_stratified_and_nested():
    small = subset_rows(LABELS, None, "5", 0, "ds")
    large = subset_rows(LABELS, None, "8", 0, "ds")
    frac = subset_rows(LABELS, None, "50%", 0, "ds")
    assert small.per_class == {"0": 5, "1": 5, "2": 5}
    assert large.per_class == {"0": 8, "1": 8, "2": 8}
    assert frac.per_class == {"0": 20, "1": 10, "2": 5}
    assert set(small.rows) <= set(large.rows)
    assert set(small.rows) <= set(frac.rows)  # 5 of class 2 is 50 %: the same first five of that class
    assert np.all(np.diff(large.rows) > 0)
    assert np.bincount(LABELS[large.rows]).tolist() == [8, 8, 8]


def test_subset_depends_on_draw_and_dataset_only():
    a = subset_rows(LABELS, None, "5", 0, "ds")
    assert np.array_equal(a.rows, subset_rows(LABELS, None, "5", 0, "ds").rows)  # any seed, strategy, backend
    assert not np.array_equal(a.rows, subset_rows(LABELS, None, "5", 1, "ds").rows)
    assert not np.array_equal(a.rows, subset_rows(LABELS, None, "5", 0, "other").rows)
    assert a.facts()["rows_sha"] == subset_rows(LABELS, None, "5", 0, "ds").facts()["rows_sha"]


def test_size_larger_than_a_class_is_capped_with_a_note():
    subset = subset_rows(LABELS, None, "15", 0, "ds", ["a", "b", "c"])
    assert subset.per_class == {"a": 15, "b": 15, "c": 10}
    assert subset.capped == ["c"]
    assert "capped at the class size: c" in subset.note()
    assert class_target("10%", 3) == 1 and class_target("100%", 7) == 7


def test_groups_are_taken_whole_and_nested():
    labels = np.array([0] * 12 + [1] * 12)
    groups = [f"p{i // 3}" for i in range(24)]  # 8 patients of 3 images, 4 per class
    small = subset_rows(labels, groups, "2", 0, "xray")
    large = subset_rows(labels, groups, "4", 0, "xray")
    assert small.per_class == {"0": 3, "1": 3} and small.groups == 2  # one whole patient per class
    assert large.per_class == {"0": 6, "1": 6} and large.groups == 4
    assert set(small.rows) <= set(large.rows)
    for subset in (small, large):
        taken = {groups[r] for r in subset.rows}
        assert sum(groups.count(g) for g in taken) == len(subset.rows)  # no patient split


def test_full_fraction_runs_one_draw():
    assert list(draws_of("100%", 3)) == [0]
    assert list(draws_of("10", 3)) == [0, 1, 2]
    assert len(subset_rows(LABELS, None, "100%", 2, "ds").rows) == len(LABELS)
