"""Every registered backend honours the ``Backend`` contract the same way (random init, tiny inputs).

Keras runs on one engine per process (``KERAS_BACKEND`` is read once), so this module runs the backends of Keras on
TensorFlow and torch here, and itself again in a fresh process for each other Keras engine (``keras-jax``,
``keras-torch``), with ``TLBENCH_CONTRACT_BACKENDS`` naming the backend that process tests.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from plans import phase

from tlbench.backends import REGISTRY, Backend, BackendError, ModelSpec, get_backend_class
from tlbench.backends.engines import engine_available
from tlbench.core.plan import make_plan
from tlbench.core.strategies import STRATEGIES

#: a small model each backend can build offline at 32 px
SMALL_MODEL = {
    "timm": "resnet18",
    "torchvision": "resnet18",
    "keras": "vgg16",
    "keras-jax": "vgg16",
    "keras-torch": "vgg16",
}
#: the backends tested in a process of their own (Keras on another engine than TensorFlow)
OWN_PROCESS = ("keras-jax", "keras-torch")
#: names the backends a process runs (the whole module tests the others)
BACKENDS_ENV = "TLBENCH_CONTRACT_BACKENDS"
NUM_CLASSES = 3
IN_THIS_PROCESS = os.environ.get(BACKENDS_ENV, "").split(",") if os.environ.get(BACKENDS_ENV) else None


@pytest.fixture(
    params=[
        pytest.param(name, marks=pytest.mark.slow) if name.startswith("keras") else name
        for name in (IN_THIS_PROCESS or [name for name in SMALL_MODEL if name not in OWN_PROCESS])
    ]
)
def backend_name(request) -> str:
    """Each backend; Keras in the slow tier (importing TensorFlow alone takes seconds)."""
    return request.param


def is_keras(backend_name: str) -> bool:
    return REGISTRY[backend_name].target.startswith("tlbench.backends.keras")


@pytest.mark.slow
@pytest.mark.parametrize("name", OWN_PROCESS)
def test_the_contract_holds_for_keras_on_another_engine(name):
    """This module's tests for ``name``, in a fresh process (Keras loads on that engine there)."""
    if IN_THIS_PROCESS is not None:
        pytest.skip("already in a process of one backend")
    if not engine_available(REGISTRY[name].engine):
        pytest.skip(f"{name} not installed")  # CI installs every extra
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__, "-k", "not another_engine"],
        env={**os.environ, BACKENDS_ENV: name},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert " passed" in summary and "failed" not in summary and "error" not in summary, summary


def test_every_registered_backend_is_covered():
    assert set(SMALL_MODEL) == set(REGISTRY) - {"fake"}
    if IN_THIS_PROCESS is not None:
        assert set(IN_THIS_PROCESS) <= set(OWN_PROCESS)


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


@pytest.mark.slow  # builds and trains a real model
@pytest.mark.parametrize(
    "strategy_name", ["scratch", "linear_probe", "partial_finetune", "full_finetune", "lp_ft", "layer_decay", "l2sp"]
)
def test_build_transfer_train_predict(backend_name, strategy_name):
    strategy = STRATEGIES[strategy_name]
    b = get_backend_class(backend_name)("cpu")
    config = b.default_data_config(SMALL_MODEL[backend_name], 32)
    assert config.image_size == 32 and 0 < config.crop_pct <= 1
    info = b.build(
        ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=strategy.pretrained, seed=0)
    )
    assert info.pretrained == "none" and info.device.lower().startswith(("cpu", "/cpu", "/job"))
    assert len(b.stages()) >= 4 and len(set(b.stages())) == len(b.stages())
    counts = b.apply_phase(phase(b, strategy))
    assert 0 < counts.trainable <= counts.total
    if strategy.train_backbone == "none":
        assert counts.trainable < counts.total / 10
    if strategy.train_backbone == "all":
        assert counts.trainable == counts.total or is_keras(backend_name)  # keras counts BN stats as non-trainable
    x, y = _images(6)
    if strategy.cache_features:
        feats = b.extract_features(x)
        assert feats.shape[0] == 6 and feats.dtype == np.float32
        before = b.predict_proba(feats, "features")
        b.train_step(feats, y, "features")
        after = b.predict_proba(feats, "features")
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


