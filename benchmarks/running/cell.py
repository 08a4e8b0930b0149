"""Run one cell of the matrix: load the data, build, plan, train, test, time, write artifacts.

The runner executes this module in a fresh subprocess per cell (``python -m tlbench.benchmarks.running.cell``)
so that frameworks never share a process and a crash costs one cell only; tests run the same ``CellRun``
in-process (``runner.run_cell_inprocess``). The result record is written to ``--result-file``; the parent
appends it to the suite's ``results.jsonl``.

The procedure is the same for every strategy and backend: dataset (decoded once, same bytes for every
backend) → ``Backend.build`` → ``make_plan(strategy, backend.stages(), options)`` → ``train_plan`` (the one
training loop) → test metrics with the best-validation weights → a separate inference timing loop →
artifacts (``artifacts.py``). Measurements are described in the README ("What is measured").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...backends import BackendError, ModelSpec, backend_entry, get_backend_class
from ...backends.base import Backend
from ...backends.options import OptionsError
from ...core.plan import PlanError, make_plan
from ...core.strategies import get_strategy
from ...datasets import ArrayDataset, DatasetError, ResizePolicy, Split, load_dataset
from ...datasets.splitting import stratified_indices
from . import artifacts
from .config import CellConfig, RunOptions
from .environment import load_probe_file
from .metrics import classification_metrics
from .results import check_record, empty_record, write_json_atomic
from .timing import measure_latency
from .training import Inputs, batch_slices, predict_in_batches, train_plan

#: full test batches cycled by the inference timing loop
INFER_BATCHES = 8


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if platform.system() == "Darwin" else 2**10)


def train_indices(dataset: ArrayDataset, limit: int | None, seed: int) -> np.ndarray | None:
    """Rows of the train split to use: ``None`` for all, else a stratified subset of ``limit`` (fixed by ``seed``)."""
    train = dataset.splits["train"]
    if limit is None or limit >= len(train):
        return None
    _, keep = stratified_indices(np.asarray(train.labels), limit / len(train), seed)
    return np.sort(keep)


def subset_train(dataset: ArrayDataset, limit: int | None, seed: int, keep: np.ndarray | None = None) -> Split:
    """The train split, or a stratified subset of ``limit`` images (fixed by ``seed``; ``keep``: those rows, when
    the caller already chose them with ``train_indices``)."""
    train = dataset.splits["train"]
    keep = keep if keep is not None else train_indices(dataset, limit, seed)
    if keep is None:
        return train
    return Split(images=np.asarray(train.images[keep]), labels=np.asarray(train.labels[keep]))


def in_memory(images: np.ndarray, max_fraction_of_ram: float = 0.25) -> np.ndarray:
    """Load a memory-mapped array into RAM when it is small enough, so batches are plain copies."""
    try:
        import psutil

        budget = psutil.virtual_memory().available * max_fraction_of_ram
    except Exception:  # pragma: no cover - psutil is a core dependency
        budget = 0
    return np.asarray(images) if images.nbytes <= budget else images


def seed_everything(seed: int) -> None:
    """Seed Python's and numpy's global generators (frameworks are seeded by ``Backend.build``)."""
    random.seed(seed)
    np.random.seed(seed)


class CellRun:
    """State of one cell's run; ``run()`` returns the result record."""

    def __init__(self, cell: CellConfig, options: RunOptions, cell_dir: Path, progress: bool = False) -> None:
        self.cell = cell
        self.options = options
        self.cell_dir = cell_dir
        self.progress = progress
        self.record = empty_record(cell, options)
        self.backend: Backend | None = None
        self._probe_read = False
        self._probe: dict[str, Any] | None = None

    @property
    def probe(self) -> dict[str, Any] | None:
        """The machine probe handed to this cell (``TLBENCH_PROBE_FILE``), read once: MFU, the ``--amp`` warning
        and the speed canary all use it."""
        if not self._probe_read:
            self._probe, self._probe_read = load_probe_file(), True
        return self._probe

    def log(self, message: str) -> None:
        """One line to the cell log (stderr of the subprocess)."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        """Run the cell; every failure becomes a ``failed`` record with a one-line error."""
        quiet_wait = self._wait_quiet()
        wall_start = time.perf_counter()
        try:
            self._run()
            self.record["status"] = "ok"
        except Exception as exc:  # every failure becomes a record; the suite goes on
            traceback.print_exc(file=sys.stderr)
            self.record["status"] = "failed"
            self.record["error"] = one_line_error(exc)
        self.record["wall_s"] = time.perf_counter() - wall_start
        if quiet_wait is not None and isinstance(self.record.get("contention"), dict):
            self.record["contention"].update(quiet_wait)
        self.record["peak_rss_mb"] = peak_rss_mb()
        return check_record(self.record)

    def _wait_quiet(self) -> dict[str, Any] | None:
        """``--wait-quiet``: wait (up to the option's seconds, outside ``wall_s``) until other processes use at
        most the contention threshold of the cores; what happened goes into the record's ``contention``."""
        limit_s = self.options.wait_quiet_s
        if not limit_s:
            return None
        from .contention import wait_until_quiet

        start = time.perf_counter()
        quiet = wait_until_quiet(timeout_s=limit_s, poll_s=min(2.0, limit_s))
        waited_s = time.perf_counter() - start
        if quiet:
            self.log(f"machine quiet after {waited_s:.1f} s (--wait-quiet {limit_s:g})")
        else:
            self.log(
                f"WARNING: other processes still busy after --wait-quiet {limit_s:g} s; measuring anyway (the cell is flagged if disturbed)"
            )
        return {"waited_quiet_s": round(waited_s, 2), "quiet_at_start": quiet}

    @contextlib.contextmanager
    def _timed_window(self) -> Iterator[None]:
        """Around a cell's timed part: sample what other processes use (``contention``), and run the speed canary
        just before and after it (``canary``: is the machine as fast as when it was probed?). The record's
        ``contention`` gets both, also when the body raises."""
        from .contention import describe, watched

        summary: dict[str, Any] = {}
        try:
            with watched(self.options.infer_min_time_s, (self.probe or {}).get("canary_gflop_per_s")) as summary:
                yield
        finally:
            self.record["contention"] = summary
            self.log(f"contention: {describe(summary)}")

    # ---- the procedure ---------------------------------------------------------------------------------
    def _run(self) -> None:
        cell, opts, record = self.cell, self.options, self.record
        strategy = get_strategy(cell.strategy)
        models = cell.model.split("+")
        if (strategy.name == "fusion") != (len(models) > 1):
            raise BackendError(
                f"strategy {strategy.name!r} with model {cell.model!r}: fusion takes two or more models joined by '+' "
                "(--models resnet18+densenet121), and only fusion takes such a model"
            )
        seed_everything(cell.seed)
        backend_class = get_backend_class(cell.backend)  # imports the framework (not yet initialized)
        record["runtime"] = self._apply_runtime(backend_entry(cell.backend).framework)
        record["framework_versions"] = backend_class.framework_versions()
        if strategy.probe_head != "linear":
            self._run_feature_probe(strategy, backend_class, models)
            return
        backend = backend_class(opts.device)
        self.backend = backend
        weights = opts.weights_for(cell.backend)
        image_size = record["image_size"] = opts.image_size_for(backend_class, cell.model, weights)
        dataset, policy = self._load_dataset(backend, cell.model, weights, record_data=True)
        keep = train_indices(dataset, opts.max_train_images, cell.seed)
        train = subset_train(dataset, opts.max_train_images, cell.seed, keep)
        train = Split(images=in_memory(train.images), labels=np.asarray(train.labels))
        val, test = dataset.splits["val"], dataset.splits["test"]
        record["split_sizes"] = {"train": len(train), "val": len(val), "test": len(test)}

        spec = ModelSpec(
            name=cell.model,
            num_classes=dataset.num_classes,
            image_size=image_size,
            weights=weights,
            pretrained=strategy.pretrained,
            allow_random_init=opts.allow_random_init,
            in_chans=opts.in_chans,
            seed=cell.seed,
            options=opts.options_for(cell.backend),
        )
        info = backend.build(spec)
        record.update(pretrained=info.pretrained, dtype=info.dtype, backend_facts=info.facts or None)
        gpu = backend.device_name()
        record["device"] = f"{info.device} ({gpu})" if gpu else info.device
        if strategy.pretrained and info.pretrained == "none":
            self.log("WARNING: pretrained weights unavailable; random init (allowed by --allow-random-init)")
        try:
            plan = make_plan(
                strategy,
                backend.stages(),
                epochs=opts.epochs,
                head_lr=opts.lr,
                optimizer=opts.optimizer,
                augment=opts.augment,
                seed=cell.seed,
            )
        except PlanError as exc:
            raise BackendError(str(exc)) from None
        record["epochs"] = plan.epochs
        record["plan"] = plan.describe()
        self.log(f"{cell.backend}/{cell.model} {strategy.name}: {plan.describe()}")

        record["flops_per_image"] = self._count_flops(backend)
        backend.reset_peak_memory()
        soft_targets = None
        if plan_distills(plan):
            soft_targets = self._teacher_probabilities(backend_class, dataset, keep)

        def feature_source():
            splits = {"train": dataset.splits["train"].images, "val": val.images}
            cached = self._features(backend, info, cell.model, weights, dataset, policy, splits, pooled=False)
            if keep is not None:
                cached.splits["train"] = cached.splits["train"][keep]
            return cached

        with self._timed_window():  # what other processes use of the machine while this cell is timed
            outcome = train_plan(
                backend,
                plan,
                Inputs(train.images, train.labels),
                Inputs(val.images, np.asarray(val.labels)),
                opts.batch_size,
                opts.warmup_steps,
                self.log,
                feature_source=feature_source,
                soft_targets=soft_targets,
            )
            # training is over: the backend may specialize the model for inference (--infer-compile); the test
            # predictions below then come from the model that is timed
            record["infer_prepare_s"] = backend.prepare_inference(min(opts.batch_size, len(test)))
            test_labels = np.asarray(test.labels)
            test_probs = predict_in_batches(backend.predict_proba, test.images, opts.batch_size)
            latencies = self._measure_inference(backend, test)
        counts = outcome.counts
        if getattr(self, "teacher_note", None):
            record["plan"] = f"{plan.describe()}; {self.teacher_note}"
        record.update(
            trainable_params=counts.trainable if counts else None,
            total_params=counts.total if counts else None,
            val_accuracy=outcome.best_val_accuracy,
            best_epoch=outcome.best_epoch,
            time_to_best_s=outcome.time_to_best_s,
            train_s=outcome.train_s,
            train_images_per_s=outcome.main_images_per_s(),
            train_first_steps_s=sum(p.first_steps_s for p in outcome.phases) or None,
            phase_images_per_s={p.name: p.images_per_s for p in outcome.phases if p.inputs == "images"} or None,
            feature_extract_s=outcome.feature_extract_s,
            feature_extract_images_per_s=outcome.feature_extract_images_per_s,
            feature_dim=outcome.feature_dim,
            head_train_s=outcome.head_train_s,
            feature_cache=None
            if outcome.feature_cache_hit is None
            else ("hit" if outcome.feature_cache_hit else "miss"),
        )

        record.update(classification_metrics(test_labels, test_probs))
        self._mfu(info.dtype)
        record["peak_device_mb"] = backend.peak_device_memory_mb()
        self._save_artifacts(outcome.curve, test, test_labels, test_probs, dataset.class_names, latencies)

    def _teacher_probabilities(
        self, backend_class: type[Backend], dataset: ArrayDataset, keep: np.ndarray | None
    ) -> np.ndarray:
        """The teacher cell's class probabilities on the train split (soft labels), computed once, in this process.

        The teacher is a finished cell of the same backend that saved its trained weights (``TLBENCH_SAVE_WEIGHTS=1``);
        it sees the same rows resized with its own policy.
        """
        from .teacher import load_teacher

        opts = self.options
        teacher = load_teacher(opts.teacher, self.cell.backend)
        if int(teacher.record.get("num_classes") or dataset.num_classes) != dataset.num_classes:
            raise BackendError(
                f"teacher {teacher.name!r} has {teacher.record.get('num_classes')} classes, this dataset {dataset.num_classes}"
            )
        model, image_size = teacher.record["model"], int(teacher.record["image_size"])
        backend = build_trained(
            backend_class,
            opts,
            self.cell.backend,
            model,
            dataset.num_classes,
            image_size,
            int(teacher.record["seed"]),
            teacher.weights,
        )
        teacher_data, _ = self._load_dataset(backend, model, "none", record_data=False, image_size=image_size)
        train = teacher_data.splits["train"]
        if not np.array_equal(np.asarray(train.labels), np.asarray(dataset.splits["train"].labels)):
            raise BackendError(
                f"teacher {teacher.name!r}: its train split differs from this cell's (another dataset or --dedup?)"
            )
        probs = predict_in_batches(backend.predict_proba, train.images, opts.batch_size)
        accuracy = float((probs.argmax(1) == np.asarray(train.labels)).mean())
        self.log(
            f"teacher {teacher.name} ({model}): soft labels for {len(probs)} train images, train accuracy {accuracy:.3f}"
        )
        self.teacher_note = f"teacher {teacher.name} (test accuracy {teacher.record.get('accuracy')})"
        return probs if keep is None else probs[keep]

    # ---- shared steps ---------------------------------------------------------------------------------
    def _load_dataset(
        self, backend: Backend, model: str, weights: str, record_data: bool, image_size: int | None = None
    ) -> tuple[ArrayDataset, ResizePolicy]:
        """The cell's dataset, resized for ``model`` (decoded once per policy, cached); its facts into the record."""
        opts, record = self.options, self.record
        size = image_size if image_size is not None else opts.image_size_for(type(backend), model, weights)
        dataset, policy = load_cell_dataset(
            backend, self.cell.dataset, model, weights, size, opts, self.log, self.progress
        )
        if record_data:
            meta = dict(dataset.meta)
            record["duplicates"] = meta.pop("duplicates", None)
            if record["duplicates"]:
                self.log(f"duplicates: {duplicates_line(record['duplicates'])}")
            record["dataset_meta"] = dataset_meta_for_record(meta)
            record["skipped_images"] = int(dataset.meta.get("skipped_images", 0))
            record["num_classes"] = dataset.num_classes
            record["class_names"] = dataset.class_names
        return dataset, policy

    def _features(
        self,
        backend: Backend,
        info: Any,
        model: str,
        weights: str,
        dataset: ArrayDataset,
        policy: ResizePolicy,
        splits: dict[str, np.ndarray],
        pooled: bool,
    ) -> Any:
        """Features of ``splits`` through the on-disk feature cache (see ``features``)."""
        from .features import FeatureCache, cached_features, feature_cache_root, feature_key

        opts = self.options
        key = feature_key(
            backend=self.cell.backend,
            model=model,
            pretrained=info.pretrained,
            weights=weights,
            pooled=pooled,
            options=opts.options_for(self.cell.backend).to_dict(),
            in_chans=opts.in_chans,
            policy=policy.key(),
            dataset=dataset_meta_for_record(dataset.meta).get("cache_entry") or self.cell.dataset,
            spec=self.cell.dataset,
            dedup=opts.dedup,
            sizes={k: len(v) for k, v in splits.items()},
            versions=self.record["framework_versions"],
        )
        cached = cached_features(
            FeatureCache(feature_cache_root(opts.cache_dir)),
            key,
            splits,
            lambda batch: backend.extract_features(batch, pooled=pooled),
            opts.batch_size,
            backend.synchronize,
            meta={
                "backend": self.cell.backend,
                "model": model,
                "dataset": self.cell.dataset,
                "pretrained": info.pretrained,
            },
        )
        self.log(
            f"features of {model}: {'read from the cache' if cached.hit else 'extracted and cached'} in {cached.seconds:.2f} s ({key})"
        )
        return cached

    def _run_feature_probe(self, strategy: Any, backend_class: type[Backend], models: list[str]) -> None:
        """``logreg_probe``, ``knn_probe`` and ``fusion``: pooled frozen features (cached) → a scikit-learn probe."""
        from .sklearn_heads import run_probe

        cell, opts, record = self.cell, self.options, self.record
        weights = opts.weights_for(cell.backend)
        parts, trainable_note = [], []
        with self._timed_window():
            for index, model in enumerate(models):
                backend = backend_class(opts.device)
                dataset, policy = self._load_dataset(backend, model, weights, record_data=index == 0)
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
                    options=opts.options_for(cell.backend),
                )
                info = backend.build(spec)
                counts = backend.apply_phase(make_plan(strategy, backend.stages(), epochs=1, seed=cell.seed).phases[0])
                splits = {name: dataset.splits[name].images for name in ("train", "val", "test")}
                cached = self._features(backend, info, model, weights, dataset, policy, splits, pooled=True)
                parts.append(
                    {
                        "model": model,
                        "backend": backend,
                        "info": info,
                        "dataset": dataset,
                        "features": cached,
                        "counts": counts,
                    }
                )
                trainable_note.append(info.pretrained)
            first = parts[0]["dataset"]
            for part in parts[1:]:
                for name in ("train", "val", "test"):
                    if not np.array_equal(part["dataset"].splits[name].labels, first.splits[name].labels):
                        raise BackendError(
                            f"fusion: the {name} split of {part['model']!r} differs from {parts[0]['model']!r}'s"
                        )
            keep = train_indices(first, opts.max_train_images, cell.seed)
            stack = {
                name: np.concatenate([p["features"].splits[name] for p in parts], axis=1)
                for name in ("train", "val", "test")
            }
            labels = {name: np.asarray(first.splits[name].labels) for name in ("train", "val", "test")}
            if keep is not None:
                stack["train"], labels["train"] = stack["train"][keep], labels["train"][keep]
            record["split_sizes"] = {name: len(labels[name]) for name in labels}
            import time

            fit_start = time.perf_counter()
            result = run_probe(
                strategy.probe_head,
                (stack["train"], labels["train"]),
                (stack["val"], labels["val"]),
                stack["test"],
                first.num_classes,
                cell.seed,
            )
            fit_s = time.perf_counter() - fit_start
            latencies = self._measure_probe_inference(parts, result.predict)
        extract_s = sum(p["features"].seconds for p in parts)
        hits = {p["features"].hit for p in parts}
        dim = int(stack["train"].shape[1])
        record.update(
            pretrained="+".join(trainable_note),
            dtype=parts[0]["info"].dtype,
            backend_facts={p["model"]: p["info"].facts for p in parts}
            if len(parts) > 1
            else (parts[0]["info"].facts or None),
            device=parts[0]["info"].device,
            plan=f"{result.description}; features {dim}-d from {' + '.join(models)}",
            epochs=None,
            best_epoch=None,
            val_accuracy=result.val_accuracy,
            train_s=extract_s + fit_s,
            head_train_s=fit_s,
            feature_extract_s=extract_s,
            feature_dim=dim,
            feature_extract_images_per_s=sum(p["features"].images for p in parts) / extract_s
            if extract_s > 0
            else None,
            feature_cache="hit" if hits == {True} else "miss" if hits == {False} else "partial",
            trainable_params=dim * first.num_classes + first.num_classes if strategy.probe_head == "logreg" else 0,
            total_params=sum(p["counts"].total for p in parts),
            time_to_best_s=extract_s + fit_s,
        )
        self.log(f"{result.description}: val_accuracy={result.val_accuracy:.4f}, fit {fit_s:.2f} s")
        flops = [self._count_flops(p["backend"]) for p in parts]
        record["flops_per_image"] = sum(flops) if all(flops) else None
        test = first.splits["test"]
        record.update(classification_metrics(labels["test"], result.test_probs))
        self._mfu(record["dtype"] or "float32")
        self.backend = None  # sklearn probes keep no framework weights to save
        self._save_artifacts([], test, labels["test"], result.test_probs, first.class_names, latencies)

    def _measure_probe_inference(self, parts: list[dict[str, Any]], predict: Any) -> tuple[float, ...]:
        """Inference = every backbone's pooled features of a test batch + the fitted probe."""
        opts = self.options
        test_sets = [p["dataset"].splits["test"].images for p in parts]
        bs = min(opts.batch_size, len(test_sets[0]))
        batches = [tuple(np.asarray(images[s]) for images in test_sets) for s in timing_slices(len(test_sets[0]), bs)]

        def run(batch: tuple[np.ndarray, ...]) -> np.ndarray:
            feats = [p["backend"].extract_features(images, pooled=True) for p, images in zip(parts, batch)]
            return predict(np.concatenate(feats, axis=1))

        def sync() -> None:
            for part in parts:
                part["backend"].synchronize()

        # a batch is a tuple (one image array per backbone): the images per call are bs, not len(tuple)
        stats = measure_latency(
            run,
            batches,
            sync,
            warmup=opts.infer_warmup,
            repeats=opts.infer_repeats,
            min_time_s=opts.infer_min_time_s,
            batch_size=bs,
        )
        return self._record_latency(stats)

    def _count_flops(self, backend: Backend) -> int | None:
        try:
            return backend.flops_per_image()
        except Exception as exc:  # counting is a measurement aid: never fail a cell for it
            self.log(f"FLOPs not counted: {one_line_error(exc)}")
            return None

    def _mfu(self, dtype: str) -> None:
        """Model FLOPs utilization: achieved FLOP/s over this machine's probed peak for the compute dtype."""
        record = self.record
        probe = self.probe
        flops = record.get("flops_per_image")
        if probe is None or not flops:
            return
        from .machine_peak import peak_flop_per_s

        compute = (
            "bfloat16" if dtype.startswith("bfloat16") else "float16" if dtype.startswith("float16") else "float32"
        )
        try:
            peak = peak_flop_per_s(probe, compute)
        except ValueError:
            return
        if record.get("infer_images_per_s"):
            record["infer_mfu"] = record["infer_images_per_s"] * flops / peak
        if record.get("train_images_per_s"):
            record["train_mfu"] = record["train_images_per_s"] * 3 * flops / peak
        (record["runtime"] or {}).update(peak_flop_per_s=peak, peak_dtype=compute)

    def _apply_runtime(self, framework: str) -> dict[str, Any]:
        """Thread pools of this process's framework, and the runtime as recorded with the result."""
        from .runtime import apply_framework_threads, runtime_record

        settings = self.options.runtime()
        record = runtime_record(settings)
        if framework in ("torch", "tensorflow"):
            applied = apply_framework_threads(settings, framework)
            record["applied"] = applied
            for warning in applied.get("warnings", []):
                self.log(f"runtime: {warning}")
        probe = self.probe
        if probe is not None:
            from .machine_peak import amp_warning

            warning = amp_warning(probe, self.options.options_for(self.cell.backend).amp)
            if warning:
                record.setdefault("warnings", []).append(warning)
                self.log(f"WARNING: {warning}")
        # the allocator variables only act when set before the process started (the subprocess launcher)
        wanted = settings.env
        record["allocator_active"] = all(
            os.environ.get(k) == v for k, v in wanted.items() if k.startswith("MALLOC_") or k == "LD_PRELOAD"
        )
        return record

    def _measure_inference(self, backend: Backend, test: Split) -> tuple[float, ...]:
        """The separate inference timing loop over full test batches; returns the raw latencies."""
        opts = self.options
        batches = timing_batches(test.images, opts.batch_size)
        stats = measure_latency(
            backend.predict_proba,
            batches,
            backend.synchronize,
            warmup=opts.infer_warmup,
            repeats=opts.infer_repeats,
            min_time_s=opts.infer_min_time_s,
        )
        return self._record_latency(stats)

    def _record_latency(self, stats: Any) -> tuple[float, ...]:
        """The inference timing columns of ``stats`` (a ``LatencyStats``); returns the raw latencies."""
        self.record.update(
            infer_images_per_s=stats.images_per_s,
            infer_latency_ms_p50=stats.latency_ms_p50,
            infer_latency_ms_p90=stats.latency_ms_p90,
            infer_batch_size=stats.batch_size,
            infer_repeats=stats.repeats,
            infer_timed_s=stats.timed_s,
            infer_latency_cv=stats.latency_cv,
        )
        return stats.latencies_ms

    def _save_artifacts(
        self, curve, test: Split, labels: np.ndarray, probs: np.ndarray, class_names: list[str], latencies
    ) -> None:
        directory = self.cell_dir
        artifacts.write_predictions(directory, probs, labels, class_names, test.images)
        artifacts.write_curve(directory, curve)
        artifacts.write_latencies(directory, latencies, int(self.record["infer_batch_size"] or 0))
        # kept for tlbench explain / a distillation teacher, or until the suite's inference pass has timed them
        if (artifacts.save_weights_requested() or self.options.infer_pass) and self.backend is not None:
            self.backend.save_weights(str(artifacts.weights_path(directory, self.backend.weights_suffix)))


