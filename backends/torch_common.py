"""Shared PyTorch machinery for the torch-based backends (timm, torchvision).

A subclass only says how to create a model, where its classifier is, how its backbone splits into ordered
stages and how to get pooled features; this module does the rest of the ``Backend`` contract: uint8 →
normalized tensor conversion on device, freezing with ``requires_grad`` per strategy (frozen BatchNorm in eval
mode), optimizer param groups (backbone LR = head LR × scale), train/predict steps with optional bf16/fp16
autocast, channels-last and ``torch.compile``, snapshots, ``torch.cuda.synchronize`` and peak memory.

This module imports torch at import time; it is only ever imported through the lazy backend registry.
"""

from __future__ import annotations

import abc
import os
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch import nn

from tlbench.backends.base import Backend, BackendError, BuildInfo, DataConfig, ModelSpec, OptimConfig, ParamCounts
from tlbench.benchmarks.strategies import Strategy

_BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


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


def read_state_dict(path: str) -> "OrderedDict[str, torch.Tensor]":
    """Load a weights file safely (``weights_only=True``), unwrapping ``state_dict``/``model`` containers.

    Raises:
        BackendError: the file is missing or holds no tensor state dict.
    """
    if not os.path.isfile(path):
        raise BackendError(f"weights file {path!r} does not exist; expected a .pth/.pt state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise BackendError(f"weights file {path!r} is not a loadable torch state dict ({type(exc).__name__}: {exc})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackendError(f"weights file {path!r} holds no tensor state dict")
    return OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())


def _map_state(target: "OrderedDict[str, torch.Tensor]", src: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor] | None":
    """``src`` keyed like ``target``: by name when the key sets agree, else positionally; ``None`` if shapes differ."""
    if set(src) == set(target):
        pairs = [(k, k, src[k]) for k in target]
    elif len(src) == len(target):
        pairs = [(tk, sk, sv) for tk, (sk, sv) in zip(target, src.items())]
    else:
        return None
    if any(tuple(target[tk].shape) != tuple(sv.shape) for tk, _, sv in pairs):
        return None
    return OrderedDict((tk, sv) for tk, _, sv in pairs)


def load_backbone_weights(model: nn.Module, state: "OrderedDict[str, torch.Tensor]", classifier_prefixes: list[str], source: str) -> bool:
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
        for (tk, tv), (sk, sv) in zip(target.items(), src.items()):
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
        raise BackendError(f"weights {source!r}: {bad!r} has shape {tuple(src[bad].shape)}, expected {tuple(target[bad].shape)}")
    model.load_state_dict(mapped, strict=False)
    return False


