"""``--increments K``: the data-incremental scenario of a ``network`` cell (issue 23, Ash & Adams 2020).

The cell's train split (after val/test are carved and duplicates and shared patients handled) is cut into ``K``
stratified chunks, whole patient groups per chunk with ``--group-by`` (``datasets.splitting.increment_chunks``,
seeded by the dataset and the cell's seed, so every mode, strategy and backend of a seed gets the same chunks). Step
``k`` trains on chunks ``1..k`` through the cell's one plan and the one training loop (``training.train_plan``);
this module only chooses each step's training rows and starting weights:

- step 1 starts from the built model (pretrained backbone, fresh head) and is shared by every mode;
- ``continue``: step ``k`` starts from step ``k-1``'s trained weights (head and backbone);
- ``retrain``: step ``k`` starts from the built model again;
- ``shrink_perturb``: step ``k`` starts from step ``k-1``'s weights shrunk by lambda and perturbed by N(0, sigma^2)
  (``Backend.shrink_perturb``, on the parameters the plan trains: the head alone for a probe);
- ``shrink_pretrained``: the same, shrunk toward the built model's weights instead of zero,
  ``w0 + lambda * (w - w0)``: lambda 0 is ``retrain`` (plus noise), 1 is ``continue``. Ash & Adams shrink toward
  zero, the mean of a random initialization; a pretrained backbone's own initialization is its pretrained weights,
  which shrinking toward zero destroys (every BatchNorm scale and shift shrinks with them).

Each step gets a fresh optimizer (the plan's phases), its epochs selected on the whole validation split, and is
tested on the whole test split. Features of probe phases are extracted at every step from the step's rows with the
current backbone (never the cell's feature cache: a backbone fine-tuned in an earlier step makes cached features
stale), and counted in the step's training seconds. The record's own columns describe the final model of the first
mode listed (``--increment-modes``; ``continue`` by default), which is also the model timed and saved; the
``increments`` column holds every step of every mode.

After each step its weights and figures are saved in the cell directory (``increment_progress.StepStore``): a cell
interrupted at step ``k`` of a mode starts again at step ``k + 1`` when re-run with the same options and code
(``increments.resumed_after`` says so).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ...backends.base import Backend
from ...core.plan import TrainingPlan
from ...core.strategies import Strategy
from ...datasets.splitting import increment_chunks
from .cell_context import CellContext
from .cell_network import PreparedNetwork, finish_network_cell, prepare_network, record_training, test_and_time
from .config import SHRINK_MODES
from .increment_progress import StepStore, outcome_from_json, progress_key
from .metrics import classification_metrics
from .training import Inputs, TrainOutcome, predict_in_batches, train_plan

#: the test metrics each step records
STEP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "pr_auc")


def chunk_seed(dataset: str, seed: int) -> int:
    """The seed of a cell's chunks: its dataset spec and its seed, nothing of backend, model, strategy or mode."""
    return int(hashlib.sha256(f"increments|{dataset}|{seed}".encode()).hexdigest()[:8], 16)


def trained_stages(plan: TrainingPlan) -> list[str]:
    """The backbone stages some phase of ``plan`` trains (what shrink-and-perturb touches beside the head)."""
    names: list[str] = []
    for phase in plan.phases:
        names.extend(stage.name for stage in phase.stages if stage.trainable and stage.name not in names)
    return names


def cumulative_rows(chunks: list[np.ndarray], step: int) -> np.ndarray:
    """The sorted train rows of step ``step`` (1-based): chunks ``1..step``."""
    return np.sort(np.concatenate(chunks[:step]))


def start_step(
    backend: Backend, mode: str, pretrained: Any, shrink: float, sigma: float, seed: int, stages: list[str]
) -> str:
    """Put ``backend`` at the starting weights of a step after the first in ``mode``; returns what it started from.

    ``continue`` keeps the weights the previous step left; ``retrain`` restores ``pretrained`` (the built model's
    snapshot); ``shrink_perturb`` shrinks the previous step's weights toward zero and perturbs them with ``seed``,
    ``shrink_pretrained`` toward ``pretrained``.
    """
    if mode == "retrain":
        backend.restore(pretrained)
        return "pretrained"
    if mode == "shrink_perturb":
        backend.shrink_perturb(shrink, sigma, seed, stages)
        return f"previous x {shrink:g} + N(0, {sigma:g}^2)"
    if mode == "shrink_pretrained":
        backend.shrink_perturb(shrink, sigma, seed, stages, toward=pretrained)
        return f"pretrained + {shrink:g} x (previous - pretrained) + N(0, {sigma:g}^2)"
    if mode == "continue":
        return "previous"
    raise ValueError(f"unknown increment mode {mode!r}")


def step_row(step: int, mode: str, rows: int, outcome: TrainOutcome, metrics: dict[str, float], cumulative: float):
    """One row of the ``increments`` column."""
    return {
        "increment_step": step,
        "increment_mode": mode,
        "train_images": rows,
        **{name: metrics.get(name) for name in STEP_METRICS},
        "val_accuracy": outcome.best_val_accuracy,
        "best_epoch": outcome.best_epoch,
        "train_s": outcome.train_s,
        "cumulative_train_s": cumulative,
    }


def step_line(row: dict[str, Any], steps: int) -> str:
    """``increment 2/4 continue: 120 images, accuracy 0.812, train 3.1 s, cumulative 6.0 s`` for the log."""
    return (
        f"increment {row['increment_step']}/{steps} {row['increment_mode']}: {row['train_images']} images, "
        f"accuracy {row['accuracy']:.3f}, train {row['train_s']:.1f} s, cumulative {row['cumulative_train_s']:.1f} s"
    )


