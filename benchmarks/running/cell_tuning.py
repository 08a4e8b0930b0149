"""The ``tuning_trial`` kind of cell: one point of a strategy's search, trained on train and scored on val.

The strategy row of a trial (``full_finetune~head_lr=0.001,weight_decay=0.0001``) is the strategy with the point's
values; it trains the strategy's own way (``core.cell_kinds.trained_kind``): a network through the plan and the one
training loop (``cell_network.prepare_network``/``train_prepared``, early stopping included), or a scikit-learn head
on cached features (``cell_feature_head.fit_feature_head``). The cell's data path holds no test split
(``CellRun.load_dataset`` drops it for a trial), so a trial cannot read test: it records its validation score
(``selection``), the point it tried (``tuning``) and its seconds; no test metric, no inference timing, no weights.
"""

from __future__ import annotations

from ...backends.base import Backend
from ...core.cell_kinds import backbones_of, trained_kind
from ...core.strategies import Strategy, config_of
from .cell_context import CellContext
from .cell_feature_head import fit_feature_head, record_head
from .cell_network import prepare_network, train_prepared


def run_tuning_trial_cell(run: CellContext, strategy: Strategy, backend_class: type[Backend]) -> None:
    """Train ``strategy`` (one point of its search) on train, score it on val by ``--select-by``; fills
    ``run.record``."""
    record = run.record
    with run.timed_window():
        if trained_kind(strategy) == "feature_head":
            fitted = fit_feature_head(run, strategy, backend_class)
            record_head(record, fitted, backbones_of(run.cell.model))
        else:
            train_prepared(run, prepare_network(run, strategy, backend_class))
    selection = record.get("selection") or {}
    record["tuning"] = {"trial": config_of(strategy), "by": selection.get("by"), "val_score": selection.get("score")}
    run.log(f"trial {config_of(strategy)}: val {selection.get('by')} = {selection.get('score')}")
