"""``tlbench export mlflow``: a suite directory's records as MLflow runs, for users of an experiment tracker.

One MLflow experiment per suite (``tlbench/<suite>`` unless named), one parent run for the suite (its reports,
plots, ``suite.json`` and ``environment.json`` as artifacts) and one nested run per cell:

- params: the cell's matrix coordinates (backend, model, strategy, dataset, seed), how it ran (pretrained weights,
  device, dtype, batch size, image size, epochs, plan) and the suite's run options (its own backend's only);
- metrics: every numeric accuracy, speed, time and memory column of the record, the nested speed figures
  flattened (``phase_images_per_s.main``, ``infer_pass.in_cell.infer_images_per_s``, ``contention.*``), and the
  training curve per epoch (``curve/train_loss``, ``curve/val_accuracy``, ``curve/val_loss``, step = epoch);
- tags: the environment that measured it (CPU, GPUs, Python, packages), its commit (``mlflow.source.git.commit``),
  its cell id (``tlbench.cell_id``), status and error;
- artifacts: the cell's directory (curve, predictions, confusion matrix, latencies, log), trained weights excepted.

Exporting again is idempotent: runs are found by their ``tlbench.cell_id`` tag; an unchanged record
(``tlbench.record_sha256``) is left alone, a changed one (the cell was re-run) replaces its run. Reads records
only; ``mlflow`` is an optional extra (``pip install 'tlbench[mlflow]'``), imported when exporting.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..running.artifacts import WEIGHTS_STEM
from ..running.artifacts import cell_dir as artifact_dir
from ..running.environment import load_environments
from ..running.results import cell_id, latest_by_cell, load_results

#: the pip extra that installs MLflow
EXTRA = "mlflow"
#: record columns logged as params (with the suite's options); every other numeric column is a metric
PARAM_COLUMNS = (
    "backend",
    "model",
    "strategy",
    "dataset",
    "seed",
    "pretrained",
    "device",
    "dtype",
    "batch_size",
    "image_size",
    "epochs",
    "plan",
    "num_classes",
    "options_hash",
)
#: nested record columns whose numbers are speed figures, logged as dotted metrics
NESTED_METRIC_COLUMNS = ("phase_images_per_s", "infer_pass", "contention", "concurrency")
#: per-epoch curve keys logged as step metrics
CURVE_KEYS = ("train_loss", "val_accuracy", "val_loss")
CELL_TAG = "tlbench.cell_id"
SHA_TAG = "tlbench.record_sha256"
KIND_TAG = "tlbench.kind"


class ExportError(Exception):
    """The export cannot run (MLflow missing, no records): one line for the user."""


@dataclass(frozen=True)
class ExportSummary:
    """What an export did."""

    experiment: str
    tracking_uri: str
    suite_run_id: str
    created: int
    replaced: int
    unchanged: int


def flat_metrics(prefix: str, value: Any) -> dict[str, float]:
    """Finite numbers inside ``value`` (nested dicts) as ``{prefix.key...: number}``; booleans are not metrics."""
    if isinstance(value, bool) or value is None:
        return {}
    if isinstance(value, (int, float)):
        return {prefix: float(value)} if math.isfinite(float(value)) else {}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for key, inner in value.items():
            out.update(flat_metrics(f"{prefix}.{key}", inner))
        return out
    return {}


def record_metrics(record: dict[str, Any]) -> dict[str, float]:
    """Every numeric column of ``record`` that is not a param, and the nested speed figures."""
    metrics: dict[str, float] = {}
    for column, value in record.items():
        if column in PARAM_COLUMNS:
            continue
        if column in NESTED_METRIC_COLUMNS:
            metrics.update(flat_metrics(column, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.update(flat_metrics(column, value))
    return metrics


def record_params(record: dict[str, Any], options: dict[str, Any]) -> dict[str, str]:
    """The cell's coordinates and how it ran, then the suite's options (``options.*``; ``backend_options`` only
    for the cell's backend, as ``options.backend.*``)."""
    params = {column: _text(record.get(column)) for column in PARAM_COLUMNS}
    for key, value in options.items():
        if key == "backend_options":
            for name, inner in ((value or {}).get(record.get("backend"), {}) or {}).items():
                params[f"options.backend.{name}"] = _text(inner)
        elif key not in ("epochs", "batch_size", "image_size"):  # the record's own values are the params
            params[f"options.{key}"] = _text(value)
    return params


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def environment_tags(environment: dict[str, Any] | None) -> dict[str, str]:
    """The environment that measured a record as tags; its git commit as MLflow's own commit tag."""
    if not environment:
        return {}
    tags = {
        "tlbench.env.cpu": str(environment.get("cpu")),
        "tlbench.env.cpu_count": str(environment.get("cpu_count")),
        "tlbench.env.gpus": ", ".join(environment.get("gpus") or []) or "none",
        "tlbench.env.python": str(environment.get("python")),
        "tlbench.env.platform": str(environment.get("platform")),
    }
    tags.update({f"tlbench.env.package.{k}": str(v) for k, v in (environment.get("packages") or {}).items()})
    if environment.get("git_sha"):
        tags["mlflow.source.git.commit"] = str(environment["git_sha"])
    return tags


def record_sha256(record: dict[str, Any]) -> str:
    """A digest of the record: a re-run cell (a new record) gets a new one."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _import_mlflow() -> Any:
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ExportError(f"mlflow is not installed; install the extra: pip install 'tlbench[{EXTRA}]'") from None
    return MlflowClient


def export_mlflow(suite_dir: Path, tracking_uri: str | None = None, experiment: str | None = None) -> ExportSummary:
    """Export the suite in ``suite_dir`` to MLflow (see the module docstring).

    Args:
        suite_dir: a directory made by ``tlbench run``.
        tracking_uri: where MLflow stores runs (``sqlite:///mlflow.db``, ``http://host:5000``, ...); default:
            MLflow's own (``MLFLOW_TRACKING_URI``, else its local default).
        experiment: the experiment's name; default ``tlbench/<suite name>``.

    Returns:
        The experiment, the store and how many cell runs were created, replaced and left unchanged.

    Raises:
        ExportError: mlflow is not installed, or ``suite_dir`` holds no records.
    """
    client_class = _import_mlflow()
    from mlflow.exceptions import MlflowException

    try:
        return _export(client_class, Path(suite_dir), tracking_uri, experiment)
    except MlflowException as exc:  # a store that cannot be reached or written: one line (re-export resumes)
        where = tracking_uri or "MLflow's default tracking URI"
        raise ExportError(f"MLflow at {where}: {str(exc.message).splitlines()[0]}") from None


def _export(client_class: Any, suite_dir: Path, tracking_uri: str | None, experiment: str | None) -> ExportSummary:
    records = latest_by_cell(load_results(suite_dir / "results.jsonl"))
    if not records:
        raise ExportError(
            f"{suite_dir} holds no results.jsonl records; expected a suite directory made by `tlbench run`"
        )
    suite = json.loads((suite_dir / "suite.json").read_text()) if (suite_dir / "suite.json").is_file() else {}
    name = suite.get("name") or suite_dir.name
    client = client_class(tracking_uri=tracking_uri)
    experiment = experiment or f"tlbench/{name}"
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    suite_run = _suite_run(client, experiment_id, suite_dir, name)
    environments = load_environments(suite_dir)
    existing = {
        run.data.tags.get(CELL_TAG): run
        for run in client.search_runs([experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'cell'", max_results=50000)
    }
    counts = {"created": 0, "replaced": 0, "unchanged": 0}
    for record in records:
        identity = cell_id(
            record["backend"],
            record["model"],
            record["strategy"],
            record["dataset"],
            record["seed"],
            record.get("train_size"),
            record.get("draw"),
        )
        digest = record_sha256(record)
        previous = existing.get(identity)
        if previous is not None and previous.data.tags.get(SHA_TAG) == digest:
            counts["unchanged"] += 1
            continue
        if previous is not None:
            client.delete_run(previous.info.run_id)
        environment = environments.get(record.get("environment_id") or "legacy")
        _cell_run(client, experiment_id, suite_run, suite_dir, record, identity, digest, suite, environment)
        counts["replaced" if previous is not None else "created"] += 1
    return ExportSummary(experiment, client.tracking_uri, suite_run, **counts)


def _suite_run(client: Any, experiment_id: str, suite_dir: Path, name: str) -> str:
    """The suite's parent run (found by its tag, else created) with the reports and plots as artifacts."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'suite'", max_results=1)
    if runs:
        run_id = runs[0].info.run_id
    else:
        run_id = client.create_run(
            experiment_id, run_name=name, tags={KIND_TAG: "suite", "tlbench.suite": name}
        ).info.run_id
    for file in ("report.html", "summary.md", "summary.csv", "summary.tex", "suite.json", "environment.json"):
        if (suite_dir / file).is_file():
            client.log_artifact(run_id, str(suite_dir / file))
    if (suite_dir / "plots").is_dir():
        client.log_artifacts(run_id, str(suite_dir / "plots"), "plots")
    client.set_terminated(run_id, "FINISHED")
    return run_id


def _cell_run(
    client: Any,
    experiment_id: str,
    parent: str,
    suite_dir: Path,
    record: dict[str, Any],
    identity: str,
    digest: str,
    suite: dict[str, Any],
    environment: dict[str, Any] | None,
) -> str:
    """Create the run of one cell: params, metrics, curve, tags, artifacts; FINISHED or FAILED like the cell."""
    from mlflow.entities import Metric, Param

    ok = record.get("status") == "ok"
    tags = {
        KIND_TAG: "cell",
        CELL_TAG: identity,
        SHA_TAG: digest,
        "tlbench.suite": str(suite.get("name") or suite_dir.name),
        "tlbench.status": str(record.get("status")),
        "tlbench.environment_id": str(record.get("environment_id")),
        "mlflow.parentRunId": parent,
        **environment_tags(environment),
    }
    if record.get("error"):
        tags["tlbench.error"] = str(record["error"])[:5000]
    run_id = client.create_run(experiment_id, run_name=identity, tags=tags).info.run_id
    timestamp = int(client.get_run(run_id).info.start_time)
    params = [Param(k, v[:6000]) for k, v in record_params(record, suite.get("options") or {}).items()]
    metrics = [Metric(k, v, timestamp, 0) for k, v in record_metrics(record).items()]
    directory = artifact_dir(suite_dir, record)
    curve_path = directory / "curve.json"
    if curve_path.is_file():
        for entry in json.loads(curve_path.read_text()):
            for key in CURVE_KEYS:
                value = entry.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    metrics.append(Metric(f"curve/{key}", float(value), timestamp, int(entry.get("epoch", 0))))
    for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
        client.log_batch(run_id, params=params[start : start + 100])
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    if directory.is_dir():
        _log_cell_directory(client, run_id, directory)
    client.set_terminated(run_id, "FINISHED" if ok else "FAILED")
    return run_id


def _log_cell_directory(client: Any, run_id: str, directory: Path) -> None:
    """The cell's files as artifacts, without trained weights (large, and never shared by tlbench)."""
    with tempfile.TemporaryDirectory(prefix="tlbench-mlflow-") as tmp:
        for path in sorted(directory.iterdir()):
            if path.is_file() and not path.name.startswith(WEIGHTS_STEM + "."):
                shutil.copy2(path, Path(tmp) / path.name)
        client.log_artifacts(run_id, tmp)
