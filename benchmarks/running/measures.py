"""Derived speed columns of a record: FLOPs per image and model FLOPs utilization against the machine probe."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...backends.base import Backend
from .errors import one_line_error


def count_flops(backend: Backend, log: Callable[[str], None]) -> int | None:
    """Forward FLOPs of one image through ``backend``'s model; ``None`` (logged) when it cannot count.

    Counting is a measurement aid: it never fails a cell.
    """
    try:
        return backend.flops_per_image()
    except Exception as exc:
        log(f"FLOPs not counted: {one_line_error(exc)}")
        return None


def count_train_flops(backend: Backend, log: Callable[[str], None]) -> int | None:
    """FLOPs of one training image of the phase the backend is in (``Backend.train_flops_per_image``); ``None``
    (logged) when it cannot count."""
    try:
        return backend.train_flops_per_image()
    except Exception as exc:
        log(f"training FLOPs not counted: {one_line_error(exc)}")
        return None


def compute_dtype(dtype: str) -> str:
    """The probe's dtype for a record's ``dtype`` (``bfloat16 autocast`` → ``bfloat16``; else ``float32``)."""
    if dtype.startswith("bfloat16"):
        return "bfloat16"
    if dtype.startswith("float16"):
        return "float16"
    return "float32"


def mfu_columns(record: dict[str, Any], probe: dict[str, Any] | None, dtype: str) -> dict[str, Any]:
    """``infer_mfu``/``train_mfu`` (achieved FLOP/s over the probe's peak for the compute dtype) and the peak used.

    Training uses the strategy-aware ``train_flops_per_image`` of the record (forward + the gradients the main
    phase computes: a partial fine-tuning's frozen stages compute no weight gradient) and 3 × forward only when
    the backend could not count it (``train_flops`` says which). Returns ``{}`` when there is no probe, no FLOP
    count or no measurement of the dtype.

    Returns:
        ``{"infer_mfu", "train_mfu", "peak_flop_per_s", "peak_dtype", "train_flops"}`` (the MFU keys only for
        measured rates).
    """
    from .machine_peak import peak_flop_per_s

    flops = record.get("flops_per_image")
    if probe is None or not flops:
        return {}
    compute = compute_dtype(dtype)
    try:
        peak = peak_flop_per_s(probe, compute)
    except ValueError:
        return {}
    columns: dict[str, Any] = {"peak_flop_per_s": peak, "peak_dtype": compute}
    if record.get("infer_images_per_s"):
        columns["infer_mfu"] = record["infer_images_per_s"] * flops / peak
    if record.get("train_images_per_s"):
        counted = record.get("train_flops_per_image")
        columns["train_mfu"] = record["train_images_per_s"] * (counted or 3 * flops) / peak
        columns["train_flops"] = "counted" if counted else "3x forward"
    return columns
