"""The inference pass: which cells are timed together, what their new records hold, failures and weights."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from tlbench.benchmarks.running import infer_pass
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.infer_pass import pass_groups, passed_record
from tlbench.benchmarks.running.results import latest_by_cell, load_results, spread
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_module_subprocess, run_suite

FAST = RunOptions(
    epochs=1, image_size=16, batch_size=64, device="cpu", infer_repeats=10, infer_warmup=1, infer_min_time_s=0.0
)


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_CELL_REGISTRY", str(tmp_path / "registry"))
    monkeypatch.delenv("TLBENCH_SAVE_WEIGHTS", raising=False)


def suite(cache_dir: Path, **changes) -> SuiteConfig:
    base = SuiteConfig(
        name="p",
        backends=("fake",),
        models=("softmax",),
        strategies=("linear_probe", "scratch", "knn_probe"),
        datasets=("digits",),
        seeds=(0,),
        options=replace(FAST, cache_dir=str(cache_dir)),
    )
    return replace(base, **changes)


def record(strategy: str, seed: int = 0, dataset: str = "digits", **changes) -> dict:
    base = {
        "backend": "fake",
        "model": "softmax",
        "strategy": strategy,
        "dataset": dataset,
        "seed": seed,
        "status": "ok",
        "infer_images_per_s": 100.0,
        "image_size": 16,
        "infer_batch_size": 64,
        "num_classes": 10,
    }
    return {**base, **changes}


def save_weights(out: Path, r: dict) -> None:
    directory = out / "cells" / f"{r['backend']}__{r['model']}__{r['strategy']}__{r['dataset']}__s{r['seed']}"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "weights.json").write_text("{}")


def test_groups_hold_the_cells_of_one_model_that_saved_weights(tmp_path):
    records = [
        record("linear_probe"),
        record("scratch"),
        record("full_finetune"),
        record("knn_probe"),  # an sklearn probe: its inference is not the network's
        record("partial_finetune"),  # saved no weights
        record("scratch", dataset="breastmnist"),  # alone on its dataset: still timed in a fresh process
        record("lp_ft", status="failed"),
    ]
    for r in records:
        if r["strategy"] != "partial_finetune":
            save_weights(tmp_path, r)
    groups = pass_groups(records, tmp_path)
    assert [[(r["strategy"], r["dataset"]) for r in g] for g in groups] == [
        [("linear_probe", "digits"), ("scratch", "digits"), ("full_finetune", "digits")],
        [("scratch", "breastmnist")],
    ]


def test_large_groups_are_split_evenly_across_processes(tmp_path, monkeypatch):
    monkeypatch.setattr(infer_pass, "MAX_MODELS_PER_PROCESS", 2)
    records = [record("scratch", seed=s) for s in range(5)]
    for r in records:
        save_weights(tmp_path, r)
    assert [len(g) for g in pass_groups(records, tmp_path)] == [2, 2, 1]


def test_a_resumed_suite_is_timed_as_a_whole_and_a_failed_pass_keeps_the_weights(
    fake_backend, cache_dir, tmp_path, monkeypatch
):
    import fake_backend as fake

    from tlbench.backends import BackendError

    original = fake.FakeBackend.load_weights
    out = tmp_path / "suite"
    messages: list[str] = []

    def corrupt(self, path):
        raise BackendError("the pass process was stopped")

    monkeypatch.setattr(fake.FakeBackend, "load_weights", corrupt)
    first = suite(cache_dir, strategies=("linear_probe",))
    run_suite(first, out, cell_runner=run_cell_inprocess, on_message=messages.append)
    assert "keep their own figures and their weights for the next run" in messages[-1]
    assert [p.parent.name for p in out.glob("cells/*/weights*")] == ["fake__softmax__linear_probe__digits__s0"]

    loaded: list[str] = []
    monkeypatch.setattr(
        fake.FakeBackend,
        "load_weights",
        lambda self, path: (loaded.append(Path(path).parent.name), original(self, path))[1],
    )
    both = suite(cache_dir, strategies=("linear_probe", "scratch"))
    run_suite(both, out, cell_runner=run_cell_inprocess, on_message=messages.append)
    # the resumed cell (finished in the first run) and this run's cell are timed together, in one group
    assert sorted(loaded) == ["fake__softmax__linear_probe__digits__s0", "fake__softmax__scratch__digits__s0"]
    assert messages[-1].startswith("inference pass: 2 cells of fake/softmax/digits interleaved")
    latest = {r["strategy"]: r for r in latest_by_cell(load_results(out / "results.jsonl"))}
    assert latest["linear_probe"]["infer_pass"]["models"] == latest["scratch"]["infer_pass"]["models"] == 2
    assert not list(out.glob("cells/*/weights*"))  # deleted once their pass completed


def test_a_passed_record_keeps_the_cells_own_figures_and_recomputes_mfu():
    own = record(
        "scratch",
        infer_latency_ms_p50=640.0,
        infer_latency_ms_p90=700.0,
        infer_repeats=10,
        infer_timed_s=6.4,
        infer_latency_cv=0.1,
        infer_mfu=0.05,
        flops_per_image=2e8,
        runtime={"peak_flop_per_s": 4e11},
        accuracy=0.9,
    )
    stats = {
        "images_per_s": 200.0,
        "latency_ms_p50": 320.0,
        "latency_ms_p90": 330.0,
        "repeats": 40,
        "timed_s": 12.8,
        "latency_cv": 0.02,
    }
    outcome = {"models": 3, "rounds": 10, "contention": {"disturbed": False}}
    new = passed_record(own, stats, outcome, wall_s=30.0)
    assert new["infer_images_per_s"] == 200.0 and new["infer_latency_ms_p50"] == 320.0 and new["infer_repeats"] == 40
    assert new["infer_mfu"] == pytest.approx(200.0 * 2e8 / 4e11) and new["accuracy"] == 0.9
    assert new["infer_pass"]["in_cell"] == {
        "infer_images_per_s": 100.0,
        "infer_latency_ms_p50": 640.0,
        "infer_latency_ms_p90": 700.0,
        "infer_repeats": 10,
        "infer_timed_s": 6.4,
        "infer_latency_cv": 0.1,
        "infer_mfu": 0.05,
    }
    assert new["infer_pass"]["models"] == 3 and new["infer_pass"]["wall_s"] == 30.0
    assert own["infer_images_per_s"] == 100.0 and "infer_pass" not in own  # the cell's record is not touched
    assert passed_record(record("scratch"), stats, outcome, 1.0)["infer_mfu"] is None  # no probe, no MFU


def test_spread():
    assert spread([100.0, 110.0]) == pytest.approx(0.1) and spread([5.0]) == 0.0 and spread([]) == 0.0


@pytest.mark.slow  # cells and pass processes train and time
def test_the_pass_loads_each_cells_trained_weights_and_deletes_them(fake_backend, cache_dir, tmp_path, monkeypatch):
    import fake_backend as fake

    loaded: list[str] = []
    original = fake.FakeBackend.load_weights
    monkeypatch.setattr(
        fake.FakeBackend,
        "load_weights",
        lambda self, path: (loaded.append(Path(path).parent.name), original(self, path))[1],
    )
    messages: list[str] = []
    out = tmp_path / "suite"
    produced = run_suite(suite(cache_dir), out, cell_runner=run_cell_inprocess, on_message=messages.append)
    lines = load_results(out / "results.jsonl")
    # linear_probe and scratch are timed again together; knn_probe (sklearn) keeps its own figure
    assert [r["strategy"] for r in lines] == ["linear_probe", "scratch", "knn_probe", "linear_probe", "scratch"]
    assert sorted(loaded) == ["fake__softmax__linear_probe__digits__s0", "fake__softmax__scratch__digits__s0"]
    (message,) = messages
    assert message.startswith("inference pass: 2 cells of fake/softmax/digits interleaved in one process (10 rounds, ")
    assert [r["infer_pass"] is not None for r in produced] == [True, True, False]
    assert not list(out.glob("cells/*/weights*"))
    watch = produced[0]["infer_pass"]["contention"]
    assert watch["samples"] >= 1 and len(watch["canary_gflop_per_s"]) == 2 and min(watch["canary_gflop_per_s"]) > 0
    log = (out / "infer_pass.log").read_text()
    assert "loaded fake__softmax__scratch__digits__s0 from weights.json" in log and "contention:" in log


@pytest.mark.slow  # cells and pass processes train and time
def test_a_failing_pass_keeps_the_cells_figures_and_says_why(fake_backend, cache_dir, tmp_path, monkeypatch):
    import fake_backend as fake

    from tlbench.backends import BackendError

    def corrupt(self, path):
        raise BackendError(f"weights file {path!r} does not fit softmax")

    monkeypatch.setattr(fake.FakeBackend, "load_weights", corrupt)
    messages: list[str] = []
    out = tmp_path / "suite"
    produced = run_suite(suite(cache_dir), out, cell_runner=run_cell_inprocess, on_message=messages.append)
    assert len(load_results(out / "results.jsonl")) == 3 and all(r["infer_pass"] is None for r in produced)
    (message,) = messages
    assert message.startswith(
        "inference pass of fake/softmax/digits failed, the cells keep their own figures and their weights for the "
        "next run: cell fake__softmax__linear_probe__digits__s0: weights file "
    )
    assert message.endswith(f"(see {out / 'infer_pass.log'})")
    assert len(list(out.glob("cells/*/weights*"))) == 2  # kept: the next run of the suite times them again


@pytest.mark.slow  # cells and pass processes train and time
def test_a_failing_pass_process_is_one_line_too(fake_backend, cache_dir, tmp_path):
    """The subprocess launcher: the pass process writes its error; the driver prints it and goes on."""
    out = tmp_path / "suite"
    cfg = suite(cache_dir, strategies=("linear_probe", "scratch"))
    messages: list[str] = []
    produced = run_suite(cfg, out, on_message=messages.append)  # cells and pass in subprocesses: a real run
    assert [r["infer_pass"]["models"] for r in produced] == [2, 2]
    # now break the saved weights of a second run's cells before the pass reads them: a cell that saves bad JSON
    again = tmp_path / "again"
    for r in produced:
        save_weights(again, r)
        (again / "cells" / f"fake__softmax__{r['strategy']}__digits__s0" / "weights.json").write_text("not json")
    outcome = infer_pass.run_group(produced, cfg, again, launch=run_module_subprocess)
    assert outcome["error"].startswith("JSONDecodeError: ")
    assert "Traceback" in (again / "infer_pass.log").read_text()  # the whole story is in the log, not on the console


def test_an_unexpected_error_of_an_inline_pass_is_one_line_too(fake_backend, cache_dir, tmp_path, monkeypatch):
    from tlbench.benchmarks.running import cell_data
    from tlbench.datasets import DatasetError

    def gone(*args, **kwargs):
        raise DatasetError("dataset 'digits': cache entry vanished")

    monkeypatch.setattr(cell_data, "load_cell_dataset", gone)
    records = [record("linear_probe"), record("scratch")]
    for r in records:
        save_weights(tmp_path, r)
        weights = tmp_path / "cells" / f"fake__softmax__{r['strategy']}__digits__s0" / "weights.json"
        weights.write_text(json.dumps({"w": [[0.0] * 10] * 48, "b": [0.0] * 10}))  # a softmax head of 48 features
    assert infer_pass.run_group(records, suite(cache_dir), tmp_path) == {
        "error": "dataset 'digits': cache entry vanished"
    }


def test_a_pass_process_that_dies_is_named_with_its_last_log_line(fake_backend, cache_dir, tmp_path):
    records = [record("linear_probe"), record("scratch")]

    def killed(command, env, log_path, append):
        assert append and "tlbench.benchmarks.running.infer_pass" in command and env["OMP_NUM_THREADS"]
        log_path.write_text("[12:00:00] loaded fake__softmax__linear_probe__digits__s0 from weights.json\n")
        return -9, False

    outcome = infer_pass.run_group(records, suite(cache_dir), tmp_path, launch=killed)
    assert outcome == {
        "error": (
            "the pass process was killed by signal 9 without a result; "
            "last log line: [12:00:00] loaded fake__softmax__linear_probe__digits__s0 from weights.json"
        )
    }
    assert not (tmp_path / ".infer-pass").exists()  # its work files are gone


@pytest.mark.slow  # cells and pass processes train and time
def test_no_infer_pass_saves_nothing_and_times_nothing_again(fake_backend, cache_dir, tmp_path):
    out = tmp_path / "suite"
    cfg = suite(cache_dir, options=replace(FAST, cache_dir=str(cache_dir), infer_pass=False))
    messages: list[str] = []
    run_suite(cfg, out, cell_runner=run_cell_inprocess, on_message=messages.append)
    assert len(load_results(out / "results.jsonl")) == 3 and messages == []
    assert not list(out.glob("cells/*/weights*")) and not (out / "infer_pass.log").exists()
    # the option only changes how speed is measured: finished cells stay finished
    assert cfg.options.fingerprint("fake") == suite(cache_dir).options.fingerprint("fake")


@pytest.mark.slow  # cells and pass processes train and time
def test_save_weights_keeps_the_weights_after_the_pass(fake_backend, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBENCH_SAVE_WEIGHTS", "1")
    out = tmp_path / "suite"
    run_suite(suite(cache_dir), out, cell_runner=run_cell_inprocess)
    assert sorted(p.parent.name for p in out.glob("cells/*/weights.json")) == [
        "fake__softmax__linear_probe__digits__s0",
        "fake__softmax__scratch__digits__s0",
    ]
    latency = json.loads((out / "cells" / "fake__softmax__scratch__digits__s0" / "latency.json").read_text())
    latest = {r["strategy"]: r for r in latest_by_cell(load_results(out / "results.jsonl"))}
    assert len(latency["latencies_ms"]) == latest["scratch"]["infer_repeats"]
    assert len(latency["in_cell_latencies_ms"]) == latest["scratch"]["infer_pass"]["in_cell"]["infer_repeats"]


def test_the_report_explains_the_pass_and_flags_a_disturbed_one():
    from tlbench.benchmarks.reporting.tables import inference_note, speed_warnings

    quiet = {"disturbed": False}
    noisy = {
        "disturbed": True,
        "other_cpu_fraction_mean": 0.31,
        "steal_cpu_fraction_mean": 0.0,
        "threshold": 0.1,
        "slower_than_probed": True,
        "canary_ratio_to_probe": 0.72,
    }
    rows = [
        record(
            "linear_probe",
            infer_images_per_s=105.0,
            infer_pass={"rounds": 10, "in_cell": {"infer_images_per_s": 120.0}, "contention": quiet},
        ),
        record(
            "scratch",
            infer_images_per_s=100.0,
            infer_pass={"rounds": 10, "in_cell": {"infer_images_per_s": 96.0}, "contention": noisy},
        ),
    ]
    frame = pd.DataFrame(rows)
    note = inference_note(frame)
    assert "round-robin (10 rounds, median batch latency)" in note
    assert note.endswith("fake/softmax on digits: 2 cells, spread 5.0 % (in their cells 25.0 %).")
    disturbed, slow = speed_warnings(frame)
    assert "fake/softmax/scratch/s0 (its inference pass: 31% of the cores)" in disturbed
    assert (
        slow.startswith("1 cell(s) ran while this machine computed slower")
        and "fake/softmax/scratch/s0 (its inference pass: 72%)" in slow
    )
    assert inference_note(pd.DataFrame([record("scratch", infer_pass=None)])) == ""
