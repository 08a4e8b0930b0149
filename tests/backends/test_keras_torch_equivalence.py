"""Numerical equivalence: Keras VGG16 with weights ported from torchvision vgg16 computes torchvision's features.

Same weights (random init, seeded) and the same preprocessed input give the same backbone feature maps
within 1e-4 relative, so a speed difference between the keras and torch backends is the framework's, not
the model's. torch is imported first (``tests/conftest.py``), TensorFlow second, which is the order that
works in one process.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import models as tv_models

from tlbench.backends.base import BackendError, ModelSpec
from tlbench.backends.keras_backend import KerasBackend
from tlbench.backends.keras_port import main as port_main
from tlbench.backends.keras_port import set_keras_weights, torchvision_vgg16_to_keras, vgg16_keras_conv_names

pytestmark = pytest.mark.slow  # TensorFlow: imported, built and trained

RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def torch_vgg16() -> torch.nn.Module:
    torch.manual_seed(0)
    return tv_models.vgg16(weights=None).eval()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    return float(np.abs(got - want).max() / np.abs(want).max())


def torch_features(model: torch.nn.Module, nhwc: np.ndarray) -> np.ndarray:
    """torchvision ``vgg16.features`` on an NHWC float batch, returned NHWC."""
    with torch.inference_mode():
        out = model.features(
            torch.from_numpy(np.ascontiguousarray(nhwc, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
        )
    return out.permute(0, 2, 3, 1).numpy()


def test_mapping_follows_the_network_order(torch_vgg16):
    mapped = torchvision_vgg16_to_keras(torch_vgg16.state_dict())
    assert list(mapped) == vgg16_keras_conv_names() and len(mapped) == 13
    kernel, bias = mapped["block3_conv2"]
    conv = torch_vgg16.features[12]  # the 6th convolution of torchvision's features
    assert kernel.shape == (3, 3, 256, 256) and bias.shape == (256,)
    np.testing.assert_array_equal(
        kernel[1, 2, 7, 9], conv.weight[9, 7, 1, 2].item()
    )  # (out,in,kh,kw) -> (kh,kw,in,out)


@pytest.mark.parametrize("size", [32, 64])
def test_ported_keras_vgg16_gives_torchvision_feature_maps(torch_vgg16, size):
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    set_keras_weights(model, torchvision_vgg16_to_keras(torch_vgg16.state_dict()))
    uint8 = np.random.default_rng(size).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    preprocessed = np.asarray(keras.applications.vgg16.preprocess_input(uint8.astype(np.float32)))
    got = model(preprocessed, training=False).numpy()
    want = torch_features(torch_vgg16, preprocessed)
    assert got.shape == want.shape == (2, size // 32, size // 32, 512)
    assert np.abs(want).max() > 1e-3 and (want > 0).mean() > 0.05  # a non-trivial map, not all zeros
    assert relative_error(got, want) < RELATIVE_TOLERANCE


def test_converted_checkpoint_runs_in_the_keras_backend_like_torchvision(torch_vgg16, tmp_path, capsys):
    checkpoint, converted = tmp_path / "vgg16.pth", tmp_path / "vgg16_from_torch.weights.h5"
    torch.save(torch_vgg16.state_dict(), checkpoint)
    assert port_main([str(checkpoint), str(converted)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {converted}"
    backend = KerasBackend("cpu")
    info = backend.build(ModelSpec("vgg16", num_classes=2, image_size=32, weights=str(converted)))
    assert info.pretrained == f"file:{converted}"
    uint8 = np.random.default_rng(7).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    preprocessed = np.asarray(backend._preprocess(uint8.astype(np.float32)))
    assert (
        relative_error(backend.extract_features(uint8), torch_features(torch_vgg16, preprocessed)) < RELATIVE_TOLERANCE
    )


def test_port_errors_name_the_bad_input(tmp_path, capsys):
    torch.save(tv_models.resnet18().state_dict(), tmp_path / "rn18.pth")
    assert port_main([str(tmp_path / "rn18.pth"), str(tmp_path / "out.weights.h5")]) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "expected a torchvision vgg16 state dict with 13 features.N convolutions, found 0" in err
    )
    assert port_main([str(tmp_path / "missing.pth"), str(tmp_path / "out.weights.h5")]) == 2
    assert "missing.pth' does not exist" in capsys.readouterr().err
    assert port_main([str(tmp_path / "rn18.pth"), str(tmp_path / "out.h5")]) == 2
    assert "out.h5' must end with .weights.h5" in capsys.readouterr().err
    with pytest.raises(BackendError, match=r"features\.0 of the vgg16 state dict is not a convolution"):
        torchvision_vgg16_to_keras({f"features.{i}.weight": np.zeros((2, 2)) for i in range(13)})
    import keras

    mobilenet = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(None, None, 3))
    with pytest.raises(
        BackendError, match=r"the keras model has no layer 'block1_conv1'; expected keras.applications.VGG16"
    ):
        set_keras_weights(mobilenet, torchvision_vgg16_to_keras(tv_models.vgg16().state_dict()))
    assert not (tmp_path / "out.weights.h5").exists()
