"""How long the dataset cache takes to build (cold) and to load again (warm), per number of decode workers.

Each round builds the cache of one dataset spec into a fresh temporary directory with 1 worker and with
every usable core (``TLBENCH_DATA_WORKERS``), then loads it back from the cache twice: ``warm open`` (memory
maps opened, metadata read: what a cell pays) and ``warm read`` (every image byte read through the maps, as one
pass of training does). Variants run interleaved per round so a noisy machine slows them alike; the table shows
medians over rounds and ratios to the build with the fewest workers::

    python -m tlbench.benchmarks.tools.bench_dataset_cache --dataset folder:../shared/data/chest_xray_pneumonia \\
        --image-size 224 --crop-pct 0.875 --rounds 3

Decoding happens only in the timed ``build`` variants, never when a cell trains.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...datasets import ArrayDataset, DatasetError, ResizePolicy, load_dataset
from ...datasets.imagefiles import data_workers

EXIT_USAGE = 2


@dataclass(frozen=True)
class CacheTiming:
    """Median seconds of one variant over rounds."""

    variant: str
    seconds: float
    images_per_s: float
    ratio_to_first_build: float
    rounds: int


def _with_workers(workers: int, fn: Callable[[], ArrayDataset]) -> ArrayDataset:
    previous = os.environ.get("TLBENCH_DATA_WORKERS")
    os.environ["TLBENCH_DATA_WORKERS"] = str(workers)
    try:
        return fn()
    finally:
        if previous is None:
            os.environ.pop("TLBENCH_DATA_WORKERS", None)
        else:
            os.environ["TLBENCH_DATA_WORKERS"] = previous


def _read_every_byte(dataset: ArrayDataset) -> int:
    """Sum every image array in chunks (forces reads through the memory maps); returns the image count."""
    count = 0
    for split in dataset.splits.values():
        for start in range(0, len(split.images), 512):
            np.asarray(split.images[start : start + 512]).sum(dtype=np.uint64)
        count += len(split.images)
    return count


def time_cache(
    spec: str,
    policy: ResizePolicy,
    rounds: int,
    workers: Sequence[int],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[list[CacheTiming], int]:
    """Time cold builds (per worker count) and warm loads of ``spec``.

    Args:
        spec: dataset spec.
        policy: resize policy of the cache entry.
        rounds: number of interleaved rounds; timings are medians over them.
        workers: decode worker counts, one cold build each per round; ratios are to the first.
        clock: seconds, read before and after each timed step (tests inject one).

    Returns:
        The timings (cold builds first) and the number of images in the dataset.
    """
    samples: dict[str, list[float]] = {}
    images = 0
    for _ in range(rounds):
        for count in workers:
            root = Path(tempfile.mkdtemp(prefix="tlbench-cache-bench-"))
            try:
                start = clock()
                dataset = _with_workers(count, lambda root=root: load_dataset(spec, policy, root))
                samples.setdefault(f"cold build, {count} worker(s)", []).append(clock() - start)
                images = sum(len(s.images) for s in dataset.splits.values())
                del dataset
                start = clock()
                dataset = load_dataset(spec, policy, root)
                samples.setdefault("warm open (memory maps)", []).append(clock() - start)
                start = clock()
                _read_every_byte(dataset)
                samples.setdefault("warm read (every byte)", []).append(clock() - start)
                del dataset
            finally:
                shutil.rmtree(root, ignore_errors=True)
    reference = statistics.median(samples[f"cold build, {workers[0]} worker(s)"])
    timings = [
        CacheTiming(
            name,
            statistics.median(values),
            images / statistics.median(values),
            statistics.median(values) / reference,
            len(values),
        )
        for name, values in sorted(samples.items(), key=lambda item: not item[0].startswith("cold"))
    ]
    return timings, images


def format_table(timings: list[CacheTiming], images: int, spec: str, policy: ResizePolicy) -> str:
    """The timings as a Markdown table with a one-line header naming what was measured."""
    from tabulate import tabulate

    rows = [
        (t.variant, f"{t.seconds:.2f}", f"{t.images_per_s:,.0f}", f"{t.ratio_to_first_build:.2f}", t.rounds)
        for t in timings
    ]
    head = f"dataset cache of {spec} ({images:,} images, {policy.key()}), medians over rounds"
    return (
        head
        + "\n\n"
        + tabulate(
            rows,
            headers=["variant", "median (s)", "images/s", "× cold build, fewest workers", "rounds"],
            tablefmt="github",
        )
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad values print one line and return 2."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_dataset_cache", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", required=True, help="dataset spec (see `tlbench list datasets`)")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--crop-pct", type=float, default=0.875)
    parser.add_argument("--interpolation", default="bicubic")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", default=None, help="comma-separated worker counts (default: 1 and every usable core)"
    )
    args = parser.parse_args(argv)
    try:
        if args.rounds < 1 or args.image_size < 1 or not 0 < args.crop_pct <= 1:
            raise ValueError(
                "--rounds/--image-size must be >= 1 and --crop-pct in (0, 1], "
                f"got {args.rounds}, {args.image_size}, {args.crop_pct}"
            )
        text = args.workers or ",".join(map(str, sorted({1, data_workers()})))
        workers = [int(w) for w in text.split(",") if w.strip().isdigit()]
        if len(workers) != len(text.split(",")) or any(w < 1 for w in workers):
            raise ValueError(f"--workers must be positive integers, got {args.workers!r}")
        policy = ResizePolicy(args.image_size, args.crop_pct, args.interpolation)
        timings, images = time_cache(args.dataset, policy, args.rounds, sorted(set(workers)))
    except (DatasetError, ValueError) as exc:
        print(f"bench_dataset_cache: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(format_table(timings, images, args.dataset, policy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
