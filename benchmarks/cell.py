"""Run one cell of the matrix: build, transfer, train with val-based epoch selection, test, time.

The runner executes this module in a fresh subprocess per cell (``python -m tlbench.benchmarks.cell``) so
that frameworks never share a process and a crash costs one cell only. The result record is written to
``--result-file``; the parent appends it to the suite's ``results.jsonl``.

Measurements (see README "What is measured"):

- ``train_images_per_s``: training images processed / seconds of training work, synchronized, excluding the
  first ``warmup_steps`` steps and validation. For ``linear_probe`` the seconds include the one-off feature
  extraction of the train split, so cached features show as the speed-up they are.
- ``infer_images_per_s``, ``infer_latency_ms_p50/p90``: a separate loop over full test batches through the
  whole model (warm-up, ≥ 10 timed repeats, median).
- ``time_to_best_s``: training seconds (incl. per-epoch validation) until the end of the epoch with the
  best validation accuracy, the epoch whose weights are tested.
- ``peak_rss_mb``: the process' peak resident set; ``peak_device_mb``: CUDA/TF peak allocated on GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from tlbench.backends import BackendError, ModelSpec, OptimConfig, get_backend_class
from tlbench.benchmarks.config import CellConfig, RunOptions
from tlbench.benchmarks.metrics import classification_metrics
from tlbench.benchmarks.results import RESULT_COLUMNS, write_json_atomic
from tlbench.benchmarks.strategies import Strategy, get_strategy, head_only
from tlbench.benchmarks.timing import SyncTimer, measure_latency
from tlbench.datasets import ArrayDataset, DatasetError, ResizePolicy, Split, load_dataset
from tlbench.datasets.splitting import stratified_indices

#: test images saved per cell for the prediction grid
SAMPLE_IMAGES = 16
#: environment variable that makes every cell keep its trained weights (``cells/<id>/weights.pkl``)
SAVE_WEIGHTS_ENV = "TLBENCH_SAVE_WEIGHTS"
#: file name of the pickled trained state inside a cell directory
WEIGHTS_FILE = "weights.pkl"


def empty_record(cell: CellConfig, options: RunOptions) -> dict[str, Any]:
    """A record with every result column present (``None`` until measured)."""
    record: dict[str, Any] = {column: None for column in RESULT_COLUMNS}
    record.update(
        backend=cell.backend, model=cell.model, strategy=cell.strategy, dataset=cell.dataset, seed=cell.seed,
        batch_size=options.batch_size, image_size=options.image_size, epochs=options.epochs,
        options_hash=options.fingerprint(),
    )  # fmt: skip
    return record


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if platform.system() == "Darwin" else 2**10)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Contiguous slices covering ``range(n)`` in batches."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def predict_in_batches(predict, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Concatenate ``predict`` over batches of ``images`` (or features)."""
    return np.concatenate([predict(np.asarray(images[s])) for s in batch_slices(len(images), batch_size)], axis=0)


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of ``probs`` at the true labels."""
    picked = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
    return float(-np.log(picked).mean())


def subset_train(dataset: ArrayDataset, limit: int | None, seed: int) -> Split:
    """The train split, or a stratified subset of ``limit`` images (fixed by ``seed``)."""
    train = dataset.splits["train"]
    if limit is None or limit >= len(train):
        return train
    _, keep = stratified_indices(np.asarray(train.labels), limit / len(train), seed)
    return Split(images=np.asarray(train.images[keep]), labels=np.asarray(train.labels[keep]))


def in_memory(images: np.ndarray, max_fraction_of_ram: float = 0.25) -> np.ndarray:
    """Load a memory-mapped array into RAM when it is small enough, so batches are plain copies."""
    try:
        import psutil

        budget = psutil.virtual_memory().available * max_fraction_of_ram
    except Exception:  # pragma: no cover - psutil is a core dependency
        budget = 0
    return np.asarray(images) if images.nbytes <= budget else images


class CellRun:
    """State of one cell's run; ``run()`` returns the result record."""

    def __init__(self, cell: CellConfig, options: RunOptions, cell_dir: Path, progress: bool = False) -> None:
        self.cell = cell
        self.options = options
        self.cell_dir = cell_dir
        self.progress = progress
        self.record = empty_record(cell, options)
        self.curve: list[dict[str, float]] = []

    def log(self, message: str) -> None:
        """One line to the cell log (stderr of the subprocess)."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def run(self) -> dict[str, Any]:
        wall_start = time.perf_counter()
        try:
            self._run()
            self.record["status"] = "ok"
        except Exception as exc:  # every failure becomes a record; the suite goes on
            traceback.print_exc(file=sys.stderr)
            self.record["status"] = "failed"
            self.record["error"] = one_line_error(exc)
        self.record["wall_s"] = time.perf_counter() - wall_start
        self.record["peak_rss_mb"] = peak_rss_mb()
        return self.record

    # ---- the procedure ---------------------------------------------------------------------------------
    def _run(self) -> None:
        cell, opts = self.cell, self.options
        strategy = get_strategy(cell.strategy)
        np.random.seed(cell.seed)
        backend = get_backend_class(cell.backend)(opts.device)
        self.backend = backend
        self.record["framework_versions"] = backend.framework_versions()

        data_config = backend.default_data_config(cell.model, opts.image_size)
        policy = ResizePolicy(data_config.image_size, data_config.crop_pct, data_config.interpolation)
        self.log(f"dataset {cell.dataset} at {policy.key()}")
        dataset = load_dataset(cell.dataset, policy, opts.cache_dir, progress=self.progress)
        self.record["dataset_meta"] = {k: v for k, v in dataset.meta.items() if k != "skipped_examples"}
        self.record["skipped_images"] = int(dataset.meta.get("skipped_images", 0))
        self.record["num_classes"] = dataset.num_classes
        self.record["class_names"] = dataset.class_names
        train = subset_train(dataset, opts.max_train_images, cell.seed)
        train = Split(images=in_memory(train.images), labels=np.asarray(train.labels))
        val, test = dataset.splits["val"], dataset.splits["test"]
        self.record["split_sizes"] = {"train": len(train), "val": len(val), "test": len(test)}

        spec = ModelSpec(
            name=cell.model,
            num_classes=dataset.num_classes,
            image_size=opts.image_size,
            weights=opts.weights_for(cell.backend),
            pretrained=strategy.pretrained,
            allow_random_init=opts.allow_random_init,
            in_chans=opts.in_chans,
            options={
                "seed": cell.seed, "channels_last": opts.channels_last, "amp": opts.amp,
                "compile": opts.compile, "jit_compile": opts.jit_compile,
            },
        )  # fmt: skip
        info = backend.build(spec)
        self.record.update(pretrained=info.pretrained, dtype=info.dtype, **info.extra)
        gpu = backend.device_name()
        self.record["device"] = f"{info.device} ({gpu})" if gpu else info.device
        if strategy.pretrained and info.pretrained == "none":
            self.log("WARNING: pretrained weights unavailable; random init (allowed by --allow-random-init)")
        lr = opts.lr if opts.lr is not None else strategy.head_lr
        strategy_run = Strategy(**{**strategy.to_dict(), "head_lr": lr})
        self.optim = OptimConfig(head_lr=lr, optimizer=opts.optimizer, augment=opts.augment, seed=cell.seed)
        counts = backend.apply_strategy(strategy_run, self.optim)
        self.record.update(trainable_params=counts.trainable, total_params=counts.total)
        epochs = max(opts.epochs, strategy.min_epochs)
        self.warmup_epochs = min(strategy.head_warmup_epochs, epochs - 1) if strategy.train_backbone != "none" else 0
        self.strategy_run = strategy_run
        if self.warmup_epochs:
            backend.apply_strategy(head_only(strategy_run), self.optim)
            self.log(f"two-phase: head alone for {self.warmup_epochs} epoch(s), then {strategy.name}")
        self.record["epochs"] = epochs
        self.log(f"{cell.backend}/{cell.model} {strategy.name}: {counts.trainable:,}/{counts.total:,} params trainable, {epochs} epochs")

        backend.reset_peak_memory()
        if strategy.cache_features:
            test_probs = self._train_on_features(backend, train, val, test, epochs)
        else:
            test_probs = self._train_end_to_end(backend, train, val, epochs)
            test_probs = predict_in_batches(backend.predict_proba, test.images, opts.batch_size)
        test_labels = np.asarray(test.labels)
        self.record.update(classification_metrics(test_labels, test_probs))
        self._measure_inference(backend, test)
        self.record["peak_device_mb"] = backend.peak_device_memory_mb()
        self._save_artifacts(test, test_labels, test_probs, dataset.class_names)

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng(self.cell.seed)

    def _epoch_batches(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        order = rng.permutation(n)
        batches = [order[s] for s in batch_slices(n, self.options.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:  # a 1-image batch breaks BatchNorm in train mode
            batches.pop()
        return batches

    def _select(self, epoch: int, train_loss: float, val_labels: np.ndarray, val_probs: np.ndarray, elapsed: float, backend) -> None:
        val_acc = float((val_probs.argmax(1) == val_labels).mean())
        entry = {
            "epoch": epoch + 1, "train_loss": train_loss, "val_accuracy": val_acc,
            "val_loss": log_loss(val_labels, val_probs), "elapsed_s": elapsed,
        }  # fmt: skip
        self.curve.append(entry)
        self.log(f"epoch {epoch + 1}: train_loss={train_loss:.4f} val_accuracy={val_acc:.4f} ({elapsed:.1f} s)")
        if self._best is None or val_acc > self._best["val_accuracy"]:
            self._best = entry
            self._best_state = backend.snapshot()
            self.record["time_to_best_s"] = elapsed
            self.record["best_epoch"] = epoch + 1
            self.record["val_accuracy"] = val_acc

    def _train_end_to_end(self, backend, train: Split, val: Split, epochs: int) -> None:
        opts = self.options
        rng = self._rng()
        self._best, self._best_state = None, None
        timed_images, timed_s, elapsed = 0, 0.0, 0.0
        val_labels = np.asarray(val.labels)
        for epoch in range(epochs):
            if epoch == self.warmup_epochs and epoch > 0:
                backend.apply_strategy(self.strategy_run, self.optim)  # phase 2: unfreeze, fresh optimizer
            batches = self._epoch_batches(rng, len(train))
            epoch_timer, steady_timer = SyncTimer(backend.synchronize), SyncTimer(backend.synchronize)
            warm = opts.warmup_steps if epoch == 0 else 0
            with epoch_timer:
                for i, idx in enumerate(batches):
                    if i == warm:
                        steady_timer.__enter__()
                    backend.train_step(train.images[idx], train.labels[idx])
                if warm < len(batches):
                    steady_timer.__exit__()
                    timed_images += sum(len(b) for b in batches[warm:])
            timed_s += steady_timer.seconds
            train_loss = backend.pop_train_loss()
            eval_timer = SyncTimer(backend.synchronize)
            with eval_timer:
                val_probs = predict_in_batches(backend.predict_proba, val.images, opts.batch_size)
            elapsed += epoch_timer.seconds + eval_timer.seconds
            self._select(epoch, train_loss, val_labels, val_probs, elapsed, backend)
        self.record["train_images_per_s"] = timed_images / timed_s if timed_s > 0 else math.nan
        self.record["train_s"] = timed_s
        backend.restore(self._best_state)

    def _train_on_features(self, backend, train: Split, val: Split, test: Split, epochs: int) -> np.ndarray:
        opts = self.options
        rng = self._rng()
        self._best, self._best_state = None, None
        bs = opts.batch_size
        extract_timer = SyncTimer(backend.synchronize)
        with extract_timer:
            train_feats = predict_in_batches(backend.extract_features, train.images, bs)
        val_timer = SyncTimer(backend.synchronize)
        with val_timer:
            val_feats = predict_in_batches(backend.extract_features, val.images, bs)
        self.record["feature_extract_s"] = extract_timer.seconds
        self.record["feature_dim"] = int(np.prod(train_feats.shape[1:]))
        self.log(f"features {train_feats.shape} extracted in {extract_timer.seconds:.2f} s (train split)")
        train_labels, val_labels = np.asarray(train.labels), np.asarray(val.labels)
        head_s, elapsed = 0.0, extract_timer.seconds + val_timer.seconds
        for epoch in range(epochs):
            timer = SyncTimer(backend.synchronize)
            with timer:
                for idx in self._epoch_batches(rng, len(train_feats)):
                    backend.train_head_step(train_feats[idx], train_labels[idx])
            head_s += timer.seconds
            train_loss = backend.pop_train_loss()
            eval_timer = SyncTimer(backend.synchronize)
            with eval_timer:
                val_probs = predict_in_batches(backend.predict_head_proba, val_feats, bs)
            elapsed += timer.seconds + eval_timer.seconds
            self._select(epoch, train_loss, val_labels, val_probs, elapsed, backend)
        train_s = extract_timer.seconds + head_s
        self.record["train_images_per_s"] = len(train_feats) * epochs / train_s if train_s > 0 else math.nan
        self.record["train_s"] = train_s
        backend.restore(self._best_state)
        test_feats = predict_in_batches(backend.extract_features, test.images, bs)
        return predict_in_batches(backend.predict_head_proba, test_feats, bs)

    def _measure_inference(self, backend, test: Split) -> None:
        bs = min(self.options.batch_size, len(test))
        batches = [np.asarray(test.images[s]) for s in batch_slices(len(test), bs) if s.stop - s.start == bs][:8]
        stats = measure_latency(
            backend.predict_proba, batches, backend.synchronize,
            warmup=self.options.infer_warmup, repeats=self.options.infer_repeats,
        )  # fmt: skip
        self.record.update(
            infer_images_per_s=stats.images_per_s,
            infer_latency_ms_p50=stats.latency_ms_p50,
            infer_latency_ms_p90=stats.latency_ms_p90,
            infer_batch_size=stats.batch_size,
        )

    def _save_artifacts(self, test: Split, labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> None:
        self.cell_dir.mkdir(parents=True, exist_ok=True)
        count = min(SAMPLE_IMAGES, len(test))
        sample_idx = np.linspace(0, len(test) - 1, count).astype(int) if count else np.zeros(0, int)
        tmp = self.cell_dir / ".predictions.tmp.npz"
        np.savez_compressed(
            tmp, probs=probs.astype(np.float32), labels=labels, class_names=np.array(class_names),
            sample_indices=sample_idx, sample_images=np.asarray(test.images[sample_idx]) if count else np.zeros((0, 1, 1, 3), np.uint8),
        )  # fmt: skip
        os.replace(tmp, self.cell_dir / "predictions.npz")
        write_json_atomic(self.cell_dir / "curve.json", self.curve)
        write_json_atomic(self.cell_dir / "confusion_matrix.json", confusion_record(labels, probs, class_names))
        if save_weights_requested():
            save_weights(self.backend, self.cell_dir / WEIGHTS_FILE)


def confusion_record(labels: np.ndarray, probs: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """The test confusion matrix of the tested (best-epoch) weights: ``matrix[true][predicted]`` counts."""
    num_classes = probs.shape[1]
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, dtype=np.int64), probs.argmax(axis=1)), 1)
    return {"class_names": list(class_names), "matrix": matrix.tolist()}


def save_weights_requested() -> bool:
    """Whether ``TLBENCH_SAVE_WEIGHTS`` asks every cell to keep its trained weights (for ``tlbench explain``)."""
    return os.environ.get(SAVE_WEIGHTS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def save_weights(backend, path: Path) -> None:
    """Pickle the backend's ``snapshot()`` (the tested best-epoch state) to ``path``, atomically.

    The state is whatever the backend's ``snapshot`` returns (a torch state dict, a list of Keras arrays...),
    so saving needs no framework import here; ``tlbench explain`` gives it back to the same backend's
    ``restore`` after building the same architecture.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        pickle.dump(backend.snapshot(), handle, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line (user errors keep their own message without the type)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (BackendError, DatasetError, KeyError)):
        return message.strip("'\"")
    return f"{type(exc).__name__}: {message}"[:500]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the per-cell subprocess."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.benchmarks.cell")
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
