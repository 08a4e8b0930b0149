"""The strategy table is data: four frozen rows with the semantics the issues ask for."""

from __future__ import annotations

import dataclasses

import pytest

from tlbench.strategies import STRATEGIES, get_strategy, head_only


def test_table_rows():
    assert list(STRATEGIES) == ["scratch", "linear_probe", "partial_finetune", "full_finetune"]
    scratch, probe, partial, full = (STRATEGIES[n] for n in STRATEGIES)
    assert not scratch.pretrained and scratch.train_backbone == "all"
    assert probe.pretrained and probe.train_backbone == "none" and probe.cache_features
    assert partial.train_backbone == "last_k" and partial.last_k_stages >= 1 and partial.frozen_bn_eval
    assert full.train_backbone == "all" and full.backbone_lr_scale < 1.0
    assert sum(s.cache_features for s in STRATEGIES.values()) == 1


def test_strategies_are_frozen_and_head_only_freezes_backbone():
    with pytest.raises(dataclasses.FrozenInstanceError):
        STRATEGIES["scratch"].head_lr = 1.0  # type: ignore[misc]
    warm = head_only(STRATEGIES["full_finetune"])
    assert warm.train_backbone == "none" and warm.head_lr == STRATEGIES["full_finetune"].head_lr
    assert STRATEGIES["full_finetune"].train_backbone == "all"  # the table row is untouched


def test_unknown_strategy_lists_choices():
    with pytest.raises(KeyError, match="unknown strategy 'finetune'; expected one of: scratch, linear_probe"):
        get_strategy("finetune")
