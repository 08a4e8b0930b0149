"""Cell kinds as data: what a cell of the matrix does, decided in one place from the strategy row and the models.

Every cell loads the same bytes, builds the backbone through a backend and measures the same columns; what differs
is *how the model is made*:

* ``network``: the backend's network is trained through the plan (``make_plan`` → ``train_plan``, the one training
  loop): scratch, fine-tuning of any depth, LP-FT, distillation and the linear probe on cached features.
* ``feature_head``: frozen backbones give pooled features (cached on disk) and a scikit-learn head is fitted on them
  (``logreg_probe``, ``knn_probe``); with two or more backbones joined by ``+`` their features are concatenated first
  (``fusion``). No gradient step runs, so the training loop is not involved.
* ``tuning_trial``: one point of a strategy's search space (``--tune``), trained the strategy's way (``trained_kind``)
  on train and scored on val; its data path has no test split.

A kind row says what the rest of tlbench needs to know without looking at strategy names: how many backbones the
cell takes, whether the framework runs the whole model at inference (so the suite's inference pass can re-time it
from saved weights) and whether the cell leaves trained weights behind. The runner of each kind lives in
``benchmarks/running`` (``cell_network.py``, ``cell_feature_head.py``); ``KIND_RUNNERS`` in ``cell.py`` maps a kind's
name to it, so a new kind (a tuning trial, a label-size or increment step) is one row here and one module there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .strategies import STRATEGIES, Strategy

#: how many backbones a cell of a kind takes: exactly one, or two or more joined by ``+`` in the model name
Backbones = Literal["one", "several"]
#: separator of the backbones of one fused model (``--models resnet18+densenet121``)
MODEL_SEPARATOR = "+"


class CellKindError(ValueError):
    """A strategy and a model that no kind accepts together (one line naming both)."""


@dataclass(frozen=True)
class CellKind:
    """One kind of cell.

    Attributes:
        name: identifier (``network``, ``feature_head``), recorded with every result as ``cell_kind``.
        summary: one line for ``tlbench list strategies`` and the docs.
        trains_network: the backend's network goes through ``make_plan`` and ``train_plan``.
        retimed_by_pass: inference runs the whole framework model, so the suite's inference pass can load the
            saved weights and re-time it beside the other cells of the same model.
        saves_weights: the cell leaves trained framework weights (for the pass, a teacher, ``tlbench explain``).
    """

    name: str
    summary: str
    trains_network: bool
    retimed_by_pass: bool
    saves_weights: bool


CELL_KINDS: dict[str, CellKind] = {
    kind.name: kind
    for kind in (
        CellKind(
            name="network",
            summary="the backend's network trained through the plan (the one training loop)",
            trains_network=True,
            retimed_by_pass=True,
            saves_weights=True,
        ),
        CellKind(
            name="feature_head",
            summary="pooled features of frozen backbones (cached) and a scikit-learn head fitted on them",
            trains_network=False,
            retimed_by_pass=False,
            saves_weights=False,
        ),
        CellKind(
            name="tuning_trial",
            summary="one point of a strategy's search (--tune), trained on train and scored on val; it has no test "
            "split, is never timed and keeps no weights",
            trains_network=False,
            retimed_by_pass=False,
            saves_weights=False,
        ),
    )
}


def backbones_of(model: str) -> list[str]:
    """The backbones of a model name: ``resnet18+densenet121`` → ``["resnet18", "densenet121"]``."""
    return model.split(MODEL_SEPARATOR)


def kind_name(strategy: Strategy) -> str:
    """The kind of cell ``strategy`` runs: ``tuning_trial`` for one point of a search, else ``trained_kind``."""
    return "tuning_trial" if strategy.tuning_trial else trained_kind(strategy)


def trained_kind(strategy: Strategy) -> str:
    """How ``strategy`` trains (also inside a tuning trial): ``feature_head`` for a scikit-learn head, else
    ``network``."""
    return "network" if strategy.probe_head == "linear" else "feature_head"


def cell_kind(strategy: Strategy, model: str) -> CellKind:
    """The kind of the cell (``strategy``, ``model``), after checking that they go together.

    Raises:
        CellKindError: a strategy that fuses several backbones with a single model, or a fused model (``a+b``) with
            a strategy that takes one backbone (one line naming both).
    """
    check_backbones(strategy, [model])
    return CELL_KINDS[kind_name(strategy)]


def check_backbones(strategy: Strategy, models: Sequence[str]) -> None:
    """Check that every model of ``models`` has as many backbones as ``strategy`` takes.

    Raises:
        CellKindError: one line naming the model and the strategy, and how to call it instead.
    """
    for model in models:
        several = len(backbones_of(model)) > 1
        if strategy.backbones == "several" and not several:
            raise CellKindError(
                f"strategy {strategy.name!r} with model {model!r}: {strategy.name} takes two or more models joined by "
                f"{MODEL_SEPARATOR!r} (e.g. --models resnet18+densenet121)"
            )
        if strategy.backbones == "one" and several:
            fusing = ", ".join(name for name, row in STRATEGIES.items() if row.backbones == "several")
            raise CellKindError(
                f"model {model!r} joins backbones with {MODEL_SEPARATOR!r}: only --strategies {fusing} takes it "
                f"(run {strategy.name!r} and other strategies in their own suite)"
            )
