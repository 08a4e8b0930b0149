"""Transfer strategies as data: one frozen dataclass per strategy, all in one table.

A strategy says *what* to train; ``tlbench.core.plan.make_plan`` turns it, the model's stages and the run options
into a framework-free ``TrainingPlan`` (phases, per-stage trainability and learning rates, BatchNorm policy,
regularizers), and each backend applies a plan with its own primitive (``requires_grad`` in torch,
``layer.trainable`` in Keras). Adding a strategy means adding a row to ``STRATEGIES``, not code per backend.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import Literal

TrainBackbone = Literal["none", "last_k", "all"]
ProbeHead = Literal["linear", "logreg", "knn"]
#: how many backbones a strategy takes: one, or two or more joined by ``+`` (``fusion``)
Backbones = Literal["one", "several"]

#: ``last_k_stages`` value meaning "every stage of the model" (``partial_finetune@all``)
ALL_STAGES = -1

#: trials of every strategy's search (``--tune``): each search space is a grid of exactly this many points, so every
#: strategy gets the same budget
TRIAL_BUDGET = 8
#: the strategy fields a search may set
TUNABLE = ("head_lr", "weight_decay", "l2sp_alpha", "probe_c", "knn_k")
#: separates a trial's configuration from its strategy in the trial's name (``full_finetune~head_lr=0.001,...``)
TRIAL_SEPARATOR = "~"


@dataclass(frozen=True)
class SearchSpace:
    """A grid over strategy fields (``TUNABLE``): every combination of the axes' values is one trial.

    Attributes:
        axes: ``(field, values)`` pairs, in the order the grid is walked (the first axis varies slowest).
    """

    axes: tuple[tuple[str, tuple[float, ...]], ...]

    @property
    def size(self) -> int:
        """Number of points (trials)."""
        size = 1
        for _, values in self.axes:
            size *= len(values)
        return size

    def configs(self) -> list[dict[str, float]]:
        """Every point, as ``{field: value}``, in grid order."""
        names = [name for name, _ in self.axes]
        return [dict(zip(names, point, strict=True)) for point in itertools.product(*(v for _, v in self.axes))]

    def describe(self) -> str:
        """``head_lr 0.0001, 0.0003, 0.001, 0.003 x weight_decay 0.0001, 0.01 (8 trials)``."""
        axes = " x ".join(f"{name} {', '.join(f'{v:g}' for v in values)}" for name, values in self.axes)
        return f"{axes} ({self.size} trials)"


#: learning rates searched, per strategy family (4 log-spaced points at least): probes higher, fine-tuning lower,
#: scratch widest
PROBE_LRS = (1e-3, 3e-3, 1e-2, 3e-2)
FINETUNE_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
SCRATCH_LRS = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
#: weight decays searched where weight decay applies (AdamW's decoupled decay, SGD's L2)
WEIGHT_DECAYS = (1e-4, 1e-2)
#: L2-SP strengths searched (L2-SP replaces weight decay)
L2SP_ALPHAS = (1e-2, 1e-1)
#: the logistic probe's inverse regularization strengths and the k-NN probe's neighbours searched
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)
KNN_KS = (1, 3, 5, 7, 11, 15, 21, 31)

PROBE_SEARCH = SearchSpace((("head_lr", PROBE_LRS), ("weight_decay", WEIGHT_DECAYS)))
FINETUNE_SEARCH = SearchSpace((("head_lr", FINETUNE_LRS), ("weight_decay", WEIGHT_DECAYS)))
SCRATCH_SEARCH = SearchSpace((("head_lr", SCRATCH_LRS),))
L2SP_SEARCH = SearchSpace((("head_lr", FINETUNE_LRS), ("l2sp_alpha", L2SP_ALPHAS)))
LOGREG_SEARCH = SearchSpace((("probe_c", PROBE_CS),))
KNN_SEARCH = SearchSpace((("knn_k", KNN_KS),))


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
        weight_decay: the optimizer's weight decay (``None``: the run's, 1e-4); set by a search.
        probe_c: ``logreg``: a fixed C (a search's) instead of the one chosen on val from the default grid.
        knn_k: ``knn``: neighbours (``None``: 11).
        search: the search space of ``--tune`` (``TRIAL_BUDGET`` points).
        tuning_trial: this row is one point of a search (its name ``<strategy>~<field>=<value>,...``): a
            ``tuning_trial`` cell, trained on train and scored on val, with no test split.
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
    weight_decay: float | None = None
    probe_c: float | None = None
    knn_k: int | None = None
    search: SearchSpace | None = None
    tuning_trial: bool = False

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
            search=SCRATCH_SEARCH,
        ),
        Strategy(
            name="linear_probe",
            summary="frozen pretrained backbone; features extracted once and cached, only a new head trains",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            head_lr=1e-2,
            min_epochs=30,
            search=PROBE_SEARCH,
        ),
        Strategy(
            name="partial_finetune",
            summary="stem and early stages frozen (BatchNorm in eval mode); last 2 stages + head train",
            pretrained=True,
            train_backbone="last_k",
            last_k_stages=2,
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            search=FINETUNE_SEARCH,
        ),
        Strategy(
            name="full_finetune",
            summary="head trained alone for 1 epoch, then all layers with backbone LR = 0.1 x head LR",
            pretrained=True,
            train_backbone="all",
            backbone_lr_scale=0.1,
            head_lr=1e-3,
            head_warmup_epochs=1,
            search=FINETUNE_SEARCH,
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
            search=FINETUNE_SEARCH,
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
            search=FINETUNE_SEARCH,
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
            search=L2SP_SEARCH,
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
            search=FINETUNE_SEARCH,
        ),
        Strategy(
            name="logreg_probe",
            summary="frozen features cached on disk; L2 logistic regression, C chosen on val (Kornblith et al. 2019)",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="logreg",
            search=LOGREG_SEARCH,
        ),
        Strategy(
            name="knn_probe",
            summary="frozen features cached on disk; k-NN, k = 11, cosine distance (the MedMNIST+ protocol)",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="knn",
            search=KNN_SEARCH,
        ),
        Strategy(
            name="fusion",
            summary="pooled features of two or more backbones (--models a+b) concatenated, then L2 logistic regression",
            pretrained=True,
            train_backbone="none",
            cache_features=True,
            probe_head="logreg",
            backbones="several",
            search=LOGREG_SEARCH,
        ),
    )
}

#: strategies that take a ``@k`` suffix: ``partial_finetune@3`` trains the last 3 stages, ``@all`` every stage
SWEEPABLE = ("partial_finetune",)


def head_only(strategy: Strategy) -> Strategy:
    """The head-only variant of a strategy (its warm-up phase)."""
    return replace(strategy, name=f"{strategy.name}:head_warmup", train_backbone="none", last_k_stages=0)


def trial_name(strategy: Strategy, config: dict[str, float]) -> str:
    """The name of the trial of ``strategy`` at ``config``: ``full_finetune~head_lr=0.001,weight_decay=0.0001``."""
    return strategy.name + TRIAL_SEPARATOR + ",".join(f"{key}={value:g}" for key, value in config.items())


def with_config(strategy: Strategy, config: dict[str, float]) -> Strategy:
    """``strategy`` with the tunable fields of ``config`` set (name and everything else kept).

    Raises:
        KeyError: a field that is not tunable.
    """
    unknown = [key for key in config if key not in TUNABLE]
    if unknown:
        raise KeyError(
            f"strategy {strategy.name!r}: {unknown[0]!r} is not tunable; expected some of: {', '.join(TUNABLE)}"
        )
    values = {key: int(value) if key == "knn_k" else float(value) for key, value in config.items()}
    return replace(strategy, **values)


def config_of(strategy: Strategy) -> dict[str, float]:
    """The values of ``strategy``'s searched fields (its search space's axes)."""
    if strategy.search is None:
        return {}
    return {name: getattr(strategy, name) for name, _ in strategy.search.axes}


def _trial(name: str) -> Strategy:
    """The trial row named ``<strategy>~<field>=<value>,...``: the strategy with those searched values."""
    base_name, _, text = name.partition(TRIAL_SEPARATOR)
    base = get_strategy(base_name)
    axes = dict(base.search.axes) if base.search is not None else {}
    config: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or key not in axes or number != number:
            raise KeyError(
                f"strategy {name!r}: expected {base_name}{TRIAL_SEPARATOR}FIELD=VALUE,... over its search space "
                f"({', '.join(axes) or 'none'}), got {item!r}"
            )
        config[key] = number
    if set(config) != set(axes):
        raise KeyError(f"strategy {name!r}: a trial sets every searched field ({', '.join(axes)})")
    return replace(with_config(base, config), name=name, tuning_trial=True)


def get_strategy(name: str) -> Strategy:
    """Look up a strategy by name; ``partial_finetune@K`` (K = 1, 2, ... or ``all``) is the frozen-layer sweep, and
    ``<strategy>~<field>=<value>,...`` one trial of a strategy's search (``--tune``).

    Raises:
        KeyError: unknown name, bad ``@K`` or bad trial (the message lists the valid ones).
    """
    if TRIAL_SEPARATOR in name:
        return _trial(name)
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
