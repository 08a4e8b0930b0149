"""keras backend strategies: after training, exactly the intended weights (and BatchNorm statistics) changed.

VGG16 (no BatchNorm, the seeds' model) and MobileNetV2 (BatchNorm in every stage) at 32 px, random init. The same
tests run for Keras on JAX and on torch (``keras-jax``, ``keras-torch``), each in a fresh process (Keras loads on
one engine per process) named by ``TLBENCH_KERAS_STRATEGIES_BACKEND``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from plans import phase

from tlbench.backends import REGISTRY, get_backend_class
from tlbench.backends.base import ModelSpec
from tlbench.backends.engines import engine_available
from tlbench.backends.keras_backend import KerasBackend
from tlbench.core.strategies import STRATEGIES, Strategy, head_only

pytestmark = pytest.mark.slow  # TensorFlow: imported, built and trained

#: the Keras backend this process tests (``keras`` unless a process of another engine)
BACKEND_ENV = "TLBENCH_KERAS_STRATEGIES_BACKEND"
BACKEND = os.environ.get(BACKEND_ENV, "keras")

SIZE = 32
X = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
Y = np.array([0, 1, 2, 0])


def build(name: str, pretrained: bool = True) -> KerasBackend:
    backend = get_backend_class(BACKEND)("cpu")
    backend.build(ModelSpec(name=name, num_classes=3, image_size=SIZE, weights="none", pretrained=pretrained, seed=0))
    return backend


def variables(backend: KerasBackend) -> dict[str, np.ndarray]:
    """Every backbone and head variable by path (BatchNorm moving statistics included)."""
    return {v.path: v.numpy().copy() for v in list(backend.backbone.weights) + list(backend.head.weights)}


def expected_trainable_layers(backend: KerasBackend, strategy: Strategy) -> set[str]:
    stages = backend.stage_layer_names()
    if strategy.train_backbone == "all":
        return {layer for stage in stages for layer in stage}
    if strategy.train_backbone == "last_k":
        return {layer for stage in stages[-strategy.last_k_stages :] for layer in stage}
    return set()


def train_once(backend: KerasBackend, strategy: Strategy) -> None:
    if strategy.cache_features:
        backend.train_step(backend.extract_features(X), Y, "features")
    else:
        backend.train_step(X, Y)
    assert np.isfinite(backend.pop_train_loss())


def check_changes(backend: KerasBackend, before: dict[str, np.ndarray], strategy: Strategy, label: str) -> None:
    after = variables(backend)
    trainable_layers = expected_trainable_layers(backend, strategy)
    stats = 0
    for path, value in before.items():
        layer = path.split("/")[0]
        changed = not np.array_equal(value, after[path])
        if path.endswith(("moving_mean", "moving_variance")):
            stats += 1
            # frozen BatchNorm runs in inference mode (statistics untouched); trainable BatchNorm updates them,
            # except when the backbone only extracts features (linear_probe, head warm-up)
            assert changed == (layer in trainable_layers and backend.backbone_trains), (
                f"{label}: {path} changed={changed}"
            )
        elif path.startswith("fcn_head") or layer.startswith("head_"):
            assert changed, f"{label}: head variable {path} did not train"
        else:
            assert changed == (layer in trainable_layers), f"{label}: {path} changed={changed}"
    if backend.info.name == "mobilenet_v2":
        assert stats > 0


# MobileNetV2 scratch/full_finetune train everything like the second phase of the two-phase test below
CASES = [("vgg16", s) for s in ("scratch", "linear_probe", "partial_finetune", "full_finetune")] + [
    ("mobilenet_v2", "linear_probe"),
    ("mobilenet_v2", "partial_finetune"),
]


@pytest.mark.parametrize(("name", "strategy_name"), CASES)
def test_a_train_step_changes_exactly_the_intended_weights(name, strategy_name):
    strategy = STRATEGIES[strategy_name]
    backend = build(name, pretrained=strategy.pretrained)
    counts = backend.apply_phase(phase(backend, strategy, seed=0))
    layers = expected_trainable_layers(backend, strategy)
    expected = sum(int(np.prod(w.shape)) for w in backend.backbone.trainable_weights if w.path.split("/")[0] in layers)
    assert counts.trainable == expected + backend.head.count_params()
    assert {w.path.split("/")[0] for w in backend.backbone.trainable_weights} == layers
    before = variables(backend)
    train_once(backend, strategy)
    check_changes(backend, before, strategy, strategy_name)


def test_full_finetune_two_phases_retrace_after_unfreezing():
    strategy = STRATEGIES["full_finetune"]
    backend = build("mobilenet_v2")
    warmup = head_only(strategy)
    counts = backend.apply_phase(phase(backend, strategy, "head_warmup", seed=0))
    assert counts.trainable == backend.head.count_params() and not backend.backbone_trains
    before = variables(backend)
    train_once(backend, warmup)
    check_changes(backend, before, warmup, "head warm-up")  # backbone (weights and BN statistics) untouched
    counts = backend.apply_phase(phase(backend, strategy, seed=0))  # phase 2: everything, fresh optimizers
    assert counts.trainable == counts.total and backend.backbone_trains
    assert len(backend._groups) == 2 and all(int(opt.iterations) == 0 for opt, _ in backend._groups)
    before = variables(backend)
    train_once(backend, strategy)
    check_changes(backend, before, strategy, "phase 2")
    assert all(int(opt.iterations) == 1 for opt, _ in backend._groups)


def test_partial_finetune_freezes_vgg16_blocks_1_to_5_minus_k():
    backend = build("vgg16")
    for k in (1, 2, 4):
        strategy = Strategy(**{**STRATEGIES["partial_finetune"].to_dict(), "last_k_stages": k})
        backend.apply_phase(phase(backend, strategy))
        frozen = sorted(
            {layer.name.split("_")[0] for layer in backend.backbone.layers if layer.weights and not layer.trainable}
        )
        assert frozen == [f"block{b}" for b in range(1, 6 - k)]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["keras-jax", "keras-torch"])
def test_the_strategies_do_the_same_on_another_keras_engine(name):
    """This module's tests for Keras on ``name``, in a fresh process: the same weights and BatchNorm statistics
    change, frozen BatchNorm included, and the optimizers restart with each phase."""
    if BACKEND != "keras":
        pytest.skip("already in a process of another engine")
    if not engine_available(REGISTRY[name].engine):
        pytest.skip(f"{name} not installed")  # CI installs every extra
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__, "-k", "not another_keras"],
        env={**os.environ, BACKEND_ENV: name},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert " passed" in summary and "failed" not in summary, summary
