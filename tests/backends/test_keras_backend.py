"""keras backend: light discovery, FCN head, preprocessing, weights sources, options, state and device calls.

Offline: pretrained sources are weight files the tests write themselves; the ImageNet download is replaced
by a function that fails as it does on an offline machine. Inputs are 32–64 px.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from plans import phase

from tlbench.backends import get_backend_class
from tlbench.backends.base import BackendError, DataConfig, ModelSpec
from tlbench.backends.keras_backend import KerasBackend, check_image_size, keras_cache_dir
from tlbench.backends.keras_models import KERAS_MODELS, model_info
from tlbench.backends.options import KerasOptions
from tlbench.core.strategies import STRATEGIES

pytestmark = pytest.mark.slow  # TensorFlow: imported, built and trained

SIZE = 32


def images(n: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def build(name: str = "vgg16", num_classes: int = 3, size: int = SIZE, **spec_kwargs) -> KerasBackend:
    backend = KerasBackend("cpu")
    spec_kwargs.setdefault("weights", "none")
    backend.build(ModelSpec(name=name, num_classes=num_classes, image_size=size, **spec_kwargs))
    return backend


@pytest.fixture(scope="module")
def vgg() -> KerasBackend:
    """One random-init VGG16 (3 classes) shared by the read-only tests."""
    return build("vgg16", seed=3)


@pytest.fixture
def offline_keras(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """An empty Keras cache and a ``get_file`` that fails as it does without network; records the URLs."""
    from keras.src.utils import file_utils

    asked: list[str] = []

    def no_network(fname=None, origin=None, *args, **kwargs):
        asked.append(str(origin))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(file_utils, "get_file", no_network)
    return asked


# ---- discovery without TensorFlow ---------------------------------------------------------------------
def test_the_cli_side_of_the_backend_never_imports_tensorflow():
    code = (
        "import json, sys\n"
        "from tlbench.backends import BackendError, get_backend_class\n"
        "cls = get_backend_class('keras')\n"
        "cls.validate_model('vgg16')\n"
        "try:\n    cls.validate_model('nope')\nexcept BackendError as exc:\n    error = str(exc)\n"
        "print(json.dumps({'models': cls.available_models(), 'versions': cls.framework_versions(), 'error': error,\n"
        "                  'loaded': sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["loaded"] == []  # the CLI parent stays light: no framework import
    assert result["models"] == ["vgg16", "resnet50", "mobilenet_v2", "efficientnet_b0", "densenet121"]
    import keras
    import tensorflow as tf

    assert result["versions"] == {"tensorflow": tf.__version__, "keras": keras.__version__}
    assert (
        result["error"]
        == "unknown keras model 'nope'; expected one of: vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121"
    )


def test_registry_unknown_model_and_sizes_are_backend_errors():
    assert get_backend_class("keras") is KerasBackend
    with pytest.raises(BackendError, match=r"unknown keras model 'vgg19'; expected one of: vgg16, resnet50") as info:
        KerasBackend.validate_model("vgg19")
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="unknown keras model 'nope'"):
        KerasBackend("cpu").build(ModelSpec(name="nope", num_classes=2, image_size=SIZE, weights="none"))
    with pytest.raises(BackendError, match="unknown keras model 'nope'"):
        KerasBackend("cpu").default_data_config("nope", SIZE)
    with pytest.raises(BackendError, match=r"keras model 'vgg16' needs --image-size >= 32, got 16"):
        KerasBackend("cpu").build(ModelSpec(name="vgg16", num_classes=2, image_size=16, weights="none"))
    with pytest.raises(BackendError, match="got 24"):
        check_image_size("resnet50", 24)


def test_data_config_is_plain_bilinear_resize():
    config = KerasBackend("cpu").default_data_config("vgg16", 48)
    assert config == DataConfig(image_size=48, crop_pct=1.0, interpolation="bilinear")
    assert config.policy_key() == "s48-c1.0000-bilinear"


# ---- model: FCN head, stages, preprocessing -------------------------------------------------------------
def test_fcn_head_takes_two_input_sizes_through_one_model(vgg):
    import keras

    head_types = [type(layer).__name__ for layer in vgg.head.layers]
    assert head_types == ["InputLayer", "Conv2D", "ReLU", "Dropout", "Conv2D", "GlobalAveragePooling2D", "Activation"]
    assert not any(
        isinstance(layer, (keras.layers.Dense, keras.layers.Flatten)) for layer in vgg.head.layers + vgg.backbone.layers
    )
    hidden, classes = vgg.head.get_layer("head_conv1x1_hidden"), vgg.head.get_layer("head_conv1x1_classes")
    assert hidden.kernel.shape == (1, 1, 512, 256) and classes.kernel.shape == (1, 1, 256, 3)
    for size, side in ((32, 1), (64, 2)):  # VGG16 divides by 32: 1×1 and 2×2 feature maps
        x = images(3, size=size, seed=size)
        feats = vgg.extract_features(x)
        assert feats.shape == (3, side, side, 512) and feats.dtype == np.float32
        probs = vgg.predict_proba(x)
        assert probs.shape == (3, 3) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(
            vgg.predict_proba(feats, "features"), probs, rtol=1e-5, atol=1e-6
        )  # features → head == model
    assert not np.allclose(vgg.predict_proba(images(2, seed=1)), vgg.predict_proba(images(2, seed=2)))


def test_vgg16_inputs_use_the_caffe_preprocess_input(vgg):
    import keras

    x = images(2)
    expected = vgg.backbone(keras.applications.vgg16.preprocess_input(x.astype(np.float32)), training=False).numpy()
    np.testing.assert_allclose(vgg.extract_features(x), expected, rtol=1e-5, atol=1e-5)
    prepared = vgg._preprocess(x.astype(np.float32))  # caffe: RGB → BGR, ImageNet mean subtracted, no scaling
    np.testing.assert_allclose(prepared[..., 0], x[..., 2] - 103.939, rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(prepared[..., 2], x[..., 0] - 123.68, rtol=1e-6, atol=1e-3)
    assert x.dtype == np.uint8 and x.max() > 200  # the caller's uint8 batch is untouched


@pytest.mark.parametrize("name", list(KERAS_MODELS))
def test_stages_cover_every_weighted_layer_once_in_order(name):
    backend = build(name, num_classes=2)
    info = model_info(name)
    stages = backend.stage_layer_names()
    flat = [layer for stage in stages for layer in stage]
    weighted = [layer.name for layer in backend.backbone.layers if layer.weights]
    assert flat == weighted  # every weighted layer exactly once, stages in network order
    assert all(stages) and len(stages) == len(info.stages)
    if name == "vgg16":
        assert [len(s) for s in stages] == [2, 2, 3, 3, 3]
        assert all(layer.startswith(f"block{i}_") for i, stage in enumerate(stages, 1) for layer in stage)
    expected_stage_count = {"vgg16": 5, "resnet50": 5, "mobilenet_v2": 5, "efficientnet_b0": 8, "densenet121": 5}
    assert len(stages) == expected_stage_count[name]
    probs = backend.predict_proba(images(2))
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


# ---- strategies: optimizers, errors ---------------------------------------------------------------------
def test_one_optimizer_per_learning_rate_head_and_backbone(vgg):
    import keras

    strategy = STRATEGIES["partial_finetune"]
    counts = vgg.apply_phase(phase(vgg, strategy, optimizer="sgd", momentum=0.8))
    (head_opt, head_vars), (backbone_opt, _) = vgg._groups
    assert isinstance(head_opt, keras.optimizers.SGD) and isinstance(backbone_opt, keras.optimizers.SGD)
    assert head_vars == list(vgg.head.trainable_weights)
    assert float(head_opt.learning_rate) == pytest.approx(strategy.head_lr)
    assert float(backbone_opt.learning_rate) == pytest.approx(strategy.head_lr * strategy.backbone_lr_scale)
    assert head_opt.momentum == pytest.approx(0.8)
    # partial_finetune k=2 on VGG16: blocks 1..3 frozen, blocks 4..5 + head train
    trainable_layers = {layer.name for layer in vgg.backbone.layers if layer.trainable and layer.weights}
    assert trainable_layers == {f"block{b}_conv{i}" for b in (4, 5) for i in (1, 2, 3)}
    block45 = sum(
        int(np.prod(w.shape))
        for b in (4, 5)
        for i in (1, 2, 3)
        for w in vgg.backbone.get_layer(f"block{b}_conv{i}").weights
    )
    assert counts.trainable == block45 + vgg.head.count_params()
    assert counts.total == vgg.backbone.count_params() + vgg.head.count_params()  # VGG16 has no non-parameter state
    counts = vgg.apply_phase(phase(vgg, "linear_probe", optimizer="adamw", weight_decay=0.01))
    ((head_opt, _),) = vgg._groups
    assert isinstance(head_opt, keras.optimizers.AdamW)
    assert head_opt.weight_decay == pytest.approx(0.01)
    assert counts.trainable == vgg.head.count_params() and not vgg.backbone_trains


def test_bad_plans_are_rejected(vgg):
    from dataclasses import replace

    from tlbench.core.plan import PlanError

    with pytest.raises(PlanError, match=r"unknown optimizer 'lion'; expected one of: adamw, sgd"):
        phase(vgg, "scratch", optimizer="lion")
    with pytest.raises(PlanError, match=r"unknown augment 'mixup'; expected one of: none, flip, crop-flip"):
        phase(vgg, "scratch", augment="mixup")
    with pytest.raises(PlanError, match=r"trains the last 6 stage\(s\) but the model has 5: block1, block2"):
        phase(vgg, replace(STRATEGIES["partial_finetune"], last_k_stages=6))
    with pytest.raises(BackendError, match=r"cannot update the BatchNorm statistics of frozen stage 'block1'"):
        vgg.apply_phase(phase(vgg, replace(STRATEGIES["partial_finetune"], frozen_bn_eval=False)))
    with pytest.raises(RuntimeError, match="build"):
        KerasBackend("cpu").predict_proba(images(1))


def test_augmentation_runs_on_device_and_flips_or_zooms(vgg):
    x = images(16, seed=5)
    plain = np.asarray(vgg._preprocess(x.astype(np.float32)))
    mirrored = np.asarray(vgg._preprocess(x[:, :, ::-1].astype(np.float32)))
    vgg.apply_phase(phase(vgg, "scratch", augment="flip", seed=1))
    flipped = vgg._prepare_train_fn(x).numpy()
    same = [np.allclose(flipped[i], plain[i]) for i in range(16)]
    mirror = [np.allclose(flipped[i], mirrored[i]) for i in range(16)]
    # each image kept or mirrored
    assert all(s or m for s, m in zip(same, mirror, strict=True)) and any(same) and any(mirror)
    vgg.apply_phase(phase(vgg, "scratch", augment="crop-flip", seed=1))
    cropped = vgg._prepare_train_fn(x).numpy()
    assert cropped.shape == plain.shape
    assert (
        sum(
            not (np.allclose(cropped[i], plain[i], atol=1e-3) or np.allclose(cropped[i], mirrored[i], atol=1e-3))
            for i in range(16)
        )
        >= 8
    )
    vgg.apply_phase(phase(vgg, "scratch", augment="none"))
    np.testing.assert_allclose(vgg._prepare_train_fn(x).numpy(), plain, rtol=1e-6)  # evaluation path never augments


# ---- training state, loss, device -------------------------------------------------------------------------
def test_snapshot_restore_loss_and_device_calls():
    backend = build("vgg16", num_classes=2, seed=0)
    backend.apply_phase(phase(backend, "scratch", seed=0))
    state = backend.snapshot()
    x, y = images(4), np.array([0, 1, 0, 1])
    probs_before = backend.predict_proba(x)
    backend.train_step(x, y)
    backend.synchronize()
    loss = backend.pop_train_loss()  # first step: cross-entropy of the initial model (+ head dropout noise)
    assert abs(loss - float(-np.log(probs_before[np.arange(4), y]).mean())) < 0.3
    assert backend.pop_train_loss() == 0.0  # reset after reading
    assert not np.array_equal(backend.backbone.get_layer("block1_conv1").kernel.numpy(), state[0])
    backend.restore(state)
    assert np.array_equal(backend.backbone.get_layer("block1_conv1").kernel.numpy(), state[0])
    np.testing.assert_allclose(backend.predict_proba(x), probs_before, rtol=1e-6)
    # a fresh optimizer after restore: training resumes from the snapshot (loss of a 2-class random head ~ ln 2)
    backend.apply_phase(phase(backend, "scratch", seed=0))
    backend.train_step(x, y)
    assert abs(backend.pop_train_loss() - np.log(2)) < 0.5
    backend.reset_peak_memory()
    assert backend.peak_device_memory_mb() is None and backend.device_name() is None


def test_bad_devices_and_options_are_backend_errors():
    with pytest.raises(BackendError, match=r"unknown device 'tpu'; expected auto, cpu, cuda or cuda:N"):
        KerasBackend("tpu")
    assert KerasBackend("auto").device == "/CPU:0"  # no GPU on the test machine
    with pytest.raises(BackendError, match=r"device 'cuda' requested but TensorFlow sees no GPU"):
        KerasBackend("cuda")
    with pytest.raises(BackendError, match=r"--in-chans 3 .* got 1"):
        build("vgg16", in_chans=1)
    with pytest.raises(BackendError, match=r"supports --amp bf16 only .* got 'fp16'"):
        build("vgg16", options=KerasOptions(amp="fp16"))


def test_bf16_mixed_precision_and_jit_compile_are_recorded():
    backend = KerasBackend("cpu")
    info = backend.build(ModelSpec("vgg16", 2, SIZE, weights="none", options=KerasOptions(amp="bf16")))
    assert info.dtype == "bfloat16-mixed" and info.device == "/CPU:0"
    assert backend.backbone.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert backend.backbone.get_layer("block1_conv1").kernel.dtype == "float32"  # float32 master weights
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the global policy is put back
    probs = backend.predict_proba(images(2))
    assert probs.dtype == np.float32 and np.allclose(probs.sum(1), 1.0, atol=1e-3)
    info = KerasBackend("cpu").build(
        ModelSpec("vgg16", 2, SIZE, weights="none", options=KerasOptions(jit_compile=True))
    )
    assert info.facts["jit_compile"] is True and info.dtype == "float32"


# ---- weights ----------------------------------------------------------------------------------------------
def _seeded_vgg16(seed: int = 11):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))


def test_local_weight_files_load_into_the_backbone(tmp_path):
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    reference = _seeded_vgg16()
    modern, legacy = tmp_path / "vgg.weights.h5", tmp_path / "vgg16_notop.h5"
    reference.save_weights(modern)
    with h5py.File(legacy, "w") as handle:  # the layout of Keras' own *_notop.h5 ImageNet files
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    for path in (modern, legacy):
        backend = KerasBackend("cpu")
        info = backend.build(ModelSpec("vgg16", num_classes=4, image_size=SIZE, weights=str(path)))
        assert info.pretrained == f"file:{path}"
        for layer in (layer for layer in reference.layers if layer.weights):
            for got, want in zip(
                backend.backbone.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
            ):
                np.testing.assert_array_equal(got, want)
        assert backend.head.get_layer("head_conv1x1_classes").kernel.shape[-1] == 4  # a fresh head for the task
        np.testing.assert_allclose(
            backend.extract_features(images(2)),
            reference(backend._preprocess(images(2).astype(np.float32)), training=False).numpy(),
            rtol=1e-5,
            atol=1e-5,
        )


def test_bad_weight_files_are_backend_errors(tmp_path):
    with pytest.raises(
        BackendError, match=r"weights file '.*missing\.weights\.h5' does not exist; expected a Keras"
    ) as info:
        build("vgg16", weights=str(tmp_path / "missing.weights.h5"))
    assert "\n" not in str(info.value)
    torch_file = tmp_path / "vgg16.pth"
    torch_file.write_bytes(b"PK\x03\x04 torch zip")
    with pytest.raises(
        BackendError,
        match=(
            r"'.*vgg16\.pth' is not a Keras weights file; "
            r"expected a Keras .weights.h5/.h5 file of keras.applications.VGG16"
        ),
    ):
        build("vgg16", weights=str(torch_file))
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(BackendError, match=r"garbage\.weights\.h5' does not load"):
        build("vgg16", weights=str(garbage))
    vgg_file = tmp_path / "vgg.weights.h5"
    _seeded_vgg16().save_weights(vgg_file)
    with pytest.raises(BackendError, match=r"vgg\.weights\.h5' does not load: expected .*MobileNetV2") as info:
        build("mobilenet_v2", weights=str(vgg_file))  # another architecture's file: never silently half-loaded
    assert "\n" not in str(info.value)


def test_imagenet_weights_offline_fail_unless_random_init_is_allowed(offline_keras, tmp_path):
    with pytest.raises(
        BackendError,
        match=(
            r"no pretrained weights for keras model 'vgg16' "
            r"\(offline and not in the Keras cache .*keras_home/models: Exception\); "
            r"pass --weights PATH or --allow-random-init"
        ),
    ) as info:
        KerasBackend("cpu").build(ModelSpec("vgg16", num_classes=2, image_size=SIZE))
    assert "\n" not in str(info.value)
    assert offline_keras and offline_keras[0].endswith(
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    )  # the Keras cache path was tried
    assert keras_cache_dir() == str(tmp_path / "keras_home" / "models")
    backend = KerasBackend("cpu")
    info = backend.build(ModelSpec("vgg16", num_classes=2, image_size=SIZE, allow_random_init=True))
    assert info.pretrained == "none"  # never passed off as a transfer result
    assert backend.predict_proba(images(1)).shape == (1, 2)
    asked = len(offline_keras)
    info = KerasBackend("cpu").build(ModelSpec("vgg16", num_classes=2, image_size=SIZE, pretrained=False))
    assert info.pretrained == "none" and len(offline_keras) == asked  # scratch never looks for weights
