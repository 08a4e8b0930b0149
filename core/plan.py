"""The framework-free training plan: what trains, at which learning rate, in which phase.

``make_plan`` is the one place where a ``Strategy`` row, the model's ordered stages and the run options become
concrete decisions. Backends only *apply* a ``PhasePlan`` with their own primitive (``requires_grad`` and
param groups in torch, ``layer.trainable`` and one optimizer per learning rate in Keras) and the training loop
only *runs* its phases; neither re-derives what a strategy means. Layer-wise LR decay, L2-SP or a probe phase
are fields here, not code per backend.

Phases run in order on one model, keeping its weights:

- ``probe``: the head alone on cached backbone features (``inputs="features"``);
- ``head_warmup``: the head alone on images, before the backbone is unfrozen;
- ``main``: the strategy's own trainability.

How long each phase trains and which epoch is kept are plan data too: a learning-rate ``Schedule`` (none, cosine with
a linear warm-up, or step decay), applied per epoch inside each phase through the optimizer(s) the phase built, and a
``Selection`` (the validation metric that picks the epoch, which phases' epochs are candidates, early stopping with a
patience in the last phase). Their defaults are the protocol every committed result was made with: a constant
learning rate, every epoch a candidate, validation accuracy with a strict ``>``, no early stopping.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from .strategies import ALL_STAGES, Strategy

Inputs = Literal["images", "features"]
#: optimizer families: AdamW (decoupled weight decay), SGD with momentum, and plain Adam and RMSprop (the seeds'
#: recipes: no weight decay, which AdamW decouples and they did not use)
OPTIMIZERS = ("adamw", "sgd", "adam", "rmsprop")
#: optimizers that run without weight decay
NO_WEIGHT_DECAY = ("adam", "rmsprop")
#: Adam's and RMSprop's epsilon and RMSprop's decay, the same in every framework (Keras' defaults)
ADAM_EPSILON = 1e-7
RMSPROP_RHO = 0.9
AUGMENTS = ("none", "flip", "crop-flip")
#: learning-rate schedules (``Schedule.name``)
SCHEDULES = ("none", "cosine", "step")
#: validation metrics that pick the epoch (and a tuning trial); ``loss`` is the one lower is better
SELECT_BY = ("accuracy", "balanced_accuracy", "roc_auc", "loss")
#: candidate epochs: ``all`` (every epoch of every phase) or ``main`` (the last phase's: LP-FT's fine-tuning)
SELECT_FROM = ("all", "main")


class PlanError(ValueError):
    """A strategy cannot be planned for this model or these options (one-line message)."""


@dataclass(frozen=True)
class StagePlan:
    """One backbone stage in one phase.

    Attributes:
        name: the stage's name as the backend reports it (``stem``, ``layer1``, ``block3``...).
        trainable: its parameters receive gradients.
        lr: its learning rate (absolute; 0 when frozen).
        bn_train: its BatchNorm layers run in training mode (batch statistics, running stats updated).
    """

    name: str
    trainable: bool
    lr: float
    bn_train: bool


@dataclass(frozen=True)
class OptimizerPlan:
    """Optimizer family and hyper-parameters (learning rates live with the head and the stages).

    Attributes:
        name: one of ``OPTIMIZERS``.
        weight_decay: decoupled for AdamW, L2 for SGD; 0 for Adam and RMSprop.
        momentum: SGD's momentum.
        clip_grad_norm: when set, the gradients of all trainable parameters together are scaled to at most this
            global L2 norm before each step (seed 003); ``None``: no clipping.
    """

    name: str = "adamw"
    weight_decay: float = 1e-4
    momentum: float = 0.9
    clip_grad_norm: float | None = None

    def describe(self) -> str:
        """``adam (no weight decay), gradient norm clipped at 1`` when not the default optimizer, else ``""``."""
        parts = []
        if self.name != "adamw":
            decay = "no weight decay" if self.weight_decay == 0 else f"weight decay {self.weight_decay:g}"
            momentum = f", momentum {self.momentum:g}" if self.name == "sgd" else ""
            parts.append(f"optimizer {self.name} ({decay}{momentum})")
        if self.clip_grad_norm is not None:
            parts.append(f"gradient norm clipped at {self.clip_grad_norm:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Schedule:
    """The learning rate of each epoch of a phase, as a factor of the phase's planned rates (every group alike).

    Attributes:
        name: ``none`` (constant), ``cosine`` (linear warm-up, then cosine annealing over the phase's epochs) or
            ``step`` (× ``step_gamma`` every ``step_every`` epochs of the phase: seed 000 every 5 × 0.1, seed 004
            every 7 × 0.1).
        warmup_epochs: cosine: epochs of linear warm-up (at most the phase's epochs minus one).
        step_every: step: epochs between decays.
        step_gamma: step: the factor of each decay.
    """

    name: str = "none"
    warmup_epochs: int = 1
    step_every: int = 5
    step_gamma: float = 0.1

    def factor(self, epoch: int, epochs: int) -> float:
        """The factor of epoch ``epoch`` (0-based) of a phase of ``epochs`` epochs.

        Cosine: epoch ``e < W`` of the warm-up gets ``(e + 1) / (W + 1)``; then ``0.5 * (1 + cos(pi * t))`` with
        ``t = (e - W) / (epochs - W)``, so the first epoch after the warm-up runs at the full rate and the last one
        at a small but non-zero rate. Step: ``step_gamma ** (e // step_every)``.
        """
        if self.name == "cosine":
            warmup = max(0, min(self.warmup_epochs, epochs - 1))
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / max(1, epochs - warmup)))
        if self.name == "step":
            return self.step_gamma ** (epoch // self.step_every)
        return 1.0

    def describe(self) -> str:
        """``lr schedule cosine (1 warm-up epoch)``, ``lr schedule step (x0.1 every 5 epochs)`` or ``""``."""
        if self.name == "cosine":
            return f"lr schedule cosine ({self.warmup_epochs} warm-up epoch(s))"
        if self.name == "step":
            return f"lr schedule step (x{self.step_gamma:g} every {self.step_every} epochs)"
        return ""


@dataclass(frozen=True)
class Selection:
    """Which epoch's weights are kept (tested), and when training stops.

    Attributes:
        by: the validation metric (``SELECT_BY``): accuracy, balanced accuracy and ROC-AUC higher is better, loss
            lower; an epoch replaces the best only when strictly better.
        candidates: ``all`` (every epoch of every phase) or ``main`` (the last phase's epochs only: LP-FT's
            fine-tuning phase, full fine-tuning after its head warm-up; earlier phases are warm starts).
        patience: early stopping: the last phase stops after this many epochs without a better candidate
            (``--epochs`` is then the maximum); ``None``: every epoch runs.
    """

    by: str = "accuracy"
    candidates: str = "all"
    patience: int | None = None

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger value of the metric is better (all but ``loss``)."""
        return self.by != "loss"

    def describe(self) -> str:
        """``epoch selected by val roc_auc among the main phase's epochs, early stop after 3 epochs without
        improvement`` when not the default, else ``""``."""
        if (self.by, self.candidates, self.patience) == ("accuracy", "all", None):
            return ""
        among = " among the main phase's epochs" if self.candidates == "main" else ""
        stop = f", early stop after {self.patience} epoch(s) without improvement" if self.patience else ""
        return f"epoch selected by val {self.by}{among}{stop}"


@dataclass(frozen=True)
class Regularizers:
    """Explicit penalties added to the loss.

    Attributes:
        l2sp_alpha: ``alpha * sum ||w - w0||^2`` over trainable backbone parameters, ``w0`` = the weights the
            model was built with (the pretrained ones).
        head_l2_beta: ``beta * sum ||w||^2`` over the head's parameters.
    """

    l2sp_alpha: float = 0.0
    head_l2_beta: float = 0.0

    @property
    def any(self) -> bool:
        """Whether any penalty is active."""
        return self.l2sp_alpha > 0 or self.head_l2_beta > 0


@dataclass(frozen=True)
class Distillation:
    """Soft labels of a teacher: ``loss = (1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)``."""

    temperature: float
    alpha: float


@dataclass(frozen=True)
class PhasePlan:
    """One phase of training: inputs, epochs, per-stage trainability and learning rates, optimizer.

    Attributes:
        name: ``probe``, ``head_warmup`` or ``main``.
        inputs: ``images`` (the whole network runs) or ``features`` (the head alone, on cached features).
        epochs: epochs in this phase.
        head_lr: the head's learning rate.
        stages: one entry per backbone stage, stem first.
        optimizer: optimizer family and hyper-parameters (a fresh optimizer per phase).
        regularizers: explicit loss penalties.
        augment: training augmentation on images (``none``, ``flip``, ``crop-flip``), applied on device by
            the backend; always ``none`` on features.
    """

    name: str
    inputs: Inputs
    epochs: int
    head_lr: float
    stages: tuple[StagePlan, ...]
    optimizer: OptimizerPlan = field(default_factory=OptimizerPlan)
    regularizers: Regularizers = field(default_factory=Regularizers)
    augment: str = "none"
    distillation: Distillation | None = None

    @property
    def trains_backbone(self) -> bool:
        """Whether any backbone stage trains in this phase."""
        return any(stage.trainable for stage in self.stages)

    def describe(self) -> str:
        """A short human line: ``main: 5 epochs on images, 2/5 stages train (lr 1e-4..1e-3)``."""
        trainable = [s for s in self.stages if s.trainable]
        lrs = sorted({s.lr for s in trainable} | {self.head_lr})
        lr_text = f"lr {lrs[0]:.3g}" if len(lrs) == 1 else f"lr {lrs[0]:.3g}..{lrs[-1]:.3g}"
        extra = ""
        if self.regularizers.any:
            extra = f", L2-SP alpha={self.regularizers.l2sp_alpha:g} beta={self.regularizers.head_l2_beta:g}"
        if self.distillation is not None:
            extra += f", distilled T={self.distillation.temperature:g} alpha={self.distillation.alpha:g}"
        return (
            f"{self.name}: {self.epochs} epoch(s) on {self.inputs}, {len(trainable)}/{len(self.stages)} stages train "
            f"({lr_text}{extra})"
        )


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a backend and the training loop need to run a strategy.

    Attributes:
        strategy: the strategy's name.
        pretrained: whether the model starts from pretrained weights.
        phases: the phases, in order (at least one).
        augment: training augmentation (``none``, ``flip``, ``crop-flip``), applied on device by the backend.
        seed: seed of shuffling, augmentation and dropout.
        schedule: the learning rate of each epoch within each phase.
        selection: the metric and candidate epochs that pick the kept weights, and early stopping.
    """

    strategy: str
    pretrained: bool
    phases: tuple[PhasePlan, ...]
    augment: str = "none"
    seed: int = 0
    schedule: Schedule = field(default_factory=Schedule)
    selection: Selection = field(default_factory=Selection)

    @property
    def epochs(self) -> int:
        """Epochs over all phases."""
        return sum(phase.epochs for phase in self.phases)

    @property
    def needs_features(self) -> bool:
        """Whether any phase trains on cached features."""
        return any(phase.inputs == "features" for phase in self.phases)

    def to_dict(self) -> dict:
        """Plain-dict view for JSON."""
        return asdict(self)

    def describe(self) -> str:
        """One part per phase, then the optimizer, schedule and selection when they are not the defaults."""
        extras = [self.phases[-1].optimizer.describe(), self.schedule.describe(), self.selection.describe()]
        return "; ".join([phase.describe() for phase in self.phases] + [e for e in extras if e])


def _check_positive(label: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise PlanError(f"{label} must be a positive number, got {value!r}")


def stage_plans(
    strategy: Strategy, stage_names: Sequence[str], head_lr: float, train_backbone: str
) -> tuple[StagePlan, ...]:
    """Per-stage trainability, learning rate and BatchNorm mode for one phase.

    Args:
        strategy: the strategy row (``last_k_stages``, ``backbone_lr_scale``, ``layer_decay``, ``frozen_bn_eval``).
        stage_names: the model's backbone stages, stem first.
        head_lr: the head's learning rate.
        train_backbone: ``none``, ``last_k`` or ``all`` for this phase.

    Raises:
        PlanError: ``last_k`` asks for more stages than the model has, or none.
    """
    n = len(stage_names)
    if train_backbone == "last_k" and not 0 < strategy.last_k_stages <= n:
        raise PlanError(
            f"strategy {strategy.name!r} trains the last {strategy.last_k_stages} stage(s) but the model has {n}: "
            f"{', '.join(stage_names)}"
        )
    plans = []
    for index, name in enumerate(stage_names):
        trainable = train_backbone == "all" or (train_backbone == "last_k" and index >= n - strategy.last_k_stages)
        scale = strategy.backbone_lr_scale
        if strategy.layer_decay is not None:
            scale *= strategy.layer_decay ** (n - index)
        plans.append(
            StagePlan(
                name=name,
                trainable=trainable,
                lr=head_lr * scale if trainable else 0.0,
                bn_train=trainable or not strategy.frozen_bn_eval,
            )
        )
    return tuple(plans)


def make_plan(
    strategy: Strategy,
    stage_names: Sequence[str],
    *,
    epochs: int,
    head_lr: float | None = None,
    optimizer: str = "adamw",
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    augment: str = "none",
    seed: int = 0,
    clip_grad_norm: float | None = None,
    schedule: Schedule | None = None,
    selection: Selection | None = None,
) -> TrainingPlan:
    """The training plan of ``strategy`` on a model with ``stage_names``.

    Args:
        strategy: the strategy row.
        stage_names: the model's backbone stages, stem first (``Backend.stages()``).
        epochs: ``--epochs``; a probe-only strategy runs at least ``strategy.min_epochs``.
        head_lr: ``--lr`` (default: the strategy's ``head_lr``).
        optimizer: one of ``OPTIMIZERS``.
        weight_decay: optimizer weight decay (the strategy's when it has one; 0 when L2-SP replaces it, and for Adam
            and RMSprop).
        momentum: SGD momentum.
        augment: training augmentation.
        seed: the cell's seed.
        clip_grad_norm: clip the global gradient norm at this value (``None``: no clipping).
        schedule: the learning-rate schedule (default: constant).
        selection: the epoch selection and early stopping (default: val accuracy, every epoch, no early stop).

    Raises:
        PlanError: an impossible combination (one line naming the value).
    """
    if not stage_names:
        raise PlanError(f"strategy {strategy.name!r}: the model reports no backbone stages")
    if int(epochs) < 1:
        raise PlanError(f"epochs must be >= 1, got {epochs!r}")
    if augment not in AUGMENTS:
        raise PlanError(f"unknown augment {augment!r}; expected one of: {', '.join(AUGMENTS)}")
    if optimizer not in OPTIMIZERS:
        raise PlanError(f"unknown optimizer {optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
    lr = strategy.head_lr if head_lr is None else head_lr
    _check_positive("head learning rate", lr)
    schedule = schedule or Schedule()
    selection = selection or Selection()
    check_schedule(schedule)
    check_selection(selection)
    if clip_grad_norm is not None:
        _check_positive("gradient clipping norm", clip_grad_norm)
    if strategy.layer_decay is not None:
        _check_positive(f"strategy {strategy.name!r} layer_decay", strategy.layer_decay)
    if strategy.cache_features and strategy.train_backbone != "none":
        raise PlanError(
            f"strategy {strategy.name!r} caches features but trains the backbone ({strategy.train_backbone})"
        )
    l2sp = strategy.l2sp_alpha > 0 or strategy.head_l2_beta > 0
    if strategy.weight_decay is not None:  # a searched value (--tune) replaces the run's
        weight_decay = strategy.weight_decay
    regularizers = Regularizers(strategy.l2sp_alpha, strategy.head_l2_beta)
    optim = OptimizerPlan(
        name=optimizer,
        weight_decay=0.0 if l2sp or optimizer in NO_WEIGHT_DECAY else weight_decay,
        momentum=momentum,
        clip_grad_norm=clip_grad_norm,
    )
    frozen = stage_plans(strategy, stage_names, lr, "none")

    distillation = None
    if strategy.distill_temperature is not None:
        _check_positive(f"strategy {strategy.name!r} distill_temperature", strategy.distill_temperature)
        if not 0 < strategy.distill_alpha <= 1:
            raise PlanError(
                f"strategy {strategy.name!r}: distill_alpha must be in (0, 1], got {strategy.distill_alpha!r}"
            )
        distillation = Distillation(strategy.distill_temperature, strategy.distill_alpha)
    probe_lr = lr if strategy.probe_lr is None or strategy.cache_features else strategy.probe_lr
    _check_positive("probe learning rate", probe_lr)
    if strategy.last_k_stages == ALL_STAGES:
        strategy = replace(strategy, last_k_stages=len(stage_names))

    def phase(name: str, inputs: Inputs, count: int, train_backbone: str, head_lr: float = lr) -> PhasePlan:
        stages = frozen if train_backbone == "none" else stage_plans(strategy, stage_names, head_lr, train_backbone)
        regs = regularizers if train_backbone != "none" else Regularizers(head_l2_beta=strategy.head_l2_beta)
        return PhasePlan(
            name=name,
            inputs=inputs,
            epochs=count,
            head_lr=head_lr,
            stages=stages,
            optimizer=optim,
            regularizers=regs,
            augment=augment if inputs == "images" else "none",
            distillation=distillation if inputs == "images" else None,
        )

    if strategy.cache_features:
        phases = [phase("probe", "features", max(int(epochs), strategy.min_epochs), "none")]
    else:
        phases = []
        if strategy.probe_epochs > 0:
            phases.append(phase("probe", "features", strategy.probe_epochs, "none", probe_lr))
        main_epochs = max(int(epochs), strategy.min_epochs)
        warmup = min(strategy.head_warmup_epochs, main_epochs - 1) if strategy.train_backbone != "none" else 0
        if warmup > 0:
            phases.append(phase("head_warmup", "images", warmup, "none"))
        phases.append(phase("main", "images", main_epochs - warmup, strategy.train_backbone))
    return TrainingPlan(
        strategy=strategy.name,
        pretrained=strategy.pretrained,
        phases=tuple(phases),
        augment=augment,
        seed=seed,
        schedule=schedule,
        selection=selection,
    )


def check_schedule(schedule: Schedule) -> None:
    """Raise ``PlanError`` (one line naming the value) for a schedule that cannot run."""
    if schedule.name not in SCHEDULES:
        raise PlanError(f"unknown schedule {schedule.name!r}; expected one of: {', '.join(SCHEDULES)}")
    if not isinstance(schedule.warmup_epochs, int) or schedule.warmup_epochs < 0:
        raise PlanError(f"warm-up epochs must be an integer >= 0, got {schedule.warmup_epochs!r}")
    if not isinstance(schedule.step_every, int) or schedule.step_every < 1:
        raise PlanError(f"step every must be an integer >= 1 epoch, got {schedule.step_every!r}")
    if not (isinstance(schedule.step_gamma, (int, float)) and 0 < schedule.step_gamma <= 1):
        raise PlanError(f"step gamma must be in (0, 1], got {schedule.step_gamma!r}")


def check_selection(selection: Selection) -> None:
    """Raise ``PlanError`` (one line naming the value) for a selection that cannot run."""
    if selection.by not in SELECT_BY:
        raise PlanError(f"unknown select-by metric {selection.by!r}; expected one of: {', '.join(SELECT_BY)}")
    if selection.candidates not in SELECT_FROM:
        raise PlanError(f"unknown candidate epochs {selection.candidates!r}; expected one of: {', '.join(SELECT_FROM)}")
    if selection.patience is not None and (not isinstance(selection.patience, int) or selection.patience < 1):
        raise PlanError(f"patience must be an integer >= 1 epoch, got {selection.patience!r}")
