"""MFU columns: the strategy-aware training FLOPs when counted, 3 x forward only as the recorded fallback."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.running.measures import compute_dtype, count_train_flops, mfu_columns

PROBE = {"matmul_flop_per_s": {"float32": 1e11, "bfloat16": 2e11}, "conv_flop_per_s": {"float32": 5e10}}


def test_training_mfu_uses_the_counted_training_flops() -> None:
    record = {"flops_per_image": 1e9, "train_flops_per_image": 1.5e9, "train_images_per_s": 10.0}
    columns = mfu_columns({**record, "infer_images_per_s": 20.0}, PROBE, "float32")
    assert columns["train_mfu"] == pytest.approx(10 * 1.5e9 / 1e11)  # a partial fine-tuning: 1.5 x forward
    assert columns["infer_mfu"] == pytest.approx(20 * 1e9 / 1e11)
    assert columns["train_flops"] == "counted" and columns["peak_flop_per_s"] == 1e11


def test_without_a_count_training_is_three_forwards_and_says_so() -> None:
    columns = mfu_columns({"flops_per_image": 1e9, "train_images_per_s": 10.0}, PROBE, "float32")
    assert columns["train_mfu"] == pytest.approx(10 * 3e9 / 1e11) and columns["train_flops"] == "3x forward"


def test_no_probe_no_flops_or_no_dtype_gives_no_columns() -> None:
    assert mfu_columns({"flops_per_image": 1e9, "train_images_per_s": 1.0}, None, "float32") == {}
    assert mfu_columns({"flops_per_image": None, "train_images_per_s": 1.0}, PROBE, "float32") == {}
    assert mfu_columns({"flops_per_image": 1e9}, PROBE, "float16 autocast") == {}
    assert compute_dtype("bfloat16 autocast") == "bfloat16" and compute_dtype("float64") == "float32"


def test_a_backend_that_cannot_count_is_logged_not_failed() -> None:
    class Refuses:
        def train_flops_per_image(self) -> int:
            raise NotImplementedError("Keras counts forward FLOPs only")

    lines: list[str] = []
    assert count_train_flops(Refuses(), lines.append) is None  # type: ignore[arg-type]
    assert lines == ["training FLOPs not counted: NotImplementedError: Keras counts forward FLOPs only"]
