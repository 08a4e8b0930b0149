"""Folders of images whose file names name the patient (``person<N>_<i>.png``), with known shared patients."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

COLORS = {"cats": (220, 40, 40), "dogs": (40, 40, 220)}
#: the ``--group-by`` pattern of these folders
PERSON = r"person(\d+)_"


def make_image(path: Path, color: tuple[int, int, int], mark: int) -> None:
    """A flat 24 px image with a top band of its own (``mark``): no two images are identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (24, 24), color)
    image.paste((mark % 256, mark // 256, 0), (0, 0, 24, 2))
    image.save(path)


def make_patients(root: Path, split: str, klass: str, persons: dict[int, int], marks: list[int]) -> None:
    """``root/<split>/<klass>/person<N>_<i>.png``: ``persons[N]`` images of patient N (``marks[0]`` counts up)."""
    for person, count in persons.items():
        for i in range(count):
            marks[0] += 1
            make_image(root / split / klass / f"person{person}_{i}.png", COLORS[klass], marks[0])


def patient_tree(root: Path) -> Path:
    """Train: patients 0-9 (cats) and 10-19 (dogs), 3 images each; no val folder (carved); test: patients 5, 18 and
    19 of train (2 images each: 3 shared groups, 6 leaked images), two new ones (30, 31) and one cat image whose name
    names no patient (11 test images)."""
    marks = [0]
    make_patients(root, "train", "cats", {p: 3 for p in range(10)}, marks)
    make_patients(root, "train", "dogs", {p: 3 for p in range(10, 20)}, marks)
    make_patients(root, "test", "cats", {5: 2, 30: 2}, marks)
    make_patients(root, "test", "dogs", {18: 2, 19: 2, 31: 2}, marks)
    make_image(root / "test" / "cats" / "extra.png", COLORS["cats"], 999)
    return root
