"""bench_after_training: every arm in its own process, a table with ratios to fresh, one-line usage errors."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.tools.bench_after_training import ARMS, main


@pytest.mark.slow
def test_one_tiny_round_times_every_arm(tmp_path, capsys):
    out = tmp_path / "table.md"
    argv = [
        "--rounds",
        "1",
        "--image-size",
        "32",
        "--batch-size",
        "4",
        "--train-s",
        "0.3",
        "--infer-s",
        "0.1",
        "--model",
        "resnet18",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = [line for line in text.splitlines() if line.startswith("| after") or line.startswith("| fresh")]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == list(ARMS)
    assert rows[0].split(" | ")[2] == "1.000"  # fresh against itself
    for row in rows:
        assert float(row.split(" | ")[1]) > 0
    assert "--train-s 0.3 --infer-s 0.1" in text and "batch 4" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--train-s", "0"], "--train-s must be > 0 seconds, got 0.0"),
    ],
)
def test_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