@pytest.mark.slow  # builds and trains a real model
def test_snapshot_restore_round_trip(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=False, seed=0))
    b.apply_phase(phase(b, "scratch"))
    x, y = _images(6)
    state = b.snapshot()
    reference = b.predict_proba(x)
    b.train_step(x, y)
    assert not np.allclose(b.predict_proba(x), reference)
    b.restore(state)
    np.testing.assert_allclose(b.predict_proba(x), reference, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # builds and trains a real model
def test_two_phase_reapply(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    plan = make_plan(STRATEGIES["full_finetune"], b.stages(), epochs=3)
    assert [p.name for p in plan.phases] == ["head_warmup", "main"]
    warm = b.apply_phase(plan.phases[0])
    x, y = _images(6)
    b.train_step(x, y)
    unfrozen = b.apply_phase(plan.phases[1])
    assert unfrozen.trainable > warm.trainable and unfrozen.total == warm.total
    b.train_step(x, y)
    assert np.isfinite(b.pop_train_loss())


@pytest.mark.slow  # builds and trains a real model
def test_layer_wise_lr_decay_is_plan_data(backend_name):
    """Per-stage learning rates come from the plan alone; the framework's optimizers hold exactly those."""
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    decayed = replace(STRATEGIES["full_finetune"], layer_decay=0.5, backbone_lr_scale=1.0)
    main = phase(b, decayed, head_lr=1e-2)
    b.apply_phase(main)
    applied = b.applied_learning_rates()
    stages = b.stages()
    assert list(applied) == ["head", *stages]
    assert applied["head"] == pytest.approx(1e-2)
    n = len(stages)
    for index, name in enumerate(stages):  # stage next to the head: x0.5, the stem: x0.5**n
        assert applied[name] == pytest.approx(1e-2 * 0.5 ** (n - index), rel=1e-6), name
    partial = phase(b, "partial_finetune")
    b.apply_phase(partial)
    applied = b.applied_learning_rates()
    assert [applied[s] is None for s in stages] == [not p.trainable for p in partial.stages]
    x, y = _images(6)
    b.train_step(x, y)  # the re-applied phase trains
    assert np.isfinite(b.pop_train_loss())


def test_plan_for_other_stages_is_rejected(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    wrong = make_plan(STRATEGIES["scratch"], ["a", "b"], epochs=1).phases[0]
    with pytest.raises(BackendError, match="names stages"):
        b.apply_phase(wrong)


@pytest.mark.slow  # builds and trains a real model
def test_weights_files_round_trip_in_the_native_safe_format(backend_name, tmp_path):
    b = get_backend_class(backend_name)("cpu")
    spec = ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=False, seed=0)
    b.build(spec)
    b.apply_phase(phase(b, "scratch"))
    x, y = _images(6)
    b.train_step(x, y)
    path = tmp_path / f"w{b.weights_suffix}"
    b.save_weights(str(path))
    assert path.is_file() and not list(tmp_path.glob("*tmp*"))
    if not is_keras(backend_name):
        import torch

        torch.load(path, weights_only=True)  # a plain state dict: no code runs on load
    else:
        import h5py

        with h5py.File(path) as handle:  # HDF5, not a pickle
            assert len(handle.keys()) > 0
    other = get_backend_class(backend_name)("cpu")
    other.build(replace(spec, seed=1))
    assert not np.allclose(other.predict_proba(x), b.predict_proba(x))
    other.load_weights(str(path))
    np.testing.assert_allclose(other.predict_proba(x), b.predict_proba(x), rtol=1e-5, atol=1e-6)
    bad = tmp_path / f"bad{b.weights_suffix}"
    bad.write_bytes(b"not weights")
    with pytest.raises(BackendError, match="bad"):
        other.load_weights(str(bad))


@pytest.mark.slow  # builds and trains a real model
def test_distillation_uses_the_teachers_soft_labels(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    main = phase(b, "distill")
    assert main.distillation is not None and main.distillation.temperature == 4.0
    b.apply_phase(main)
    x, y = _images(6)
    with pytest.raises(ValueError, match="needs the teacher's soft_targets"):
        b.train_step(x, y)
    teacher = np.full((6, NUM_CLASSES), 0.05, np.float32)
    teacher[np.arange(6), (y + 1) % NUM_CLASSES] = 0.9  # a teacher that disagrees with the labels
    state = b.snapshot()
    b.train_step(x, y, "images", teacher)
    moved_soft = b.predict_proba(x)
    b.restore(state)
    b.apply_phase(phase(b, "full_finetune"))  # same step without the teacher
    b.train_step(x, y)
    assert np.isfinite(b.pop_train_loss())
    assert not np.allclose(moved_soft, b.predict_proba(x), atol=1e-7)  # the soft labels changed the update


@pytest.mark.slow  # builds and trains a real model
def test_prepare_inference_ends_training_and_keeps_predictions(backend_name):
    """After ``prepare_inference`` the model predicts what it predicted before, and training is refused."""
    strategy = STRATEGIES["full_finetune"]
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=False, seed=0))
    b.apply_phase(phase(b, strategy))
    x, y = _images(6)
    b.train_step(x, y)
    before = b.predict_proba(x)
    assert b.prepare_inference(4) is None  # nothing compiled without an option asking for it
    np.testing.assert_allclose(b.predict_proba(x), before, rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="prepare_inference"):
        b.train_step(x, y)
    with pytest.raises(ValueError, match="batch_size >= 1, got 0"):
        b.prepare_inference(0)


def test_lr_scale_scales_every_planned_rate_until_the_next_phase(backend_name):
    """The schedule acts on the framework's optimizers: rates read back scaled, a zero rate trains nothing."""
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    decayed = replace(STRATEGIES["full_finetune"], layer_decay=0.5, backbone_lr_scale=1.0)
    b.apply_phase(phase(b, decayed, head_lr=1e-2))
    planned = b.applied_learning_rates()
    b.set_lr_scale(0.25)
    scaled = b.applied_learning_rates()
    assert scaled == {name: pytest.approx(rate * 0.25, rel=1e-6) for name, rate in planned.items()}
    probe = phase(b, "linear_probe", optimizer="sgd", weight_decay=0.0)
    b.apply_phase(probe)  # a new phase starts from its planned rates
    assert b.applied_learning_rates()["head"] == pytest.approx(probe.head_lr)
    feats, y = b.extract_features(_images(6)[0]), _images(6)[1]
    before = b.predict_proba(feats, "features")
    b.set_lr_scale(0.0)
    b.train_step(feats, y, "features")
    np.testing.assert_allclose(b.predict_proba(feats, "features"), before, rtol=1e-6, atol=1e-7)
    b.set_lr_scale(1.0)
    b.train_step(feats, y, "features")
    assert not np.allclose(b.predict_proba(feats, "features"), before)


def test_the_seeds_optimizers_and_gradient_clipping(backend_name):
    """Adam, RMSprop, SGD and AdamW each make their own first step; clipping the global gradient norm bounds it."""
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    x, y = _images(6)
    b.apply_phase(phase(b, "linear_probe"))
    feats = b.extract_features(x)
    state = b.snapshot()
    before = b.predict_proba(feats, "features")
    moved = {}
    for optimizer in ("adamw", "sgd", "adam", "rmsprop"):
        b.restore(state)
        b.apply_phase(phase(b, "linear_probe", optimizer=optimizer))
        b.train_step(feats, y, "features")
        moved[optimizer] = b.predict_proba(feats, "features")
        assert not np.allclose(moved[optimizer], before), optimizer
    assert not np.allclose(moved["adam"], moved["rmsprop"]) and not np.allclose(moved["sgd"], moved["adam"])
    changes = {}
    for clip in (None, 1e-6):
        b.restore(state)
        b.apply_phase(phase(b, "linear_probe", optimizer="sgd", weight_decay=0.0, clip_grad_norm=clip))
        b.train_step(feats, y, "features")
        changes[clip] = np.abs(b.predict_proba(feats, "features") - before).max()
    assert changes[None] > 1e-4 and changes[1e-6] < 1e-6  # a step of at most lr x 1e-6 in norm


@pytest.mark.slow  # builds three real models and trains a head
def test_the_mlp_head_is_seed_002s_head_on_every_backend(backend_name, tmp_path):
    """``--head mlp``: 512 -> 256 -> 128 -> classes on the pooled features, trained as the head (not a stage), saved
    and rebuilt like any model (the inference pass rebuilds it from the options)."""
    from tlbench.backends import KerasOptions, TorchOptions

    options = KerasOptions(head="mlp") if is_keras(backend_name) else TorchOptions(head="mlp")
    b = get_backend_class(backend_name)("cpu")
    info = b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0, options=options))
    assert info.facts["head"] == "mlp-512-256-128"
    native = get_backend_class(backend_name)("cpu")
    native.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=0))
    assert b.stages() == native.stages()  # the head's hidden layers are no backbone stage
    counts = b.apply_phase(phase(b, "linear_probe"))
    pooled = 512  # resnet18's and vgg16's pooled features
    mlp_params = pooled * 512 + 512 + 512 * 256 + 256 + 256 * 128 + 128 + 128 * NUM_CLASSES + NUM_CLASSES
    assert counts.trainable == mlp_params
    assert b.applied_learning_rates()["head"] == pytest.approx(phase(b, "linear_probe").head_lr)
    x, y = _images(6)
    feats = b.extract_features(x)
    np.testing.assert_allclose(b.predict_proba(feats, "features"), b.predict_proba(x), rtol=1e-4, atol=1e-5)
    before = b.predict_proba(feats, "features")
    b.train_step(feats, y, "features")
    assert not np.allclose(b.predict_proba(feats, "features"), before)
    path = tmp_path / f"mlp{b.weights_suffix}"
    b.save_weights(str(path))
    again = get_backend_class(backend_name)("cpu")
    again.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", seed=1, options=options))
    again.load_weights(str(path))
    np.testing.assert_allclose(again.predict_proba(x), b.predict_proba(x), rtol=1e-5, atol=1e-6)


