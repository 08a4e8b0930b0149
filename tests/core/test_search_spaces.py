"""Search spaces as data on the strategy rows: the same trial budget for every strategy, grids per family, trial
rows named by their point and parsed back, winners applied."""

from __future__ import annotations

import math

import pytest

from tlbench.core.plan import make_plan
from tlbench.core.strategies import (
    STRATEGIES,
    TRIAL_BUDGET,
    TUNABLE,
    config_of,
    get_strategy,
    trial_name,
    with_config,
)

NETWORK = [name for name, row in STRATEGIES.items() if row.probe_head == "linear"]


def lrs(name: str) -> tuple[float, ...]:
    return dict(STRATEGIES[name].search.axes)["head_lr"]


def test_every_strategy_gets_the_same_budget_of_tunable_points():
    for name, row in STRATEGIES.items():
        assert row.search is not None, name
        assert row.search.size == TRIAL_BUDGET == len(row.search.configs()), name
        assert all(axis in TUNABLE for axis, _ in row.search.axes), name
    assert get_strategy("partial_finetune@2").search == STRATEGIES["partial_finetune"].search  # the sweep inherits


def test_learning_rate_grids_are_log_spaced_and_chosen_per_family():
    for name in NETWORK:
        grid = lrs(name)
        assert len(grid) >= 4 and list(grid) == sorted(grid), name
        ratios = {round(math.log10(b / a), 3) for a, b in zip(grid, grid[1:], strict=False)}
        assert ratios <= {0.477, 0.523}, name  # x3 / x3.33: half-decade steps
    assert min(lrs("linear_probe")) > min(lrs("full_finetune"))  # probes higher
    assert max(lrs("linear_probe")) > max(lrs("full_finetune"))
    spans = {name: math.log10(max(lrs(name)) / min(lrs(name))) for name in NETWORK}
    assert spans["scratch"] == max(spans.values()) > spans["full_finetune"]  # scratch widest
    weight_decay = {name for name in NETWORK if "weight_decay" in dict(STRATEGIES[name].search.axes)}
    assert weight_decay == set(NETWORK) - {"scratch", "l2sp"}  # L2-SP replaces weight decay: its alpha is searched
    assert "l2sp_alpha" in dict(STRATEGIES["l2sp"].search.axes)
    assert dict(STRATEGIES["logreg_probe"].search.axes)["probe_c"][0] == 1e-3
    assert dict(STRATEGIES["knn_probe"].search.axes)["knn_k"] == (1, 3, 5, 7, 11, 15, 21, 31)


def test_a_trial_row_is_its_point_of_the_search():
    row = STRATEGIES["full_finetune"]
    config = row.search.configs()[5]
    name = trial_name(row, config)
    assert name == "full_finetune~head_lr=0.001,weight_decay=0.01"
    trial = get_strategy(name)
    assert trial.tuning_trial and trial.name == name and config_of(trial) == config
    plan = make_plan(trial, ["stem", "s1"], epochs=3)
    assert plan.phases[-1].head_lr == 1e-3 and plan.phases[-1].optimizer.weight_decay == 0.01
    knn = get_strategy("knn_probe~knn_k=21")
    assert knn.knn_k == 21 and isinstance(knn.knn_k, int)
    sweep = get_strategy("partial_finetune@3~head_lr=0.0003,weight_decay=0.0001")
    assert sweep.last_k_stages == 3 and sweep.head_lr == 3e-4
    won = with_config(row, config)  # a tuned cell keeps its strategy's name
    assert won.name == "full_finetune" and not won.tuning_trial and won.head_lr == 1e-3


@pytest.mark.parametrize(
    "name, message",
    [
        ("full_finetune~head_lr=0.001", "a trial sets every searched field (head_lr, weight_decay)"),
        (
            "full_finetune~momentum=0.9,head_lr=0.001",
            "over its search space (head_lr, weight_decay), got 'momentum=0.9'",
        ),
        ("scratch~head_lr=fast", "got 'head_lr=fast'"),
        ("nonsense~head_lr=0.1", "unknown strategy 'nonsense'"),
    ],
)
def test_bad_trial_names_are_refused(name, message):
    with pytest.raises(KeyError) as excinfo:
        get_strategy(name)
    assert message in str(excinfo.value)
    with pytest.raises(KeyError, match="'momentum' is not tunable"):
        with_config(STRATEGIES["scratch"], {"momentum": 0.9})
