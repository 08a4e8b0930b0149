"""Duplicates, split leakage and conflicting labels: hashes from the cache, the ``dedup`` policies, the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlbench.datasets import DatasetError, ResizePolicy, load_dataset
from tlbench.datasets import cache as cache_module
from tlbench.datasets import duplicates as duplicates_module

POLICY = ResizePolicy(16)
REPORT_KEYS = {"within_split", "cross_split", "conflicting_labels", "dropped", "policy", "examples"}


def noise_image(path: Path, seed: int, size: int = 24) -> Path:
    """A random RGB PNG: images of different seeds are never identical, nor near-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def leaky_tree(root: Path) -> Path:
    """An ImageFolder tree with real copies: within train, train->val, train->test, val->test, two labels.

    train/cats: c0 c1 c2 c3 + c0_copy (within train); train/dogs: d0 d1 d2 d3 + both.png (== c3: conflict)
    val: cats v0, c1_leak (== c1); dogs: vd0
    test: cats t0, c2_leak (== c2), v0_leak (== val v0); dogs: td0
    """
    for i in range(4):
        noise_image(root / "train" / "cats" / f"c{i}.png", i)
        noise_image(root / "train" / "dogs" / f"d{i}.png", 100 + i)
    shutil.copy(root / "train" / "cats" / "c0.png", root / "train" / "cats" / "c0_copy.png")
    shutil.copy(root / "train" / "cats" / "c3.png", root / "train" / "dogs" / "both.png")
    noise_image(root / "val" / "cats" / "v0.png", 200)
    noise_image(root / "val" / "dogs" / "vd0.png", 201)
    shutil.copy(root / "train" / "cats" / "c1.png", root / "val" / "cats" / "c1_leak.png")
    noise_image(root / "test" / "cats" / "t0.png", 300)
    noise_image(root / "test" / "dogs" / "td0.png", 301)
    shutil.copy(root / "train" / "cats" / "c2.png", root / "test" / "cats" / "c2_leak.png")
    shutil.copy(root / "val" / "cats" / "v0.png", root / "test" / "cats" / "v0_leak.png")
    return root


def all_keys(dataset) -> list[bytes]:
    return [bytes(np.asarray(image).tobytes()) for split in dataset.splits.values() for image in split.images]


def test_keep_reports_every_kind_without_removing_anything(tmp_path: Path) -> None:
    root = leaky_tree(tmp_path / "data")
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache", dedup="keep")
    report = dataset.meta["duplicates"]
    assert set(report) == REPORT_KEYS
    assert report["within_split"] == 2  # c0_copy, and both.png: train holds c3's content twice
    assert report["cross_split"] == 3  # c1_leak (val), c2_leak (test), v0_leak (test)
    assert report["conflicting_labels"] == 2  # c3 (cats) and both.png (dogs)
    assert report["dropped"] == 0 and report["policy"] == "keep"
    assert (
        {k: len(v) for k, v in dataset.splits.items()}
        == {"train": 10, "val": 3, "test": 4}
        == dataset.meta["split_sizes"]
    )
    assert report["examples"][0] == "train/dogs/both.png [dogs] == train/cats/c3.png [cats]"
    assert "val/cats/c1_leak.png == train/cats/c1.png" in report["examples"]
    assert "test/cats/c2_leak.png == train/cats/c2.png" in report["examples"]
    assert len(report["examples"]) == 5 and not any(str(tmp_path) in e for e in report["examples"])
    json.dumps(dataset.meta)  # JSON-friendly as recorded in the results


def test_drop_keeps_the_earliest_copy_and_removes_conflicts_everywhere(tmp_path: Path) -> None:
    root = leaky_tree(tmp_path / "data")
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    report = dataset.meta["duplicates"]
    assert report["policy"] == "drop"
    assert (report["within_split"], report["cross_split"], report["conflicting_labels"]) == (2, 3, 2)
    assert report["dropped"] == 1 + 3 + 2  # c0_copy; c1_leak, c2_leak, v0_leak; c3 and both.png
    sizes = {k: len(v) for k, v in dataset.splits.items()}
    assert sizes == {"train": 7, "val": 2, "test": 2} == dataset.meta["split_sizes"]
    keys = all_keys(dataset)
    assert len(set(keys)) == len(keys)  # no image left twice, in any split
    names = {split: dataset.splits[split].names for split in dataset.splits}
    assert names["train"] == ["train/cats/c0.png", "train/cats/c1.png", "train/cats/c2.png"] + [
        f"train/dogs/d{i}.png" for i in range(4)
    ]
    assert names["val"] == ["val/cats/v0.png", "val/dogs/vd0.png"] and names["test"] == [
        "test/cats/t0.png",
        "test/dogs/td0.png",
    ]
    for split in dataset.splits.values():  # labels, names and images still line up
        assert len(split.labels) == len(split.names) == len(split.images) == len(split.content_hashes)
        assert [n.split("/")[1] for n in split.names] == [dataset.class_names[label] for label in split.labels]
    assert isinstance(dataset.splits["train"].images, np.memmap)  # the kept rows stay memory-mapped


