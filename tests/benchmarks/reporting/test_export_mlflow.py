"""``tlbench export mlflow`` against a real local MLflow store (SQLite), read back with MLflow's own client."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient  # the mlflow extra is in `all`: CI runs these tests, never skips them
from report_suite import make_suite

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting.report import write_report
from tlbench.benchmarks.running.results import append_result, latest_by_cell, load_results

CELL = "timm__m__linear_probe__digits__s0"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the module (creating its schema takes seconds); each test exports to experiments of
    its own, so none sees another's runs."""
    return tmp_path_factory.mktemp("mlflow-store")


@pytest.fixture
def store(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The module's SQLite store; MLflow's artifacts (./mlruns) land beside it; no telemetry from the tests."""
    monkeypatch.chdir(store_dir)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{store_dir / 'mlflow.db'}"


@pytest.fixture(scope="module")
def written_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report tests' fake suite with its options, an environment and written reports (plots included: made
    once for the module, each test gets a copy)."""
    root = make_suite(tmp_path_factory.mktemp("mlflow") / "suite")
    options = {"epochs": 2, "optimizer": "adamw", "lr": None, "backend_options": {"timm": {"amp": "bf16"}}}
    (root / "suite.json").write_text(json.dumps({"name": "golden", "options": options}))
    environment = {"cpu": "Test CPU", "cpu_count": 2, "gpus": [], "python": "3.11.7", "packages": {"numpy": "2.4"}}
    (root / "environment.json").write_text(
        json.dumps({"environments": {"legacy": {**environment, "git_sha": "abc123"}}})
    )
    write_report(root)
    return root


@pytest.fixture
def suite(written_suite: Path, tmp_path: Path) -> Path:
    """A copy of ``written_suite`` this test may change."""
    return Path(shutil.copytree(written_suite, tmp_path / "suite"))


def cell_runs(client: MlflowClient, experiment: str) -> dict[str, object]:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], filter_string="tags.`tlbench.kind` = 'cell'")
    return {run.data.tags["tlbench.cell_id"]: run for run in runs}


def test_one_run_per_cell_with_params_metrics_tags_and_artifacts(suite, store, capsys) -> None:
    assert main(["export", "mlflow", str(suite), "--tracking-uri", store]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"tlbench: 6 cell run(s) in MLflow experiment 'tlbench/golden' at {store}: 6 created, 0 replaced (re-run "
        "cells), 0 unchanged",
        f"tlbench: browse them with: mlflow ui --backend-store-uri {store}",
    ]
    client = MlflowClient(tracking_uri=store)
    runs = cell_runs(client, "tlbench/golden")
    assert len(runs) == 6
    record = next(
        r
        for r in latest_by_cell(load_results(suite / "results.jsonl"))
        if r["strategy"] == "linear_probe" and r["seed"] == 0 and r["backend"] == "timm"
    )
    run = runs[CELL]
    assert run.info.run_name == CELL and run.info.status == "FINISHED"
    params = run.data.params
    assert {k: params[k] for k in ("backend", "model", "strategy", "dataset", "seed", "image_size")} == {
        "backend": "timm",
        "model": "m",
        "strategy": "linear_probe",
        "dataset": "digits",
        "seed": "0",
        "image_size": "32",
    }
    assert (
        params["options.optimizer"] == "adamw"
        and params["options.backend.amp"] == "bf16"
        and params["options.lr"] == "None"
    )
    metrics = run.data.metrics
    for column in (
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "roc_auc",
        "pr_auc",
        "train_images_per_s",
        "infer_images_per_s",
        "infer_latency_ms_p50",
        "time_to_best_s",
        "wall_s",
        "peak_rss_mb",
    ):
        assert metrics[column] == pytest.approx(record[column]), column
    assert metrics["train_images_per_s"] == 1234.5 and "seed" not in metrics
    history = client.get_metric_history(run.info.run_id, "curve/val_accuracy")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == [
        (1, round(record["accuracy"] - 0.1, 6)),
        (2, round(record["accuracy"] - 0.05, 6)),
    ]
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == "abc123" and tags["tlbench.env.cpu"] == "Test CPU"
    assert tags["tlbench.env.package.numpy"] == "2.4" and tags["tlbench.status"] == "ok"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"curve.json", "predictions.npz"} <= artifacts
    # the suite's parent run holds the reports and plots; every cell run is nested under it
    parent = client.get_run(tags["mlflow.parentRunId"])
    assert parent.data.tags["tlbench.kind"] == "suite" and parent.info.run_name == "golden"
    parent_artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"report.html", "summary.md", "plots"} <= parent_artifacts
    assert len(client.list_artifacts(parent.info.run_id, "plots")) == len(list((suite / "plots").glob("*.png")))
    failed = runs["keras__m__scratch__digits__s0"]
    assert (
        failed.info.status == "FAILED"
        and failed.data.tags["tlbench.error"] == "BackendError: keras model 'm' needs weights"
    )
    assert "accuracy" not in failed.data.metrics


def test_exporting_again_is_idempotent_and_a_rerun_cell_replaces_its_run(suite, store, capsys) -> None:
    argv = ["export", "mlflow", str(suite), "--tracking-uri", store, "--experiment", "mine"]
    assert main(argv) == 0
    client = MlflowClient(tracking_uri=store)
    first = {k: r.info.run_id for k, r in cell_runs(client, "mine").items()}
    capsys.readouterr()
    assert main(argv) == 0
    assert "6 cell run(s) in MLflow experiment 'mine'" in capsys.readouterr().out
    assert {k: r.info.run_id for k, r in cell_runs(client, "mine").items()} == first  # nothing new
    # the cell is re-run: its newest record replaces the run; the others stay as they are
    (record,) = [
        r
        for r in load_results(suite / "results.jsonl")
        if r.get("status") == "ok" and r["backend"] == "timm" and r["strategy"] == "linear_probe" and r["seed"] == 0
    ]
    append_result(suite / "results.jsonl", {**record, "accuracy": 0.5})
    assert main(argv) == 0
    assert ": 0 created, 1 replaced (re-run cells), 5 unchanged" in capsys.readouterr().out
    again = cell_runs(client, "mine")
    assert len(again) == 6 and again[CELL].info.run_id != first[CELL] and again[CELL].data.metrics["accuracy"] == 0.5
    assert {k: r.info.run_id for k, r in again.items() if k != CELL} == {k: v for k, v in first.items() if k != CELL}
    experiment_id = client.get_experiment_by_name("mine").experiment_id
    assert len(client.search_runs([experiment_id], filter_string="tags.`tlbench.kind` = 'suite'")) == 1


def test_without_mlflow_the_error_names_the_extra(suite, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    assert main(["export", "mlflow", str(suite)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "tlbench: error: mlflow is not installed; install the extra: pip install 'tlbench[mlflow]'"
    )


def test_bad_requests_are_one_line_exit_2(suite, store, tmp_path, capsys) -> None:
    assert main(["export", "wandb", str(suite)]) == 2
    assert "invalid choice: 'wandb' (choose from 'mlflow')" in capsys.readouterr().err
    assert main(["export", "mlflow", str(tmp_path / "missing"), "--tracking-uri", store]) == 2
    assert "does not exist; expected a directory made by `tlbench run`" in capsys.readouterr().err
    assert main(["export", "mlflow", str(suite), "--tracking-uri", "nosuchscheme://x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tlbench: error: MLflow at nosuchscheme://x: ") and "\n" not in err
