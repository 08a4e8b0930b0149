"""The one training loop selects epochs by the plan: metric, candidate phases, early stopping, LP-FT's probe best,
and the learning-rate schedule applied per epoch through the backend (scripted validation predictions)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from fake_backend import FakeBackend

from tlbench.backends.base import ModelSpec
from tlbench.benchmarks.running.selection import Selector, is_better, val_score
from tlbench.benchmarks.running.training import Inputs, train_plan
from tlbench.core.plan import Schedule, Selection, make_plan
from tlbench.core.strategies import STRATEGIES

VAL_LABELS = np.array([0, 1, 0, 1])


def probs(p1: list[float]) -> np.ndarray:
    """Validation probabilities with ``p1`` the probability of class 1 of each of the four images."""
    p = np.asarray(p1, dtype=np.float32)
    return np.stack([1 - p, p], axis=1)


#: accuracy 0.5, 0.75, 0.75 (tie: less confident), 0.5, 1.0
ACC_50 = probs([0.4, 0.6, 0.6, 0.4])
ACC_75 = probs([0.1, 0.9, 0.6, 0.9])
ACC_75_SURE = probs([0.01, 0.99, 0.6, 0.99])  # same accuracy, lower loss, same ranking
ACC_100 = probs([0.4, 0.6, 0.4, 0.6])


class ScriptedBackend(FakeBackend):
    """The fake backend whose validation predictions at epoch ``e`` are ``script[e - 1]``."""

    def __init__(self, script: list[np.ndarray]) -> None:
        super().__init__("cpu")
        self.script = script
        self.epoch = 0

    def pop_train_loss(self) -> float:
        self.epoch += 1
        return super().pop_train_loss()

    def predict_proba(self, batch: np.ndarray, inputs: str = "images") -> np.ndarray:
        return self.script[min(self.epoch, len(self.script)) - 1][: len(batch)]


def train(strategy: str, script: list[np.ndarray], epochs: int, **plan_options) -> tuple[ScriptedBackend, object]:
    backend = ScriptedBackend(script)
    backend.build(ModelSpec("softmax", 2, 8, seed=0))
    row = replace(STRATEGIES[strategy], probe_epochs=3) if strategy == "lp_ft" else STRATEGIES[strategy]
    plan = make_plan(row, backend.stages(), epochs=epochs, **plan_options)
    rng = np.random.default_rng(0)
    train_set = Inputs(rng.integers(0, 256, (8, 8, 8, 3), dtype=np.uint8), np.arange(8) % 2)
    val_set = Inputs(np.zeros((4, 8, 8, 3), dtype=np.uint8), VAL_LABELS)
    return backend, train_plan(backend, plan, train_set, val_set, batch_size=16, warmup_steps=0)


def test_default_selection_is_val_accuracy_strict_and_never_touches_the_learning_rate():
    backend, outcome = train("scratch", [ACC_50, ACC_75, ACC_75_SURE, ACC_50], epochs=4)
    assert (outcome.best_epoch, outcome.best_val_accuracy, outcome.best_score) == (2, 0.75, 0.75)  # a tie keeps 2
    assert outcome.epochs_run == 4 and not outcome.early_stopped and outcome.probe_best is None
    assert backend.lr_scales == [] and all("lr_scale" not in e for e in outcome.curve)
    assert set(outcome.curve[0]) == {"epoch", "phase", "train_loss", "val_accuracy", "val_loss", "elapsed_s"}


def test_loss_and_roc_auc_select_other_epochs_than_accuracy():
    _, by_loss = train("scratch", [ACC_50, ACC_75, ACC_75_SURE, ACC_50], epochs=4, selection=Selection("loss"))
    assert by_loss.best_epoch == 3 and by_loss.best_score == pytest.approx(val_score("loss", VAL_LABELS, ACC_75_SURE))
    # ranking: epoch 1 separates the classes perfectly although its accuracy (0.5 at threshold 0.5) is the lowest
    ranked, unranked = probs([0.3, 0.45, 0.3, 0.45]), probs([0.1, 0.9, 0.95, 0.9])  # AUC 1.0 at accuracy 0.5; 0.5
    _, by_auc = train("scratch", [unranked, ranked, unranked], epochs=3, selection=Selection("roc_auc"))
    assert by_auc.best_epoch == 2 and by_auc.best_score == 1.0 and by_auc.best_val_accuracy == 0.5
    assert by_auc.curve[1]["val_roc_auc"] == 1.0


def test_patience_stops_the_last_phase_and_keeps_the_best_epoch():
    script = [ACC_50, ACC_75, ACC_50, ACC_50, ACC_100, ACC_100]
    backend, outcome = train("scratch", script, epochs=6, selection=Selection(patience=2))
    assert outcome.early_stopped and outcome.epochs_run == 4 and len(outcome.curve) == 4
    assert (outcome.best_epoch, outcome.best_val_accuracy) == (2, 0.75)  # epoch 5's 1.0 never ran
    _, full = train("scratch", script, epochs=6)
    assert full.best_epoch == 5 and full.epochs_run == 6 and not full.early_stopped


def test_lp_ft_selects_from_its_fine_tuning_phase_and_keeps_the_probes_own_best():
    script = [ACC_50, ACC_100, ACC_75, ACC_75, ACC_50]  # probe: 3 epochs; fine-tuning: 2
    _, every = train("lp_ft", script, epochs=2)
    assert every.best_epoch == 2  # selected inside the probe phase: LP-FT would equal the probe
    _, main = train("lp_ft", script, epochs=2, selection=Selection(candidates="main"))
    assert (main.best_epoch, main.best_val_accuracy) == (4, 0.75)
    for outcome in (every, main):
        assert outcome.probe_best == {"epoch": 2, "val_accuracy": 1.0, "by": "accuracy", "score": 1.0}
    # with every epoch a candidate, the patience counts fine-tuning epochs that never beat the probe
    _, stopped = train("lp_ft", [*script, ACC_50, ACC_50], epochs=4, selection=Selection(patience=2))
    assert stopped.early_stopped and stopped.epochs_run == 3 + 2 and stopped.best_epoch == 2


def test_the_schedule_scales_every_epochs_learning_rate_within_each_phase():
    schedule = Schedule("cosine", warmup_epochs=1)
    backend, outcome = train("full_finetune", [ACC_50] * 5, epochs=5, schedule=schedule)
    # head warm-up (1 epoch), then main (4 epochs) with its own warm-up and annealing
    expected = [schedule.factor(0, 1)] + [schedule.factor(e, 4) for e in range(4)]
    assert backend.lr_scales == pytest.approx(expected) and expected[:3] == pytest.approx([1.0, 0.5, 1.0])
    assert [e["lr_scale"] for e in outcome.curve] == pytest.approx(expected)
    assert backend.lr == pytest.approx(backend.planned_lr * expected[-1])  # the rate the last epoch trained at
    step_backend, _ = train("scratch", [ACC_50] * 6, epochs=6, schedule=Schedule("step", step_every=2, step_gamma=0.5))
    assert step_backend.lr_scales == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])


def test_selector_and_score_rules():
    assert is_better(0.5, None) and not is_better(0.5, 0.5) and is_better(0.4, 0.5, higher_is_better=False)
    assert is_better(0.1, math.nan) and not is_better(math.nan, 0.1)
    selector = Selector(Selection(patience=2))
    assert selector.consider(1, math.nan, 0.5)  # the first candidate is the best, even undefined
    assert selector.consider(2, 0.6, 0.6) and not selector.consider(3, 0.6, 0.6) and not selector.exhausted()
    assert not selector.consider(4, 0.1, 0.1) and selector.exhausted() and selector.best_epoch == 2
    assert val_score("balanced_accuracy", np.array([0, 0, 0, 1]), probs([0.1, 0.1, 0.1, 0.1])) == 0.5
    assert math.isnan(val_score("roc_auc", np.array([0, 0]), probs([0.1, 0.2])))
    with pytest.raises(ValueError, match="unknown selection metric 'f1'"):
        val_score("f1", VAL_LABELS, ACC_50)
