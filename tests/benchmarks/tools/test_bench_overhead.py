"""bench_overhead: suite cell vs bare loop table (tiny real run), ratios, one-line usage errors."""

from __future__ import annotations

import math

import pytest

from tlbench.benchmarks.tools import bench_overhead
from tlbench.benchmarks.tools.bench_overhead import OverheadRow, format_table, main, measure


def test_ratios_and_table():
    row = OverheadRow("timm", "m", 95.0, 100.0, 50.0, 40.0, 3, 1)
    assert row.train_ratio == pytest.approx(0.95) and row.infer_ratio == pytest.approx(1.25)
    text = format_table([row], 224, 32, 2)
    assert "224 px, batch 32, 2 threads" in text and "| timm" in text and "0.95" in text and "1.25" in text


def test_rounds_interleave_suite_and_bare_and_keep_the_best_bare_layout(monkeypatch):
    """Scripted figures (no process runs): each round runs the suite cell, then the bare loop per memory layout
    (Keras has one), per pair; the bare figure of a round is its best layout; the row holds medians over rounds."""
    calls: list[tuple] = []
    suite_figures = {
        ("timm", "m"): iter([(90.0, 400.0), (100.0, 500.0), (80.0, 450.0)]),
        ("keras", "k"): iter([(10.0, 30.0)] * 3),
    }
    bare_figures = {
        ("timm", "m", False): iter([100.0, 100.0, 100.0]),
        ("timm", "m", True): iter([120.0, 90.0, 110.0]),
        ("keras", "k", False): iter([20.0, 40.0, 30.0]),
    }

    def suite_cell(backend, model, image_size, batch_size, steps, out):
        calls.append(("suite", backend, model))
        train, infer = next(suite_figures[(backend, model)])
        disturbed = backend == "timm" and len([c for c in calls if c[:2] == ("suite", "timm")]) == 2
        return {"train_images_per_s": train, "infer_images_per_s": infer, "contention": {"disturbed": disturbed}}

    def bare(backend, model, image_size, batch_size, steps, channels_last, env):
        calls.append(("bare", backend, model, channels_last))
        figure = next(bare_figures[(backend, model, channels_last)])
        return {"train_images_per_s": figure, "infer_images_per_s": 5 * figure}

    monkeypatch.setattr(bench_overhead, "run_suite_cell", suite_cell)
    monkeypatch.setattr(bench_overhead, "run_bare", bare)
    timm, keras = measure([("timm", "m"), ("keras", "k")], image_size=32, batch_size=8, steps=2, rounds=3)
    one_round = [("suite", "timm", "m"), ("bare", "timm", "m", False), ("bare", "timm", "m", True)]
    one_round += [("suite", "keras", "k"), ("bare", "keras", "k", False)]
    assert calls == one_round * 3
    # timm: suite train 90/100/80 -> 90; bare per round max(100, 120)=120, max(100, 90)=100, max(100, 110)=110 -> 110
    assert (timm.suite_train_images_per_s, timm.bare_train_images_per_s) == (90.0, 110.0)
    assert (timm.suite_infer_images_per_s, timm.bare_infer_images_per_s) == (450.0, 550.0)
    assert timm.train_ratio == pytest.approx(90 / 110) and timm.infer_ratio == pytest.approx(450 / 550)
    assert (timm.rounds, timm.disturbed_rounds) == (3, 1)
    assert (keras.bare_train_images_per_s, keras.train_ratio, keras.disturbed_rounds) == (30.0, pytest.approx(1 / 3), 0)


@pytest.mark.slow
def test_one_tiny_round_measures_both_loops():
    (row,) = measure([("timm", "resnet18")], image_size=32, batch_size=8, steps=2, rounds=1)
    # both real loops ran and were timed (how close they are is the committed table's claim, on a quiet machine:
    # a wall-clock bound here would fail whenever another process shares the cores)
    figures = (
        row.suite_train_images_per_s,
        row.bare_train_images_per_s,
        row.suite_infer_images_per_s,
        row.bare_infer_images_per_s,
    )
    assert all(math.isfinite(f) and f > 0 for f in figures), figures
    assert (row.backend, row.model, row.rounds) == ("timm", "resnet18", 1) and row.disturbed_rounds in (0, 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--rounds", "0"], "--rounds must be >= 1, got 0"), (["--pairs", "timm"], "--pairs must be backend:model")],
)
def test_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
