"""The feature cache: keyed by weights content, the extraction's seconds kept apart from a hit's read seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlbench.benchmarks.running.features import FeatureCache, cached_features, feature_key, weights_identity


class Clock:
    """An injected clock: ``time.perf_counter`` advanced by the fake extractor, not by the machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_weights_file_is_keyed_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pth"
    path.write_bytes(b"first checkpoint")
    first = weights_identity(str(path))
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 16
    path.write_bytes(b"regenerated at the same path")
    assert weights_identity(str(path)) != first
    assert weights_identity("default") == "default" and weights_identity("IMAGENET1K_V1") == "IMAGENET1K_V1"
    assert feature_key(backend="b", model="m", weights=first) != feature_key(
        backend="b", model="m", weights=weights_identity(str(path))
    )


def test_a_hit_reports_the_extraction_seconds_and_its_read_seconds_apart(tmp_path: Path, monkeypatch) -> None:
    import time

    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    images = {"train": np.zeros((6, 2, 2, 3), np.uint8), "val": np.zeros((2, 2, 2, 3), np.uint8)}
    calls = []

    def extract(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        clock.now += 0.5 * len(batch)  # 0.5 s per image
        return np.ones((len(batch), 4), np.float32)

    cache = FeatureCache(tmp_path)
    miss = cached_features(cache, "k", images, extract, batch_size=4, sync=lambda: None)
    assert not miss.hit and miss.seconds == 4.0 and miss.read_s is None and miss.images == 8
    assert cache.meta("k")["extract_s"] == 4.0
    hit = cached_features(cache, "k", images, extract, batch_size=4, sync=lambda: None)
    assert hit.hit and hit.seconds == 4.0  # what extracting them costs, not the file read
    assert hit.read_s == 0.0 and calls == [4, 2, 2]  # the clock did not move while reading: nothing extracted
    np.testing.assert_array_equal(hit.splits["train"], miss.splits["train"])


def test_an_entry_without_its_extraction_seconds_is_extracted_again(tmp_path: Path) -> None:
    images = {"train": np.zeros((3, 2, 2, 3), np.uint8)}
    cache = FeatureCache(tmp_path)
    cache.save("old", {"train": np.ones((3, 4), np.float32)}, {})  # an entry of an older format
    calls = []

    def extract(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return np.full((len(batch), 4), 2.0, np.float32)

    again = cached_features(cache, "old", images, extract, batch_size=8, sync=lambda: None)
    assert not again.hit and calls == [3] and float(again.splits["train"][0, 0]) == 2.0
    assert cache.meta("old")["extract_s"] == again.seconds


def test_each_splits_extraction_is_timed_so_a_cell_is_charged_its_training_splits_only(
    tmp_path: Path, monkeypatch
) -> None:
    """Injected clock, 0.5 s per image: train 6, val 2, test 4 images; a feature head is charged train + val."""
    import time

    clock = Clock()
    monkeypatch.setattr(time, "perf_counter", clock)
    images = {name: np.zeros((n, 2, 2, 3), np.uint8) for name, n in (("train", 6), ("val", 2), ("test", 4))}

    def extract(batch: np.ndarray) -> np.ndarray:
        clock.now += 0.5 * len(batch)
        return np.ones((len(batch), 4), np.float32)

    cache = FeatureCache(tmp_path)
    miss = cached_features(cache, "k", images, extract, batch_size=4, sync=lambda: None)
    assert miss.split_seconds == {"train": 3.0, "val": 1.0, "test": 2.0} and miss.seconds == 6.0
    assert miss.seconds_of(("train", "val")) == 4.0 and miss.images_of(("train", "val")) == 8
    assert cache.meta("k")["extract_s_by_split"] == {"train": 3.0, "val": 1.0, "test": 2.0}
    hit = cached_features(cache, "k", images, extract, batch_size=4, sync=lambda: None)
    assert hit.hit and hit.seconds_of(("train", "val")) == 4.0  # the entry's own per-split seconds
    # an entry made before per-split seconds: its total shared in proportion to the images
    cache.save("older", miss.splits, {"extract_s": 6.0, "images": 12})
    older = cached_features(cache, "older", images, extract, batch_size=4, sync=lambda: None)
    assert older.hit and older.split_seconds == {} and older.seconds_of(("train", "val")) == 4.0
