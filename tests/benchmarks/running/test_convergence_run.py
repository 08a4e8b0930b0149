"""Schedules, early stopping, epoch selection and the seeds' optimizers through a suite (numpy fake backend,
in-process): the plan line, the record's selection and probe-best columns, the curve, the command line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tlbench.benchmarks.cli import build_parser, main, suite_from_args
from tlbench.benchmarks.running.backend_options import backend_options
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

FAST = RunOptions(
    epochs=4, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def run(tmp_path, strategies, **options) -> dict:
    suite = SuiteConfig(
        name="c",
        backends=("fake",),
        models=("softmax",),
        strategies=strategies,
        datasets=("digits",),
        options=replace(FAST, cache_dir=str(tmp_path / "cache"), infer_pass=False, **options),
    )
    run_suite(suite, tmp_path / "out", cell_runner=run_cell_inprocess)
    return {r["strategy"]: r for r in load_results(tmp_path / "out" / "results.jsonl")}


def test_default_records_say_how_the_epoch_was_selected(fake_backend, tmp_path):
    records = run(tmp_path, ("scratch", "lp_ft", "logreg_probe"))
    scratch, lp_ft = records["scratch"], records["lp_ft"]
    assert scratch["plan"] == "main: 4 epoch(s) on images, 1/1 stages train (lr 0.001)"  # as it always was
    assert scratch["selection"] == {
        "by": "accuracy",
        "score": scratch["val_accuracy"],
        "candidates": "all",
        "patience": None,
        "epochs_run": 4,
        "image_epochs": 4,
        "early_stopped": False,
    }
    assert scratch["probe_best"] is None
    probe = lp_ft["probe_best"]
    assert 1 <= probe["epoch"] <= 30 and probe["by"] == "accuracy" and probe["score"] == probe["val_accuracy"]
    assert lp_ft["selection"]["epochs_run"] == 34 and lp_ft["selection"]["image_epochs"] == 4  # 30 on features
    assert (
        records["logreg_probe"]["plan"].startswith("logreg probe: C=")
        and "chosen on val from 9" in (records["logreg_probe"]["plan"])
    )


def test_a_converging_recipe_is_recorded_and_applied(fake_backend, tmp_path):
    records = run(
        tmp_path,
        ("scratch", "lp_ft", "logreg_probe"),
        epochs=6,
        optimizer="adam",
        clip_grad_norm=0.5,
        schedule="step",
        step_every=2,
        step_gamma=0.5,
        patience=2,
        select_by="roc_auc",
        select_from="main",
    )
    for record in records.values():
        assert record["status"] == "ok", record["error"]
    scratch, lp_ft = records["scratch"], records["lp_ft"]
    assert scratch["plan"].endswith(
        "; optimizer adam (no weight decay), gradient norm clipped at 0.5; lr schedule step (x0.5 every 2 epochs)"
        "; epoch selected by val roc_auc among the main phase's epochs, early stop after 2 epoch(s) without "
        "improvement"
    )
    selection = scratch["selection"]
    assert selection["by"] == "roc_auc" and selection["candidates"] == "main" and selection["patience"] == 2
    assert selection["epochs_run"] <= 6 and selection["early_stopped"] == (selection["epochs_run"] < 6)
    curve = json.loads((tmp_path / "out" / "cells").glob("*scratch*").__next__().joinpath("curve.json").read_text())
    assert [e["lr_scale"] for e in curve] == [1, 1, 0.5, 0.5, 0.25, 0.25][: len(curve)]
    best = max(curve, key=lambda e: e["val_roc_auc"])  # the first of the highest ROC-AUC
    assert scratch["best_epoch"] == best["epoch"] and selection["score"] == best["val_roc_auc"]
    assert lp_ft["best_epoch"] > 30  # a fine-tuning epoch, never a probe one
    assert "chosen on val roc_auc from 9 values" in records["logreg_probe"]["plan"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--schedule", "linear"], "unknown --schedule 'linear'; expected one of: none, cosine, step"),
        (
            ["--select-by", "f1"],
            "unknown --select-by 'f1'; expected one of: accuracy, balanced_accuracy, roc_auc, loss",
        ),
        (["--select-from", "best"], "unknown --select-from 'best'; expected one of: all, main"),
        (["--patience", "0"], "--patience must be >= 1, got 0"),
        (["--step-every", "0"], "--step-every must be >= 1, got 0"),
        (["--step-gamma", "2"], "--step-gamma must be in (0, 1], got 2.0"),
        (["--lr-warmup-epochs", "-1"], "--lr-warmup-epochs must be >= 0, got -1"),
        (["--clip-grad-norm", "0"], "--clip-grad-norm must be a positive number, got 0.0"),
        (["--optimizer", "lamb"], "unknown --optimizer 'lamb'; expected one of: adamw, sgd, adam, rmsprop"),
    ],
)
def test_bad_convergence_flags_exit_2_in_one_line(argv, message, capsys):
    assert main(["run", "--no-probe", *argv]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_the_flags_reach_the_run_options():
    args = build_parser().parse_args(
        ["run", "--schedule", "cosine", "--lr-warmup-epochs", "2", "--patience", "3", "--select-by", "loss"]
        + ["--select-from", "main", "--optimizer", "rmsprop", "--clip-grad-norm", "1.5"]
    )
    options = suite_from_args(args).options
    assert (options.schedule, options.lr_warmup_epochs, options.patience, options.select_by) == ("cosine", 2, 3, "loss")
    assert (options.select_from, options.optimizer, options.clip_grad_norm) == ("main", "rmsprop", 1.5)
    assert options.fingerprint("timm") != RunOptions().fingerprint("timm")
    # without the new flags, the default suite's cells keep the fingerprint of results/default (committed)
    assert suite_from_args(build_parser().parse_args(["run"])).options.fingerprint("timm") == "694fc21b1567"


def test_the_mlp_head_is_in_the_plan_line_and_reaches_every_backend():
    from tlbench.benchmarks.running.cell_network import head_note

    assert head_note({"head": "mlp-512-256-128"}) == "; head mlp-512-256-128"
    assert head_note({"head": "native"}) == head_note({"head": "fcn-1x1"}) == head_note(None) == ""
    argv = ["run", "--backends", "timm,keras", "--models", "vgg16", "--image-size", "32", "--head", "mlp"]
    options = suite_from_args(build_parser().parse_args(argv)).options
    assert backend_options(options, "timm").head == backend_options(options, "keras").head == "mlp"
