"""Cell kinds as data: every strategy row maps to one kind; models are checked against the backbones it takes."""

from __future__ import annotations

import pytest

from tlbench.core.cell_kinds import (
    CELL_KINDS,
    CellKindError,
    backbones_of,
    cell_kind,
    check_backbones,
    kind_name,
    trained_kind,
)
from tlbench.core.strategies import STRATEGIES, get_strategy, trial_name


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [
        ("scratch", "network"),
        ("linear_probe", "network"),  # the linear head trains through the loop on cached features
        ("partial_finetune", "network"),
        ("partial_finetune@all", "network"),
        ("full_finetune", "network"),
        ("lp_ft", "network"),
        ("layer_decay", "network"),
        ("l2sp", "network"),
        ("distill", "network"),
        ("logreg_probe", "feature_head"),
        ("knn_probe", "feature_head"),
        ("fusion", "feature_head"),
        ("scratch~head_lr=0.001", "tuning_trial"),  # one point of a search (--tune)
        ("logreg_probe~probe_c=10", "tuning_trial"),
    ],
)
def test_every_strategy_has_its_kind(strategy: str, kind: str) -> None:
    model = "a+b" if get_strategy(strategy).backbones == "several" else "a"
    assert cell_kind(get_strategy(strategy), model).name == kind


def test_every_row_of_the_table_maps_to_a_registered_kind() -> None:
    rows = {kind_name(row) for row in STRATEGIES.values()}
    trials = {kind_name(get_strategy(trial_name(row, row.search.configs()[0]))) for row in STRATEGIES.values()}
    assert rows | trials == set(CELL_KINDS) and trials == {"tuning_trial"}
    assert {trained_kind(get_strategy(trial_name(row, row.search.configs()[0]))) for row in STRATEGIES.values()} == rows


def test_what_a_kind_says() -> None:
    network, head = CELL_KINDS["network"], CELL_KINDS["feature_head"]
    assert network.trains_network and network.retimed_by_pass and network.saves_weights
    # a scikit-learn head keeps no framework weights: the inference pass cannot rebuild it
    assert not head.trains_network and not head.retimed_by_pass and not head.saves_weights


def test_backbones_of_a_fused_model() -> None:
    assert backbones_of("resnet18+densenet121") == ["resnet18", "densenet121"]
    assert backbones_of("resnet18") == ["resnet18"]


def test_a_fusing_strategy_needs_several_backbones() -> None:
    with pytest.raises(CellKindError, match="fusion takes two or more models joined by '\\+'"):
        cell_kind(get_strategy("fusion"), "resnet18")


def test_a_fused_model_needs_a_fusing_strategy() -> None:
    with pytest.raises(CellKindError, match="only --strategies fusion takes it .*'scratch'"):
        check_backbones(get_strategy("scratch"), ["resnet18", "resnet18+vgg16"])
    check_backbones(get_strategy("fusion"), ["resnet18+vgg16", "a+b+c"])  # any number >= 2
