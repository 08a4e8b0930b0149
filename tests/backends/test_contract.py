"""Every registered backend honours the ``Backend`` contract the same way (random init, tiny inputs)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from tlbench.backends import BACKENDS, Backend, BackendError, ModelSpec, OptimConfig, get_backend_class
from tlbench.benchmarks.strategies import STRATEGIES, head_only

#: a small model each backend can build offline at 32 px
SMALL_MODEL = {"timm": "resnet18", "torchvision": "resnet18", "keras": "vgg16"}
NUM_CLASSES = 3


@pytest.fixture(params=list(SMALL_MODEL))
def backend_name(request) -> str:
    return request.param


def test_every_registered_backend_is_covered():
    assert set(SMALL_MODEL) == set(BACKENDS) - {"fake"}


def test_registry_unknown_name():
    with pytest.raises(KeyError, match="unknown backend 'mxnet'; expected one of: timm, torchvision, keras"):
        get_backend_class("mxnet")


def test_class_is_a_complete_backend(backend_name):
    cls = get_backend_class(backend_name)
    assert issubclass(cls, Backend) and not inspect.isabstract(cls)
    assert cls.name == backend_name
    models = cls.available_models()
    assert SMALL_MODEL[backend_name] in models
    versions = cls.framework_versions()
    assert versions and all(isinstance(v, str) and v[0].isdigit() for v in versions.values())
    with pytest.raises(BackendError, match="no_such_net"):
        cls.validate_model("no_such_net")


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % NUM_CLASSES


@pytest.mark.parametrize("strategy_name", list(STRATEGIES))
def test_build_transfer_train_predict(backend_name, strategy_name):
    strategy = STRATEGIES[strategy_name]
    b = get_backend_class(backend_name)("cpu")
    config = b.default_data_config(SMALL_MODEL[backend_name], 32)
    assert config.image_size == 32 and 0 < config.crop_pct <= 1
    info = b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=strategy.pretrained, options={"seed": 0}))
    assert info.pretrained == "none" and info.device.lower().startswith(("cpu", "/cpu", "/job"))
    counts = b.apply_strategy(strategy, OptimConfig(seed=0))
    assert 0 < counts.trainable <= counts.total
    if strategy.train_backbone == "none":
        assert counts.trainable < counts.total / 10
    if strategy.train_backbone == "all":
        assert counts.trainable == counts.total or backend_name == "keras"  # keras counts BN stats as non-trainable
    x, y = _images(6)
    if strategy.cache_features:
        feats = b.extract_features(x)
        assert feats.shape[0] == 6 and feats.dtype == np.float32
        before = b.predict_head_proba(feats)
        b.train_head_step(feats, y)
        after = b.predict_head_proba(feats)
        # the head alone on cached features computes what the whole model computes
        np.testing.assert_allclose(after, b.predict_proba(x), rtol=1e-4, atol=1e-5)
    else:
        before = b.predict_proba(x)
        b.train_step(x, y)
        b.train_step(x, y)
        after = b.predict_proba(x)
    assert after.shape == (6, NUM_CLASSES) and after.dtype == np.float32
    np.testing.assert_allclose(after.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(before, after), "a training step changed nothing"
    loss = b.pop_train_loss()
    assert np.isfinite(loss) and loss > 0
    b.synchronize()
    assert b.peak_device_memory_mb() is None  # CPU


def test_snapshot_restore_round_trip(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=False, options={"seed": 0}))
    b.apply_strategy(STRATEGIES["scratch"], OptimConfig(seed=0))
    x, y = _images(6)
    state = b.snapshot()
    reference = b.predict_proba(x)
    b.train_step(x, y)
    assert not np.allclose(b.predict_proba(x), reference)
    b.restore(state)
    np.testing.assert_allclose(b.predict_proba(x), reference, rtol=1e-5, atol=1e-6)


def test_two_phase_reapply(backend_name):
    full = STRATEGIES["full_finetune"]
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", options={"seed": 0}))
    warm = b.apply_strategy(head_only(full), OptimConfig(seed=0))
    x, y = _images(6)
    b.train_step(x, y)
    unfrozen = b.apply_strategy(full, OptimConfig(seed=0))
    assert unfrozen.trainable > warm.trainable and unfrozen.total == warm.total
    b.train_step(x, y)
    assert np.isfinite(b.pop_train_loss())
