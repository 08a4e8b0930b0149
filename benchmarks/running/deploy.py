"""Deployment runtimes in the inference pass (``tlbench run --deploy``): the trained model exported, timed beside the
framework, and its test accuracy.

For each cell of a pass group, the model the pass rebuilt from the cell's weights is exported once per artifact
(``InferenceEngine.artifact_kind``: the fp32 ONNX graph, its INT8 quantization calibrated on the cell's own
training images) and loaded in each requested engine (``backends.inference.DEPLOY_ENGINES``) with the cell's
threads. The pass then times every engine of every cell in the same interleaved rounds as the framework model
(same batches of the same bytes, same batch size), and afterwards predicts the whole test split with the framework
and with each engine: the record's ``deploy`` column holds, per engine, its speed (and its ratio to the
framework's in the same rounds), its export and prepare seconds (apart from any throughput), the exported model's
accuracy and ROC-AUC on the test split, their change from the framework's, and how far its probabilities are from
the framework's (``max_abs_prob_diff``). An engine that cannot export or load records its one-line ``error``; the
framework's figures and the other engines go on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...backends.base import Backend
from ...backends.inference import DEPLOY_ENGINES, InferenceEngine, TrainedModel, inference_engine
from .errors import one_line_error
from .metrics import classification_metrics
from .training import predict_in_batches

#: the figures of ``LatencyStats`` a deploy entry keeps (every latency goes nowhere: the cell's own are kept)
SPEED_KEYS = ("images_per_s", "latency_ms_p50", "latency_ms_p90", "latency_cv", "repeats", "timed_s", "batch_size")
#: the directory of a cell's exported models when ``TLBENCH_SAVE_WEIGHTS`` keeps them
DEPLOY_DIR = "deploy"


class DeployError(ValueError):
    """A ``--deploy`` value that cannot run (one line naming it and the choices or the extra)."""


def parse_deploy(text: str | Sequence[str]) -> tuple[str, ...]:
    """The engine names of ``--deploy`` (comma-separated), checked: registered, installed, each once.

    Raises:
        DeployError: an unknown or repeated engine, or one whose runtime is not installed (names the pip extra).
    """
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    seen: list[str] = []
    for name in names:
        if name not in DEPLOY_ENGINES:
            raise DeployError(f"unknown --deploy engine {name!r}; expected some of: {', '.join(DEPLOY_ENGINES)}")
        if name in seen:
            raise DeployError(f"--deploy names {name!r} twice")
        missing = DEPLOY_ENGINES[name].missing_module()
        if missing is not None:
            raise DeployError(f"--deploy {DEPLOY_ENGINES[name].missing_message(missing)}")
        seen.append(name)
    return tuple(seen)


@dataclass
class DeployedEngine:
    """One engine of one cell: loaded (``engine``) or failed (``error``), with its export and prepare seconds."""

    name: str
    engine: InferenceEngine | None = None
    export_s: float | None = None
    prepare_s: float | None = None
    error: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def runner_name(cell: str, engine: str) -> str:
    """The name of a cell's engine among the pass's interleaved runners."""
    return f"{cell}@{engine}"


def deploy_directory(cell_dir: Path, scratch: Path, keep: bool) -> Path:
    """Where a cell's exported models go: ``<cell>/deploy`` when kept (``TLBENCH_SAVE_WEIGHTS``), else ``scratch``;
    emptied first (an earlier run's graphs are never reused)."""
    directory = Path(cell_dir) / DEPLOY_DIR if keep else Path(scratch) / Path(cell_dir).name
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def prepare_engines(
    names: Sequence[str],
    backend: Backend,
    trained: TrainedModel,
    directory: Path,
    batch_size: int,
    threads: int | None,
    calibration: Callable[[], list[np.ndarray]],
    log: Callable[[str], None],
) -> list[DeployedEngine]:
    """Export ``backend``'s trained model once per artifact kind into ``directory`` and load it in each engine.

    Args:
        names: engines (``parse_deploy``).
        backend: the rebuilt backend holding the cell's trained weights.
        trained: what was trained (the artifact is replaced by each engine's export).
        directory: where the exports go (``deploy_directory``).
        batch_size: the inference batch size.
        threads: intra-op threads of each engine (the cell's).
        calibration: gives the training images an INT8 export calibrates on (called once, when needed).
        log: the pass log.
    """
    from dataclasses import replace

    exported: dict[str, tuple[Path, float] | str] = {}
    images: list[np.ndarray] | None = None
    deployed = []
    for name in names:
        item = DeployedEngine(name)
        deployed.append(item)
        try:
            engine = inference_engine(name, type(backend), backend.requested_device)
            kind = engine.artifact_kind
            if kind not in exported:
                if engine.needs_calibration and images is None:
                    images = calibration()
                start = time.perf_counter()
                try:
                    path = engine.export(backend, directory, calibration=images if engine.needs_calibration else None)
                    exported[kind] = (path, time.perf_counter() - start)
                except Exception as exc:
                    exported[kind] = one_line_error(exc)
            outcome = exported[kind]
            if isinstance(outcome, str):
                item.error = f"export: {outcome}"
                log(f"{name}: {item.error}")
                continue
            item.prepare_s = engine.load(replace(trained, artifact=outcome[0]), batch_size, threads=threads)
            item.engine = engine
            item.facts = dict(getattr(engine, "facts", {}))
            # the artifact's whole cost where the engine knows it (an INT8 graph: the fp32 export it quantized too)
            item.export_s = float(item.facts.get("export_s", outcome[1]))
            log(f"{name}: exported in {item.export_s:.1f} s, loaded in {item.prepare_s or 0:.1f} s")
        except Exception as exc:  # one engine failing never costs the framework's figures or the other engines
            item.error = one_line_error(exc)
            log(f"{name}: {item.error}")
    return deployed


def deploy_figures(
    deployed: Sequence[DeployedEngine],
    stats: dict[str, dict[str, Any]],
    framework_images_per_s: float,
    framework_probs: np.ndarray,
    labels: np.ndarray,
    test_images: Any,
    batch_size: int,
) -> dict[str, dict[str, Any]]:
    """The record's ``deploy`` column of one cell: per engine, its speed (``stats``: runner name without the cell
    → ``LatencyStats`` as a dict), export/prepare seconds, and its test-split metrics beside the framework's."""
    reference = classification_metrics(labels, framework_probs)
    out: dict[str, dict[str, Any]] = {}
    for item in deployed:
        if item.engine is None:
            out[item.name] = {"error": item.error}
            continue
        speed = {key: stats[item.name][key] for key in SPEED_KEYS}
        probs = predict_in_batches(item.engine.run, test_images, batch_size)
        metrics = classification_metrics(labels, probs)
        diff = np.abs(probs.astype(np.float64) - framework_probs.astype(np.float64))
        out[item.name] = {
            **speed,
            "speedup": speed["images_per_s"] / framework_images_per_s if framework_images_per_s else None,
            "export_s": item.export_s,
            "prepare_s": item.prepare_s,
            **metrics,
            "accuracy_change": metrics["accuracy"] - reference["accuracy"],
            "roc_auc_change": metrics["roc_auc"] - reference["roc_auc"],
            "max_abs_prob_diff": float(diff.max()),
            "mean_abs_prob_diff": float(diff.mean()),
            "argmax_agreement": float((probs.argmax(1) == framework_probs.argmax(1)).mean()),
            "test_images": int(len(labels)),
            "facts": item.facts,
        }
    return out


def calibration_images(train_images: Any, rows: np.ndarray | None, batch_size: int) -> list[np.ndarray]:
    """The INT8 calibration batches of a cell: up to ``onnx_quantize.CALIBRATION_IMAGES`` of the training rows it
    trained on (``rows``; ``None``: the whole split), taken evenly."""
    from ...backends.onnx_quantize import CALIBRATION_IMAGES, calibration_batches

    pool = np.arange(len(train_images)) if rows is None else np.sort(np.asarray(rows))
    if not len(pool):
        raise ValueError("calibration needs at least one training image")
    chosen = pool[np.unique(np.linspace(0, len(pool) - 1, min(len(pool), CALIBRATION_IMAGES)).round().astype(int))]
    return calibration_batches(np.asarray(train_images[chosen]), batch_size, limit=len(chosen))


def describe(figure: dict[str, Any]) -> str:
    """One log line of an engine's deploy figures (or its error)."""
    if "error" in figure:
        return f"failed: {figure['error']}"
    ratio = f" ({figure['speedup']:.2f}x the framework)" if figure.get("speedup") else ""
    return (
        f"{figure['images_per_s']:.1f} img/s{ratio}, export {figure['export_s']:.1f} s, prepare "
        f"{figure['prepare_s'] or 0:.1f} s, accuracy {figure['accuracy']:.4f} ({figure['accuracy_change']:+.4f}), "
        f"ROC-AUC change {figure['roc_auc_change']:+.4f}, max |dprob| {figure['max_abs_prob_diff']:.2e}"
    )
