"""Typed per-backend options, framework-free, validated once at the edge (before any cell starts).

Like optimum-benchmark's ``backends/<x>/config.py``: each backend family declares the options it takes as a
frozen dataclass, and ``validate`` rejects, in one line, every combination the backend cannot honour (Keras
below 32 px or with one input channel, fp16 without a CUDA device...). The command line builds one options
object per backend from its flags; a flag the backend does not take is rejected instead of being silently
ignored (``options_from_flags``). Cells receive the options object, never an untyped dict, and the options
fingerprint of a cell covers only the options its backend takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping

AMPS = ("", "bf16", "fp16")


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

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict view (recorded with the suite and fingerprinted per cell)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BackendOptions":
        """Build from a dict made by ``to_dict``.

        Raises:
            OptionsError: a key this class does not take.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise OptionsError(f"{cls.__name__} takes {', '.join(sorted(names))}; got unknown option(s) {', '.join(unknown)}")
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
        compile: ``torch.compile`` the model (compile time is measured apart from throughput).
    """

    channels_last: bool = False
    compile: bool = False

    FLAGS: ClassVar[dict[str, str]] = {"amp": "--amp", "channels_last": "--channels-last", "compile": "--compile"}

    def validate(self, backend: str, *, device: str, image_size: int, in_chans: int, gpu_visible: bool) -> None:
        super().validate(backend, device=device, image_size=image_size, in_chans=in_chans, gpu_visible=gpu_visible)
        if self.amp == "fp16" and not _on_gpu(device, gpu_visible):
            raise OptionsError(f"--amp fp16 needs a CUDA device but backend {backend!r} would run on the CPU (--device {device}); use --amp bf16 on CPU")


#: smallest input side every listed ``keras.applications`` backbone accepts (five stride-2 stages)
KERAS_MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class KerasOptions(BackendOptions):
    """Options of the Keras backend.

    Attributes:
        jit_compile: XLA-compile the train and predict steps.
    """

    jit_compile: bool = False

    FLAGS: ClassVar[dict[str, str]] = {"amp": "--amp", "jit_compile": "--jit-compile"}

    def validate(self, backend: str, *, device: str, image_size: int, in_chans: int, gpu_visible: bool) -> None:
        super().validate(backend, device=device, image_size=image_size, in_chans=in_chans, gpu_visible=gpu_visible)
        if self.amp == "fp16":
            raise OptionsError(f"backend {backend!r} takes --amp bf16 only (mixed_bfloat16), got --amp fp16")
        if image_size < KERAS_MIN_IMAGE_SIZE:
            raise OptionsError(f"backend {backend!r} needs --image-size >= {KERAS_MIN_IMAGE_SIZE} (five stride-2 stages), got {image_size}")
        if in_chans != 3:
            raise OptionsError(
                f"backend {backend!r} takes --in-chans 3 (gray replicated to RGB), got {in_chans}: "
                "keras.applications' weights and preprocess_input are RGB-only"
            )


def options_from_flags(backend: str, options_class: type[BackendOptions], flags: Mapping[str, Any]) -> BackendOptions:
    """The options object of ``backend`` from command-line flag values.

    Args:
        backend: the backend's registry name.
        options_class: its options class (from the registry row).
        flags: every backend-option flag of the command line by field name (``amp``, ``channels_last``,
            ``compile``, ``jit_compile``); a value equal to the field's default counts as not given.

    Raises:
        OptionsError: a flag was given that ``backend`` does not take (it would be silently ignored).
    """
    defaults = {f.name: f.default for f in fields(BackendOptions) + fields(TorchOptions) + fields(KerasOptions)}
    taken = {f.name for f in fields(options_class)}
    values = {}
    for name, value in flags.items():
        if name in taken:
            values[name] = value
        elif value != defaults.get(name):
            flag = {**TorchOptions.FLAGS, **KerasOptions.FLAGS}.get(name, name)
            raise OptionsError(
                f"{flag} is not an option of backend {backend!r} (it takes: "
                f"{', '.join(options_class.FLAGS.get(n, n) for n in sorted(taken)) or 'none'}); "
                "run that backend in its own suite or drop the flag"
            )
    return options_class(**values)
