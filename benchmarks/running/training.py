"""The one training loop: run a ``TrainingPlan``'s phases on images or cached features, keep the best epoch.

Every strategy goes through ``train_plan``: a probe is a phase on features, two-phase fine-tuning is a
head-only phase then the main phase, LP-FT is a probe phase then the main phase. Per epoch the loop sets the
plan's learning-rate schedule (``set_lr_scale``; never called with the default constant rate), shuffles (seeded),
steps, validates, and snapshots the weights when the plan's selection metric improves on a candidate epoch
(``selection.Selector``); the last phase stops early when its patience runs out. At the end the best epoch's weights
are restored (the ones tested; never selected on test). With ``Selection.candidates == "main"`` only the last
phase's epochs are candidates (LP-FT's fine-tuning; its probe phase is the warm start), and a probe phase followed by
other phases keeps its own best apart (``probe_best``).

Timing (see docs/columns.md): the clock is read only after ``backend.synchronize()``. In each image
phase the first ``warmup_steps`` steps are excluded from throughput (allocator warm-up, kernel selection,
tf.function tracing and XLA/torch.compile happen there after every ``apply_phase``) and reported apart as
``first_steps_s``; validation is excluded from throughput but included in ``time_to_best_s``. Feature
extraction is timed on its own, so a probe reports extraction images/s and head seconds, never one inflated
images/s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...backends.base import Backend, ParamCounts
from ...core.plan import TrainingPlan
from .progress import training_reporter
from .selection import Selector, log_loss, val_score
from .timing import SyncTimer

__all__ = ["Inputs", "TrainOutcome", "batch_slices", "epoch_batches", "log_loss", "predict_in_batches", "train_plan"]


@dataclass
class Inputs:
    """One split as the loop sees it: uint8 images (array or memory map) and int labels."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class PhaseTiming:
    """What one phase measured."""

    name: str
    inputs: str
    epochs: int
    trainable_params: int
    steady_images: int = 0
    steady_s: float = 0.0
    first_steps_s: float = 0.0

    @property
    def images_per_s(self) -> float | None:
        """Steady-state training throughput of the phase (``None`` when nothing was timed)."""
        return self.steady_images / self.steady_s if self.steady_s > 0 else None


