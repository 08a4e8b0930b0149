"""bench_after_training: every arm in its own process, a table with ratios to fresh, one-line usage errors."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.tools import bench_after_training
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
    for row in rows:  # the median column is the per-round figure (one round)
        assert row.split(" | ")[1] == row.split(" | ")[3].rstrip(" |")
    assert "--train-s 0.3 --infer-s 0.1" in text and "batch 4" in text


def test_arms_are_interleaved_with_a_rotating_opener_and_compared_with_fresh(tmp_path, monkeypatch, capsys):
    """Scripted figures per arm (no process runs): medians over rounds, ratios to fresh's median."""
    figures = {
        "fresh": iter([100.0, 120.0, 110.0]),
        "after_training": iter([50.0, 66.0, 55.0]),
        "after_training_trim": iter([90.0, 99.0, 88.0]),
        "after_training_new_model": iter([110.0, 121.0, 132.0]),
    }
    order: list[str] = []

    def run_arm(arm, args, env):
        order.append(arm)
        return next(figures[arm])

    monkeypatch.setattr(bench_after_training, "run_arm", run_arm)
    out = tmp_path / "table.md"
    assert main(["--rounds", "3", "--out", str(out)]) == 0
    assert order == list(ARMS) + list(ARMS[1:] + ARMS[:1]) + list(ARMS[2:] + ARMS[:2])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.read_text().splitlines()[-4:]}
    assert rows["fresh"][1:3] == ["110", "1.000"]
    assert rows["after_training"][1:3] == ["55", "0.500"]  # median 55 of 50, 66, 55: half of fresh
    assert rows["after_training_trim"][1:3] == ["90", "0.818"]
    assert rows["after_training_new_model"][1:4] == ["121", "1.100", "110, 121, 132 |"]
    assert "round 3/3: fresh 110, after_training 55" in capsys.readouterr().err


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
