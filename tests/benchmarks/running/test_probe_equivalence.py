"""A probe trial on cached pooled features is the same computation as training the head through the frozen network.

``linear_probe`` (every trial of its search, every seed) trains its head on features extracted once and cached
(``features.py``), never through the trunk. That is only honest if it equals training the same head through the
frozen network on images: the trunk is frozen with its BatchNorm in inference mode, a probe phase has no
augmentation, and Lite0 as tlbench builds it has no dropout before its classifier and no stochastic depth, so each
step sees the same pooled vectors. Checked here on the real timm Lite0: same head init, same shuffles, same
learning rates; the heads and validation scores agree to float precision. (A model with dropout before its
classifier or stochastic depth in its trunk would train differently through the network in train mode; the cached
probe is then the dropout-free probe, as Kornblith et al. 2019 and VTAB run it.)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tlbench.backends import get_backend_class
from tlbench.backends.base import ModelSpec
from tlbench.benchmarks.running.training import Inputs, train_plan
from tlbench.core.plan import make_plan
from tlbench.core.strategies import STRATEGIES

pytest.importorskip("timm")


def _train(row, train_set, val_set):
    backend = get_backend_class("timm")("cpu")
    backend.build(ModelSpec("tf_efficientnet_lite0", 2, 32, seed=0))
    assert backend.model.drop_rate == 0.0  # no dropout before the classifier (see the module docstring)
    plan = make_plan(row, backend.stages(), epochs=3, head_lr=0.05)
    outcome = train_plan(backend, plan, train_set, val_set, batch_size=8, warmup_steps=0)
    head = backend.model.get_classifier()
    return plan, outcome, head.weight.detach().numpy().copy(), head.bias.detach().numpy().copy()


@pytest.mark.slow  # builds and trains a real model
def test_a_probe_on_cached_features_equals_training_through_the_frozen_network():
    rng = np.random.default_rng(0)
    train_set = Inputs(rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), np.arange(24) % 2)
    val_set = Inputs(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8) % 2)
    probe = replace(STRATEGIES["linear_probe"], min_epochs=0)
    through = replace(probe, name="linear_probe_through_network", cache_features=False)
    cached_plan, cached, cached_w, cached_b = _train(probe, train_set, val_set)
    network_plan, network, network_w, network_b = _train(through, train_set, val_set)
    assert [p.inputs for p in cached_plan.phases] == ["features"] and cached.feature_dim == 1280
    assert [p.inputs for p in network_plan.phases] == ["images"] and network.feature_dim is None
    assert network_plan.phases[0].augment == cached_plan.phases[0].augment == "none"
    assert network.counts.trainable == cached.counts.trainable == 1280 * 2 + 2  # the head alone trains
    assert not np.allclose(cached_w, 0.0)
    np.testing.assert_allclose(network_w, cached_w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(network_b, cached_b, rtol=1e-4, atol=1e-5)
    assert network.best_epoch == cached.best_epoch
    assert [e["val_accuracy"] for e in network.curve] == [e["val_accuracy"] for e in cached.curve]
    np.testing.assert_allclose(
        [e["train_loss"] for e in network.curve], [e["train_loss"] for e in cached.curve], rtol=1e-4
    )
