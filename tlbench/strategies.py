"""Transfer strategies as data: one frozen dataclass per strategy, all in one table.

A strategy says *what* to train; ``tlbench.plan.make_plan`` turns it, the model's stages and the run options
into a framework-free ``TrainingPlan`` (phases, per-stage trainability and learning rates, BatchNorm policy,
regularizers), and each backend applies a plan with its own primitive (``requires_grad`` in torch,
``layer.trainable`` in Keras). Adding a strategy means adding a row to ``STRATEGIES``, not code per backend.
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
        train_backbone: which backbone stages train: ``none`` (frozen), the ``last_k`` stages, or ``all``.
        last_k_stages: number of final backbone stages trained when ``train_backbone == "last_k"``.
        cache_features: the strategy is a probe: backbone features are computed once per split and only the
            head trains on them (``train_backbone`` must be ``none``).
        backbone_lr_scale: backbone learning rate = head learning rate × this factor.
        layer_decay: when set, stage ``i`` of ``n`` (stem = 0) gets an extra factor ``layer_decay ** (n - i)``
            (timm's ``layer_decay``: the stage next to the head is scaled by ``layer_decay`` once).
        head_lr: learning rate of the new classifier head.
        frozen_bn_eval: keep BatchNorm layers of frozen stages in inference mode (running stats untouched).
        head_warmup_epochs: epochs (out of ``--epochs``) that train the head alone on images before the
            backbone is unfrozen (the Keras guide's two-phase fine-tuning; 0 = single phase).
        probe_epochs: epochs of a linear probe on cached features *before* the main phase (LP-FT: the
            fine-tuning starts from the probed head); cheap, so not counted in ``--epochs``.
        min_epochs: at least this many epochs whatever ``--epochs`` says; for ``linear_probe`` an epoch over
            cached features costs milliseconds, so the head gets enough steps to converge.
        l2sp_alpha: L2-SP (Li et al. 2018): ``alpha * ||w - w0||^2`` on the trainable backbone, toward the
            pretrained weights ``w0``; weight decay is then off (the penalty replaces it).
        head_l2_beta: with L2-SP, ``beta * ||w||^2`` on the head.
    """

    name: str
    summary: str
    pretrained: bool
    train_backbone: TrainBackbone
    last_k_stages: int = 0
    cache_features: bool = False
    backbone_lr_scale: float = 1.0
    layer_decay: float | None = None
    head_lr: float = 1e-3
    frozen_bn_eval: bool = True
    head_warmup_epochs: int = 0
    probe_epochs: int = 0
    min_epochs: int = 0
    l2sp_alpha: float = 0.0
    head_l2_beta: float = 0.0

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
    """The head-only variant of a strategy (its warm-up phase)."""
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
