"""Successive halving of ``--tune``'s trials: the rungs, who survives, the budget, on fake trial results (no
training); then one halved suite on the numpy fake backend, in-process: rungs on disk, winner among the survivors,
the budget really spent in the record and the report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting import report
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.halving import (
    HALVING_ETA,
    Rung,
    halved,
    planned_trial_epochs,
    rungs,
    survivors,
    trial_epochs,
)
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess
from tlbench.benchmarks.running.tuning import TUNING_DIR, select_winners, tuning_key
from tlbench.benchmarks.running.tuning_run import RUNGS_DIR, halved_strategies, run_tuned_suite
from tlbench.core.strategies import STRATEGIES, TRIAL_BUDGET, get_strategy, trial_name


def test_rungs_of_eight_trials_and_fifteen_epochs():
    plan = rungs(TRIAL_BUDGET, 15)
    assert HALVING_ETA == 3 and plan == [Rung(8, 5), Rung(3, 15)]
    assert planned_trial_epochs(plan) == 8 * 5 + 3 * 15 == 85  # a grid: 8 x 15 = 120
    assert rungs(8, 5) == [Rung(8, 2), Rung(3, 5)]
    assert rungs(8, 27, count=3) == [Rung(8, 3), Rung(3, 9), Rung(1, 27)]
    assert rungs(8, 15, eta=4) == [Rung(8, 4), Rung(2, 15)] and planned_trial_epochs(rungs(8, 15, eta=4)) == 62
    assert rungs(9, 1) == [Rung(9, 1), Rung(3, 1)]  # no shorter rung: halved_strategies runs it as a grid
    with pytest.raises(ValueError, match="eta >= 2"):
        rungs(8, 15, eta=1)


def test_survivors_are_the_best_in_grid_order_and_never_a_failed_trial():
    configs = [{"head_lr": float(i)} for i in range(8)]
    scores = [0.5, 0.9, None, 0.9, 0.7, float("nan"), 0.95, 0.1]
    assert survivors(list(zip(configs, scores, strict=True)), 3, higher=True) == [configs[6], configs[1], configs[3]]
    assert survivors(list(zip(configs, scores, strict=True)), 3, higher=False) == [configs[7], configs[0], configs[4]]
    assert survivors([(configs[0], None), (configs[1], None)], 3, True) == []
    assert survivors(list(zip(configs, scores, strict=True)), 20, True)[-1] == configs[5]  # nan last, kept when room


def test_which_strategies_are_halved():
    assert {name for name, row in STRATEGIES.items() if halved(row)} == {
        "scratch",
        "partial_finetune",
        "full_finetune",
        "lp_ft",
        "layer_decay",
        "l2sp",
        "distill",
    }  # probes (a trunk never trained: cached features) run every point in full
    config = SuiteConfig(strategies=("scratch", "linear_probe", "knn_probe"), options=RunOptions(epochs=15, tune=True))
    assert halved_strategies(config) == ("scratch",)
    assert halved_strategies(replace(config, options=replace(config.options, tune_scheduler="grid"))) == ()
    assert halved_strategies(replace(config, options=replace(config.options, epochs=1))) == ()


def _trial(strategy, config, score, epochs, wall_s=1.0):
    return {
        "backend": "fake",
        "model": "softmax",
        "strategy": trial_name(get_strategy(strategy), config),
        "dataset": "digits",
        "seed": 0,
        "status": "ok" if score is not None else "failed",
        "selection": {"score": score, "epochs_run": epochs + 30, "image_epochs": epochs} if score is not None else None,
        "wall_s": wall_s,
    }


def test_winners_of_a_halving_count_every_rung():
    config = SuiteConfig(
        backends=("fake",), models=("softmax",), strategies=("full_finetune",), options=RunOptions(epochs=15, tune=True)
    )
    points = get_strategy("full_finetune").search.configs()
    kept = [points[6], points[1], points[3]]
    last = [_trial("full_finetune", c, s, e, 3.0) for c, s, e in zip(kept, [0.8, 0.85, 0.7], [15, 12, 15], strict=True)]
    last.append(_trial("full_finetune", points[0], 0.99, 15))  # a left-over grid record: not a survivor, ignored
    key = tuning_key("fake", "softmax", "full_finetune", "digits")
    earlier = {
        key: {
            "trials": 8,
            "trials_ok": 7,
            "seconds": 8.0,
            "trial_epochs": 40,
            "rungs": [{"trials": 8, "epochs": 5}],
            "planned_trial_epochs": 85,
        }
    }
    tuned, facts = select_winners(last, config, final={key: kept}, earlier=earlier)
    assert tuned[key] == points[1]
    assert facts[key]["scheduler"] == "halving" and facts[key]["rungs"] == [
        {"trials": 8, "epochs": 5},
        {"trials": 3, "epochs": 15},
    ]
    assert (facts[key]["trials"], facts[key]["trials_ok"], facts[key]["trial_epochs"]) == (8, 7, 40 + 42)
    assert facts[key]["planned_trial_epochs"] == 85 and facts[key]["tuning_s"] == 8.0 + 9.0
    grid_tuned, grid = select_winners(last, config)
    assert grid_tuned[key] == points[0] and grid[key]["scheduler"] == "grid" and grid[key]["rungs"] is None
    assert grid[key]["planned_trial_epochs"] == 8 * 15 and trial_epochs(last[0]) == 15
    assert trial_epochs({"status": "failed", "selection": None}) == 0


FAST = RunOptions(
    epochs=3, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def test_a_halved_suite_runs_the_rungs_and_records_the_budget_spent(fake_backend, tmp_path):
    config = SuiteConfig(
        name="h",
        backends=("fake",),
        models=("softmax",),
        strategies=("scratch", "linear_probe"),
        datasets=("digits",),
        seeds=(0, 1),
        options=replace(FAST, cache_dir=str(tmp_path / "cache"), infer_pass=False, tune=True),
    )
    out = tmp_path / "out"
    produced = run_tuned_suite(config, out, cell_runner=run_cell_inprocess)
    first = load_results(out / TUNING_DIR / RUNGS_DIR / "0" / "results.jsonl")
    assert len(first) == TRIAL_BUDGET and all(r["strategy"].startswith("scratch~") for r in first)
    assert {r["epochs"] for r in first} == {1} and {r["selection"]["image_epochs"] for r in first} == {1}
    last = load_results(out / TUNING_DIR / "results.jsonl")
    scratch_last = [r for r in last if r["strategy"].startswith("scratch~")]
    assert len(scratch_last) == 3 and {r["epochs"] for r in scratch_last} == {3}
    assert len([r for r in last if r["strategy"].startswith("linear_probe~")]) == TRIAL_BUDGET
    row = get_strategy("scratch")
    scored = [
        (c, next(r for r in first if r["strategy"] == trial_name(row, c))["selection"]["score"])
        for c in row.search.configs()
    ]
    assert [r["strategy"] for r in scratch_last] == [trial_name(row, c) for c in survivors(scored, 3, True)]
    best = max(scratch_last, key=lambda r: r["selection"]["score"])
    finals = {(r["strategy"], r["seed"]): r for r in produced}
    tuning = finals[("scratch", 1)]["tuning"]
    assert tuning["won"] == best["tuning"]["trial"] and tuning["scheduler"] == "halving"
    assert tuning["rungs"] == [{"trials": 8, "epochs": 1}, {"trials": 3, "epochs": 3}]
    assert tuning["trial_epochs"] == 8 * 1 + 3 * 3 == tuning["planned_trial_epochs"]  # no early stopping
    assert tuning["eta"] == 3
    assert finals[("scratch", 1)]["tuning_s"] == pytest.approx(sum(r["wall_s"] for r in first + scratch_last))
    probe = finals[("linear_probe", 0)]["tuning"]
    assert probe["scheduler"] == "grid" and probe["trial_epochs"] == 0 and probe["trials"] == TRIAL_BUDGET
    md = report.write_report(out, plots=False)["md"].read_text()
    assert "halving 8 x 1 ep -> 3 x 3 ep: 17 trial-epochs on images (a grid: 24)" in md
    assert "linear_probe on digits" in md and "grid: 0 trial-epochs on images" in md
    assert run_tuned_suite(config, out, cell_runner=run_cell_inprocess) == []  # resumable, rungs included


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tune-scheduler", "hyperband"], "unknown --tune-scheduler 'hyperband'; expected one of: halving, grid"),
        (["--tune-eta", "1"], "--tune-eta must be >= 2, got 1"),
    ],
)
def test_bad_scheduler_options_are_one_line_usage_errors(argv, message, capsys):
    assert main(["run", "--no-probe", "--tune", *argv]) == 2
    assert message in capsys.readouterr().err
