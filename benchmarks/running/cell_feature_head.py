"""The ``feature_head`` kind of cell: pooled features of frozen backbones (cached) and a scikit-learn head.

``logreg_probe`` and ``knn_probe`` take one backbone; ``fusion`` takes two or more (``--models a+b``) whose pooled
features are concatenated. No gradient step runs, so the training loop is not involved: the head is fitted on the
train features, its setting chosen on validation. At inference the backbones extract pooled features of a test
batch and the fitted head predicts: that is what is timed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...backends import BackendError, ModelSpec
from ...backends.base import Backend, BuildInfo
from ...core.cell_kinds import backbones_of
from ...core.plan import make_plan
from ...core.strategies import Strategy
from ...datasets import ArrayDataset
from .backend_options import backend_options
from .cell_context import CellContext
from .cell_data import dataset_meta_for_record, rows_key, train_rows
from .features import CachedFeatures, backbone_features
from .inference_timing import latency_columns, time_inference, timing_slices
from .measures import count_flops
from .metrics import classification_metrics
from .sklearn_heads import run_probe


@dataclass
class Backbone:
    """One frozen backbone of the cell: the built backend, its data and its cached features."""

    model: str
    backend: Backend
    info: BuildInfo
    dataset: ArrayDataset
    features: CachedFeatures
    total_params: int


@dataclass
class FittedHead:
    """The backbones, their stacked features and labels per split, the fitted probe and its fitting seconds."""

    parts: list[Backbone]
    stack: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    result: Any
    fit_s: float


def fit_feature_head(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> FittedHead:
    """Extract (or read) the backbones' pooled features of every split the cell's data holds (a tuning trial's has
    no test split) and fit ``strategy.probe_head`` on train, its setting chosen (or scored) on val."""
    cell, opts, record = run.cell, run.options, run.record
    models = backbones_of(cell.model)
    parts = [_backbone(run, strategy, backend_class, model, first=index == 0) for index, model in enumerate(models)]
    first = parts[0].dataset
    names = list(first.splits)
    for part in parts[1:]:
        for name in names:
            if not np.array_equal(part.dataset.splits[name].labels, first.splits[name].labels):
                raise BackendError(f"fusion: the {name} split of {part.model!r} differs from {parts[0].model!r}'s")
    keep = train_rows(first, opts.max_train_images, cell.seed, cell.train_size, cell.draw)
    stack = {name: np.concatenate([p.features.splits[name] for p in parts], axis=1) for name in names}
    labels = {name: np.asarray(first.splits[name].labels) for name in names}
    if keep is not None:  # the features hold the kept rows only (``_backbone``)
        labels["train"] = labels["train"][keep]
    record["split_sizes"] = {name: len(labels[name]) for name in labels}
    fit_start = time.perf_counter()
    result = run_probe(
        strategy.probe_head,
        (stack["train"], labels["train"]),
        (stack["val"], labels["val"]),
        stack.get("test"),
        first.num_classes,
        cell.seed,
        opts.select_by,
        c=strategy.probe_c,
        k=strategy.knn_k,
    )
    return FittedHead(parts, stack, labels, result, time.perf_counter() - fit_start)


def run_feature_head_cell(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> None:
    """Extract (or read) the backbones' pooled features, fit ``strategy.probe_head`` on them, test and time it."""
    cell, opts, record = run.cell, run.options, run.record
    models = backbones_of(cell.model)
    with run.timed_window():
        fitted = fit_feature_head(run, strategy, backend_class)
        stats = _time_inference(fitted.parts, fitted.result.predict, opts)
    parts, labels, result, fit_s = fitted.parts, fitted.labels, fitted.result, fitted.fit_s
    first = parts[0].dataset
    record_head(record, fitted, models)
    record.update(latency_columns(stats))
    run.log(f"{result.description}: val_accuracy={result.val_accuracy:.4f}, fit {fit_s:.2f} s")
    flops = [count_flops(p.backend, run.log) for p in parts]
    record["flops_per_image"] = sum(flops) if all(flops) else None
    record.update(classification_metrics(labels["test"], result.test_probs))
    run.add_mfu(record["dtype"] or "float32")
    run.save_artifacts(
        [],
        first.splits["test"],
        labels["test"],
        result.test_probs,
        first.class_names,
        stats.latencies_ms,
        val_probs=result.val_probs,
        val_labels=labels["val"],
    )


