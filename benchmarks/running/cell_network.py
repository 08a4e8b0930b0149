"""The ``network`` kind of cell: the backend's network trained through the plan (the one training loop).

dataset (same bytes for every backend) → ``Backend.build`` → ``make_plan(strategy, backend.stages(), options)`` →
``train_plan`` → the best-validation weights predict validation and test → the model is timed at inference through
the inference-engine seam → artifacts. Scratch, fine-tuning of any depth, LP-FT, distillation and the linear probe
on cached features all run here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backends import BackendError, ModelSpec
from ...backends.base import Backend, BuildInfo
from ...backends.inference import FrameworkInference
from ...core.plan import PlanError, TrainingPlan, make_plan
from ...core.strategies import Strategy
from ...datasets import ArrayDataset, Split
from .backend_options import backend_options
from .cell_context import CellContext
from .cell_data import rows_key, train_rows, train_split
from .features import backbone_features
from .inference_timing import latency_columns, time_inference, timing_batches
from .measures import count_flops, count_train_flops
from .metrics import classification_metrics
from .teacher import plan_distills, soft_targets
from .training import Inputs, TrainOutcome, predict_in_batches, train_plan


@dataclass
class PreparedNetwork:
    """A built network, its plan and its data, ready for ``train_prepared`` (shared by the ``network`` kind and by
    tuning trials, whose dataset has no test split)."""

    backend: Backend
    info: BuildInfo
    plan: TrainingPlan
    dataset: ArrayDataset
    train: Split
    val: Split
    teacher: Any
    feature_source: Callable[[], Any]
    #: the rows of the dataset's train split that ``train`` holds (``None``: all of them; ``--max-train-images``)
    keep: np.ndarray | None = None


def prepare_network(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> PreparedNetwork:
    """Load the cell's data, build the model, make the plan (in the record) and the teacher's soft labels."""
    cell, opts, record = run.cell, run.options, run.record
    backend = backend_class(opts.device)
    run.backend = backend
    weights = opts.weights_for(cell.backend)
    image_size = record["image_size"] = opts.image_size_for(backend_class, cell.model, weights)
    dataset, policy = run.load_dataset(backend, cell.model, weights, record_data=True)
    keep = train_rows(dataset, opts.max_train_images, cell.seed, cell.train_size, cell.draw)
    train = train_split(dataset, keep)
    val = dataset.splits["val"]
    record["split_sizes"] = {"train": len(train), **{n: len(s) for n, s in dataset.splits.items() if n != "train"}}

    spec = ModelSpec(
        name=cell.model,
        num_classes=dataset.num_classes,
        image_size=image_size,
        weights=weights,
        pretrained=strategy.pretrained,
        allow_random_init=opts.allow_random_init,
        in_chans=opts.in_chans,
        seed=cell.seed,
        options=backend_options(opts, cell.backend),
    )
    info = backend.build(spec)
    record.update(pretrained=info.pretrained, dtype=info.dtype, backend_facts=info.facts or None)
    gpu = backend.device_name()
    record["device"] = f"{info.device} ({gpu})" if gpu else info.device
    if strategy.pretrained and info.pretrained == "none":
        run.log("WARNING: pretrained weights unavailable; random init (allowed by --allow-random-init)")
    try:
        plan = make_plan(
            strategy,
            backend.stages(),
            epochs=opts.epochs,
            head_lr=None if opts.tune else opts.lr,  # a tuned learning rate is the strategy row's
            optimizer=opts.optimizer,
            augment=opts.augment,
            seed=cell.seed,
            **opts.plan_options(),
        )
    except PlanError as exc:
        raise BackendError(str(exc)) from None
    record["epochs"] = plan.epochs
    record["plan"] = plan.describe() + head_note(info.facts)
    run.log(f"{cell.backend}/{cell.model} {strategy.name}: {plan.describe()}")

    record["flops_per_image"] = count_flops(backend, run.log)
    backend.reset_peak_memory()
    teacher = None
    if plan_distills(plan):

        def teacher_images(teacher_backend: Backend, model: str, size: int) -> tuple[np.ndarray, np.ndarray]:
            data, _ = run.load_dataset(teacher_backend, model, "none", record_data=False, image_size=size)
            return data.splits["train"].images, np.asarray(data.splits["train"].labels)

        teacher = soft_targets(
            opts,
            cell.backend,
            backend_class,
            np.asarray(dataset.splits["train"].labels),
            dataset.num_classes,
            keep,
            teacher_images,
            run.log,
        )

    def feature_source() -> Any:
        # the cell's own train rows only (a label-efficiency subset, or --max-train-images): their extraction is what
        # the cell is charged, and the entry, keyed by the rows, is shared by every strategy using the same rows
        return backbone_features(
            backend,
            backend_name=cell.backend,
            model=cell.model,
            pretrained=info.pretrained,
            weights=weights,
            options=opts,
            dataset_entry=record["dataset_meta"].get("cache_entry") or cell.dataset,
            spec=cell.dataset,
            policy_key=policy.key(),
            splits={"train": train.images, "val": val.images},
            pooled=False,
            framework_versions=record["framework_versions"],
            log=run.log,
            train_subset=rows_key(keep),
        )

    return PreparedNetwork(backend, info, plan, dataset, train, val, teacher, feature_source, keep)


def train_prepared(run: CellContext, prepared: PreparedNetwork) -> TrainOutcome:
    """The plan through the one training loop on train (epochs selected on val); the training columns recorded."""
    opts, backend, plan = run.options, prepared.backend, prepared.plan
    teacher = prepared.teacher
    outcome = train_plan(
        backend,
        plan,
        Inputs(prepared.train.images, prepared.train.labels),
        Inputs(prepared.val.images, np.asarray(prepared.val.labels)),
        opts.batch_size,
        opts.warmup_steps,
        run.log,
        feature_source=prepared.feature_source,
        soft_targets=teacher.probs if teacher is not None else None,
    )
    record_training(run, prepared, outcome)
    return outcome


def record_training(run: CellContext, prepared: PreparedNetwork, outcome: TrainOutcome) -> None:
    """The record's training columns from one run of the loop (``train_prepared``; an incremental cell's kept
    step)."""
    record, plan, teacher = run.record, prepared.plan, prepared.teacher
    counts = outcome.counts
    record.update(
        plan=f"{record['plan']}; {teacher.note}" if teacher is not None else record["plan"],
        trainable_params=counts.trainable if counts else None,
        total_params=counts.total if counts else None,
        val_accuracy=outcome.best_val_accuracy,
        best_epoch=outcome.best_epoch,
        selection={
            "by": plan.selection.by,
            "score": outcome.best_score,
            "candidates": plan.selection.candidates,
            "patience": plan.selection.patience,
            "epochs_run": outcome.epochs_run,
            "image_epochs": image_epochs(outcome),
            "early_stopped": outcome.early_stopped,
        },
        probe_best=outcome.probe_best,
        time_to_best_s=outcome.time_to_best_s,
        train_s=outcome.train_s,
        train_images_per_s=outcome.main_images_per_s(),
        train_first_steps_s=sum(p.first_steps_s for p in outcome.phases) or None,
        phase_images_per_s={p.name: p.images_per_s for p in outcome.phases if p.inputs == "images"} or None,
        feature_extract_s=outcome.feature_extract_s,
        feature_extract_images_per_s=outcome.feature_extract_images_per_s,
        feature_dim=outcome.feature_dim,
        head_train_s=outcome.head_train_s,
        feature_cache=None if outcome.feature_cache_hit is None else ("hit" if outcome.feature_cache_hit else "miss"),
        feature_cache_read_s=outcome.feature_cache_read_s,
    )


def run_network_cell(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> None:
    """Train ``run.cell``'s network with ``strategy``'s plan, test it, time it; fills ``run.record``."""
    prepared = prepare_network(run, strategy, backend_class)
    with run.timed_window():  # what other processes use of the machine while this cell is timed
        outcome = train_prepared(run, prepared)
        tested = test_and_time(run, prepared, outcome)
    finish_network_cell(run, prepared, outcome, tested)


def test_and_time(run: CellContext, prepared: PreparedNetwork, outcome: TrainOutcome) -> tuple[np.ndarray, Any]:
    """The trained model's training FLOPs, test probabilities and inference timing (inside the timed window)."""
    opts, record, backend, test = run.options, run.record, prepared.backend, prepared.dataset.splits["test"]
    if outcome.main_images_per_s() is not None:  # the main phase's trainability is still applied
        record["train_flops_per_image"] = count_train_flops(backend, run.log)
    # training is over: the backend may specialize the model for inference (--infer-compile); the predictions
    # below then come from the model that is timed
    record["infer_prepare_s"] = backend.prepare_inference(min(opts.batch_size, len(test)))
    test_probs = predict_in_batches(backend.predict_proba, test.images, opts.batch_size)
    engine = FrameworkInference.of(backend)
    stats = time_inference(engine.run, engine.synchronize, timing_batches(test.images, opts.batch_size), opts)
    return test_probs, stats


