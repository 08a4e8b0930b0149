"""Typed per-backend options, framework-free, validated once at the edge (before any cell starts).

Like optimum-benchmark's ``backends/<x>/config.py``: each backend family declares the options it takes as a
frozen dataclass, and ``validate`` rejects, in one line, every combination the backend cannot honour (Keras
below 32 px or with one input channel, fp16 without a CUDA device...). The command line builds one options
object per backend from its flags; a flag the backend does not take is rejected instead of being silently
ignored (``options_from_flags``). Cells receive the options object, never an untyped dict, and the options
fingerprint of a cell covers only the options its backend takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar

AMPS = ("", "bf16", "fp16")
#: classifier heads (``--head``): ``native`` (the model's own classifier: a Linear/MLP on pooled features), ``fcn``
#: (the fully-convolutional head of the Keras backend, on the trunk's spatial feature map) or ``mlp`` (seed 002's
#: head on pooled features: ``MLP_HEAD_UNITS`` hidden units, ReLU and dropout after each)
HEADS = ("native", "fcn", "mlp")
#: the ``fcn`` head, the same in every framework: ``Conv 1x1 (C_trunk → 256) → ReLU → Dropout(0.5) →
#: Conv 1x1 (256 → num_classes) → global average pool``, kernels Glorot-uniform, biases zero (Keras' defaults)
FCN_HEAD_HIDDEN_CHANNELS = 256
FCN_HEAD_DROPOUT = 0.5
#: the ``mlp`` head, the same in every framework: ``Dense(512) → ReLU → Dropout(0.5) → Dense(256) → ReLU →
#: Dropout(0.5) → Dense(128) → ReLU → Dropout(0.5) → Dense(num_classes)`` on the pooled features, kernels
#: Glorot-uniform, biases zero (Keras' defaults)
MLP_HEAD_UNITS = (512, 256, 128)
MLP_HEAD_DROPOUT = 0.5
#: what ``BuildInfo.facts["head"]`` records for each head
HEAD_FACTS = {"native": "native", "fcn": "fcn-1x1", "mlp": "mlp-" + "-".join(map(str, MLP_HEAD_UNITS))}
#: models whose trunk the torch backends can put the ``fcn`` head on: the plain VGGs (a ``features`` stack of
#: convolutions and max-pools ending in 512 channels, same layout in torchvision and timm)
FCN_MODELS = re.compile(r"vgg(11|13|16|19)(_bn)?")


class OptionsError(ValueError):
    """An option value or combination a backend cannot honour (one line naming it)."""


@dataclass(frozen=True)
class BackendOptions:
    """Options every backend takes.

    Attributes:
        amp: mixed precision: ``""`` (float32), ``bf16`` or ``fp16``.
    """

    amp: str = ""

    #: the command-line flag of each field (for messages)
    FLAGS: ClassVar[dict[str, str]] = {"amp": "--amp"}
    #: fields added after results were committed: ``to_dict`` leaves them out while they hold their default, so
    #: the options fingerprints of cells finished before the field existed stay valid
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("head", "infer_compile")

    def validate(self, backend: str, *, device: str, image_size: int, in_chans: int, gpu_visible: bool) -> None:
        """Raise ``OptionsError`` when ``backend`` cannot honour these options with the run's settings.

        Args:
            backend: the backend's registry name (for messages).
            device: the requested device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``gpu``).
            image_size: the input side in pixels.
            in_chans: 1 or 3.
            gpu_visible: whether an NVIDIA GPU is visible on this machine.
        """
        if self.amp not in AMPS:
            raise OptionsError(f"unknown --amp {self.amp!r}; expected one of: bf16, fp16 (or leave it out for float32)")

    def check_model(self, backend: str, model: str) -> None:
        """Raise ``OptionsError`` when ``backend`` cannot honour these options for ``model`` (framework-free).

        The base options fit every model; ``TorchOptions`` rejects ``head="fcn"`` for non-VGG models (``mlp`` fits
        every model).
        """

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (recorded with the suite and fingerprinted per cell); fields of
        ``OMITTED_AT_DEFAULT`` are left out while they hold their default (``from_dict`` restores them)."""
        data = asdict(self)
        for f in fields(self):
            if f.name in self.OMITTED_AT_DEFAULT and f.default is not MISSING and data[f.name] == f.default:
                del data[f.name]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BackendOptions:
        """Build from a dict made by ``to_dict``.

        Raises:
            OptionsError: a key this class does not take.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise OptionsError(
                f"{cls.__name__} takes {', '.join(sorted(names))}; got unknown option(s) {', '.join(unknown)}"
            )
        return cls(**dict(data))


def _on_gpu(device: str, gpu_visible: bool) -> bool:
    """Whether a cell with ``device`` will run on a GPU."""
    device = device.lower()
    return device in ("cuda", "gpu") or device.startswith("cuda:") or (device == "auto" and gpu_visible)


@dataclass(frozen=True)
class TorchOptions(BackendOptions):
    """Options of the torch backends (timm, torchvision).

    Attributes:
        channels_last: channels-last memory format for weights and inputs.
        compile: ``torch.compile`` the model for training (compile time is measured apart from throughput).
        infer_compile: once training is over, ``torch.compile`` the trained model for inference with inductor's
            freezing (weights folded in as constants, BatchNorm into convolutions; batches padded to one shape);
            its compile time is its own column (``infer_prepare_s``).
        head: ``native`` (the model's own classifier, its last Linear replaced), ``fcn`` (VGG models only: the
            Keras backend's fully-convolutional head directly on ``features``' 512-channel map, no pooling/MLP) or
            ``mlp`` (any model: seed 002's MLP in place of the last Linear, on the features that Linear took).
    """

    channels_last: bool = False
    compile: bool = False
    infer_compile: bool = False
    head: str = "native"

    FLAGS: ClassVar[dict[str, str]] = {
        "amp": "--amp",
        "channels_last": "--channels-last",
        "compile": "--compile",
        "infer_compile": "--infer-compile",
        "head": "--head",
    }

    def validate(self, backend: str, *, device: str, image_size: int, in_chans: int, gpu_visible: bool) -> None:
        super().validate(backend, device=device, image_size=image_size, in_chans=in_chans, gpu_visible=gpu_visible)
        if self.amp == "fp16" and not _on_gpu(device, gpu_visible):
            raise OptionsError(
                f"--amp fp16 needs a CUDA device but backend {backend!r} would run on the CPU (--device {device}); "
                "use --amp bf16 on CPU"
            )
        _check_head(self.head)

    def check_model(self, backend: str, model: str) -> None:
        if self.head == "fcn" and not FCN_MODELS.fullmatch(model):
            raise OptionsError(
                f"--head fcn needs a VGG trunk (vgg11, vgg13, vgg16, vgg19, optionally _bn), but backend {backend!r} "
                f"got model {model!r}; use --head native for it"
            )


#: smallest input side every listed ``keras.applications`` backbone accepts (five stride-2 stages)
KERAS_MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class KerasOptions(BackendOptions):
    """Options of the Keras backend.

    Attributes:
        jit_compile: XLA-compile the train and predict steps.
        head: ``fcn`` (the backend's fully-convolutional head, the default) or ``mlp`` (global average pooling, then
            seed 002's MLP); ``native`` is rejected, keras.applications backbones are built with ``include_top=False``.
    """

    jit_compile: bool = False
    head: str = "fcn"

    FLAGS: ClassVar[dict[str, str]] = {"amp": "--amp", "head": "--head", "jit_compile": "--jit-compile"}

    def validate(self, backend: str, *, device: str, image_size: int, in_chans: int, gpu_visible: bool) -> None:
        super().validate(backend, device=device, image_size=image_size, in_chans=in_chans, gpu_visible=gpu_visible)
        _check_head(self.head)
        if self.head == "native":
            raise OptionsError(
                f"backend {backend!r} has no native classifier (its backbones are built without their top): "
                f"--head fcn (default) or mlp, got --head {self.head}"
            )
        if self.amp == "fp16":
            raise OptionsError(f"backend {backend!r} takes --amp bf16 only (mixed_bfloat16), got --amp fp16")
        if self.jit_compile and backend == "keras-torch":
            raise OptionsError("backend 'keras-torch' has no --jit-compile (its steps run eagerly in torch)")
        if image_size < KERAS_MIN_IMAGE_SIZE:
            raise OptionsError(
                f"backend {backend!r} needs --image-size >= {KERAS_MIN_IMAGE_SIZE} (five stride-2 stages), "
                f"got {image_size}"
            )
        if in_chans != 3:
            raise OptionsError(
                f"backend {backend!r} takes --in-chans 3 (gray replicated to RGB), got {in_chans}: "
                "keras.applications' weights and preprocess_input are RGB-only"
            )


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise OptionsError(f"unknown --head {head!r}; expected one of: {', '.join(HEADS)}")


def options_from_flags(backend: str, options_class: type[BackendOptions], flags: Mapping[str, Any]) -> BackendOptions:
    """The options object of ``backend`` from command-line flag values.

    Args:
        backend: the backend's registry name.
        options_class: its options class (from the registry row).
        flags: every backend-option flag of the command line by field name (``amp``, ``channels_last``,
            ``compile``, ``jit_compile``, ``head``); ``None`` means not given (the backend's own default: ``head``
            is ``native`` for torch, ``fcn`` for Keras), and so does a value equal to the default every options
            class agrees on (``amp=""``, ``compile=False``...).

    Raises:
        OptionsError: a flag was given that ``backend`` does not take (it would be silently ignored).
    """
    defaults: dict[str, set[Any]] = {}
    for f in fields(BackendOptions) + fields(TorchOptions) + fields(KerasOptions):
        defaults.setdefault(f.name, set()).add(f.default)
    taken = {f.name for f in fields(options_class)}
    values = {}
    for name, value in flags.items():
        if value is None:
            continue
        if name in taken:
            values[name] = value
        elif not (
            len(defaults.get(name, ())) == 1 and value in defaults[name]
        ):  # a default some backend differs on counts as given
            flag = {**TorchOptions.FLAGS, **KerasOptions.FLAGS}.get(name, name)
            raise OptionsError(
                f"{flag} is not an option of backend {backend!r} (it takes: "
                f"{', '.join(options_class.FLAGS.get(n, n) for n in sorted(taken)) or 'none'}); "
                "run that backend in its own suite or drop the flag"
            )
    return options_class(**values)
