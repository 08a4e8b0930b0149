"""bench_canary: the probe's canary against the watch's canary around each training engine, as a ratio table."""

from __future__ import annotations

import pytest

from tlbench.benchmarks.tools import bench_canary
from tlbench.benchmarks.tools.bench_canary import main


@pytest.mark.slow  # trains a small network with torch (the Keras arms run when Keras is installed)
def test_one_tiny_round_watches_every_installed_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench_canary, "available_arms", lambda: ("probe", "torch"))
    out = tmp_path / "table.md"
    assert main(["--rounds", "1", "--train-s", "0.3", "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    assert rows["probe"][2] == "1.000"
    canary = float(rows["torch"][1])
    assert canary > 0 and float(rows["torch"][2]) == pytest.approx(canary / float(rows["probe"][1]), rel=0.02)
    assert 0.0 < float(rows["torch"][4]) <= 64  # the measured process's cores while watched (it trained)
    assert 0.0 <= float(rows["torch"][5]) <= 64  # the cores busy beside the canary
    assert "--train-s 0.3" in text


def test_rounds_rotate_and_the_table_holds_medians_ratios_and_flags(monkeypatch, capsys):
    """Scripted arms (no process runs): medians over rounds, ratio to the probe's median, how many rounds the
    cell flag (below SLOW_RATIO of the probe) would have raised."""
    scripted = {
        "probe": [100.0, 104.0, 102.0],
        "torch": [99.0, 70.0, 101.0],
        "keras": [60.0, 65.0, 70.0],
    }
    calls: list[str] = []

    def run_arm(arm, args, env):
        calls.append(arm)
        value = scripted[arm][calls.count(arm) - 1]
        return (
            {"canary_gflop_per_s": value}
            if arm == "probe"
            else {"canary_gflop_per_s": value, "measured_cpu_cores": 1.9, "company_cpu_cores": 0.02}
        )

    monkeypatch.setattr(bench_canary, "available_arms", lambda: tuple(scripted))
    monkeypatch.setattr(bench_canary, "run_arm", run_arm)
    assert main(["--rounds", "3"]) == 0
    assert calls[0::3] == ["probe", "torch", "keras"]  # the opening arm rotates
    out = capsys.readouterr().out
    assert "| probe | 102 | 1.000 | 0 of 3 | – | – | 100, 104, 102 |" in out
    assert "| torch | 99 | 0.971 | 1 of 3 | 1.90 | 0.02 | 99, 70, 101 |" in out  # 70 / 102 < 0.8
    assert "| keras | 65 | 0.637 | 3 of 3 | 1.90 | 0.02 | 60, 65, 70 |" in out


def test_arms_without_their_engine_are_left_out(monkeypatch):
    from tlbench.backends import engines

    monkeypatch.setattr(engines, "engine_available", lambda name: name != "jax")
    assert bench_canary.available_arms() == ("probe", "torch", "keras", "keras-torch")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--train-s", "0"], "--train-s must be > 0 seconds, got 0.0"),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv, message, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"bench_canary: error: {message}"