def finish_network_cell(
    run: CellContext, prepared: PreparedNetwork, outcome: TrainOutcome, tested: tuple[np.ndarray, Any]
) -> None:
    """Validation predictions, the test metrics, MFU, peak memory and the artifacts of a trained, timed model."""
    opts, record, backend = run.options, run.record, prepared.backend
    test_probs, stats = tested
    val, test = prepared.val, prepared.dataset.splits["test"]
    val_labels, test_labels = np.asarray(val.labels), np.asarray(test.labels)
    val_probs = predict_in_batches(backend.predict_proba, val.images, opts.batch_size)
    record.update(latency_columns(stats))
    record.update(classification_metrics(test_labels, test_probs))
    run.add_mfu(prepared.info.dtype)
    record["peak_device_mb"] = backend.peak_device_memory_mb()
    run.save_artifacts(
        outcome.curve,
        test,
        test_labels,
        test_probs,
        prepared.dataset.class_names,
        stats.latencies_ms,
        val_probs=val_probs,
        val_labels=val_labels,
    )


def head_note(facts: dict[str, Any] | None) -> str:
    """``; head mlp-512-256-128`` when the backend built a head other than its default one (``--head``), else ``""``
    (so the plan line of a default cell is what it always was)."""
    head = (facts or {}).get("head")
    return f"; head {head}" if isinstance(head, str) and head.startswith("mlp") else ""


def image_epochs(outcome: TrainOutcome) -> int:
    """The epochs of ``outcome`` that ran over images (a probe phase's epochs over cached features excluded): what a
    tuning trial's budget counts (``tuning.py``)."""
    on_images = {phase.name for phase in outcome.phases if phase.inputs == "images"}
    return sum(1 for entry in outcome.curve if entry.get("phase") in on_images)
