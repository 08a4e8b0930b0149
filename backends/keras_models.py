"""The Keras backend's model table: names, ``keras.applications`` entry points and stage layouts.

Framework-free on purpose: the CLI parent process validates ``--models`` with this table without importing
TensorFlow. Names are lowercase like the torch backends' (``vgg16`` means the same architecture in keras,
timm and torchvision), each mapped to its ``keras.applications`` constructor, the module whose
``preprocess_input`` normalizes its inputs, and its backbone split into ordered stages by layer-name
patterns (stem first), which is what ``partial_finetune`` freezes by.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .base import BackendError


@dataclass(frozen=True)
class KerasModelInfo:
    """How to build one ``keras.applications`` backbone and split it into stages.

    Attributes:
        name: tlbench model name (lowercase, shared with the torch backends where the architecture matches).
        application: constructor name in ``keras.applications`` (e.g. ``"VGG16"``).
        module: submodule of ``keras.applications`` whose ``preprocess_input`` the model expects.
        stages: ordered ``(stage label, layer-name regex)`` pairs, stem first; a layer belongs to the first
            stage whose regex matches its name from the start.
    """

    name: str
    application: str
    module: str
    stages: tuple[tuple[str, str], ...]

    def stage_of(self, layer_name: str) -> int | None:
        """Index of the stage ``layer_name`` belongs to, or ``None`` when no pattern matches."""
        for index, (_, pattern) in enumerate(self.stages):
            if re.match(pattern, layer_name):
                return index
        return None


KERAS_MODELS: dict[str, KerasModelInfo] = {
    info.name: info
    for info in (
        # VGG16: the five conv blocks (block1..block5, each ending in a max-pool), as the seeds number them
        KerasModelInfo("vgg16", "VGG16", "vgg16", tuple((f"block{i}", rf"block{i}_") for i in range(1, 6))),
        # ResNet50: stem (conv1 + pool1), then the residual stages conv2..conv5
        KerasModelInfo(
            "resnet50",
            "ResNet50",
            "resnet",
            (("stem", r"(conv1|pool1)_"),) + tuple((f"conv{i}", rf"conv{i}_") for i in range(2, 6)),
        ),
        # MobileNetV2: by output resolution: stem (+ the first, non-expanding block), /4, /8, /16, /32 (+ Conv_1)
        KerasModelInfo(
            "mobilenet_v2",
            "MobileNetV2",
            "mobilenet_v2",
            (
                ("stem", r"(Conv1|bn_Conv1|expanded_conv_)"),
                ("s4", r"block_[12]_"),
                ("s8", r"block_[345]_"),
                ("s16", r"block_([6-9]|1[012])_"),
                ("s32", r"(block_1[3-6]_|Conv_1)"),
            ),
        ),
        # EfficientNetB0: stem (input rescaling/normalization + stem conv), block1..block7 (top conv with 7)
        KerasModelInfo(
            "efficientnet_b0",
            "EfficientNetB0",
            "efficientnet",
            (("stem", r"(rescaling|normalization|stem_)"),)
            + tuple((f"block{i}", rf"block{i}[a-z]_") for i in range(1, 7))
            + (("block7", r"(block7[a-z]_|top_)"),),
        ),
        # DenseNet121: stem (conv1 + pool1), dense blocks conv2..conv5 with their transitions (pool2..pool4)
        KerasModelInfo(
            "densenet121",
            "DenseNet121",
            "densenet",
            (
                ("stem", r"(conv1[/_]|pool1)"),
                ("block2", r"(conv2_|pool2_)"),
                ("block3", r"(conv3_|pool3_)"),
                ("block4", r"(conv4_|pool4_)"),
                ("block5", r"(conv5_|bn$|relu$)"),
            ),
        ),
    )
}


def model_info(name: str) -> KerasModelInfo:
    """The table entry of ``name``.

    Raises:
        BackendError: unknown name (the message lists the valid ones).
    """
    try:
        return KERAS_MODELS[name]
    except KeyError:
        raise BackendError(f"unknown keras model {name!r}; expected one of: {', '.join(KERAS_MODELS)}") from None