def test_warm_loads_reuse_the_cached_hashes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = leaky_tree(tmp_path / "data")
    cold = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    entry = Path(cold.meta["cache_dir"])
    assert json.loads((entry / "meta.json").read_text()).get("duplicates") is None  # the entry is policy-independent

    def no_rehash(images):
        raise AssertionError("a warm load must not hash images again")

    monkeypatch.setattr(cache_module, "image_hashes", no_rehash)
    monkeypatch.setattr(duplicates_module, "image_hashes", no_rehash)
    for policy in ("drop", "keep", "drop"):
        warm = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache", dedup=policy)
        assert warm.meta["cache_hit"] is True and warm.meta["duplicates"]["policy"] == policy
    assert warm.meta["split_sizes"] == cold.meta["split_sizes"]
    for name in ("train", "val", "test"):
        assert np.array_equal(np.asarray(warm.splits[name].images), np.asarray(cold.splits[name].images))


def test_error_names_the_counts_and_an_example_pair(tmp_path: Path) -> None:
    root = leaky_tree(tmp_path / "data")
    with pytest.raises(DatasetError) as caught:
        load_dataset(f"folder:{root}", POLICY, tmp_path / "cache", dedup="error")
    message = str(caught.value)
    assert "\n" not in message
    assert "cross_split 3, conflicting_labels 2, within_split 2" in message
    assert "e.g. train/dogs/both.png [dogs] == train/cats/c3.png [cats]" in message


def test_error_allows_copies_inside_one_split(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split, offset in (("train", 0), ("val", 25), ("test", 50)):
        for label, name in enumerate(("a", "b")):
            for i in range(2):
                noise_image(root / split / name / f"{i}.png", offset + 10 * label + i)
    shutil.copy(root / "train" / "a" / "0.png", root / "train" / "a" / "0_again.png")
    shutil.copy(root / "train" / "a" / "0.png", root / "train" / "a" / "0_third.png")
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache", dedup="error")
    report = dataset.meta["duplicates"]
    assert (report["within_split"], report["cross_split"], report["dropped"]) == (2, 0, 0)
    assert report["examples"] == ["train/a/0_again.png == train/a/0.png"]
    assert len(dataset.splits["train"]) == 6


@pytest.mark.parametrize("bad", ["remove", "DROP", "", None])
def test_bad_dedup_value_is_refused_in_one_line(tmp_path: Path, bad: object) -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset("folder:/does/not/matter", POLICY, tmp_path / "cache", dedup=bad)  # checked before the spec
    assert str(caught.value) == f"unknown dedup policy {bad!r}; expected one of: drop, keep, error"


def test_carved_split_names_say_where_the_file_lives(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for label, name in enumerate(("a", "b")):
        for i in range(10):
            noise_image(root / name / f"{i}.png", 10 * label + i)
    shutil.copy(root / "a" / "0.png", root / "a" / "copy.png")
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache", dedup="keep")
    names = {split: dataset.splits[split].names for split in ("train", "val", "test")}
    assert all(n.startswith(f"{split}:") and n.count("/") == 1 for split, ns in names.items() for n in ns)
    report = dataset.meta["duplicates"]
    assert report["within_split"] + report["cross_split"] == 1
    assert report["examples"][0].endswith(("a/0.png", "a/copy.png"))


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["image,label,split", *lines]) + "\n")
    return path


def test_csv_naming_a_file_twice_is_reported_and_the_conflict_dropped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "imgs"
    rows = []
    for i in range(12):
        noise_image(images / f"img{i:02d}.png", i)
        split = "train" if i < 8 else ("val" if i < 10 else "test")
        rows.append(f"img{i:02d}.png,{'nevus' if i % 2 else 'melanoma'},{split}")
    rows += ["img00.png,melanoma,train", "img01.png,melanoma,train"]  # line 14: same label again; line 15: other label
    csv_path = write_csv(tmp_path / "gt.csv", rows)
    spec = f"csv:{images}:{csv_path}?split=split"
    kept = load_dataset(spec, POLICY, tmp_path / "cache", dedup="keep")
    err = capsys.readouterr().err
    assert "2 row(s) name an image file already named" in err
    assert "line 14 names img00.png again (line 2, same label 'melanoma')" in err
    assert "line 15 names img01.png again with label 'melanoma' (line 3: 'nevus')" in err
    assert kept.meta["repeated_rows"] == 2 and kept.meta["conflicting_rows"] == 1
    report = kept.meta["duplicates"]
    assert (report["within_split"], report["cross_split"], report["conflicting_labels"]) == (2, 0, 2)
    assert report["examples"][0] == "train:img01.png (line 15) [melanoma] == train:img01.png (line 3) [nevus]"
    dropped = load_dataset(spec, POLICY, tmp_path / "cache")
    assert dropped.meta["duplicates"]["dropped"] == 3  # the repeated img00 row and both img01 rows
    assert len(dropped.splits["train"]) == 10 - 3
    assert "img01.png" not in " ".join(dropped.splits["train"].names)


