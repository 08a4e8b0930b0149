"""bench_overhead: suite cell vs bare loop table (tiny real run), ratios, one-line usage errors."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.tools.bench_overhead import OverheadRow, format_table, main, measure


def test_ratios_and_table():
    row = OverheadRow("timm", "m", 95.0, 100.0, 50.0, 40.0, 3, 1)
    assert row.train_ratio == pytest.approx(0.95) and row.infer_ratio == pytest.approx(1.25)
    text = format_table([row], 224, 32, 2)
    assert "224 px, batch 32, 2 threads" in text and "| timm" in text and "0.95" in text and "1.25" in text


@pytest.mark.slow
def test_one_tiny_round_measures_both_loops():
    (row,) = measure([("timm", "resnet18")], image_size=32, batch_size=8, steps=2, rounds=1)
    assert row.suite_train_images_per_s > 0 and row.bare_train_images_per_s > 0
    assert row.suite_infer_images_per_s > 0 and row.bare_infer_images_per_s > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--rounds", "0"], "--rounds must be >= 1, got 0"), (["--pairs", "timm"], "--pairs must be backend:model")],
)
def test_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
