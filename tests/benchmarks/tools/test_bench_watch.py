"""bench_watch: every arm in its own process, a table with ratios to the unwatched arm, one-line usage errors."""

from __future__ import annotations

import pytest

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
    assert all(float(row.split(" | ")[1]) > 0 for row in rows)
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
