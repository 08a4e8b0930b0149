"""``--tune`` (numpy fake backend, in-process): trials as ordinary cells with no test split, the same budget for every
strategy, the winner chosen on val and run on every seed, recorded; a trial provably never reads test."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting import report
from tlbench.benchmarks.running import cell as cell_module
from tlbench.benchmarks.running.config import CellConfig, RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess
from tlbench.benchmarks.running.tuning import (
    TUNING_DIR,
    TuningError,
    select_winners,
    trial_suite,
    tuned_strategy,
    tuning_key,
)
from tlbench.benchmarks.running.tuning_run import run_tuned_suite
from tlbench.core.strategies import STRATEGIES, TRIAL_BUDGET, get_strategy, trial_name
from tlbench.datasets import Split

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

FAST = RunOptions(
    epochs=2, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def suite(tmp_path, strategies=("scratch", "logreg_probe"), seeds=(0, 1), **options) -> SuiteConfig:
    return SuiteConfig(
        name="t",
        backends=("fake",),
        models=("softmax",),
        strategies=strategies,
        datasets=("digits",),
        seeds=seeds,
        options=replace(FAST, cache_dir=str(tmp_path / "cache"), infer_pass=False, tune=True, **options),
    )


def test_a_tuned_suite_tunes_every_strategy_with_the_same_budget_then_runs_the_winner(fake_backend, tmp_path):
    config = suite(tmp_path, tune_scheduler="grid")
    out = tmp_path / "out"
    produced = run_tuned_suite(config, out, cell_runner=run_cell_inprocess)
    trials = load_results(out / TUNING_DIR / "results.jsonl")
    assert len(trials) == 2 * TRIAL_BUDGET and {r["seed"] for r in trials} == {0}  # on the first seed only
    for trial in trials:
        assert trial["status"] == "ok", trial["error"]
        assert trial["accuracy"] is None and trial["roc_auc"] is None and trial["infer_images_per_s"] is None
        assert "test" not in trial["split_sizes"] and trial["tuning"]["val_score"] == trial["selection"]["score"]
    assert not list((out / TUNING_DIR / "cells").rglob("predictions.npz"))  # nothing of test was written
    finals = {(r["strategy"], r["seed"]): r for r in produced}
    assert set(finals) == {(s, seed) for s in ("scratch", "logreg_probe") for seed in (0, 1)}
    for strategy in ("scratch", "logreg_probe"):
        mine = [t for t in trials if t["strategy"].startswith(strategy + "~")]
        best = max(mine, key=lambda t: t["selection"]["score"])  # the first of the best (grid order kept)
        for seed in (0, 1):
            record = finals[(strategy, seed)]
            assert record["status"] == "ok", record["error"]
            tuning = record["tuning"]
            assert tuning["won"] == best["tuning"]["trial"] and tuning["val_score"] == best["selection"]["score"]
            assert (tuning["budget"], tuning["trials"], tuning["trials_ok"], tuning["seed"]) == (TRIAL_BUDGET, 8, 8, 0)
            assert tuning["searched"] == STRATEGIES[strategy].search.describe() and tuning["by"] == "accuracy"
            assert record["tuning_s"] == pytest.approx(sum(t["wall_s"] for t in mine))
            assert record["accuracy"] is not None  # only the tuned cells touch test
    assert f"lr {finals[('scratch', 0)]['tuning']['won']['head_lr']:.3g}" in finals[("scratch", 0)]["plan"]
    assert f"C={finals[('logreg_probe', 0)]['tuning']['won']['probe_c']:g} tuned" in finals[("logreg_probe", 0)]["plan"]
    md = report.write_report(out, plots=False)["md"].read_text()
    won = finals[("scratch", 0)]["tuning"]["won"]["head_lr"]
    assert "Tuned on validation (`--tune`)" in md and f"fake/softmax/scratch on digits: head_lr={won:g} won" in md
    assert f"8/8 trials of {STRATEGIES['scratch'].search.describe()}" in md
    # resumable: a second run runs nothing, trials included
    assert run_tuned_suite(config, out, cell_runner=run_cell_inprocess) == []
    assert len(load_results(out / TUNING_DIR / "results.jsonl")) == 2 * TRIAL_BUDGET


class Poison:
    """A split's images or labels that fail on any read: a trial that touched test would fail."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read ({name})")

    def __getitem__(self, key):
        raise AssertionError("the test split was read")

    def __len__(self):
        raise AssertionError("the test split was read")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the test split was read")


