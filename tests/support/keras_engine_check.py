"""What the Keras backend computes on one engine, for the cross-engine tests (``tests/backends/test_keras_engines.py``).

Run as ``python keras_engine_check.py BACKEND OUT.npz`` in a fresh process (Keras loads on one engine per process),
or call ``check(BACKEND)`` in a process whose Keras runs on that backend's engine. It builds VGG16 with the
packaged ``vgg16-hed`` trunk and a head set from a fixed numpy generator (so every engine starts from the same
weights), and records, for scikit-learn's two sample photos: the trunk's feature maps, the head's logits, the
probabilities, and the weights after one SGD step of full fine-tuning without dropout (the update every engine
should compute), plus the plan's trainable counts and learning rates for every single-model strategy.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

SIZE = 64
NUM_CLASSES = 3
#: weights whose one-step update is compared (the stem, the last convolution, the two head convolutions)
UPDATED = ("block1_conv1", "block5_conv3", "head_conv1x1_hidden", "head_conv1x1_classes")


def photos() -> np.ndarray:
    """scikit-learn's two sample photos as a uint8 batch (2, SIZE, SIZE, 3), RGB."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    images = load_sample_images().images
    return np.stack([np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR)) for image in images])


#: the head's kernel shapes on VGG16's 512-channel map (Keras HWIO): hidden 1x1 conv, classes 1x1 conv
HEAD_SHAPES = {"head_conv1x1_hidden": (1, 1, 512, 256), "head_conv1x1_classes": (1, 1, 256, NUM_CLASSES)}


def head_weights() -> dict[str, list[np.ndarray]]:
    """Fixed head weights (numpy generator, seed 0), the same on every engine: ``{layer: [kernel, bias]}``."""
    rng = np.random.default_rng(0)
    return {
        name: [
            (rng.standard_normal(shape) * 0.05).astype(np.float32),
            (rng.standard_normal(shape[-1]) * 0.05).astype(np.float32),
        ]
        for name, shape in HEAD_SHAPES.items()
    }


def layer(backend: Any, name: str) -> Any:
    return backend.head.get_layer(name) if name.startswith("head") else backend.backbone.get_layer(name)


def check(backend_name: str) -> dict[str, Any]:
    """The figures of ``backend_name`` (a Keras backend) described in the module docstring."""
    from plans import phase

    from tlbench.backends import KerasOptions, ModelSpec, get_backend_class
    from tlbench.core.plan import make_plan
    from tlbench.core.strategies import STRATEGIES

    backend = get_backend_class(backend_name)("cpu")
    info = backend.build(ModelSpec("vgg16", NUM_CLASSES, SIZE, weights="vgg16-hed", seed=0, options=KerasOptions()))
    for name, values in head_weights().items():
        backend.head.get_layer(name).set_weights(values)
    keras = backend._keras
    x = photos()
    features = backend.extract_features(x)
    logits = keras.ops.convert_to_numpy(backend.head(keras.ops.convert_to_tensor(features), training=False))
    out: dict[str, Any] = {
        "features": features,
        "logits": np.asarray(logits, dtype=np.float32),
        "probabilities": backend.predict_proba(x),
        "pretrained": info.pretrained,
        "stages": backend.stages(),
    }
    plans = {}
    for strategy, row in STRATEGIES.items():
        if row.backbones != "one":
            continue
        plan = make_plan(row, backend.stages(), epochs=3)
        plans[strategy] = [(backend.apply_phase(p).trainable, backend.applied_learning_rates()) for p in plan.phases]
    out["plans"] = plans
    backend.head.get_layer("head_dropout").rate = 0.0  # one deterministic step
    before = {name: layer(backend, name).get_weights()[0].copy() for name in UPDATED}
    backend.apply_phase(phase(backend, "full_finetune", optimizer="sgd"))
    backend.train_step(x, np.array([0, 2]))
    out["loss"] = backend.pop_train_loss()
    for name in UPDATED:
        out[f"update/{name}"] = layer(backend, name).get_weights()[0] - before[name]
    return out


def main() -> None:
    backend_name, path = sys.argv[1], sys.argv[2]
    out = check(backend_name)
    arrays = {k: v for k, v in out.items() if isinstance(v, np.ndarray)}
    np.savez(path, **arrays)
    print(json.dumps({k: v for k, v in out.items() if k not in arrays}))


if __name__ == "__main__":
    main()
