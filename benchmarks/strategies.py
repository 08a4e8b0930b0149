"""Transfer strategies as data: one frozen dataclass per strategy, all in one table.

A backend maps each field to its own freezing primitive (``requires_grad`` in torch, ``layer.trainable`` in
Keras). Adding a strategy means adding a row to ``STRATEGIES``, not a subclass.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

TrainBackbone = Literal["none", "last_k", "all"]


@dataclass(frozen=True)
class Strategy:
    """One way to transfer a pretrained CNN.

    Attributes:
        name: identifier used on the command line and in results.
        summary: one-line description shown by ``tlbench list strategies``.
        pretrained: start from pretrained weights (``False`` = the no-transfer baseline).
        train_backbone: which backbone parameters train: ``none`` (frozen), ``last_k`` stages, or ``all``.
        last_k_stages: number of final backbone stages trained when ``train_backbone == "last_k"``.
        cache_features: compute frozen backbone features once per split and train the head on them.
        backbone_lr_scale: backbone learning rate = head learning rate × this factor.
        head_lr: learning rate of the new classifier head.
        frozen_bn_eval: keep BatchNorm layers of frozen stages in inference mode (running stats untouched).
        head_warmup_epochs: epochs that train the head alone before the backbone is unfrozen (Keras guide's
            two-phase fine-tuning; 0 = single phase).
        min_epochs: at least this many epochs whatever ``--epochs`` says; for ``linear_probe`` an epoch over
            cached features costs milliseconds, so the head gets enough steps to converge.
    """

    name: str
    summary: str
    pretrained: bool
    train_backbone: TrainBackbone
    last_k_stages: int = 0
    cache_features: bool = False
    backbone_lr_scale: float = 1.0
    head_lr: float = 1e-3
    frozen_bn_eval: bool = True
    head_warmup_epochs: int = 0
    min_epochs: int = 0

    def to_dict(self) -> dict:
        """Plain-dict view for results and JSON."""
        return asdict(self)


STRATEGIES: dict[str, Strategy] = {
    s.name: s
    for s in (
        Strategy(
            name="scratch",
            summary="random init, all layers trainable: the no-transfer baseline",
            pretrained=False,
            train_backbone="all",
            backbone_lr_scale=1.0,
            head_lr=1e-3,
        ),
        Strategy(
            name="linear_probe",
            summary="frozen pretrained backbone; features extracted once and cached, only a new head trains",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            head_lr=1e-2,
            min_epochs=30,
        ),
        Strategy(
            name="partial_finetune",
            summary="stem and early stages frozen (BatchNorm in eval mode); last 2 stages + head train",
            pretrained=True,
            train_backbone="last_k",
            last_k_stages=2,
            backbone_lr_scale=0.1,
            head_lr=1e-3,
        ),
        Strategy(
            name="full_finetune",
            summary="head trained alone for 1 epoch, then all layers with backbone LR = 0.1 x head LR",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            head_warmup_epochs=1,
        ),
    )
}


def head_only(strategy: Strategy) -> Strategy:
    """The head-only phase of a two-phase strategy (its warm-up epochs)."""
    return replace(strategy, name=f"{strategy.name}:head_warmup", train_backbone="none", last_k_stages=0)


def get_strategy(name: str) -> Strategy:
    """Look up a strategy by name.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
    """
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown strategy {name!r}; expected one of: {', '.join(STRATEGIES)}") from None
