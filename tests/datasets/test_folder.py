"""``folder:`` sources: layout checks at parse time, skipped files, carving, pool, cache invalidation, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlbench.datasets import DatasetError, ResizePolicy, load_dataset, parse_dataset_spec
from tlbench.datasets.cache import entry_dir
from tlbench.datasets.folder import TEST_FRACTION, VAL_FRACTION

POLICY = ResizePolicy(16)
COLORS = {"cats": (220, 40, 40), "dogs": (40, 40, 220)}


def make_image(
    path: Path, color: tuple[int, int, int], size: int = 24, mode: str = "RGB", mark: int | None = None
) -> None:
    """A flat image; ``mark`` paints a top band of that gray level so that marked images all differ."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (size, size), color)
    if mark is not None:
        image.paste((mark % 256, mark // 256, 0), (0, 0, size, 2))
    image.convert(mode).save(path)


def make_tree(root: Path, counts: dict[str, int], classes: dict[str, tuple[int, int, int]] = COLORS) -> Path:
    """``root/<split>/<class>/<class>_NNN.png``, every image distinct (see ``make_image``)."""
    marks = iter(range(1, 10**6))
    for split, count in counts.items():
        for name, color in classes.items():
            for i in range(count):
                make_image(root / split / name / f"{name}_{i:03d}.png", color, mark=next(marks))
    return root


def test_folder_with_splits_builds_with_labels_from_folder_names(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train": 6, "VALID": 2, "test": 3})
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert dataset.class_names == ["cats", "dogs"]
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 12, "val": 4, "test": 6}
    test = dataset.splits["test"]
    assert test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert test.images[0, 8, 8].tolist() == [220, 40, 40] and test.images[-1, 8, 8].tolist() == [40, 40, 220]
    assert isinstance(dataset.splits["train"].images, np.memmap)
    assert dataset.meta["carved_splits"] == "" and dataset.meta["skipped_images"] == 0
    assert dataset.meta["split_folders"] == {"train": "train", "val": "VALID", "test": "test"}


def test_missing_val_is_carved_stratified_and_recorded(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train": 20, "test": 2})
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    sizes = {k: len(v) for k, v in dataset.splits.items()}
    assert sizes == {"train": 36, "val": 4, "test": 4}
    assert round(VAL_FRACTION * 40) == 4
    assert np.bincount(dataset.splits["val"].labels).tolist() == [2, 2]
    assert dataset.meta["carved_splits"] == "val" and dataset.meta["carve_seed"] == 0


def test_flat_layout_carves_val_and_test(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"flat": 10})
    dataset = load_dataset(f"folder:{root / 'flat'}", POLICY, tmp_path / "cache")
    sizes = {k: len(v) for k, v in dataset.splits.items()}
    assert sizes["test"] == round(TEST_FRACTION * 20) and sizes["val"] == 2 and sum(sizes.values()) == 20
    assert dataset.meta["carved_splits"] == "val,test"


def test_bad_files_are_skipped_counted_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_tree(tmp_path / "data", {"train": 4, "val": 2, "test": 2})
    cats = root / "train" / "cats"
    (cats / "zero.png").write_bytes(b"")
    (cats / "fake.jpg").write_text("not an image")
    make_image(cats / "pixel.png", (0, 0, 0), size=1)
    (cats / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (cats / "Thumbs.db").write_bytes(b"\xd0\xcf")
    (cats / "notes.txt").write_text("labels by hand")
    make_image(root / "train" / "dogs" / "gray.png", (90, 90, 90), mode="L")
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert len(dataset.splits["train"]) == 9  # 8 good + the gray one; 3 bad skipped
    meta = dataset.meta
    (root / "train" / ".DS_Store").write_bytes(b"")  # split-level junk is not counted twice: built already
    assert meta["skipped_images"] == 3 and meta["ignored_files"] == 1 and meta["hidden_files"] == 2
    assert meta["gray_to_rgb"] is True and meta["gray_images"] == 1
    reasons = "\n".join(meta["skipped_examples"])
    assert (
        "zero.png: not an image" in reasons and "fake.jpg: not an image" in reasons and "pixel.png: 1x1 px" in reasons
    )
    err = capsys.readouterr().err
    assert "skipped 3 of 20 image files" in err and "notes.txt" in err
    saved = json.loads((Path(meta["cache_dir"]) / "meta.json").read_text())
    assert saved["skipped_images"] == 3


def test_class_left_without_readable_images_is_fatal(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train": 2, "val": 1, "test": 1})
    for path in (root / "test" / "dogs").iterdir():
        path.write_bytes(b"broken")
    with pytest.raises(DatasetError, match="split 'test' has no readable image of class 'dogs'"):
        load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert not any((tmp_path / "cache" / "datasets").glob("folder-*"))  # no half-written entry


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: None, "does not exist"),
        (lambda r: r.write_text("x"), "is not a directory"),
        (lambda r: (r / "train").mkdir(parents=True), "has no class folders"),
        (lambda r: make_tree(r, {"train": 1}, {"only": (1, 2, 3)}), "single class folder 'only'"),
        (
            lambda r: (make_tree(r, {"train": 1}), (r / "train" / "birds").mkdir()),
            "class folder .*birds has no image files",
        ),
        (lambda r: (make_tree(r, {"train": 1}), (r / "train" / "cats" / ".DS_Store").write_text("")), None),
        (
            lambda r: (make_tree(r, {"train": 1}), make_tree(r, {"test": 1}, {"cats": (1, 1, 1)})),
            "class 'dogs' has no folder in .*test",
        ),
        (
            lambda r: (make_tree(r, {"train": 1, "test": 1}), make_tree(r, {"test": 1}, {"birds": (1, 1, 1)})),
            "class folder 'birds' absent",
        ),
        (lambda r: make_tree(r, {"val": 1, "valid": 1, "train": 1}), "both val/ and valid/"),
        (lambda r: make_tree(r, {"val": 1, "test": 1}), "no train/ folder"),
    ],
)
def test_layout_problems_fail_at_parse_time(tmp_path: Path, setup, message: str | None) -> None:
    root = tmp_path / "data"
    setup(root)
    if message is None:  # a hidden file alone does not make a class folder empty
        assert parse_dataset_spec(f"folder:{root}").tree.class_names == ["cats", "dogs"]
        return
    with pytest.raises(DatasetError, match=message):
        parse_dataset_spec(f"folder:{root}")


def test_folder_needs_a_path() -> None:
    with pytest.raises(DatasetError, match="needs a path"):
        parse_dataset_spec("folder")


def test_changed_file_invalidates_the_cache(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", {"train": 3, "val": 1, "test": 1})
    spec = f"folder:{root}"
    first = load_dataset(spec, POLICY, tmp_path / "cache")
    again = load_dataset(spec, POLICY, tmp_path / "cache")
    assert first.meta["cache_hit"] is False and again.meta["cache_hit"] is True
    target = root / "train" / "cats" / "cats_000.png"
    make_image(target, (0, 255, 0))
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    changed = load_dataset(spec, POLICY, tmp_path / "cache")
    assert changed.meta["cache_hit"] is False
    assert changed.splits["train"].images[0, 4, 4].tolist() == [0, 255, 0]
    assert entry_dir(parse_dataset_spec(spec), POLICY, tmp_path / "cache") != Path(first.meta["cache_dir"])
    other_size = load_dataset(spec, ResizePolicy(20), tmp_path / "cache")
    assert other_size.meta["cache_hit"] is False and other_size.splits["test"].images.shape[1:] == (20, 20, 3)


def test_process_pool_gives_the_same_arrays_as_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    for split, count in (("train", 40), ("test", 8)):
        for name in ("a", "b"):
            for i in range(count):
                path = root / split / name / f"{i:03d}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(path)
    (root / "train" / "a" / "000.png").write_bytes(b"")  # one skip inside the pooled pass
    spec = f"folder:{root}"
    monkeypatch.setenv("TLBENCH_DATA_WORKERS", "2")
    pooled = load_dataset(spec, POLICY, tmp_path / "pooled", progress=True)
    monkeypatch.setenv("TLBENCH_DATA_WORKERS", "1")
    serial = parse_dataset_spec(spec).build(POLICY)
    assert pooled.meta["skipped_images"] == serial.meta["skipped_images"] == 1
    for name in ("train", "val", "test"):
        assert np.array_equal(np.asarray(pooled.splits[name].images), serial.splits[name].images)
        assert np.array_equal(pooled.splits[name].labels, serial.splits[name].labels)
    assert len(pooled.splits["train"]) + len(pooled.splits["val"]) == 79


def test_bad_worker_count_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "data", {"train": 2, "test": 1, "val": 1})
    monkeypatch.setenv("TLBENCH_DATA_WORKERS", "two")
    with pytest.raises(DatasetError, match="TLBENCH_DATA_WORKERS='two'; expected a positive integer"):
        load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")


def test_cli_rejects_a_missing_folder_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tlbench.benchmarks.cli import main as cli_main  # here: the other dataset tests need no CLI

    missing = tmp_path / "nowhere"
    code = cli_main(["run", "--out", str(tmp_path / "out"), "--dataset", f"folder:{missing}", "--backends", "timm"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [
        f"tlbench: error: dataset folder {missing} does not exist; expected an ImageFolder directory"
    ]


def test_real_chest_xray_folder_parses_with_official_counts(shared_data: Path) -> None:
    source = parse_dataset_spec(f"folder:{shared_data / 'chest_xray_pneumonia'}")
    counts = {split: [len(files) for files in per_class] for split, per_class in source.tree.files.items()}
    assert source.tree.class_names == ["NORMAL", "PNEUMONIA"]
    assert counts == {"train": [1341, 3875], "test": [234, 390]}
    assert source.tree.hidden == 3  # the stray .DS_Store files at the root, train/ and test/


def test_symbolic_link_loops_are_skipped_counted_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_tree(tmp_path / "data", {"train": 3, "val": 1, "test": 1})
    cats, dogs = root / "train" / "cats", root / "train" / "dogs"
    os.symlink("self.png", cats / "self.png")  # a -> a
    os.symlink("ping", dogs / "pong")  # a -> b -> a
    os.symlink("pong", dogs / "ping")
    os.symlink("..", cats / "up")  # a folder cycle: back to train/
    os.symlink("loop", root / "train" / "loop")  # a loop beside the class folders
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        (cats / "self.png").stat()  # really a loop
    source = parse_dataset_spec(f"folder:{root}")
    assert source.tree.class_names == ["cats", "dogs"]
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert len(dataset.splits["train"]) == 6
    meta = dataset.meta
    assert meta["symlink_loops"] == 5 and meta["skipped_images"] == 5
    reasons = "\n".join(meta["skipped_examples"])
    assert f"{cats / 'self.png'}: symbolic link loop or unreadable entry (Too many levels of symbolic links)" in reasons
    assert f"{cats / 'up'}: symbolic link loop (leads back to a folder already listed)" in reasons
    assert str(dogs / "ping") in reasons and str(dogs / "pong") in reasons and str(root / "train" / "loop") in reasons
    err = capsys.readouterr().err
    assert f"skipped {cats / 'self.png'}: symbolic link loop" in err and "Traceback" not in err


def test_a_file_name_that_is_not_utf8_is_fingerprinted_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_tree(tmp_path / "data", {"train": 3, "val": 1, "test": 1})
    cats = os.fsencode(root / "train" / "cats")
    Image.new("RGB", (24, 24), (1, 2, 3)).save(os.path.join(cats, b"caf\xe9.png"), format="PNG")  # Latin-1 name
    with open(os.path.join(cats, b"bad\xff.png"), "wb") as handle:
        handle.write(b"not a png")
    with pytest.raises(UnicodeEncodeError):
        os.fsdecode(os.path.join(cats, b"caf\xe9.png")).encode()  # what the fingerprint used to do
    dataset = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert len(dataset.splits["train"]) == 7
    assert "train/cats/caf\\xe9.png" in dataset.splits["train"].names
    assert dataset.meta["skipped_examples"] == [
        f"{root}/train/cats/bad\\xff.png: not an image Pillow can identify (empty, corrupt or another file type)"
    ]
    assert "bad\\xff.png" in capsys.readouterr().err
    again = load_dataset(f"folder:{root}", POLICY, tmp_path / "cache")
    assert again.meta["cache_hit"] is True
    os.utime(os.path.join(cats, b"caf\xe9.png"), ns=(0, 10**18))  # the odd name takes part in the fingerprint
    assert load_dataset(f"folder:{root}", POLICY, tmp_path / "cache").meta["cache_hit"] is False


@pytest.mark.slow  # forks decode workers
def test_decode_pool_forks_only_a_single_threaded_process() -> None:
    """fork in a process whose framework runs thread pools can copy a held lock into a worker that then never
    returns (it hung the suite after torch inductor had started its compile workers): such a process uses a fork
    server; a process without a framework still forks."""
    import subprocess
    import sys

    probe = (
        "import threading, time\n"
        "from tlbench.datasets.imagefiles import _pool_context\n"
        "print(_pool_context().get_start_method())\n"
        "import torch\n"
        "print(_pool_context().get_start_method())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fork", "forkserver"]


def test_process_pool_in_a_threaded_process_decodes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch  # noqa: F401  (a framework with thread pools is loaded, as in a cell)

    from tlbench.datasets.imagefiles import _pool_context

    torch.ones(64, 64) @ torch.ones(64, 64)  # its thread pool started
    assert _pool_context().get_start_method() == "forkserver"
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    monkeypatch.setenv("TLBENCH_DATA_WORKERS", "2")
    pooled = load_dataset(f"folder:{root}", ResizePolicy(16), tmp_path / "c2")
    monkeypatch.setenv("TLBENCH_DATA_WORKERS", "1")
    serial = load_dataset(f"folder:{root}", ResizePolicy(16), tmp_path / "c1")
    for name in pooled.splits:
        np.testing.assert_array_equal(np.asarray(pooled.splits[name].images), np.asarray(serial.splits[name].images))