def _backbone(run: CellContext, strategy: Strategy, backend_class: type[Backend], model: str, first: bool) -> Backbone:
    """Build ``model`` frozen (the strategy's one phase applied) and get its pooled features of every split of the
    cell's data."""
    cell, opts, record = run.cell, run.options, run.record
    backend = backend_class(opts.device)
    weights = opts.weights_for(cell.backend)
    dataset, policy = run.load_dataset(backend, model, weights, record_data=first)
    size = opts.image_size_for(backend_class, model, weights)
    record["image_size"] = record["image_size"] or size
    spec = ModelSpec(
        name=model,
        num_classes=dataset.num_classes,
        image_size=size,
        weights=weights,
        pretrained=True,
        allow_random_init=opts.allow_random_init,
        in_chans=opts.in_chans,
        seed=cell.seed,
        options=backend_options(opts, cell.backend),
    )
    info = backend.build(spec)
    counts = backend.apply_phase(make_plan(strategy, backend.stages(), epochs=1, seed=cell.seed).phases[0])
    splits = {name: split.images for name, split in dataset.splits.items()}
    # the cell's own train rows only (a label-efficiency subset, or --max-train-images): their extraction is what the
    # cell is charged, and the entry is keyed by the rows
    keep = train_rows(dataset, opts.max_train_images, cell.seed, cell.train_size, cell.draw)
    if keep is not None:
        splits["train"] = np.asarray(splits["train"][keep])
    features = backbone_features(
        backend,
        backend_name=cell.backend,
        model=model,
        pretrained=info.pretrained,
        weights=weights,
        options=opts,
        dataset_entry=dataset_meta_for_record(dataset.meta).get("cache_entry") or cell.dataset,
        spec=cell.dataset,
        policy_key=policy.key(),
        splits=splits,
        pooled=True,
        framework_versions=record["framework_versions"],
        log=run.log,
        train_subset=rows_key(keep),
    )
    return Backbone(model, backend, info, dataset, features, counts.total)


def _time_inference(parts: list[Backbone], predict: Any, opts: Any) -> Any:
    """Inference = every backbone's pooled features of a test batch + the fitted head, timed like a network."""
    test_sets = [p.dataset.splits["test"].images for p in parts]
    bs = min(opts.batch_size, len(test_sets[0]))
    batches = [tuple(np.asarray(images[s]) for images in test_sets) for s in timing_slices(len(test_sets[0]), bs)]

    def run_batch(batch: tuple[np.ndarray, ...]) -> np.ndarray:
        feats = [p.backend.extract_features(images, pooled=True) for p, images in zip(parts, batch, strict=True)]
        return predict(np.concatenate(feats, axis=1))

    def sync() -> None:
        for part in parts:
            part.backend.synchronize()

    # a batch is a tuple (one image array per backbone): the images per call are bs, not len(tuple)
    return time_inference(run_batch, sync, batches, opts, batch_size=bs)


#: the splits a feature head is fit (train) and selected (val) on: their extraction is its training cost
TRAINING_SPLITS = ("train", "val")


def record_head(record: dict[str, Any], fitted: FittedHead, models: list[str]) -> None:
    """The columns of a fitted feature head: provenance, its plan line, validation score, seconds, features."""
    parts, result, fit_s = fitted.parts, fitted.result, fitted.fit_s
    # training is charged the extraction of the splits the head is fit and selected on; the test split's features
    # belong to testing, as for every other strategy
    extract_s = sum(p.features.seconds_of(TRAINING_SPLITS) for p in parts)
    hits = {p.features.hit for p in parts}
    dim = int(fitted.stack["train"].shape[1])
    record.update(
        pretrained="+".join(p.info.pretrained for p in parts),
        dtype=parts[0].info.dtype,
        backend_facts={p.model: p.info.facts for p in parts} if len(parts) > 1 else (parts[0].info.facts or None),
        device=parts[0].info.device,
        plan=f"{result.description}; features {dim}-d from {' + '.join(models)}",
        epochs=None,
        best_epoch=None,
        val_accuracy=result.val_accuracy,
        train_s=extract_s + fit_s,
        head_train_s=fit_s,
        feature_extract_s=extract_s,
        feature_dim=dim,
        feature_extract_images_per_s=(
            sum(p.features.images_of(TRAINING_SPLITS) for p in parts) / extract_s if extract_s > 0 else None
        ),
        feature_cache="hit" if hits == {True} else "miss" if hits == {False} else "partial",
        feature_cache_read_s=sum(p.features.read_s or 0.0 for p in parts) if True in hits else None,
        trainable_params=result.trainable_params,
        total_params=sum(p.total_params for p in parts),
        time_to_best_s=extract_s + fit_s,
    )
    record["selection"] = {"by": result.select_by, "score": result.val_score}
