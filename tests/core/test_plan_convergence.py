"""Training to convergence as plan data: learning-rate schedules, epoch selection, early stopping, the seeds'
optimizers and gradient clipping, each described in the plan line (and absent from it at the defaults)."""

from __future__ import annotations

import math

import pytest

from tlbench.core.plan import OPTIMIZERS, PlanError, Schedule, Selection, make_plan
from tlbench.core.strategies import STRATEGIES

STAGES = ["stem", "s1", "s2", "s3", "s4"]


def test_the_defaults_plan_and_describe_what_they_always_did():
    plan = make_plan(STRATEGIES["full_finetune"], STAGES, epochs=5)
    assert plan.schedule == Schedule() and plan.selection == Selection()
    assert plan.schedule.name == "none" and plan.selection.by == "accuracy" and plan.selection.patience is None
    assert plan.describe() == (
        "head_warmup: 1 epoch(s) on images, 0/5 stages train (lr 0.001); "
        "main: 4 epoch(s) on images, 5/5 stages train (lr 0.0001..0.001)"
    )
    assert [Schedule().factor(e, 5) for e in range(5)] == [1.0] * 5


def test_cosine_warms_up_then_anneals_within_a_phase():
    cosine = Schedule("cosine", warmup_epochs=1)
    factors = [cosine.factor(e, 5) for e in range(5)]
    expected = [0.5] + [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    assert factors == pytest.approx(expected)
    assert factors[1] == 1.0 and 0 < factors[-1] < 0.2  # full rate after the warm-up, never zero
    assert Schedule("cosine", warmup_epochs=3).factor(0, 1) == 1.0  # a one-epoch phase has no room to warm up
    assert [Schedule("cosine", warmup_epochs=2).factor(e, 4) for e in range(2)] == pytest.approx([1 / 3, 2 / 3])


def test_step_decay_is_the_seeds_recipe():
    seed000 = Schedule("step", step_every=5, step_gamma=0.1)
    assert [seed000.factor(e, 15) for e in (0, 4, 5, 9, 10, 14)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert Schedule("step", step_every=7).factor(7, 15) == pytest.approx(0.1)


def test_non_default_choices_are_in_the_plan_line():
    plan = make_plan(
        STRATEGIES["lp_ft"],
        STAGES,
        epochs=15,
        optimizer="sgd",
        clip_grad_norm=1.0,
        schedule=Schedule("step", step_every=5, step_gamma=0.1),
        selection=Selection("roc_auc", "main", 3),
    )
    assert plan.describe().endswith(
        "; optimizer sgd (weight decay 0.0001, momentum 0.9), gradient norm clipped at 1"
        "; lr schedule step (x0.1 every 5 epochs)"
        "; epoch selected by val roc_auc among the main phase's epochs, early stop after 3 epoch(s) without improvement"
    )
    assert all(phase.optimizer.clip_grad_norm == 1.0 for phase in plan.phases)
    cosine = make_plan(STRATEGIES["scratch"], STAGES, epochs=5, schedule=Schedule("cosine", warmup_epochs=2))
    assert cosine.describe().endswith("; lr schedule cosine (2 warm-up epoch(s))")
    assert (
        make_plan(STRATEGIES["scratch"], STAGES, epochs=5, selection=Selection("loss"))
        .describe()
        .endswith("; epoch selected by val loss")
    )
    assert not Selection("loss").higher_is_better and Selection("roc_auc").higher_is_better


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_adam_and_rmsprop_run_without_weight_decay(optimizer):
    assert optimizer in OPTIMIZERS
    plan = make_plan(STRATEGIES["scratch"], STAGES, epochs=2, optimizer=optimizer, weight_decay=0.05)
    assert plan.phases[0].optimizer.weight_decay == 0.0
    assert f"; optimizer {optimizer} (no weight decay)" in plan.describe()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"schedule": Schedule("linear")}, "unknown schedule 'linear'; expected one of: none, cosine, step"),
        ({"schedule": Schedule("step", step_every=0)}, "step every must be an integer >= 1 epoch, got 0"),
        ({"schedule": Schedule("step", step_gamma=1.5)}, "step gamma must be in (0, 1], got 1.5"),
        ({"schedule": Schedule("cosine", warmup_epochs=-1)}, "warm-up epochs must be an integer >= 0, got -1"),
        ({"selection": Selection("f1")}, "unknown select-by metric 'f1'; expected one of: accuracy, balanced_accuracy"),
        ({"selection": Selection(candidates="best")}, "unknown candidate epochs 'best'; expected one of: all, main"),
        ({"selection": Selection(patience=0)}, "patience must be an integer >= 1 epoch, got 0"),
        ({"clip_grad_norm": -1.0}, "gradient clipping norm must be a positive number, got -1.0"),
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'; expected one of: adamw, sgd, adam, rmsprop"),
    ],
)
def test_impossible_choices_are_refused_in_one_line(kwargs, message):
    with pytest.raises(PlanError) as excinfo:
        make_plan(STRATEGIES["scratch"], STAGES, epochs=2, **kwargs)
    assert message in str(excinfo.value)
