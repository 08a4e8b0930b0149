"""FLOPs per image: torch's counter and the Keras layer count agree with each other and with hand arithmetic."""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")  # before TensorFlow, as tests/conftest.py does

from tlbench.backends.flops import keras_flops_per_image, torch_flops_per_image  # noqa: E402

# the small net below, by hand (2 FLOPs per multiply-add, biases not counted):
#   conv 3->8, 3x3, 16x16 out      2 * 16*16 * 8 * 3*3*3  = 110592
#   depthwise 8, 3x3, stride 2     2 * 8*8 * 8 * 3*3      =   9216
#   pointwise 8->16, 1x1, 8x8 out  2 * 8*8 * 16 * 8       =  16384
#   global average pool                                    =      0
#   dense 16->10                   2 * 16 * 10            =    320
SMALL_NET_FLOPS = 110592 + 9216 + 16384 + 320
SIDE = 16


def _torch_small_net():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    return pytest.importorskip("keras")


def _keras_small_net(keras):
    layers = keras.layers
    inputs = keras.Input((None, None, 3))
    x = layers.Conv2D(8, 3, padding="same")(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    x = layers.Conv2D(16, 1)(x)
    # nested model: its layers are counted too
    head = keras.Sequential([layers.GlobalAveragePooling2D(), layers.Dense(10)])
    return keras.Model(inputs, head(x))


def test_torch_small_net_matches_hand_count() -> None:
    model = _torch_small_net()
    assert torch_flops_per_image(model, SIDE) == SMALL_NET_FLOPS
    assert model.training  # mode restored


def test_torch_training_flops_follow_trainability() -> None:
    model = _torch_small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forward = torch_flops_per_image(model, SIDE)
    full = torch_flops_per_image(model, SIDE, training=True)
    # the backward has a weight gradient for every layer and an input gradient for all but the first
    assert full == forward + SMALL_NET_FLOPS + (SMALL_NET_FLOPS - 110592)
    for p in model.parameters():
        assert p.grad is None
    for key, value in model.state_dict().items():  # BatchNorm running statistics untouched
        assert torch.equal(value, before[key]), key
    for p in list(model.parameters())[:-2]:  # frozen backbone: only the head's weight gradient remains
        p.requires_grad_(False)
    assert torch_flops_per_image(model, SIDE, training=True) == forward + 320


def test_grouped_conv_backward_is_not_overcounted() -> None:
    """torch's counter charges a depthwise weight gradient 'channels' times; ours charges the forward's MACs."""
    model = torch.nn.Conv2d(64, 64, 3, padding=1, groups=64)
    forward = torch_flops_per_image(model, 8, in_chans=64)
    assert forward == 2 * 8 * 8 * 64 * 9
    assert torch_flops_per_image(model, 8, in_chans=64, training=True) == 2 * forward  # forward + weight gradient


@pytest.mark.slow  # imports TensorFlow
def test_keras_small_net_matches_hand_count() -> None:
    keras = _keras()
    assert keras_flops_per_image(_keras_small_net(keras), SIDE) == SMALL_NET_FLOPS


@pytest.mark.slow  # imports TensorFlow
def test_keras_model_still_works_after_counting() -> None:
    keras = _keras()
    import numpy as np

    model = _keras_small_net(keras)
    x = np.random.default_rng(0).random((2, SIDE, SIDE, 3)).astype("float32")
    before = np.asarray(model(x))
    keras_flops_per_image(model, SIDE)
    assert not any("call" in vars(layer) for layer in model._flatten_layers())
    np.testing.assert_allclose(np.asarray(model(x)), before, rtol=1e-6)


@pytest.mark.slow  # imports TensorFlow
def test_keras_fixed_input_size_must_match() -> None:
    keras = _keras()
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    assert keras_flops_per_image(model, 32) == 2 * 30 * 30 * 4 * 27
    with pytest.raises(ValueError, match="32"):
        keras_flops_per_image(model, 64)


@pytest.mark.slow  # imports TensorFlow
def test_vgg16_features_agree_between_torchvision_and_keras() -> None:
    torchvision = pytest.importorskip("torchvision")
    keras = _keras()
    torch_flops = torch_flops_per_image(torchvision.models.vgg16(weights=None).features, 64)
    keras_flops = keras_flops_per_image(keras.applications.VGG16(include_top=False, weights=None), 64)
    # 13 3x3 convolutions, 'same' padding, 5 max-pools: 15.35 GMACs = 30.7 GFLOPs at 224 px, 2.5 GFLOPs at 64 px
    assert abs(torch_flops - keras_flops) <= 0.01 * torch_flops
    assert 2.4e9 < torch_flops < 2.6e9


def test_flops_module_is_framework_free_at_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, tlbench.backends.flops; print([m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
