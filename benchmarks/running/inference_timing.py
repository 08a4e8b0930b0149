"""What a cell and the inference pass time at inference: the same full test batches, the same columns.

The cell times its model right after training (``time_inference``); the suite's inference pass times the same
batches of the same bytes again for several models interleaved (``timing.measure_interleaved``). Both take their
batches from ``timing_batches`` and write their figures with ``latency_columns``, so the two figures mean the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import RunOptions
from .timing import LatencyStats, measure_latency
from .training import batch_slices

#: full test batches cycled by the inference timing loop
INFER_BATCHES = 8


def timing_slices(count: int, batch_size: int) -> list[slice]:
    """The inference timing batches of a test split of ``count`` images: its first ``INFER_BATCHES`` full ones."""
    bs = min(batch_size, count)
    return [s for s in batch_slices(count, bs) if s.stop - s.start == bs][:INFER_BATCHES]


def timing_batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The inference timing batches of a test split (uint8, in memory): see ``timing_slices``."""
    return [np.asarray(images[s]) for s in timing_slices(len(images), batch_size)]


def time_inference(
    run: Callable[[Any], object],
    sync: Callable[[], None],
    batches: Sequence[Any],
    options: RunOptions,
    batch_size: int | None = None,
) -> LatencyStats:
    """Time ``run`` over ``batches`` with the suite's warm-up, repeats and minimum time (``measure_latency``).

    Args:
        run: one inference call on one batch.
        sync: the device synchronization called before every clock read.
        batches: the timing batches (``timing_batches``), cycled.
        options: the suite's options (``infer_warmup``, ``infer_repeats``, ``infer_min_time_s``).
        batch_size: images per call when a batch is not one array (a fused model takes a tuple of arrays).
    """
    return measure_latency(
        run,
        batches,
        sync,
        warmup=options.infer_warmup,
        repeats=options.infer_repeats,
        min_time_s=options.infer_min_time_s,
        batch_size=batch_size,
    )


def latency_columns(stats: LatencyStats) -> dict[str, Any]:
    """The record's inference timing columns of ``stats``."""
    return {
        "infer_images_per_s": stats.images_per_s,
        "infer_latency_ms_p50": stats.latency_ms_p50,
        "infer_latency_ms_p90": stats.latency_ms_p90,
        "infer_batch_size": stats.batch_size,
        "infer_repeats": stats.repeats,
        "infer_timed_s": stats.timed_s,
        "infer_latency_cv": stats.latency_cv,
    }