def _state_arrays(state) -> list[np.ndarray]:
    """A snapshot as numpy arrays (a torch state dict's tensors, or Keras' list of arrays)."""
    values = state.values() if isinstance(state, dict) else state
    return [np.array(v.cpu().numpy() if hasattr(v, "cpu") else v, copy=True) for v in values]


@pytest.mark.slow  # builds a real model
def test_shrink_perturb_scales_exactly_the_trained_weights_and_restore_undoes_it(backend_name):
    b = get_backend_class(backend_name)("cpu")
    b.build(ModelSpec(SMALL_MODEL[backend_name], NUM_CLASSES, 32, weights="none", pretrained=False, seed=0))
    x, _ = _images(4)
    state = b.snapshot()
    before = _state_arrays(state)
    reference = b.predict_proba(x)

    b.shrink_perturb(0.25, 0.0, seed=1, stages=b.stages())  # sigma 0: exactly lambda * w, statistics untouched
    after = _state_arrays(b.snapshot())
    scaled = [not np.array_equal(old, new) for old, new in zip(before, after, strict=True)]
    for old, new, changed in zip(before, after, scaled, strict=True):
        if changed:
            np.testing.assert_allclose(new, 0.25 * old, rtol=1e-6, atol=0)
    assert sum(scaled) >= len(b.stages())  # every stage's weights, and the head
    changed_params = sum(old.size for old, change in zip(before, scaled, strict=True) if change)
    assert changed_params > 0.9 * sum(old.size for old in before if old.dtype.kind == "f" and old.ndim > 1)

    b.restore(state)  # bit-identical logits again
    np.testing.assert_array_equal(b.predict_proba(x), reference)

    b.shrink_perturb(0.5, 0.01, seed=1, stages=[])  # the head alone (a probe), with noise of std sigma
    after = _state_arrays(b.snapshot())
    changed = [(old, new) for old, new in zip(before, after, strict=True) if not np.array_equal(old, new)]
    assert 1 <= len(changed) <= 6  # the head's kernels and biases only
    noise = np.concatenate([(new - 0.5 * old).ravel() for old, new in changed])
    assert noise.size > 100 and abs(noise.std() - 0.01) < 0.002 and abs(noise.mean()) < 0.002
    b.restore(state)
    np.testing.assert_array_equal(b.predict_proba(x), reference)

    # toward a snapshot instead of zero (shrink_pretrained): w0 + lambda (w - w0), the same parameters
    b.shrink_perturb(0.5, 0.0, seed=1, stages=b.stages())
    halved = b.snapshot()
    b.restore(state)
    b.shrink_perturb(0.25, 0.0, seed=1, stages=b.stages(), toward=halved)  # 0.5 w + 0.25 (w - 0.5 w) = 0.625 w
    toward = _state_arrays(b.snapshot())
    for old, new, changed in zip(before, toward, scaled, strict=True):
        if changed:
            np.testing.assert_allclose(new, 0.625 * old, rtol=1e-5, atol=1e-7)
        else:
            np.testing.assert_array_equal(new, old)  # BatchNorm statistics and the untrained stay
    b.restore(state)
    b.shrink_perturb(1.0, 0.0, seed=1, stages=b.stages(), toward=halved)  # lambda 1: unchanged
    np.testing.assert_array_equal(b.predict_proba(x), reference)