def load_cell_dataset(
    backend: Backend,
    spec: str,
    model: str,
    weights: str,
    image_size: int,
    options: RunOptions,
    log: Callable[[str], None],
    progress: bool = False,
) -> tuple[ArrayDataset, ResizePolicy]:
    """Dataset ``spec`` decoded and resized once (cached) with ``model``'s resize policy at ``image_size``.

    The one place where a cell's images are made: the inference pass (``infer_pass``) reads the same bytes.
    """
    data_config = backend.default_data_config(model, image_size, weights)
    policy = ResizePolicy(data_config.image_size, data_config.crop_pct, data_config.interpolation)
    log(f"dataset {spec} at {policy.key()}")
    dataset = load_dataset(
        spec, policy, options.cache_dir, progress=progress, dedup=options.dedup, near_duplicates=options.near_duplicates
    )
    return dataset, policy


def build_trained(
    backend_class: type[Backend],
    options: RunOptions,
    backend_name: str,
    model: str,
    num_classes: int,
    image_size: int,
    seed: int,
    weights_path: Path,
) -> Backend:
    """A backend holding a finished cell's trained weights (a distillation teacher, a model of the inference pass):
    the architecture built without pretrained weights, with ``backend_name``'s options, then the saved weights.

    Raises:
        BackendError: the model does not build or the weights do not fit it (one line).
    """
    backend = backend_class(options.device)
    backend.build(
        ModelSpec(
            name=model,
            num_classes=num_classes,
            image_size=image_size,
            weights="none",
            pretrained=False,
            allow_random_init=True,
            in_chans=options.in_chans,
            seed=seed,
            options=options.options_for(backend_name),
        )
    )
    backend.load_weights(str(weights_path))
    return backend


