"""The strategy table is data: frozen rows with the semantics the issues ask for, and ``@K`` sweep names."""

from __future__ import annotations

import dataclasses

import pytest

from tlbench.core.strategies import ALL_STAGES, STRATEGIES, get_strategy, head_only, trained_stages

BASIC = ["scratch", "linear_probe", "partial_finetune", "full_finetune"]
FIELD = ["lp_ft", "layer_decay", "l2sp", "distill", "logreg_probe", "knn_probe", "fusion"]


def test_table_rows():
    assert list(STRATEGIES) == BASIC + FIELD
    scratch, probe, partial, full = (STRATEGIES[n] for n in BASIC)
    assert not scratch.pretrained and scratch.train_backbone == "all"
    assert probe.pretrained and probe.train_backbone == "none" and probe.cache_features and probe.probe_head == "linear"
    assert partial.train_backbone == "last_k" and partial.last_k_stages >= 1 and partial.frozen_bn_eval
    assert full.train_backbone == "all" and full.backbone_lr_scale < 1.0
    lp_ft, decay, l2sp = (STRATEGIES[n] for n in ("lp_ft", "layer_decay", "l2sp"))
    assert lp_ft.probe_epochs > 0 and lp_ft.probe_lr > lp_ft.head_lr and lp_ft.head_warmup_epochs == 0
    assert decay.layer_decay == 0.7 and decay.backbone_lr_scale == 1.0
    assert l2sp.l2sp_alpha > 0 and l2sp.head_l2_beta > 0
    assert {STRATEGIES[n].probe_head for n in ("logreg_probe", "knn_probe", "fusion")} == {"logreg", "knn"}
    # every probe strategy is frozen
    assert all(s.train_backbone == "none" for s in STRATEGIES.values() if s.cache_features)


def test_strategies_are_frozen_and_head_only_freezes_backbone():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STRATEGIES["scratch"].head_lr = 1.0  # type: ignore[misc]
    warm = head_only(STRATEGIES["full_finetune"])
    assert warm.train_backbone == "none" and warm.head_lr == STRATEGIES["full_finetune"].head_lr
    assert STRATEGIES["full_finetune"].train_backbone == "all"  # the table row is untouched


def test_sweep_names():
    three = get_strategy("partial_finetune@3")
    assert three.name == "partial_finetune@3" and three.last_k_stages == 3 and trained_stages(three) == 3
    every = get_strategy("partial_finetune@all")
    assert every.last_k_stages == ALL_STAGES and trained_stages(every) == "all"
    assert trained_stages(STRATEGIES["full_finetune"]) is None
    with pytest.raises(KeyError, match="K a positive integer or 'all', got '0'"):
        get_strategy("partial_finetune@0")
    with pytest.raises(KeyError, match="strategy 'lp_ft' takes no @K suffix"):
        get_strategy("lp_ft@2")


def test_unknown_strategy_lists_choices():
    with pytest.raises(KeyError, match="unknown strategy 'finetune'; expected one of: scratch, linear_probe"):
        get_strategy("finetune")
