"""``--increments``: each mode's starting weights, the chunks shared by every mode and strategy, and the record of
an incremental cell (numpy fake backend, in process)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fake_backend import FakeBackend

from tlbench.backends import ModelSpec
from tlbench.benchmarks.running.cell_incremental import chunk_seed, cumulative_rows, start_step, trained_stages
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite
from tlbench.core.plan import make_plan
from tlbench.core.strategies import get_strategy


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_CELL_REGISTRY", str(tmp_path / "registry"))


def built() -> FakeBackend:
    backend = FakeBackend("cpu")
    backend.build(ModelSpec("softmax", 3, 16, seed=0))
    return backend


def test_each_mode_starts_from_its_weights():
    backend = built()
    pretrained = backend.snapshot()
    backend.w, backend.b = backend.w + 1.0, backend.b + 2.0  # "the previous step trained"
    previous = backend.snapshot()

    assert start_step(backend, "continue", pretrained, 0.3, 0.01, 9, []) == "previous"
    np.testing.assert_array_equal(backend.w, previous[0])  # continue: exactly the previous step's weights

    assert start_step(backend, "retrain", pretrained, 0.3, 0.01, 9, []) == "pretrained"
    np.testing.assert_array_equal(backend.w, pretrained[0])  # retrain: exactly the built model's
    np.testing.assert_array_equal(backend.b, pretrained[1])

    backend.restore(previous)
    start_step(backend, "shrink_perturb", pretrained, 0.3, 0.0, 9, [])
    np.testing.assert_allclose(backend.w, 0.3 * previous[0], rtol=1e-12)  # sigma 0: lambda * w exactly
    backend.restore(previous)
    start_step(backend, "shrink_perturb", pretrained, 0.5, 0.01, 9, [])
    noise = backend.w - 0.5 * previous[0]
    expected = np.random.default_rng(9).normal(0.0, 0.01, previous[0].shape)  # the seed's draw
    np.testing.assert_allclose(noise, expected, atol=1e-12)

    backend.restore(previous)  # toward the pretrained weights: w0 + lambda (w - w0), sigma 0 exactly
    start = start_step(backend, "shrink_pretrained", pretrained, 0.3, 0.0, 9, [])
    assert start == "pretrained + 0.3 x (previous - pretrained) + N(0, 0^2)"
    np.testing.assert_allclose(backend.w, pretrained[0] + 0.3 * (previous[0] - pretrained[0]), rtol=1e-12)
    np.testing.assert_allclose(backend.b, pretrained[1] + 0.3 * 2.0, rtol=1e-12)  # the trained +2.0 kept at 30 %
    backend.restore(previous)
    start_step(backend, "shrink_pretrained", pretrained, 1.0, 0.0, 9, [])  # lambda 1: continue
    np.testing.assert_array_equal(backend.w, previous[0])
    backend.restore(previous)
    start_step(backend, "shrink_pretrained", pretrained, 0.5, 0.01, 9, [])  # the same seeded noise as shrink_perturb
    np.testing.assert_allclose(backend.w - 0.5 * (previous[0] + pretrained[0]), expected, atol=1e-12)
    with pytest.raises(ValueError, match="unknown increment mode 'warm'"):
        start_step(backend, "warm", pretrained, 0.5, 0.01, 9, [])


def test_shrink_perturb_touches_the_stages_the_plan_trains():
    stages = ["stem", "block1", "block2"]
    assert trained_stages(make_plan(get_strategy("full_finetune"), stages, epochs=2)) == stages
    assert trained_stages(make_plan(get_strategy("linear_probe"), stages, epochs=2)) == []  # the head alone


def test_chunks_are_seeded_by_the_dataset_and_the_seed_only_and_steps_are_nested():
    assert chunk_seed("digits", 0) == chunk_seed("digits", 0)
    assert len({chunk_seed("digits", 0), chunk_seed("digits", 1), chunk_seed("medmnist:b.npz", 0)}) == 3
    chunks = [np.array([0, 4]), np.array([1, 5]), np.array([2, 3])]
    steps = [cumulative_rows(chunks, k).tolist() for k in (1, 2, 3)]
    assert steps == [[0, 4], [0, 1, 4, 5], [0, 1, 2, 3, 4, 5]]
    assert all(set(a) <= set(b) for a, b in zip(steps, steps[1:], strict=False))


def _incremental_suite(cache_dir: Path, strategies=("scratch",), max_train_images: int = 240) -> SuiteConfig:
    """A 3-step incremental suite of the numpy fake backend on digits, one seed."""
    options = RunOptions(
        epochs=2,
        image_size=16,
        batch_size=64,
        device="cpu",
        infer_repeats=10,
        infer_warmup=1,
        infer_min_time_s=0.0,
        infer_pass=False,
        cache_dir=str(cache_dir),
        max_train_images=max_train_images,
        increments=3,
    )
    return SuiteConfig(
        name="inc",
        backends=("fake",),
        models=("softmax",),
        strategies=strategies,
        datasets=("digits",),
        seeds=(0,),
        options=options,
    )


def test_an_incremental_suite_records_every_step_of_every_mode(fake_backend, cache_dir: Path, tmp_path: Path):
    config = _incremental_suite(cache_dir, ("linear_probe", "scratch"), max_train_images=300)
    options = config.options
    run_suite(config, tmp_path / "inc", cell_runner=run_cell_inprocess)
    records = load_results(tmp_path / "inc" / "results.jsonl")
    assert [r["status"] for r in records] == ["ok", "ok"]
    chunk_images = {tuple(r["increments"]["chunk_images"]) for r in records}
    assert len(chunk_images) == 1  # the same chunks for every strategy of a seed
    sizes = next(iter(chunk_images))
    assert sum(sizes) == 300 == records[0]["split_sizes"]["train"]
    assert max(sizes) - min(sizes) <= 1
    for record in records:
        inc = record["increments"]
        assert (inc["steps"], inc["modes"], inc["shrink"], inc["sigma"]) == (
            3,
            list(options.increment_modes),
            0.3,
            1e-4,
        )
        rows = inc["rows"]
        assert [(r["increment_mode"], r["increment_step"]) for r in rows] == [
            (m, k) for m in ("continue", "retrain", "shrink_perturb") for k in (1, 2, 3)
        ]
        assert [r["train_images"] for r in rows[:3]] == [sizes[0], sizes[0] + sizes[1], 300]
        first = [r for r in rows if r["increment_step"] == 1]
        assert len({(r["accuracy"], r["train_s"]) for r in first}) == 1  # step 1 is shared
        for mode in inc["modes"]:
            mine = [r for r in rows if r["increment_mode"] == mode]
            np.testing.assert_allclose([r["cumulative_train_s"] for r in mine], np.cumsum([r["train_s"] for r in mine]))
            assert all(0 <= r["accuracy"] <= 1 for r in mine)
        assert [r["start"] for r in rows if r["increment_mode"] == "retrain"] == ["built", "pretrained", "pretrained"]
        kept = [r for r in rows if r["increment_mode"] == "continue"][-1]
        assert record["accuracy"] == pytest.approx(kept["accuracy"])  # the record's model: continue's last step
        assert record["train_s"] == pytest.approx(kept["train_s"])


def test_shrink_pretrained_is_recorded_with_its_start(fake_backend, cache_dir: Path, tmp_path: Path):
    config = _incremental_suite(cache_dir, ("linear_probe",), max_train_images=240)
    options = replace(config.options, increment_modes=("retrain", "shrink_pretrained"), shrink_perturb=(0.5, 0.0))
    run_suite(replace(config, options=options), tmp_path / "inc", cell_runner=run_cell_inprocess)
    (record,) = load_results(tmp_path / "inc" / "results.jsonl")
    inc = record["increments"]
    assert (inc["modes"], inc["shrink"], inc["sigma"], inc["shrink_perturb_stages"]) == (
        ["retrain", "shrink_pretrained"],
        0.5,
        0.0,
        [],  # a probe: the head alone
    )
    starts = [r["start"] for r in inc["rows"] if r["increment_mode"] == "shrink_pretrained"]
    assert starts == ["built"] + ["pretrained + 0.5 x (previous - pretrained) + N(0, 0^2)"] * 2
    retrain = [r for r in inc["rows"] if r["increment_mode"] == "retrain"]
    assert record["accuracy"] == pytest.approx(retrain[-1]["accuracy"])  # the first mode listed is the record's


def test_options_round_trip_and_fingerprint_only_when_used():
    plain, incremental = RunOptions(), RunOptions(increments=4)
    assert RunOptions.from_dict(
        {**incremental.__dict__, "increment_modes": ["continue", "retrain"]}
    ).increment_modes == (
        "continue",
        "retrain",
    )
    assert plain.fingerprint("timm") == replace(plain, shrink_perturb=(0.3, 0.0001)).fingerprint("timm")
    assert plain.fingerprint("timm") != incremental.fingerprint("timm")
    assert incremental.fingerprint("timm") != replace(incremental, shrink_perturb=(0.5, 0.01)).fingerprint("timm")


def test_a_backend_without_shrink_perturb_refuses_it_in_one_line():
    from tlbench.backends import Backend, BackendError

    class Plain(FakeBackend):
        shrink_perturb = Backend.shrink_perturb  # the base class's: not implemented

    backend = Plain("cpu")
    backend.build(ModelSpec("softmax", 3, 16, seed=0))
    with pytest.raises(BackendError, match="backend Plain cannot shrink and perturb its weights"):
        start_step(backend, "shrink_perturb", backend.snapshot(), 0.3, 0.0, 1, [])


def test_an_interrupted_incremental_cell_resumes_at_its_next_step(fake_backend, cache_dir: Path, tmp_path, monkeypatch):
    """The 5th of 7 trainings fails (retrain's step 3): the re-run trains only the 3 missing steps, and its rows
    are those of an uninterrupted run; the saved steps are removed once the record is written."""
    from tlbench.benchmarks.running import cell_incremental
    from tlbench.benchmarks.running.increment_progress import PROGRESS_DIR, PROGRESS_FILE

    config = _incremental_suite(cache_dir)
    run_suite(config, tmp_path / "whole", cell_runner=run_cell_inprocess)
    (whole,) = load_results(tmp_path / "whole" / "results.jsonl")
    assert whole["status"] == "ok" and whole["increments"]["resumed_after"] is None

    trainings: list[int] = []
    real_trainer = cell_incremental.step_trainer

    def trainer(run, prepared, test):
        train = real_trainer(run, prepared, test)

        def counted(rows):
            trainings.append(len(rows))
            if len(trainings) == 5:
                raise RuntimeError("the machine went down during the 5th training")
            return train(rows)

        return counted

    monkeypatch.setattr(cell_incremental, "step_trainer", trainer)
    run_suite(config, tmp_path / "cut", cell_runner=run_cell_inprocess)
    (failed,) = load_results(tmp_path / "cut" / "results.jsonl")
    assert failed["status"] == "failed" and "5th training" in failed["error"]
    (cell_dir,) = (tmp_path / "cut" / "cells").iterdir()
    saved = json.loads((cell_dir / PROGRESS_DIR / PROGRESS_FILE).read_text())["steps"]
    assert {name: step["step"] for name, step in saved.items()} == {"first": 1, "continue": 3, "retrain": 2}

    before = len(trainings)
    run_suite(config, tmp_path / "cut", cell_runner=run_cell_inprocess)
    resumed = load_results(tmp_path / "cut" / "results.jsonl")[-1]
    assert resumed["status"] == "ok"
    assert trainings[before:] == [240, 160, 240]  # retrain step 3, shrink_perturb steps 2 and 3: nothing else
    assert resumed["increments"]["resumed_after"] == {"mode": "retrain", "step": 2}

    def same(rows):
        return [(r["increment_mode"], r["increment_step"], r["train_images"], r["start"], r["accuracy"]) for r in rows]

    assert same(resumed["increments"]["rows"]) == same(whole["increments"]["rows"])
    assert resumed["accuracy"] == whole["accuracy"]  # the record's model: continue's last step, loaded from its file
    steps = resumed["increments"]["rows"]
    for mode in ("continue", "retrain", "shrink_perturb"):  # cumulative seconds carry on across the interruption
        mine = [r for r in steps if r["increment_mode"] == mode]
        np.testing.assert_allclose([r["cumulative_train_s"] for r in mine], np.cumsum([r["train_s"] for r in mine]))
    assert not (cell_dir / PROGRESS_DIR).exists()


def test_saved_steps_of_other_options_or_code_are_never_resumed(tmp_path):
    from tlbench.benchmarks.running.increment_progress import StepStore, outcome_from_json, progress_key
    from tlbench.benchmarks.running.training import PhaseTiming, TrainOutcome

    backend = built()
    outcome = TrainOutcome(
        curve=[{"epoch": 1, "val_accuracy": 0.5}],
        phases=[PhaseTiming("main", "images", 2, 51, steady_images=64, steady_s=0.5)],
        best_epoch=1,
        best_val_accuracy=0.5,
        train_s=0.75,
    )
    key = progress_key("cell-1", "options-a", {"commit": "abc", "dirty": False, "diff_sha": None})
    store = StepStore(tmp_path, key, backend.weights_suffix)
    store.save(backend, "first", 1, [], outcome, {"accuracy": 0.5})
    store.save(backend, "continue", 2, [{"increment_step": 2}], outcome)
    again = StepStore(tmp_path, key, backend.weights_suffix)
    loaded = again.load()
    assert set(loaded) == {"first", "continue"} and loaded["first"]["metrics"] == {"accuracy": 0.5}
    assert outcome_from_json(loaded["continue"]["outcome"]) == outcome  # phases and counts rebuilt as dataclasses
    assert again.rows == [{"increment_step": 2}] and loaded["continue"]["row"] == {"increment_step": 2}
    assert loaded["first"]["row"] is None
    fresh = built()
    fresh.w = fresh.w * 0
    fresh.load_weights(again.weights("continue"))
    np.testing.assert_array_equal(fresh.w, backend.w)

    for other in (
        progress_key("cell-1", "options-b", {"commit": "abc", "dirty": False, "diff_sha": None}),
        progress_key("cell-1", "options-a", {"commit": "abd", "dirty": False, "diff_sha": None}),
        progress_key("cell-2", "options-a", {"commit": "abc", "dirty": False, "diff_sha": None}),
    ):
        assert other != key
    assert StepStore(tmp_path, progress_key("cell-1", "options-b", None), backend.weights_suffix).load() == {}
    assert not (tmp_path / "increments").exists()  # another key's steps are removed, not left to grow