@dataclass
class TrainOutcome:
    """Everything the loop measured; the backend holds the restored best weights."""

    curve: list[dict[str, Any]] = field(default_factory=list)
    phases: list[PhaseTiming] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_accuracy: float | None = None
    time_to_best_s: float | None = None
    train_s: float = 0.0
    feature_extract_s: float | None = None
    feature_extract_images: int = 0
    feature_dim: int | None = None
    feature_cache_hit: bool | None = None
    #: seconds spent reading cached features (a cache hit), apart from ``feature_extract_s``
    feature_cache_read_s: float | None = None
    counts: ParamCounts | None = None
    #: the selection metric's value at the best epoch (``best_val_accuracy`` is that epoch's val accuracy)
    best_score: float | None = None
    #: epochs that ran (fewer than the plan's when early stopping ended the last phase)
    epochs_run: int = 0
    early_stopped: bool = False
    #: a probe phase followed by other phases (LP-FT): its own best epoch (``Selector.summary``)
    probe_best: dict[str, Any] | None = None

    @property
    def head_train_s(self) -> float | None:
        """Seconds of head steps on cached features (probe phases), ``None`` without such a phase."""
        seconds = [p.steady_s + p.first_steps_s for p in self.phases if p.inputs == "features"]
        return sum(seconds) if seconds else None

    @property
    def feature_extract_images_per_s(self) -> float | None:
        """Images/s of the one-off feature extraction (train + val splits)."""
        if not self.feature_extract_s:
            return None
        return self.feature_extract_images / self.feature_extract_s

    def main_images_per_s(self) -> float | None:
        """Training images/s of the last image phase (the strategy's own trainability), ``None`` for probes."""
        image_phases = [p for p in self.phases if p.inputs == "images" and p.images_per_s is not None]
        return image_phases[-1].images_per_s if image_phases else None


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Contiguous slices covering ``range(n)`` in batches."""
    return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def predict_in_batches(predict: Callable[[np.ndarray], np.ndarray], data: np.ndarray, batch_size: int) -> np.ndarray:
    """Concatenate ``predict`` over batches of ``data`` (images or features)."""
    return np.concatenate([predict(np.asarray(data[s])) for s in batch_slices(len(data), batch_size)], axis=0)


def epoch_batches(rng: np.random.Generator, n: int, batch_size: int) -> list[np.ndarray]:
    """A shuffled epoch's index batches; a trailing 1-sample batch is dropped (it breaks train-mode BatchNorm)."""
    order = rng.permutation(n)
    batches = [order[s] for s in batch_slices(n, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def train_plan(
    backend: Backend,
    plan: TrainingPlan,
    train: Inputs,
    val: Inputs,
    batch_size: int,
    warmup_steps: int = 2,
    log: Callable[[str], None] = lambda message: None,
    feature_source: Callable[[], Any] | None = None,
    soft_targets: np.ndarray | None = None,
) -> TrainOutcome:
    """Run every phase of ``plan`` on ``backend`` and restore the weights of the best validation epoch.

    Args:
        backend: a built backend.
        plan: the training plan (``make_plan`` over ``backend.stages()``).
        train: the training split.
        val: the validation split (epoch selection).
        batch_size: images (or feature vectors) per step.
        warmup_steps: untimed steps at the start of each image phase.
        log: one-line progress messages.
        feature_source: for phases on features: returns a ``features.CachedFeatures`` with ``train`` and ``val``
            (the on-disk feature cache); default: extract them here with ``backend.extract_features``.
        soft_targets: a teacher's class probabilities, one row per train image, for phases with a distillation.

    Returns:
        The curve, per-phase timings and the best epoch; the backend holds its weights.
    """
    report = training_reporter([(phase.inputs, phase.epochs) for phase in plan.phases])  # live progress, if wanted
    rng = np.random.default_rng(plan.seed)
    outcome = TrainOutcome()
    val_labels = np.asarray(val.labels)
    train_labels = np.asarray(train.labels)
    features: dict[str, np.ndarray] = {}
    best_state: Any = None
    elapsed = 0.0
    epoch_number = 0
    selection, schedule = plan.selection, plan.schedule
    selector = Selector(selection)
    probe_selector = Selector(selection) if len(plan.phases) > 1 and plan.phases[0].name == "probe" else None
    for phase_index, phase in enumerate(plan.phases):
        last_phase = phase_index == len(plan.phases) - 1
        candidates = selection.candidates == "all" or last_phase
        if last_phase:
            selector.stale = 0  # the patience counts the last phase's epochs only
        counts = backend.apply_phase(phase)
        outcome.counts = counts
        log(f"{phase.describe()}: {counts.trainable:,}/{counts.total:,} params trainable")
        timing = PhaseTiming(phase.name, phase.inputs, phase.epochs, counts.trainable)
        outcome.phases.append(timing)
        if phase.inputs == "features" and not features:
            if feature_source is not None:
                cached = feature_source()
                features.update(train=cached.splits["train"], val=cached.splits["val"])
                seconds, outcome.feature_cache_hit = cached.seconds, cached.hit
                outcome.feature_cache_read_s = cached.read_s
            else:
                extract = SyncTimer(backend.synchronize)
                with extract:
                    features["train"] = predict_in_batches(backend.extract_features, train.images, batch_size)
                    features["val"] = predict_in_batches(backend.extract_features, val.images, batch_size)
                seconds = extract.seconds
            outcome.feature_extract_s = seconds
            outcome.feature_extract_images = len(train) + len(val)
            outcome.feature_dim = int(np.prod(features["train"].shape[1:]))
            elapsed += seconds
            outcome.train_s += seconds
            source_note = " (read from the feature cache)" if outcome.feature_cache_hit else ""
            log(f"features {features['train'].shape} of train + val in {seconds:.2f} s{source_note}")
        report.phase(phase.name)
        source = features["train"] if phase.inputs == "features" else train.images
        val_source = features["val"] if phase.inputs == "features" else val.images
        for epoch in range(phase.epochs):
            lr_scale = schedule.factor(epoch, phase.epochs) if schedule.name != "none" else None
            if lr_scale is not None:
                backend.set_lr_scale(lr_scale)
            batches = epoch_batches(rng, len(train), batch_size)
            report.epoch_started(epoch + 1, len(batches))
            warm = min(warmup_steps, len(batches)) if (phase.inputs == "images" and epoch == 0) else 0
            first, steady = SyncTimer(backend.synchronize), SyncTimer(backend.synchronize)
            soft = soft_targets if phase.distillation is not None else None
            if phase.distillation is not None and soft is None:
                raise ValueError(f"phase {phase.name!r} distills but no teacher probabilities were given")
            with first:
                for idx in batches[:warm]:
                    backend.train_step(
                        source[idx], train_labels[idx], phase.inputs, None if soft is None else soft[idx]
                    )
                    report.step(len(idx))
            with steady:
                for idx in batches[warm:]:
                    backend.train_step(
                        source[idx], train_labels[idx], phase.inputs, None if soft is None else soft[idx]
                    )
                    report.step(len(idx))
            timing.first_steps_s += first.seconds
            timing.steady_s += steady.seconds
            timing.steady_images += sum(len(b) for b in batches[warm:])
            outcome.train_s += first.seconds + steady.seconds
            train_loss = backend.pop_train_loss()
            evaluate = SyncTimer(backend.synchronize)
            with evaluate:
                val_probs = predict_in_batches(
                    lambda b, inputs=phase.inputs: backend.predict_proba(b, inputs), val_source, batch_size
                )
            elapsed += first.seconds + steady.seconds + evaluate.seconds
            epoch_number += 1
            val_accuracy = float((val_probs.argmax(1) == val_labels).mean())
            val_loss = log_loss(val_labels, val_probs)
            score = {"accuracy": val_accuracy, "loss": val_loss}.get(selection.by)
            if score is None:
                score = val_score(selection.by, val_labels, val_probs)
            entry = {
                "epoch": epoch_number,
                "phase": phase.name,
                "train_loss": train_loss,
                "val_accuracy": val_accuracy,
                "val_loss": val_loss,
                "elapsed_s": elapsed,
            }
            if selection.by not in entry and f"val_{selection.by}" not in entry:
                entry[f"val_{selection.by}"] = score
            if lr_scale is not None:
                entry["lr_scale"] = lr_scale
            outcome.curve.append(entry)
            report.epoch_ended(timing.images_per_s)
            outcome.epochs_run = epoch_number
            log(
                f"epoch {epoch_number} ({phase.name}): train_loss={train_loss:.4f} val_accuracy={val_accuracy:.4f} "
                + (f"val_{selection.by}={score:.4f} " if selection.by != "accuracy" else "")
                + f"({elapsed:.1f} s)"
            )
            if probe_selector is not None and phase.name == "probe":
                probe_selector.consider(epoch_number, score, val_accuracy)
            if candidates and selector.consider(epoch_number, score, val_accuracy):
                outcome.best_val_accuracy, outcome.best_epoch, outcome.time_to_best_s = (
                    val_accuracy,
                    epoch_number,
                    elapsed,
                )
                outcome.best_score = score
                best_state = backend.snapshot()
            if last_phase and candidates and selector.exhausted() and epoch < phase.epochs - 1:
                outcome.early_stopped = True
                log(f"early stop after epoch {epoch_number}: {selector.stale} epoch(s) without a better {selection.by}")
                break
    if probe_selector is not None:
        outcome.probe_best = probe_selector.summary()
    report.finished()
    if best_state is not None:
        backend.restore(best_state)
    if outcome.best_val_accuracy is not None and math.isnan(outcome.best_val_accuracy):
        outcome.best_val_accuracy = None
    return outcome
