"""bench_dataset_cache: cold builds per worker count, warm loads, medians and ratios; bad values exit 2."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tlbench.benchmarks.tools.bench_dataset_cache import format_table, main, time_cache
from tlbench.datasets import ResizePolicy


@pytest.fixture
def tiny_folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("test", 4)):
        for label in ("cat", "dog"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "data"


def test_cold_builds_then_warm_loads_with_ratios_to_the_first_build(tiny_folder):
    timings, images = time_cache(f"folder:{tiny_folder}", ResizePolicy(16), rounds=2, workers=[1, 2])
    assert images == 32  # 24 train images become train + carved val, 8 test
    names = [t.variant for t in timings]
    assert names == [
        "cold build, 1 worker(s)",
        "cold build, 2 worker(s)",
        "warm open (memory maps)",
        "warm read (every byte)",
    ]
    rounds = {t.variant: t.rounds for t in timings}
    assert rounds["cold build, 1 worker(s)"] == 2 and rounds["warm open (memory maps)"] == 4  # one per build
    assert timings[0].ratio_to_first_build == 1.0
    for t in timings:
        assert t.seconds > 0 and t.images_per_s == pytest.approx(images / t.seconds)
        assert t.ratio_to_first_build == pytest.approx(t.seconds / timings[0].seconds)
    table = format_table(timings, images, "folder:x", ResizePolicy(16))
    assert table.startswith("dataset cache of folder:x (32 images, ") and "| warm read (every byte)" in table


def test_cli_prints_the_table_and_rejects_bad_values(tiny_folder, capsys):
    assert main(["--dataset", f"folder:{tiny_folder}", "--image-size", "16", "--rounds", "1", "--workers", "1"]) == 0
    assert "| cold build, 1 worker(s)" in capsys.readouterr().out
    for argv, message in [
        (["--dataset", "folder:/nonexistent/tree"], "/nonexistent/tree"),
        (["--dataset", "digits", "--rounds", "0"], "--rounds/--image-size must be >= 1"),
        (["--dataset", "digits", "--workers", "0"], "--workers must be positive integers"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