@pytest.mark.parametrize("strategy", ["scratch", "linear_probe", "lp_ft", "logreg_probe", "knn_probe"])
def test_a_trial_never_reads_the_test_split(fake_backend, tmp_path, monkeypatch, strategy):
    real = cell_module.load_cell_dataset

    def poisoned(*args, **kwargs):
        dataset, policy = real(*args, **kwargs)
        dataset.splits["test"] = Split(images=Poison(), labels=Poison())  # type: ignore[arg-type]
        return dataset, policy

    monkeypatch.setattr(cell_module, "load_cell_dataset", poisoned)
    config = suite(tmp_path, strategies=(strategy,))
    row = get_strategy(strategy)
    trial = CellConfig("fake", "softmax", trial_name(row, row.search.configs()[1]), "digits", 0)
    record = run_cell_inprocess(trial, config, tmp_path / "out")
    assert record["status"] == "ok", record["error"]
    assert record["tuning"]["val_score"] is not None and record["accuracy"] is None
    # the same poison fails a cell that tests: the trial passed because it never held the split
    tuned = replace(config.options, tuned={tuning_key("fake", "softmax", strategy, "digits"): row.search.configs()[1]})
    final = run_cell_inprocess(
        CellConfig("fake", "softmax", strategy, "digits", 0), replace(config, options=tuned), tmp_path / "o2"
    )
    assert final["status"] == "failed" and "the test split was read" in final["error"]


def test_winners_ties_failures_and_missing_trials(tmp_path):
    config = suite(tmp_path, strategies=("knn_probe",), seeds=(3, 4))
    names = [c.strategy for c in trial_suite(config).cells()]
    assert len(names) == TRIAL_BUDGET and trial_suite(config).seeds == (3,)
    scores = [0.5, 0.9, 0.9, None, 0.2, 0.9, 0.1, 0.3]  # a tie at 0.9 keeps the grid's first (k=3); one failed

    def record(name, score):
        ok = score is not None
        return {
            "backend": "fake",
            "model": "softmax",
            "strategy": name,
            "dataset": "digits",
            "seed": 3,
            "status": "ok" if ok else "failed",
            "selection": {"score": score} if ok else None,
            "wall_s": 2.0,
        }

    tuned, facts = select_winners([record(n, s) for n, s in zip(names, scores, strict=True)], config)
    key = tuning_key("fake", "softmax", "knn_probe", "digits")
    assert tuned[key] == {"knn_k": 3.0} and facts[key]["val_score"] == 0.9 and facts[key]["trials_ok"] == 7
    assert facts[key]["tuning_s"] == 16.0 and facts[key]["seed"] == 3
    cell = CellConfig("fake", "softmax", "knn_probe", "digits", 4)
    strategy, _ = tuned_strategy(get_strategy("knn_probe"), cell, replace(config.options, tuned=tuned))
    assert strategy.knn_k == 3 and strategy.name == "knn_probe"
    lossy = replace(config, options=replace(config.options, select_by="loss"))
    assert select_winners([record(n, s) for n, s in zip(names, scores, strict=True)], lossy)[0][key] == {
        "knn_k": 21
    }  # the lowest score
    failed, _ = select_winners([record(n, None) for n in names], config)
    with pytest.raises(TuningError, match="every tuning trial of fake|softmax|knn_probe|digits failed"):
        tuned_strategy(get_strategy("knn_probe"), cell, replace(config.options, tuned=failed))
    with pytest.raises(TuningError, match="no tuning trials were run"):
        tuned_strategy(get_strategy("knn_probe"), cell, config.options)


def test_tune_and_lr_exclude_each_other(capsys):
    assert main(["run", "--no-probe", "--tune", "--lr", "0.01"]) == 2
    assert "--lr 0.01 and --tune: the tuned learning rate replaces --lr" in capsys.readouterr().err


def test_tuning_changes_the_fingerprint_and_the_winners_too():
    plain = RunOptions()
    tuned = replace(plain, tune=True)
    won = replace(tuned, tuned={"a|b|c|d": {"head_lr": 1e-3}}, tuning_facts={"a|b|c|d": {"tuning_s": 3.0}})
    assert len({plain.fingerprint("timm"), tuned.fingerprint("timm"), won.fingerprint("timm")}) == 3
    assert won.fingerprint("timm") == replace(won, tuning_facts={}).fingerprint("timm")  # facts are not identity
    assert np.isfinite(len(won.tuned))
