"""The array cache: streamed memory-mapped entries, atomic writes, keys, progress reporting."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tlbench.datasets import ArrayDataset, DatasetSource, ResizePolicy, Split, load_dataset
from tlbench.datasets.cache import datasets_dir, default_cache_dir, load_cached, load_or_build, open_images_for_writing
from tlbench.datasets.download import downloads_dir
from tlbench.datasets.progress import LineProgress, NoProgress, progress_bar


class StreamingSource(DatasetSource):
    """Writes its train images through ``build_to``'s memory maps; ``fail`` raises mid-build."""

    slug = "stream"

    def __init__(self, version: str = "1", fail: bool = False) -> None:
        super().__init__("stream")
        self.version, self.fail, self.calls = version, fail, 0

    def fingerprint(self) -> str:
        return f"stream-{self.version}"

    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        raise AssertionError("the cache must call build_to")

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        self.calls += 1
        size = policy.image_size
        splits = {}
        for index, name in enumerate(("train", "val", "test")):
            images = open_images_for_writing(directory, name, 4, size)
            images[:] = index * 10 + np.arange(4, dtype=np.uint8)[:, None, None, None]
            if self.fail and name == "val":
                raise RuntimeError("disk full")
            images.flush()
            splits[name] = Split(images=images, labels=np.array([0, 1, 0, 1]))
        return ArrayDataset(name="stream", class_names=["a", "b"], splits=splits, meta={"skipped_images": 0})


def test_streamed_arrays_are_kept_in_place_and_loaded_memory_mapped(tmp_path: Path) -> None:
    source = StreamingSource()
    dataset = load_or_build(source, ResizePolicy(8), tmp_path)
    assert isinstance(dataset.splits["test"].images, np.memmap)
    assert dataset.splits["test"].images[:, 0, 0, 0].tolist() == [20, 21, 22, 23]
    entry = Path(dataset.meta["cache_dir"])
    assert entry.parent == tmp_path / "datasets"
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        [f"{s}_{k}.npy" for s in ("train", "val", "test") for k in ("images", "labels", "hashes")] + ["meta.json"]
    )
    assert dataset.splits["train"].content_hashes.shape == (4, 16) and dataset.splits["train"].names is None
    assert json.loads((entry / "meta.json").read_text())["class_names"] == ["a", "b"]
    again = load_or_build(source, ResizePolicy(8), tmp_path)
    assert again.meta["cache_hit"] is True and source.calls == 1
    changed = load_or_build(StreamingSource(version="2"), ResizePolicy(8), tmp_path)
    assert changed.meta["cache_hit"] is False and Path(changed.meta["cache_dir"]) != entry


def test_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="disk full"):
        load_or_build(StreamingSource(fail=True), ResizePolicy(8), tmp_path)
    assert list((tmp_path / "datasets").iterdir()) == []


def test_incomplete_entry_is_rebuilt(tmp_path: Path) -> None:
    source = StreamingSource()
    entry = Path(load_or_build(source, ResizePolicy(8), tmp_path).meta["cache_dir"])
    (entry / "meta.json").unlink()
    assert load_cached(entry) is None
    rebuilt = load_or_build(source, ResizePolicy(8), tmp_path)
    assert rebuilt.meta["cache_hit"] is False and source.calls == 2


def test_line_progress_logs_each_quarter(capsys: pytest.CaptureFixture[str]) -> None:
    bar = LineProgress(8, "caching x")
    for _ in range(8):
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("] ", 1)[1].split(" (")[0] for line in lines] == [
        f"caching x: {n}/8 images" for n in (2, 4, 6, 8)
    ]
    assert isinstance(progress_bar(8, "x", enabled=False), NoProgress)
    assert isinstance(progress_bar(8, "x", enabled=True), LineProgress)  # stderr is captured: not a terminal


def test_cache_root_is_the_same_whether_named_or_defaulted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "tlcache"
    monkeypatch.setenv("TLBENCH_CACHE", str(root))
    assert default_cache_dir() == root and datasets_dir() == root / "datasets" and downloads_dir() == root / "downloads"
    defaulted = load_dataset("digits", ResizePolicy(8))
    entry = Path(defaulted.meta["cache_dir"])
    assert defaulted.meta["cache_hit"] is False and entry.parent == root / "datasets"
    for named in (root, str(root), default_cache_dir()):  # --cache-dir with the default root reuses the entry
        again = load_dataset("digits", ResizePolicy(8), named)
        assert again.meta["cache_hit"] is True and Path(again.meta["cache_dir"]) == entry
    other = load_dataset("digits", ResizePolicy(8), tmp_path / "elsewhere")
    assert Path(other.meta["cache_dir"]).parent == tmp_path / "elsewhere" / "datasets"


def test_default_cache_root_is_under_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLBENCH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / ".cache" / "tlbench"
    assert datasets_dir() == tmp_path / ".cache" / "tlbench" / "datasets"


def test_entry_with_missing_hashes_is_rebuilt(tmp_path: Path) -> None:
    source = StreamingSource()
    entry = Path(load_or_build(source, ResizePolicy(8), tmp_path).meta["cache_dir"])
    (entry / "val_hashes.npy").unlink()
    assert load_cached(entry) is None
    assert load_or_build(source, ResizePolicy(8), tmp_path).meta["cache_hit"] is False and source.calls == 2


class SlowSource(StreamingSource):
    """A ``StreamingSource`` whose build takes long enough for a second caller to arrive meanwhile."""

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        time.sleep(0.3)
        return super().build_to(policy, directory, progress)


def test_two_callers_of_a_missing_entry_build_it_once_and_both_read_it(tmp_path: Path) -> None:
    """Cells of ``--parallel 2`` asking for one cold entry: the second waits for the first's build (the lock is a
    ``flock`` on its own open file, so two threads contend as two processes do), and nobody deletes an entry
    another one reads."""
    source = SlowSource()
    start = threading.Barrier(2)
    results: list[ArrayDataset] = []

    def load() -> None:
        start.wait()
        results.append(load_or_build(source, ResizePolicy(8), tmp_path))

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.calls == 1
    assert sorted(r.meta["cache_hit"] for r in results) == [False, True]
    for dataset in results:
        assert dataset.splits["test"].images[:, 0, 0, 0].tolist() == [20, 21, 22, 23]
    assert [p.name for p in (tmp_path / "locks").iterdir()] == [Path(results[0].meta["cache_dir"]).name + ".lock"]
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name.startswith(".")]  # no staging left


def test_a_commit_keeps_a_complete_entry_another_process_wrote_first(tmp_path: Path) -> None:
    from tlbench.datasets.cache import _commit, _staging_dir, write_entry

    first = load_or_build(StreamingSource(), ResizePolicy(8), tmp_path)
    entry = Path(first.meta["cache_dir"])
    written = (entry / "meta.json").stat().st_mtime_ns
    late = _staging_dir(entry)  # a process that missed the lock (a read-only lock folder) and finished second
    write_entry(StreamingSource().build_to(ResizePolicy(8), late), late)
    _commit(late, entry)
    assert not late.exists() and (entry / "meta.json").stat().st_mtime_ns == written  # the first entry stays
    assert first.splits["train"].images[:, 0, 0, 0].tolist() == [0, 1, 2, 3]  # its reader still reads it

    (entry / "meta.json").unlink()  # an incomplete entry is replaced
    again = _staging_dir(entry)
    write_entry(StreamingSource().build_to(ResizePolicy(8), again), again)
    _commit(again, entry)
    assert not again.exists() and load_cached(entry) is not None