def run_incremental_cell(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> None:
    """The ``network`` cell of ``run`` as ``--increments`` steps per mode; fills ``run.record`` and its
    ``increments`` column."""
    cell, opts, record = run.cell, run.options, run.record
    steps, modes = int(opts.increments or 0), tuple(opts.increment_modes)
    shrink, sigma = (float(v) for v in opts.shrink_perturb)
    prepared = prepare_network(run, strategy, backend_class)
    backend, train = prepared.backend, prepared.train
    groups = prepared.dataset.splits["train"].groups
    if groups is not None and prepared.keep is not None:
        groups = [groups[i] for i in prepared.keep]
    try:
        chunks = increment_chunks(np.asarray(train.labels), groups, steps, chunk_seed(cell.dataset, cell.seed))
    except ValueError as exc:
        raise ValueError(f"--increments {steps}: {exc}") from None
    stages = trained_stages(prepared.plan)
    shrinks = bool(set(SHRINK_MODES) & set(modes))
    record["increments"] = {
        "steps": steps,
        "modes": list(modes),
        "chunk_images": [int(len(c)) for c in chunks],
        "shrink": shrink if shrinks else None,
        "sigma": sigma if shrinks else None,
        "shrink_perturb_stages": stages if shrinks else None,
        "resumed_after": None,
        "rows": [],
    }
    rows_of: list[dict[str, Any]] = record["increments"]["rows"]
    test = prepared.dataset.splits["test"]
    train_step = step_trainer(run, prepared, test)

    store = StepStore(run.cell_dir, step_key(run), backend.weights_suffix)
    saved = store.load()
    with run.timed_window():
        pretrained = backend.snapshot()
        if "first" in saved:
            backend.load_weights(store.weights("first"))
            first_outcome, first_metrics = outcome_from_json(saved["first"]["outcome"]), saved["first"]["metrics"]
            record["increments"]["resumed_after"] = {"mode": None, "step": 1}
            run.log(f"increments: resuming from the steps saved in {store.directory}")
        else:
            first_outcome, first_metrics = train_step(cumulative_rows(chunks, 1))
            store.save(backend, "first", 1, [], first_outcome, first_metrics)
        after_first = backend.snapshot()
        rows_of.extend(store.rows)
        trained_here = "first" not in saved
        kept: tuple[Any, TrainOutcome] | None = None
        for mode_index, mode in enumerate(modes):
            done = saved.get(mode)
            if done is not None:  # resumed: this mode's latest saved step
                backend.load_weights(store.weights(mode))
                outcome, done_step = outcome_from_json(done["outcome"]), int(done["step"])
                cumulative = float(done["row"]["cumulative_train_s"])
                record["increments"]["resumed_after"] = {"mode": mode, "step": done_step}
            else:
                backend.restore(after_first)
                outcome, done_step, cumulative = first_outcome, 1, first_outcome.train_s
                row = {**step_row(1, mode, len(chunks[0]), first_outcome, first_metrics, cumulative), "start": "built"}
                rows_of.append(row)
                run.log(step_line(row, steps))
            for step in range(done_step + 1, steps + 1):
                seed = chunk_seed(cell.dataset, cell.seed) + step
                start = start_step(backend, mode, pretrained, shrink, sigma, seed, stages)
                rows = cumulative_rows(chunks, step)
                outcome, metrics = train_step(rows)
                trained_here = True
                cumulative += outcome.train_s
                row = {**step_row(step, mode, len(rows), outcome, metrics, cumulative), "start": start}
                rows_of.append(row)
                run.log(step_line(row, steps))
                store.save(backend, mode, step, rows_of, outcome)
            if mode_index == 0:
                kept = (backend.snapshot() if len(modes) > 1 else None, outcome)
        assert kept is not None
        if kept[0] is not None:
            backend.restore(kept[0])  # the record's model: the first mode's last step
        if not trained_here:  # every step was saved: apply the trainability the loop leaves (training FLOPs)
            backend.apply_phase(prepared.plan.phases[-1])
        record_training(run, prepared, kept[1])
        tested = test_and_time(run, prepared, kept[1])
    finish_network_cell(run, prepared, kept[1], tested)
    store.clear()


def step_key(run: CellContext) -> str:
    """The key saved steps must match (``increment_progress.progress_key``): this cell, its options, this code."""
    from .environment import code_version

    return progress_key(run.cell_dir.name, run.options.fingerprint(run.cell.backend), code_version())


def step_trainer(
    run: CellContext, prepared: PreparedNetwork, test: Any
) -> Callable[[np.ndarray], tuple[TrainOutcome, dict[str, float]]]:
    """A function training the current weights on the given train rows through the plan, then testing them."""
    opts, backend, train, val = run.options, prepared.backend, prepared.train, prepared.val
    teacher = prepared.teacher
    test_labels = np.asarray(test.labels)

    def train_rows_and_test(rows: np.ndarray) -> tuple[TrainOutcome, dict[str, float]]:
        outcome = train_plan(
            backend,
            prepared.plan,
            Inputs(np.asarray(train.images[rows]), np.asarray(train.labels)[rows]),
            Inputs(val.images, np.asarray(val.labels)),
            opts.batch_size,
            opts.warmup_steps,
            run.log,
            feature_source=None,  # features of the current backbone on these rows, extracted and timed here
            soft_targets=teacher.probs[rows] if teacher is not None else None,
        )
        probs = predict_in_batches(backend.predict_proba, test.images, opts.batch_size)
        return outcome, classification_metrics(test_labels, probs)

    return train_rows_and_test
