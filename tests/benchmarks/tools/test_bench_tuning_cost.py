"""bench_tuning_cost: the table from injected timings and fake suite directories (no training), the commands each arm
runs, one-line usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlbench.benchmarks.tools import bench_tuning_cost
from tlbench.benchmarks.tools.bench_tuning_cost import ArmResult, collect, cost_table, main, watch_summary

ROOT = Path(__file__).resolve().parents[3]


def _record(strategy, seed=0, image_epochs=None, contention=None):
    return {
        "backend": "timm",
        "model": "m",
        "strategy": strategy,
        "dataset": "d",
        "seed": seed,
        "status": "ok",
        "selection": None if image_epochs is None else {"image_epochs": image_epochs, "epochs_run": image_epochs},
        "contention": contention,
    }


def _write(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _watch(other, seconds, disturbed=False, top=()):
    return {
        "other_cpu_cores_mean": other,
        "duration_s": seconds,
        "disturbed": disturbed,
        "top_other_processes": [{"name": n, "pid": 1, "cores": c} for n, c in top],
    }


def test_the_watch_summary_weights_cells_by_their_watched_seconds():
    records = [
        _record("a", contention=_watch(0.1, 30.0, top=[("python", 0.3)])),
        _record("b", contention=_watch(0.4, 10.0, disturbed=True, top=[("python", 0.5), ("ruff", 0.1)])),
        _record("c", contention={"watch_error": "no samples"}),
        _record("d"),
    ]
    assert watch_summary(records) == (
        "other processes 0.17 cores (duration-weighted over 2 watched cells), 1 disturbed; busiest: python 0.50, "
        "ruff 0.10"
    )
    assert watch_summary([_record("d")]) == "-"


def test_collect_counts_the_trials_of_every_rung_and_their_epochs_over_images(tmp_path):
    arm = tmp_path / "tuned"
    _write(arm / "results.jsonl", [_record("full_finetune", s) for s in (0, 1, 2)] + [_record("full_finetune", 2)])
    _write(arm / "tuning" / "rungs" / "0" / "results.jsonl", [_record(f"ff~{i}", image_epochs=5) for i in range(8)])
    last = [_record(f"ff~{i}", image_epochs=e) for i, e in ((1, 15), (3, 11), (6, 15))]
    _write(arm / "tuning" / "results.jsonl", [*last, *(_record(f"lp~{i}", image_epochs=0) for i in range(8))])
    result = collect("tuned", "suites/x.toml", 12.5, arm)
    assert (result.cells, result.trials, result.trial_epochs) == (3, 8 + 3 + 8, 8 * 5 + 15 + 11 + 15)
    assert result.wall_s == 12.5 and result.watch == "-"


def test_the_table_shows_each_arm_the_ratio_and_the_verdict():
    untuned = ArmResult("untuned", "suites/untuned_breastmnist.toml", 600.0, cells=27, watch="-")
    tuned = ArmResult("tuned", "suites/tuned_breastmnist.toml", 1650.0, cells=27, trials=114, trial_epochs=595)
    text = cost_table(untuned, tuned, "python -m x", "CPU c, 2 threads per cell")
    assert "Command: `python -m x`" in text and "CPU c, 2 threads per cell" in text
    assert "| untuned | `suites/untuned_breastmnist.toml` | 27 | 0 | 0 | 600.0 | 1.00 | - |" in text
    assert "| tuned | `suites/tuned_breastmnist.toml` | 27 | 114 | 595 | 1650.0 | 2.75 | - |" in text
    assert "Ratio tuned / untuned: **2.75x** (target <= 3x: met)." in text
    over = cost_table(untuned, ArmResult("tuned", "t", 1900.0, returncode=1), "c", "k")
    assert "(target <= 3x: missed)" in over and "| tuned (exit 1) |" in over and "not evidence" in over


def test_main_runs_both_arms_with_fresh_caches_and_the_smoke_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the default suite files
    commands: list[list[str]] = []
    ticks = iter([0.0, 100.0, 100.0, 350.0])  # untuned 100 s, tuned 250 s

    def runner(argv):
        commands.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        _write(out / "results.jsonl", [_record("linear_probe")])
        if out.name == "tuned":
            _write(out / "tuning" / "results.jsonl", [_record("lp~1", image_epochs=0)])
        return 0

    work, page = tmp_path / "work", tmp_path / "page.md"
    argv = ["--work-dir", str(work), "--out", str(page), "--seeds", "0", "--epochs", "3", "--strategies", "a,b"]
    assert main(argv, runner=runner, clock=lambda: next(ticks)) == 0
    assert [c[c.index("run") + 1] for c in commands] == [str(bench_tuning_cost.UNTUNED), str(bench_tuning_cost.TUNED)]
    for arm, command in zip(("untuned", "tuned"), commands, strict=True):
        assert command[command.index("--cache-dir") + 1] == str(work / arm / "cache") and "--no-probe" in command
        assert command[-6:] == ["--seeds", "0", "--strategies", "a,b", "--epochs", "3"]
    text = page.read_text()
    assert text == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "| tuned | `suites/tuned_breastmnist.toml` | 1 | 1 | 0 | 250.0 | 2.50 |" in text
    assert "--seeds 0 --strategies a,b --epochs 3" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tuned", "nope.toml"], "--tuned 'nope.toml' is not a suite file"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
    ],
)
def test_bad_values_are_one_line_usage_errors(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(argv, runner=lambda argv: pytest.fail("ran")) == 2
    assert capsys.readouterr().err.strip() == f"bench_tuning_cost: error: {message}"


def test_a_work_dir_with_results_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    (tmp_path / "untuned").mkdir()
    assert main(["--work-dir", str(tmp_path)], runner=lambda argv: pytest.fail("ran")) == 2
    assert "is not empty (a suite would resume)" in capsys.readouterr().err
