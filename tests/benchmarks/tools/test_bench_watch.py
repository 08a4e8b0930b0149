"""bench_watch: every arm in its own process, a table with ratios to the unwatched arm, one-line usage errors."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.tools import bench_watch
from tlbench.benchmarks.tools.bench_watch import ARMS, main


@pytest.mark.slow
def test_one_tiny_round_times_every_arm(tmp_path, capsys):
    out = tmp_path / "table.md"
    argv = ["--rounds", "1", "--image-size", "32", "--batch-size", "4", "--infer-s", "0.2", "--model", "resnet18"]
    assert main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = [line for line in text.splitlines() if line.startswith(tuple(f"| {arm} " for arm in ARMS))]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == list(ARMS)
    assert rows[0].split(" | ")[2] == "1.000"  # unwatched against itself
    base = float(rows[0].split(" | ")[1])
    for row in rows:  # each ratio is the arm's images/s over the unwatched arm's, as written
        images_per_s, ratio = float(row.split(" | ")[1]), float(row.split(" | ")[2])
        assert images_per_s > 0 and ratio == pytest.approx(images_per_s / base, rel=0.02)  # images/s rounded
    assert "--infer-s 0.2" in text and "batch 4" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--batch-size", "-1"], "--batch-size must be >= 1, got -1"),
        (["--infer-s", "0"], "--infer-s must be > 0 seconds, got 0.0"),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"bench_watch: error: {message}"


def test_rounds_rotate_the_opener_and_the_table_holds_medians_and_ratios(monkeypatch, capsys):
    from tlbench.benchmarks.tools import bench_watch

    calls: list[str] = []
    scripted = {
        "unwatched": [100.0, 104.0, 102.0],
        "watch_process": [101.0, 99.0, 100.0],
        "watch_in_thread": [90.0] * 3,
    }

    def run_arm(arm, args, env):
        calls.append(arm)
        return scripted[arm][sum(1 for c in calls if c == arm) - 1]

    monkeypatch.setattr(bench_watch, "run_arm", run_arm)
    assert bench_watch.main(["--rounds", "3"]) == 0
    assert calls[0::3] == ["unwatched", "watch_process", "watch_in_thread"]  # the opening arm rotates
    out = capsys.readouterr().out
    assert "| unwatched | 102 | 1.000 | 100, 104, 102 |" in out
    assert "| watch_process | 100 | 0.980 | 101, 99, 100 |" in out  # median 100 / median 102
    assert "| watch_in_thread | 90 | 0.882 | 90, 90, 90 |" in out


def test_the_ratio_is_each_arms_median_over_the_unwatched_median(tmp_path, monkeypatch):
    """Scripted figures per arm (no process runs): the table's claim, a ratio to the unwatched arm, is computed from
    the medians over rounds; a watch that cost 1 % reads 0.990."""
    figures = {
        "unwatched": iter([100.0, 120.0, 110.0]),
        "watch_process": iter([99.0, 108.9, 118.8]),  # median 108.9 = 0.99 x 110
        "watch_in_thread": iter([55.0, 60.0, 50.0]),
    }
    monkeypatch.setattr(bench_watch, "run_arm", lambda arm, args, env: next(figures[arm]))
    out = tmp_path / "table.md"
    assert main(["--rounds", "3", "--out", str(out)]) == 0
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.read_text().splitlines()[-3:]}
    assert rows["unwatched"][1:3] == ["110", "1.000"]
    assert rows["watch_process"][1:3] == ["109", "0.990"]
    assert rows["watch_in_thread"][1:3] == ["55", "0.500"]