def write_npz(path: Path, sizes=(8, 4, 4), **override) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2)[:, None]
    for change in override.values():
        change(arrays)
    np.savez(path, **arrays)
    return path


def leak_train_into_test(arrays: dict) -> None:
    arrays["test_images"][1] = arrays["train_images"][0]  # same label 0? test[1] has label 1: a conflict
    arrays["test_images"][2] = arrays["train_images"][2]  # label 0 == label 0: plain leakage
    arrays["val_images"][3] = arrays["val_images"][1]  # within val, both label 1


def test_npz_copies_are_named_by_split_and_index(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "leaky.npz", leak=leak_train_into_test)
    kept = load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache", dedup="keep")
    report = kept.meta["duplicates"]
    assert (report["within_split"], report["cross_split"], report["conflicting_labels"]) == (1, 2, 2)
    assert report["examples"] == [
        "test[1] [1] == train[0] [0]",
        "test[1] == train[0]",
        "test[2] == train[2]",
        "val[3] == val[1]",
    ]
    with pytest.raises(
        DatasetError,
        match=r"cross_split 2, conflicting_labels 2, within_split 1\), e\.g\. test\[1\] \[1\] == train\[0\] \[0\]",
    ):
        load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache", dedup="error")
    dropped = load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache")
    assert dropped.meta["split_sizes"] == {"train": 7, "val": 3, "test": 2}
    assert dropped.meta["duplicates"]["dropped"] == 4  # train[0] and test[1] (conflict), test[2], val[3]


def test_dropping_that_empties_a_class_is_refused(tmp_path: Path) -> None:
    def test_is_train(arrays: dict) -> None:
        arrays["test_images"][:] = arrays["train_images"][:4]

    path = write_npz(tmp_path / "copied.npz", test=test_is_train)
    with pytest.raises(
        DatasetError, match="split 'test' has no image of class '0' left after dedup='drop' removed 4 duplicate"
    ):
        load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache")
    assert (
        load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache", dedup="keep").meta["duplicates"]["cross_split"]
        == 4
    )


def test_near_duplicates_are_counted_only_on_request(tmp_path: Path) -> None:
    def near_copy(arrays: dict) -> None:
        noisy = arrays["train_images"][5].astype(int) + np.random.default_rng(1).integers(-2, 3, (28, 28))
        arrays["test_images"][0] = np.clip(noisy, 0, 255).astype(np.uint8)  # a re-encoded copy, not identical

    path = write_npz(tmp_path / "near.npz", near=near_copy)
    plain = load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache")
    assert "near_cross_split" not in plain.meta["duplicates"] and plain.meta["duplicates"]["cross_split"] == 0
    near = load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache", near_duplicates=True)
    assert near.meta["duplicates"]["near_cross_split"] == 1
    assert near.meta["duplicates"]["dropped"] == 0  # reported, never dropped


def test_real_chest_xray_duplicates(shared_data: Path, cache_dir: Path) -> None:
    spec = f"folder:{shared_data / 'chest_xray_pneumonia'}"
    policy = ResizePolicy(32)
    kept = load_dataset(spec, policy, cache_dir, dedup="keep")
    report = kept.meta["duplicates"]
    # 32 extra copies of identical files (26 in train, 6 in test); carving val from train moves 4 of the
    # train copies into val, where they count as cross-split leakage
    assert (report["within_split"], report["cross_split"], report["conflicting_labels"]) == (28, 4, 0)
    assert all(" == " in e and str(shared_data) not in e for e in report["examples"])
    assert report["examples"][0].startswith("val:train/PNEUMONIA/") and " == train/PNEUMONIA/" in report["examples"][0]
    dropped = load_dataset(spec, policy, cache_dir)
    assert dropped.meta["duplicates"]["dropped"] == 32
    assert sum(dropped.meta["split_sizes"].values()) == sum(len(s) for s in kept.splits.values()) - 32 == 5840 - 32
    with pytest.raises(DatasetError, match="cross_split 4, conflicting_labels 0, within_split 28"):
        load_dataset(spec, policy, cache_dir, dedup="error")
