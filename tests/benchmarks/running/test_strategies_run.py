"""The field's strategies through the one procedure (numpy fake backend, in-process): LP-FT, layer decay,
L2-SP, the frozen-layer sweep, framework-free probes on cached features, fusion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite

FAST = RunOptions(
    epochs=2, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


def run(cache_dir: Path, out: Path, strategies: tuple[str, ...], models=("softmax",), seeds=(0,), **options) -> dict:
    suite = SuiteConfig(
        name="s",
        backends=("fake",),
        models=models,
        strategies=strategies,
        datasets=("digits",),
        seeds=seeds,
        options=replace(FAST, cache_dir=str(cache_dir), **options),
    )
    run_suite(suite, out, cell_runner=run_cell_inprocess)
    return {(r["strategy"], r["seed"]): r for r in load_results(out / "results.jsonl")}


@pytest.mark.slow  # cells train on digits
def test_probes_fit_on_cached_features_and_a_second_run_reads_them(fake_backend, tmp_path):
    cache = tmp_path / "cache"
    first = run(cache, tmp_path / "a", ("logreg_probe", "knn_probe", "linear_probe"))
    for name in ("logreg_probe", "knn_probe", "linear_probe"):
        record = first[(name, 0)]
        assert record["status"] == "ok", record["error"]
        assert record["accuracy"] > 0.5 and record["feature_dim"] == 48
    logreg, knn = first[("logreg_probe", 0)], first[("knn_probe", 0)]
    assert logreg["plan"].startswith("logreg probe: C=") and "chosen on val from 9 values" in logreg["plan"]
    assert knn["plan"].startswith("knn probe: k=11, cosine")
    assert logreg["feature_cache"] == "miss" and knn["feature_cache"] == "hit"  # the second probe reuses the first's
    assert logreg["train_images_per_s"] is None and logreg["head_train_s"] > 0 and logreg["infer_images_per_s"] > 0
    assert logreg["trainable_params"] == 48 * 10 + 10
    # inference images/s counts the images of a batch (64), not the arrays of the per-backbone tuple (1)
    for record in (logreg, knn):
        assert record["infer_batch_size"] == 64
        assert record["infer_images_per_s"] == pytest.approx(64 / (record["infer_latency_ms_p50"] / 1e3), rel=1e-6)
    # the SGD linear probe caches its (unpooled) head inputs under its own key
    assert first[("linear_probe", 0)]["feature_cache"] == "miss"
    again = run(cache, tmp_path / "b", ("linear_probe",), seeds=(1,))[("linear_probe", 1)]
    assert again["feature_cache"] == "hit"
    # a hit reports what the extraction cost when the entry was made, and its own file read apart
    assert again["feature_extract_s"] == first[("linear_probe", 0)]["feature_extract_s"]
    assert again["feature_cache_read_s"] >= 0 and first[("linear_probe", 0)]["feature_cache_read_s"] is None
    assert knn["feature_extract_s"] == logreg["feature_extract_s"] and knn["feature_cache_read_s"] >= 0
    assert (cache / "features").is_dir() and not list((cache / "features").rglob("*.pkl"))


@pytest.mark.slow  # cells train on digits
def test_fusion_concatenates_backbones_and_rejects_single_models(fake_backend, tmp_path):
    records = run(tmp_path / "cache", tmp_path / "f", ("fusion",), models=("softmax+softmax",))
    fused = records[("fusion", 0)]
    assert fused["status"] == "ok", fused["error"]
    assert fused["feature_dim"] == 96 and "softmax + softmax" in fused["plan"]
    assert fused["infer_batch_size"] == 64  # two backbones per call, one batch of images
    assert fused["accuracy"] > 0.5
    bad = run(tmp_path / "cache", tmp_path / "g", ("fusion",))[("fusion", 0)]
    assert bad["status"] == "failed" and "fusion takes two or more models joined by '+'" in bad["error"]


@pytest.mark.slow  # cells train on digits
def test_lp_ft_layer_decay_l2sp_and_the_stage_sweep_run_their_plans(fake_backend, tmp_path):
    records = run(
        tmp_path / "cache",
        tmp_path / "p",
        ("lp_ft", "layer_decay", "l2sp", "partial_finetune@1", "partial_finetune@all"),
    )
    for record in records.values():
        assert record["status"] == "ok", record["error"]
    lp_ft = records[("lp_ft", 0)]
    assert lp_ft["plan"].startswith("probe: 30 epoch(s) on features") and "main: 2 epoch(s) on images" in lp_ft["plan"]
    assert lp_ft["epochs"] == 32 and lp_ft["feature_extract_s"] > 0 and lp_ft["phase_images_per_s"]["main"] > 0
    assert "L2-SP alpha=0.05" in records[("l2sp", 0)]["plan"]
    assert records[("partial_finetune@all", 0)]["plan"].endswith("1/1 stages train (lr 0.0001..0.001)")


def test_bad_sweep_names_are_usage_errors(capsys):
    from tlbench.benchmarks.cli import main

    assert main(["run", "--strategies", "partial_finetune@0"]) == 2
    assert "expected partial_finetune@K with K a positive integer or 'all', got '0'" in capsys.readouterr().err
    assert main(["run", "--strategies", "scratch@2"]) == 2
    assert "strategy 'scratch' takes no @K suffix" in capsys.readouterr().err
    assert main(["run", "--models", "resnet18+vgg16", "--strategies", "scratch"]) == 2
    assert "only --strategies fusion takes it" in capsys.readouterr().err


@pytest.mark.slow  # cells train on digits
def test_distill_trains_on_a_teacher_cells_soft_labels(fake_backend, tmp_path, monkeypatch):
    from tlbench.benchmarks.cli import build_parser, suite_from_args

    monkeypatch.setenv("TLBENCH_SAVE_WEIGHTS", "1")
    teacher_suite = tmp_path / "teacher"
    teacher_record = run(tmp_path / "cache", teacher_suite, ("linear_probe",))[("linear_probe", 0)]
    monkeypatch.delenv("TLBENCH_SAVE_WEIGHTS")
    teacher = teacher_suite / "cells" / "fake__softmax__linear_probe__digits__s0"
    student = run(tmp_path / "cache", tmp_path / "student", ("distill",), teacher=str(teacher), epochs=40)[
        ("distill", 0)
    ]
    assert student["status"] == "ok", student["error"]
    assert (
        "distilled T=4 alpha=0.7" in student["plan"]
        and "teacher fake__softmax__linear_probe__digits__s0" in student["plan"]
    )
    assert teacher_record["accuracy"] > 0.8 and student["accuracy"] > 0.5

    # the CLI checks --teacher at the edge
    def parse(*a: str) -> SuiteConfig:
        return suite_from_args(build_parser().parse_args(["run", "--backends", "fake", "--models", "softmax", *a]))

    with pytest.raises(Exception, match="strategy 'distill' needs --teacher"):
        parse("--strategies", "distill")
    with pytest.raises(Exception, match="--teacher is only used by --strategies distill"):
        parse("--strategies", "scratch", "--teacher", str(teacher))
    no_weights = run(tmp_path / "cache", tmp_path / "plain", ("scratch",))
    assert no_weights
    with pytest.raises(Exception, match="saved no trained weights; re-run that cell with TLBENCH_SAVE_WEIGHTS=1"):
        parse(
            "--strategies",
            "distill",
            "--teacher",
            str(tmp_path / "plain" / "cells" / "fake__softmax__scratch__digits__s0"),
        )
    assert parse("--strategies", "distill", "--teacher", str(teacher)).options.teacher.endswith(
        "fake__softmax__linear_probe__digits__s0"
    )


def test_probes_with_max_train_images_extract_and_are_charged_their_own_rows_only(fake_backend, quick_watch, tmp_path):
    """--max-train-images 100: each seed's probes extract their 100 train rows (and val), never the whole split, and
    a feature head's training seconds are its train + val extraction (its test features belong to testing)."""
    import json

    cache = tmp_path / "cache"
    records = run(cache, tmp_path / "m", ("linear_probe", "logreg_probe"), seeds=(0, 1), max_train_images=100)
    assert all(r["status"] == "ok" for r in records.values()), [r["error"] for r in records.values()]
    sizes = records[("linear_probe", 0)]["split_sizes"]
    assert sizes["train"] == 100 and sizes["test"] > 0
    entries = [json.loads(path.read_text()) for path in (cache / "features").glob("*/meta.json")]
    # per seed (its own rows): the SGD probe's unpooled entry (train, val) and the logistic probe's pooled one
    heads = [e for e in entries if "test" in e["extract_s_by_split"]]
    networks = [e for e in entries if "test" not in e["extract_s_by_split"]]
    assert len(heads) == len(networks) == 2
    assert {e["images"] for e in networks} == {100 + sizes["val"]}
    assert {e["images"] for e in heads} == {100 + sizes["val"] + sizes["test"]}
    for record in records.values():
        assert record["feature_cache"] == "miss"  # seeds keep different rows: no entry is shared between them
        assert record["feature_extract_images_per_s"] == pytest.approx(
            (100 + sizes["val"]) / record["feature_extract_s"]
        )
    charged = {round(e["extract_s_by_split"]["train"] + e["extract_s_by_split"]["val"], 9) for e in heads}
    for seed in (0, 1):
        logreg = records[("logreg_probe", seed)]
        assert round(logreg["feature_extract_s"], 9) in charged
        assert logreg["train_s"] == pytest.approx(logreg["feature_extract_s"] + logreg["head_train_s"])