class TorchBackend(Backend):
    """``Backend`` for any torch ``nn.Module`` classifier; subclasses supply the model-specific hooks."""

    def __init__(self, device: str = "cpu") -> None:
        super().__init__(device)
        self.device = resolve_torch_device(device)
        self.model: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.data_config: DataConfig | None = None
        self.spec: ModelSpec | None = None
        self.autocast_dtype: torch.dtype | None = None
        self.channels_last = False
        self.augment = "none"
        self._generator = torch.Generator(device="cpu")
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_steps = 0
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        self._forward: Any = None

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
        """Pooled pre-classifier features ``(N, D)`` for a normalized batch."""

    @abc.abstractmethod
    def head_logits(self, model: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """Logits from pooled features through the classifier head alone."""

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
        torch.manual_seed(int(spec.options.get("seed", 0)))
        model, source = self.create_model(spec)
        self.spec = spec
        self.data_config = self.model_data_config(model, spec)
        self.channels_last = bool(spec.options.get("channels_last", False))
        self.autocast_dtype = self._autocast_dtype(spec.options.get("amp", False))
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        in_chans = 1 if spec.in_chans == 1 else 3
        mean = torch.tensor(self.data_config.mean[:in_chans], device=self.device).view(1, in_chans, 1, 1)
        std = torch.tensor(self.data_config.std[:in_chans], device=self.device).view(1, in_chans, 1, 1)
        self._mean, self._std = mean * 255.0, std * 255.0
        self._forward = model
        compiled = bool(spec.options.get("compile", False))
        if compiled:
            self._forward = torch.compile(model)
        dtype = "float32" if self.autocast_dtype is None else f"{str(self.autocast_dtype).removeprefix('torch.')}-autocast"
        return BuildInfo(
            pretrained=source,
            data_config=self.data_config,
            dtype=dtype,
            device=str(self.device),
            extra={"memory_format": "channels_last" if self.channels_last else "contiguous", "compiled": compiled},
        )

    def _autocast_dtype(self, amp: Any) -> torch.dtype | None:
        if not amp:
            return None
        if isinstance(amp, str) and amp in ("fp16", "float16"):
            if self.device.type != "cuda":
                raise BackendError("--amp fp16 needs a CUDA device; on CPU use --amp bf16")
            return torch.float16
        return torch.bfloat16

    def apply_strategy(self, strategy: Strategy, optim: OptimConfig) -> ParamCounts:
        model = self._require_model()
        self._generator.manual_seed(optim.seed)
        self.augment = optim.augment
        head_prefixes = self.classifier_prefixes(model)
        stages = self.stage_parameter_names(model)
        if strategy.train_backbone == "all":
            trainable_backbone = {n for stage in stages for n in stage}
        elif strategy.train_backbone == "last_k":
            k = strategy.last_k_stages
            if not 0 < k <= len(stages):
                raise BackendError(f"strategy {strategy.name!r}: last_k_stages={k} but the model has {len(stages)} stages")
            trainable_backbone = {n for stage in stages[-k:] for n in stage}
        else:
            trainable_backbone = set()
        head_params, backbone_params = [], []
        for name, param in model.named_parameters():
            is_head = any(name == p or name.startswith(p + ".") for p in head_prefixes)
            param.requires_grad_(is_head or name in trainable_backbone)
            if is_head:
                head_params.append(param)
            elif name in trainable_backbone:
                backbone_params.append(param)
        groups = [{"params": head_params, "lr": strategy.head_lr}]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": strategy.head_lr * strategy.backbone_lr_scale})
        if optim.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=strategy.head_lr, momentum=optim.momentum, weight_decay=optim.weight_decay)
        elif optim.optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(groups, lr=strategy.head_lr, weight_decay=optim.weight_decay)
        else:
            raise BackendError(f"unknown optimizer {optim.optimizer!r}; expected adamw or sgd")
        self._frozen_bn_eval = strategy.frozen_bn_eval
        model.eval()  # the next train step re-enters train mode with this strategy's frozen BatchNorm in eval
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return ParamCounts(trainable=trainable, total=total)

    def _train_mode(self) -> None:
        """``model.train()``, but BatchNorm layers whose parameters are all frozen stay in eval mode."""
        model = self._require_model()
        model.train()
        if getattr(self, "_frozen_bn_eval", True):
            for module in model.modules():
                if isinstance(module, _BN_TYPES):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()

    def to_input(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC numpy → normalized float NCHW tensor on the device (gray → 1 channel if in_chans=1)."""
        # memory-mapped cache slices are read-only; torch wants a writable buffer (copies only then)
        x = torch.from_numpy(np.require(images, np.uint8, ["C_CONTIGUOUS", "WRITEABLE"])).to(self.device, non_blocking=True)
        if self.spec is not None and self.spec.in_chans == 1:
            x = x[..., :1]
        x = x.permute(0, 3, 1, 2).float()
        x = (x - self._mean) / self._std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

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

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        model = self._require_model()
        if not model.training:
            self._train_mode()
        x = self._augment(self.to_input(images))
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        with self._autocast():
            loss = nn.functional.cross_entropy(self._forward(x), y)
        self._step(loss)

    def train_head_step(self, features: np.ndarray, labels: np.ndarray) -> None:
        model = self._require_model()
        if not model.training:
            self._train_mode()
        f = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(self.device)
        loss = nn.functional.cross_entropy(self.head_logits(model, f), y)
        self._step(loss)

    def _step(self, loss: torch.Tensor) -> None:
        assert self.optimizer is not None, "apply_strategy() must be called before training"
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._loss_sum += loss.detach().float()
        self._loss_steps += 1

    def pop_train_loss(self) -> float:
        mean = float(self._loss_sum.item()) / max(1, self._loss_steps)
        self._loss_sum.zero_()
        self._loss_steps = 0
        return mean

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        model = self._require_model()
        model.eval()
        with self._autocast():
            logits = self._forward(self.to_input(images))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    @torch.inference_mode()
    def extract_features(self, images: np.ndarray) -> np.ndarray:
        model = self._require_model()
        model.eval()
        with self._autocast():
            feats = self.pooled_features(model, self.to_input(images))
        return feats.float().cpu().numpy()

    @torch.inference_mode()
    def predict_head_proba(self, features: np.ndarray) -> np.ndarray:
        model = self._require_model()
        model.eval()
        f = torch.from_numpy(np.asarray(features, dtype=np.float32)).to(self.device)
        return torch.softmax(self.head_logits(model, f).float(), dim=1).cpu().numpy()

    def snapshot(self) -> Any:
        return {k: v.detach().clone() for k, v in self._require_model().state_dict().items()}

    def restore(self, state: Any) -> None:
        self._require_model().load_state_dict(state)

    def save_weights(self, path: str) -> None:
        """Write the model's state dict (CPU tensors, loadable with ``torch.load(weights_only=True)``) to ``path``.

        The file is written beside ``path`` and renamed into place, so a crash never leaves half a checkpoint.
        """
        state = OrderedDict((k, v.detach().cpu()) for k, v in self._require_model().state_dict().items())
        tmp = f"{path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)

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


def _random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0)) -> torch.Tensor:
    """Per-batch random resized crop on device tensors (same crop box for the batch, resized back)."""
    _, _, h, w = x.shape
    area = float(torch.empty(1).uniform_(*scale, generator=generator))
    side_h = max(1, int(round(h * area**0.5)))
    side_w = max(1, int(round(w * area**0.5)))
    top = int(torch.randint(0, h - side_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - side_w + 1, (1,), generator=generator))
    crop = x[:, :, top : top + side_h, left : left + side_w]
    return nn.functional.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)
