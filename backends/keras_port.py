"""Port torchvision VGG16 convolution weights into a Keras ``VGG16(include_top=False)``.

Used by the numerical-equivalence check (the same weights in both frameworks must give the same feature
maps, so a speed difference between the keras and torch backends is the framework's) and, from the command
line, to turn a torchvision VGG16 checkpoint into a ``.weights.h5`` file the keras backend loads with
``--weights PATH`` — the way to run both frameworks from the same pretrained weights offline::

    python -m tlbench.backends.keras_port vgg16-397923af.pth vgg16_from_torch.weights.h5

The mapping itself is numpy only: torch convolution kernels ``(out, in, kh, kw)`` become Keras kernels
``(kh, kw, in, out)``; the 13 convolutions of ``features`` are matched in order with Keras' ``block{b}_conv{i}``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from tlbench.backends.base import BackendError

#: convolutions per VGG16 block (blocks 1..5)
VGG16_BLOCK_CONVS = (2, 2, 3, 3, 3)


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
        raise BackendError(f"expected a torchvision vgg16 state dict with {len(names)} features.N convolutions, found {len(convs)}")
    mapped: dict[str, list[np.ndarray]] = {}
    for name, index in zip(names, sorted(convs)):
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


def convert_checkpoint(torch_path: str, keras_path: str) -> None:
    """Write a Keras ``.weights.h5`` of ``VGG16(include_top=False)`` from a torchvision vgg16 checkpoint.

    Imports torch first and TensorFlow second (the order that works in one process).

    Raises:
        BackendError: missing/unreadable checkpoint, not a vgg16 state dict, or a bad output name.
    """
    if not keras_path.endswith(".weights.h5"):
        raise BackendError(f"output {keras_path!r} must end with .weights.h5 (the file --weights PATH loads)")
    from tlbench.backends.torch_common import read_state_dict  # torch before TensorFlow

    mapped = torchvision_vgg16_to_keras(read_state_dict(torch_path))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    set_keras_weights(model, mapped)
    model.save_weights(keras_path)


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m tlbench.backends.keras_port TORCH.pth OUT.weights.h5``."""
    parser = argparse.ArgumentParser(prog="python -m tlbench.backends.keras_port", description=__doc__.split("\n")[0])
    parser.add_argument("torch_checkpoint", help="torchvision vgg16 state dict (.pth)")
    parser.add_argument("keras_weights", help="output Keras weights file (.weights.h5)")
    args = parser.parse_args(argv)
    try:
        convert_checkpoint(args.torch_checkpoint, args.keras_weights)
    except BackendError as exc:
        print(f"keras_port: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.keras_weights}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
