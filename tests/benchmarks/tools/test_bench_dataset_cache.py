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


def _scripted_clock(durations: list[float]):
    """A clock read twice per timed step (before, after) whose steps last ``durations`` in turn."""
    now, readings = 0.0, []
    for duration in durations:
        readings += [now, now + duration]
        now += duration + 1.0
    return iter(readings).__next__


def test_cold_builds_then_warm_loads_with_ratios_to_the_first_build(tiny_folder):
    # per round and worker count: cold build, warm open, warm read
    durations = [4.0, 0.1, 0.5, 2.0, 0.3, 0.7] + [6.0, 0.2, 0.6, 3.0, 0.1, 0.5]
    timings, images = time_cache(
        f"folder:{tiny_folder}", ResizePolicy(16), rounds=2, workers=[1, 2], clock=_scripted_clock(durations)
    )
    assert images == 32  # 24 train images become train + carved val, 8 test
    table = {t.variant: (t.seconds, t.images_per_s, t.ratio_to_first_build, t.rounds) for t in timings}
    assert list(table) == [
        "cold build, 1 worker(s)",
        "cold build, 2 worker(s)",
        "warm open (memory maps)",
        "warm read (every byte)",
    ]
    assert table["cold build, 1 worker(s)"] == pytest.approx((5.0, 6.4, 1.0, 2))  # median of 4 and 6 s; 32 images / 5 s
    assert table["cold build, 2 worker(s)"] == pytest.approx((2.5, 12.8, 0.5, 2))
    assert table["warm open (memory maps)"] == pytest.approx((0.15, 32 / 0.15, 0.03, 4))  # median of 0.1, 0.3, 0.2, 0.1
    assert table["warm read (every byte)"] == pytest.approx((0.55, 32 / 0.55, 0.11, 4))
    text = format_table(timings, images, "folder:x", ResizePolicy(16))
    assert text.startswith("dataset cache of folder:x (32 images, ") and "| warm read (every byte)" in text


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
