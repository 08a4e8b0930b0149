"""Transfer strategies as data: one frozen dataclass per strategy, all in one table.

A strategy says *what* to train; ``tlbench.core.plan.make_plan`` turns it, the model's stages and the run options
into a framework-free ``TrainingPlan`` (phases, per-stage trainability and learning rates, BatchNorm policy,
regularizers), and each backend applies a plan with its own primitive (``requires_grad`` in torch,
``layer.trainable`` in Keras). Adding a strategy means adding a row to ``STRATEGIES``, not code per backend.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

TrainBackbone = Literal["none", "last_k", "all"]
ProbeHead = Literal["linear", "logreg", "knn"]
#: how many backbones a strategy takes: one, or two or more joined by ``+`` (``fusion``)
Backbones = Literal["one", "several"]

#: ``last_k_stages`` value meaning "every stage of the model" (``partial_finetune@all``)
ALL_STAGES = -1


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
        probe_lr: the head's learning rate in that probe phase (default: ``head_lr``).
        probe_head: for probes (``cache_features``): ``linear`` (the backend's head trained by the loop),
            ``logreg`` (scikit-learn L2 logistic regression, C chosen on val: Kornblith et al. 2019) or ``knn``
            (k-NN, k = 11, cosine: the MedMNIST+ protocol). The last two never touch the framework after
            feature extraction.
        min_epochs: at least this many epochs whatever ``--epochs`` says; for ``linear_probe`` an epoch over
            cached features costs milliseconds, so the head gets enough steps to converge.
        distill_temperature: knowledge distillation (Hinton et al. 2015; seed 003's soft labels): the loss becomes
            ``(1 - alpha) * CE(labels) + alpha * T^2 * KL(teacher_T || student_T)`` with the teacher's
            probabilities at temperature ``T`` (``--teacher``); ``None`` = no distillation.
        distill_alpha: the weight of the soft-label term.
        l2sp_alpha: L2-SP (Li et al. 2018): ``alpha * ||w - w0||^2`` on the trainable backbone, toward the
            pretrained weights ``w0``; weight decay is then off (the penalty replaces it).
        head_l2_beta: with L2-SP, ``beta * ||w||^2`` on the head.
        backbones: ``one`` backbone, or ``several`` joined by ``+`` in the model name whose pooled features are
            concatenated (``fusion``; only with a scikit-learn ``probe_head``). ``core.cell_kinds`` checks models
            against it and decides the kind of cell.
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
    probe_lr: float | None = None
    probe_head: ProbeHead = "linear"
    min_epochs: int = 0
    distill_temperature: float | None = None
    distill_alpha: float = 0.0
    l2sp_alpha: float = 0.0
    head_l2_beta: float = 0.0
    backbones: Backbones = "one"

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
        Strategy(
            name="lp_ft",
            summary="LP-FT (Kumar et al. 2022): linear probe on cached features, then all layers from the probed head",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            probe_epochs=30,
            probe_lr=1e-2,
        ),
        Strategy(
            name="layer_decay",
            summary="full fine-tuning with layer-wise LR decay 0.7 per stage from the head (timm's layer_decay)",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=1.0,
            layer_decay=0.7,
            head_lr=1e-3,
            head_warmup_epochs=1,
        ),
        Strategy(
            name="l2sp",
            summary="full fine-tuning with L2-SP (Li et al. 2018): 0.05*|w-w0|^2 to the pretrained backbone, "
            "0.005*|w|^2 on the head",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            head_warmup_epochs=1,
            l2sp_alpha=0.05,
            head_l2_beta=0.005,
        ),
        Strategy(
            name="distill",
            summary="full fine-tuning on soft labels of a teacher cell (--teacher), T = 4, alpha = 0.7 (Hinton et al. "
            "2015)",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            head_warmup_epochs=1,
            distill_temperature=4.0,
            distill_alpha=0.7,
        ),
        Strategy(
            name="logreg_probe",
            summary="frozen features cached on disk; L2 logistic regression, C chosen on val (Kornblith et al. 2019)",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="logreg",
        ),
        Strategy(
            name="knn_probe",
            summary="frozen features cached on disk; k-NN, k = 11, cosine distance (the MedMNIST+ protocol)",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="knn",
        ),
        Strategy(
            name="fusion",
            summary="pooled features of two or more backbones (--models a+b) concatenated, then L2 logistic regression",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="logreg",
            backbones="several",
        ),
    )
}

#: strategies that take a ``@k`` suffix: ``partial_finetune@3`` trains the last 3 stages, ``@all`` every stage
SWEEPABLE = ("partial_finetune",)


def head_only(strategy: Strategy) -> Strategy:
    """The head-only variant of a strategy (its warm-up phase)."""
    return replace(strategy, name=f"{strategy.name}:head_warmup", train_backbone="none", last_k_stages=0)


def get_strategy(name: str) -> Strategy:
    """Look up a strategy by name; ``partial_finetune@K`` (K = 1, 2, ... or ``all``) is the frozen-layer sweep.

    Raises:
        KeyError: unknown name or bad ``@K`` (the message lists the valid ones).
    """
    base, sep, suffix = name.partition("@")
    if sep:
        if base not in SWEEPABLE:
            raise KeyError(
                f"strategy {base!r} takes no @K suffix; only {', '.join(SWEEPABLE)}@K (K = 1, 2, ... or all)"
            )
        if suffix == "all":
            k = ALL_STAGES
        elif suffix.isdigit() and int(suffix) >= 1:
            k = int(suffix)
        else:
            raise KeyError(f"strategy {name!r}: expected {base}@K with K a positive integer or 'all', got {suffix!r}")
        return replace(STRATEGIES[base], name=name, last_k_stages=k, summary=f"last {suffix} stage(s) + head train")
    try:
        return STRATEGIES[name]
    except KeyError:
        valid = ", ".join([*STRATEGIES, *(f"{s}@K" for s in SWEEPABLE)])
        raise KeyError(f"unknown strategy {name!r}; expected one of: {valid}") from None


def trained_stages(strategy: Strategy) -> int | str | None:
    """For the frozen-layer sweep plot: how many final stages the strategy trains (``"all"``), else ``None``."""
    if strategy.train_backbone == "last_k":
        return "all" if strategy.last_k_stages == ALL_STAGES else strategy.last_k_stages
    return None
