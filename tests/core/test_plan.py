"""The training plan: strategy rows + the model's stages + options -> phases, per-stage LRs, BN modes, penalties."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tlbench.core.plan import PlanError, make_plan
from tlbench.core.strategies import STRATEGIES, get_strategy

STAGES = ["stem", "s1", "s2", "s3", "s4"]


def test_probe_is_one_phase_on_features_with_min_epochs():
    plan = make_plan(STRATEGIES["linear_probe"], STAGES, epochs=5)
    (probe,) = plan.phases
    assert probe.name == "probe" and probe.inputs == "features" and probe.epochs == 30 and plan.needs_features
    assert not probe.trains_backbone and all(not s.bn_train for s in probe.stages) and probe.augment == "none"


def test_two_phase_fine_tuning_and_lp_ft():
    full = make_plan(STRATEGIES["full_finetune"], STAGES, epochs=5, augment="flip")
    assert [(p.name, p.epochs, p.inputs) for p in full.phases] == [("head_warmup", 1, "images"), ("main", 4, "images")]
    assert full.phases[1].stages[0].lr == pytest.approx(1e-4) and full.phases[1].head_lr == 1e-3
    assert full.phases[1].augment == "flip"
    assert [p.name for p in make_plan(STRATEGIES["full_finetune"], STAGES, epochs=1).phases] == [
        "main"
    ]  # no room to warm up
    lp_ft = make_plan(STRATEGIES["lp_ft"], STAGES, epochs=3)
    assert [(p.name, p.epochs, p.inputs, p.head_lr) for p in lp_ft.phases] == [
        ("probe", 30, "features", 1e-2),
        ("main", 3, "images", 1e-3),
    ]
    assert lp_ft.epochs == 33


def test_partial_stages_batchnorm_and_sweep():
    main = make_plan(STRATEGIES["partial_finetune"], STAGES, epochs=2).phases[-1]
    assert [s.trainable for s in main.stages] == [False, False, False, True, True]
    assert [s.bn_train for s in main.stages] == [False, False, False, True, True]
    assert [s.lr for s in main.stages] == [0, 0, 0, pytest.approx(1e-4), pytest.approx(1e-4)]
    unfrozen_bn = make_plan(replace(STRATEGIES["partial_finetune"], frozen_bn_eval=False), STAGES, epochs=2).phases[-1]
    assert all(s.bn_train for s in unfrozen_bn.stages)
    every = make_plan(get_strategy("partial_finetune@all"), STAGES, epochs=2).phases[-1]
    assert all(s.trainable for s in every.stages)
    with pytest.raises(PlanError, match="trains the last 6 stage\\(s\\) but the model has 5: stem, s1"):
        make_plan(get_strategy("partial_finetune@6"), STAGES, epochs=2)


def test_layer_decay_and_l2sp_are_fields():
    main = make_plan(STRATEGIES["layer_decay"], STAGES, epochs=2, head_lr=1e-2).phases[-1]
    assert [s.lr for s in main.stages] == [pytest.approx(1e-2 * 0.7 ** (5 - i)) for i in range(5)]
    l2sp = make_plan(STRATEGIES["l2sp"], STAGES, epochs=3, weight_decay=0.05)
    warm, main = l2sp.phases
    assert main.regularizers.l2sp_alpha == 0.05 and main.regularizers.head_l2_beta == 0.005
    assert (
        warm.regularizers.l2sp_alpha == 0 and warm.regularizers.head_l2_beta == 0.005
    )  # nothing to anchor while frozen
    assert main.optimizer.weight_decay == 0.0  # the penalty replaces weight decay


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"epochs": 2, "optimizer": "lion"}, "unknown optimizer 'lion'; expected one of: adamw, sgd"),
        ({"epochs": 2, "augment": "mixup"}, "unknown augment 'mixup'"),
        ({"epochs": 2, "head_lr": -1.0}, "head learning rate must be a positive number, got -1.0"),
        ({"epochs": 2, "head_lr": float("nan")}, "head learning rate must be a positive number, got nan"),
    ],
)
def test_impossible_plans_are_one_line_errors(kwargs, message):
    with pytest.raises(PlanError, match=message):
        make_plan(STRATEGIES["scratch"], STAGES, **kwargs)
    with pytest.raises(PlanError, match="reports no backbone stages"):
        make_plan(STRATEGIES["scratch"], [], epochs=1)
