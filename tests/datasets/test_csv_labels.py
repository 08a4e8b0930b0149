"""``csv:`` sources: ISIC-style CSV labels, missing images reported, column options, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlbench.datasets import DatasetError, ResizePolicy, load_dataset, parse_dataset_spec

POLICY = ResizePolicy(16)
COLORS = {"melanoma": (120, 30, 30), "nevus": (200, 170, 140)}


def make_images(directory: Path, count: int = 10, ext: str = ".jpg") -> list[tuple[str, str]]:
    rows = []
    for i in range(count):
        label = "melanoma" if i % 2 else "nevus"
        name = f"ISIC_{i:07d}"
        sub = directory / ("part1" if i < count // 2 else "part2")
        sub.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (24, 20), COLORS[label])
        image.paste((i * 12 % 256, 0, 0), (0, 0, 24, 2))  # a distinct top band: no two images are identical
        image.save(sub / f"{name}{ext}", quality=95)
        rows.append((name, label))
    return rows


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_isic_ids_without_extension_are_found_and_labelled(tmp_path: Path) -> None:
    rows = make_images(tmp_path / "imgs", 20)
    csv_path = write_csv(tmp_path / "gt.csv", "isic_id,diagnosis", [f"{n},{lab}" for n, lab in rows])
    dataset = load_dataset(f"csv:{tmp_path / 'imgs'}:{csv_path}", POLICY, tmp_path / "cache")
    assert dataset.class_names == ["melanoma", "nevus"]
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 14, "val": 2, "test": 4}
    assert dataset.meta["carved_splits"] == "val,test" and dataset.meta["skipped_images"] == 0
    for split in dataset.splits.values():
        for image, label in zip(split.images, split.labels, strict=True):
            assert np.abs(image[8, 8].astype(int) - COLORS[dataset.class_names[label]]).max() <= 3


def test_missing_images_are_reported_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = make_images(tmp_path / "imgs", 20)
    lines = [f"{n},{lab}" for n, lab in rows] + ["ISIC_9999999,nevus", "gone.png,melanoma"]
    csv_path = write_csv(tmp_path / "gt.csv", "image,label", lines)
    source = parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{csv_path}")
    assert source.missing == [(22, "ISIC_9999999"), (23, "gone.png")]
    assert "2 row(s) name missing images" in capsys.readouterr().err
    dataset = source.build(POLICY)
    assert sum(len(s) for s in dataset.splits.values()) == 20
    assert dataset.meta["skipped_images"] == 2 and dataset.meta["missing_images"] == 2
    assert dataset.meta["skipped_examples"][0] == f"{csv_path} line 22: ISIC_9999999: image file not found"


def test_split_column_and_relative_paths(tmp_path: Path) -> None:
    rows = make_images(tmp_path / "imgs", 12, ext=".png")
    splits = ["train"] * 8 + ["validation"] * 2 + ["TEST"] * 2
    lines = [
        f"{'part1' if i < 6 else 'part2'}/{n}.png,{lab},{s}"
        for i, ((n, lab), s) in enumerate(zip(rows, splits, strict=True))
    ]
    csv_path = write_csv(tmp_path / "gt.csv", "file,dx,fold", lines)
    dataset = load_dataset(f"csv:{tmp_path / 'imgs'}:{csv_path}?image=file&label=dx&split=fold", POLICY, tmp_path / "c")
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 8, "val": 2, "test": 2}
    assert dataset.meta["carved_splits"] == ""


def test_numeric_labels_sort_numerically(tmp_path: Path) -> None:
    rows = make_images(tmp_path / "imgs", 10)
    lines = [f"{n},{10 if lab == 'nevus' else 2}" for n, lab in rows]
    csv_path = write_csv(tmp_path / "gt.csv", "image,label", lines)
    assert parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{csv_path}").class_names == ["2", "10"]


@pytest.mark.parametrize(
    ("header", "lines", "suffix", "message"),
    [
        ("image,label", ["nothere1,a", "nothere2,b"], "", "none of the 2 images named in .* exists under"),
        ("picture,label", ["ISIC_0000000,a"], "", "has no image column \\(columns: picture, label\\)"),
        ("image,label", ["ISIC_0000000,a"], "?label=grade", "has no column 'grade'"),
        ("image,label", ["ISIC_0000000,a"], "?colour=red", "unknown csv option 'colour'"),
        ("image,label", ["ISIC_0000000,nevus", "ISIC_0000001,nevus"], "", "single class 'nevus'"),
        ("image,label", ["ISIC_0000000,"], "", "line 2: empty 'label'"),
        ("image,label,split", ["ISIC_0000000,a,holdout"], "?split=split", "line 2: split 'holdout'"),
        ("image,label,split", ["ISIC_0000000,a,test", "ISIC_0000001,b,test"], "?split=split", "has no train rows"),
    ],
)
def test_bad_csv_fails_at_parse_time(tmp_path: Path, header: str, lines: list[str], suffix: str, message: str) -> None:
    make_images(tmp_path / "imgs", 4)
    csv_path = write_csv(tmp_path / "gt.csv", header, lines)
    with pytest.raises(DatasetError, match=message):
        parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{csv_path}{suffix}")


def test_missing_paths_and_argument(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    with pytest.raises(DatasetError, match="images folder .*nope does not exist"):
        parse_dataset_spec(f"csv:{tmp_path / 'nope'}:{tmp_path / 'gt.csv'}")
    with pytest.raises(DatasetError, match="labels file .*gt.csv does not exist"):
        parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{tmp_path / 'gt.csv'}")
    with pytest.raises(DatasetError, match="needs two paths"):
        parse_dataset_spec(f"csv:{tmp_path / 'imgs'}")
    with pytest.raises(DatasetError, match="needs paths"):
        parse_dataset_spec("csv")


def test_ambiguous_stem_is_refused(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    Image.new("RGB", (24, 20)).save(tmp_path / "imgs" / "part2" / "ISIC_0000000.png")
    csv_path = write_csv(tmp_path / "gt.csv", "image,label", ["ISIC_0000000,a", "ISIC_0000001,b"])
    with pytest.raises(DatasetError, match="matches 2 files"):
        parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{csv_path}")


def test_symbolic_link_loop_among_the_images_is_skipped_and_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    rows = make_images(tmp_path / "imgs", 10)
    os.symlink("ISIC_loop.jpg", tmp_path / "imgs" / "part1" / "ISIC_loop.jpg")
    os.symlink("ISIC_loop.jpg", tmp_path / "imgs" / "part2" / "ISIC_loop.jpg")  # a link to itself, in part2 too
    lines = [f"{n},{lab}" for n, lab in rows] + ["part1/ISIC_loop.jpg,nevus"]
    csv_path = write_csv(tmp_path / "gt.csv", "image,label", lines)
    source = parse_dataset_spec(f"csv:{tmp_path / 'imgs'}:{csv_path}")
    err = capsys.readouterr().err
    assert (
        "skipped part1/ISIC_loop.jpg: symbolic link loop or unreadable entry (Too many levels of symbolic links)" in err
    )
    assert source.missing == [(12, "part1/ISIC_loop.jpg")] and len(source.broken) == 2
    dataset = source.build(POLICY)
    assert sum(len(s) for s in dataset.splits.values()) == 10 and dataset.meta["skipped_images"] == 1