def timing_slices(count: int, batch_size: int) -> list[slice]:
    """The inference timing batches of a test split of ``count`` images: its first ``INFER_BATCHES`` full ones."""
    bs = min(batch_size, count)
    return [s for s in batch_slices(count, bs) if s.stop - s.start == bs][:INFER_BATCHES]


def timing_batches(images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The inference timing batches of a test split (uint8, in memory): see ``timing_slices``."""
    return [np.asarray(images[s]) for s in timing_slices(len(images), batch_size)]


def plan_distills(plan: Any) -> bool:
    """Whether any phase of ``plan`` trains on a teacher's soft labels."""
    return any(phase.distillation is not None for phase in plan.phases)


def dataset_meta_for_record(meta: dict[str, Any]) -> dict[str, Any]:
    """The dataset's metadata as recorded: machine paths reduced to names (results are shared), long lists dropped."""
    record = {}
    for key, value in meta.items():
        if key == "skipped_examples":
            continue
        if key == "cache_dir" and isinstance(value, str):
            value = os.path.basename(value.rstrip("/"))  # the entry name identifies the cache, not this machine's path
            key = "cache_entry"
        record[key] = value
    return record


def duplicates_line(duplicates: dict[str, Any]) -> str:
    """``cross_split=4 within_split=28 conflicting_labels=0 dropped=32 (policy drop)`` for logs and the console."""
    counts = " ".join(
        f"{k}={duplicates.get(k, 0)}"
        for k in ("cross_split", "within_split", "conflicting_labels", "near_cross_split", "dropped")
        if k in duplicates
    )
    return f"{counts} (policy {duplicates.get('policy')})"


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line (user errors keep their own message without the type)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (BackendError, DatasetError, OptionsError, PlanError, KeyError)):
        return message.strip("'\"")
    return f"{type(exc).__name__}: {message}"[:500]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the per-cell subprocess."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.running.cell")
    parser.add_argument("--cell", required=True, help="CellConfig as JSON")
    parser.add_argument("--options", required=True, help="RunOptions as JSON")
    parser.add_argument("--cell-dir", required=True, type=Path)
    parser.add_argument("--result-file", required=True, type=Path)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    cell = CellConfig(**json.loads(args.cell))
    options = RunOptions.from_dict(json.loads(args.options))
    record = CellRun(cell, options, args.cell_dir, progress=args.progress).run()
    write_json_atomic(args.result_file, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
