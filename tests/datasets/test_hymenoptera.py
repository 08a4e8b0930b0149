"""``hymenoptera``: download once, unpack, val used as test, offline error."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from PIL import Image

from tlbench.datasets import DatasetError, ResizePolicy, hymenoptera, parse_dataset_spec


def make_zip(path: Path, root: str = "hymenoptera_data") -> Path:
    images = path.parent / "src"
    with zipfile.ZipFile(path, "w") as archive:
        for split, count in (("train", 10), ("val", 3)):
            for name, color in (("ants", (150, 80, 20)), ("bees", (230, 200, 30))):
                for i in range(count):
                    file = images / f"{split}{name}{i}.jpg"
                    file.parent.mkdir(parents=True, exist_ok=True)
                    Image.new("RGB", (32, 24), color).save(file)
                    archive.write(file, f"{root}/{split}/{name}/{i}.jpg")
    return path


def test_downloads_unpacks_and_uses_val_as_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "server").mkdir()
    archive = make_zip(tmp_path / "server" / "hymenoptera_data.zip")
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setattr(hymenoptera, "URL", archive.as_uri())
    source = parse_dataset_spec("hymenoptera")
    assert source.root == tmp_path / "tlcache" / "downloads" / "hymenoptera_data"
    dataset = source.build(ResizePolicy(16))
    assert dataset.class_names == ["ants", "bees"]
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 18, "val": 2, "test": 6}
    assert dataset.meta["carved_splits"] == "val" and dataset.meta["split_folders"] == {"train": "train", "test": "val"}
    archive.unlink()  # cached: no download the second time
    assert parse_dataset_spec("hymenoptera").root == source.root


def test_offline_without_cache_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setattr(hymenoptera, "URL", (tmp_path / "missing.zip").as_uri())
    with pytest.raises(
        DatasetError, match="cannot download .*offline\\? download it yourself and use folder:PATH/hymenoptera_data"
    ):
        parse_dataset_spec("hymenoptera")


def test_bad_zip_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlcache"))
    (tmp_path / "server").mkdir()
    wrong = make_zip(tmp_path / "server" / "other.zip", root="something_else")
    monkeypatch.setattr(hymenoptera, "URL", wrong.as_uri())
    with pytest.raises(DatasetError, match="has no hymenoptera_data/train folder"):
        parse_dataset_spec("hymenoptera")
    (tmp_path / "tlcache" / "downloads" / "hymenoptera_data.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="is not a valid zip"):
        parse_dataset_spec("hymenoptera")
    with pytest.raises(DatasetError, match="takes no argument"):
        parse_dataset_spec("hymenoptera:ants")
