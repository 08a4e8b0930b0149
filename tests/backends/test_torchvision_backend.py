"""torchvision backend: contract, structure from the modules, strategies, weights (file, hub cache, offline),
1-channel stems.

Offline: no test downloads anything. Pretrained sources are checkpoints the tests save themselves (a local
file, or a file put in a temporary torch hub cache); the download is replaced by a function that fails like an
offline machine does.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from plans import phase
from torch import nn
from torchvision import models as tv_models

from tlbench.backends import get_backend_class
from tlbench.backends.base import BackendError, ModelSpec
from tlbench.backends.options import TorchOptions
from tlbench.backends.torchvision_backend import (
    LISTED_MODELS,
    TorchvisionBackend,
    data_config_from_weights,
    final_linear_name,
    first_conv_name,
    hub_cache_path,
    weights_enum,
)
from tlbench.core.strategies import STRATEGIES

SIZE = 32
FORWARD_MODELS = ["resnet18", "mobilenet_v3_small", "efficientnet_b0", "densenet121"]


def images(n: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def build(name: str = "resnet18", num_classes: int = 3, **spec_kwargs) -> TorchvisionBackend:
    backend = TorchvisionBackend("cpu")
    spec_kwargs.setdefault("weights", "none")
    backend.build(ModelSpec(name=name, num_classes=num_classes, image_size=SIZE, **spec_kwargs))
    return backend


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        return tv_models.get_model(name, weights=None)


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub dir and a download that fails as it does without network."""

    def no_network(url: str, *args, **kwargs) -> None:
        raise urllib.error.URLError(f"offline test: refusing to download {url}")

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return hub


# ---- discovery, validation, preprocessing --------------------------------------------------------------
def test_registry_and_listed_models():
    assert get_backend_class("torchvision") is TorchvisionBackend
    assert set(TorchvisionBackend.available_models()) == set(LISTED_MODELS)
    assert {
        "resnet18",
        "resnet50",
        "resnet101",
        "densenet121",
        "vgg16",
        "alexnet",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
    } <= set(LISTED_MODELS)
    versions = TorchvisionBackend.framework_versions()
    assert versions["torch"] == torch.__version__ and "torchvision" in versions


def test_unknown_model_is_a_one_line_backend_error():
    with pytest.raises(BackendError, match=r"unknown torchvision model 'resnet19'.*resnet18") as info:
        TorchvisionBackend.validate_model("resnet19")
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="unknown torchvision model 'nope'"):
        TorchvisionBackend("cpu").build(ModelSpec(name="nope", num_classes=2, image_size=SIZE, weights="none"))
    with pytest.raises(BackendError, match="unknown torchvision model"):
        TorchvisionBackend("cpu").default_data_config("nope", SIZE)
    TorchvisionBackend.validate_model("vgg16")  # known: no error


def test_data_config_comes_from_weights_transforms():
    for name in ("resnet18", "efficientnet_b0", "convnext_tiny"):
        transforms = tv_models.get_model_weights(name).DEFAULT.transforms()
        config = TorchvisionBackend("cpu").default_data_config(name, 48)
        assert config.image_size == 48
        assert config.crop_pct == pytest.approx(transforms.crop_size[0] / transforms.resize_size[0])
        assert config.interpolation == transforms.interpolation.value
        assert config.mean == tuple(transforms.mean) and config.std == tuple(transforms.std)
    assert TorchvisionBackend("cpu").default_data_config("resnet18", 64).crop_pct == pytest.approx(224 / 256)
    assert TorchvisionBackend("cpu").default_data_config("efficientnet_b0", 64).interpolation == "bicubic"
    # an explicit enum member has its own preprocessing: resnet50 V1 resizes to 256, V2 (DEFAULT) to 232
    v1 = data_config_from_weights(weights_enum("resnet50", "IMAGENET1K_V1"), 64)
    v2 = data_config_from_weights(weights_enum("resnet50", "default"), 64)
    assert v1.crop_pct == pytest.approx(224 / 256) and v2.crop_pct == pytest.approx(224 / 232)


def test_weights_enum_names():
    assert weights_enum("resnet18", "DEFAULT") is tv_models.ResNet18_Weights.DEFAULT
    assert weights_enum("resnet50", "IMAGENET1K_V1") is tv_models.ResNet50_Weights.IMAGENET1K_V1
    assert weights_enum("resnet50", "ResNet50_Weights.IMAGENET1K_V2") is tv_models.ResNet50_Weights.IMAGENET1K_V2
    with pytest.raises(BackendError, match=r"weights 'IMAGENET1K_V9' for torchvision model 'resnet18'.*IMAGENET1K_V1"):
        weights_enum("resnet18", "IMAGENET1K_V9")
    assert hub_cache_path(tv_models.ResNet18_Weights.DEFAULT).endswith("checkpoints/resnet18-f37072fd.pth")


# ---- structure, read from the modules -------------------------------------------------------------------
@pytest.mark.slow  # builds and trains real models
@pytest.mark.parametrize("name", LISTED_MODELS)
def test_classifier_and_stages_partition_the_parameters(name):
    model = meta_model(name)
    backend = TorchvisionBackend("cpu")
    (head,) = backend.classifier_prefixes(model)
    assert isinstance(model.get_submodule(head), nn.Linear)
    assert model.get_submodule(head).out_features == 1000
    stages = backend.stage_parameter_names(model)
    flat = [n for stage in stages for n in stage]
    backbone = [n for n, _ in model.named_parameters() if not n.startswith(head + ".")]
    assert sorted(flat) == sorted(backbone) and len(flat) == len(set(flat))  # every backbone param exactly once
    assert stages[0][0] == first_conv_name(model) + ".weight"  # stem first
    assert len(stages) >= 4  # last-k freezing has something to choose from


def test_stage_layouts_of_the_seed_families():
    backend = TorchvisionBackend("cpu")

    def tops(name: str, depth: int = 1) -> list[list[str]]:
        stages = backend.stage_parameter_names(meta_model(name))
        return [sorted({".".join(p.split(".")[:depth]) for p in stage}) for stage in stages]

    assert tops("resnet50") == [["bn1", "conv1"], ["layer1"], ["layer2"], ["layer3"], ["layer4"]]
    assert tops("densenet121", 2) == [
        ["features.conv0", "features.norm0"],
        ["features.denseblock1", "features.transition1"],
        ["features.denseblock2", "features.transition2"],
        ["features.denseblock3", "features.transition3"],
        ["features.denseblock4", "features.norm5"],
    ]
    vgg = tops("vgg16", 2)
    assert vgg[:2] == [["features.0", "features.2"], ["features.5", "features.7"]]  # conv blocks between max-pools
    assert len(vgg) == 6 and vgg[-1] == ["classifier.0", "classifier.3"]  # the pretrained FC layers: last stage
    assert tops("efficientnet_b0", 2) == [[f"features.{i}"] for i in range(9)]
    assert final_linear_name(meta_model("mobilenet_v3_large")) == "classifier.3"
    assert final_linear_name(meta_model("convnext_tiny")) == "classifier.2"


# ---- contract on real (tiny) forward passes -------------------------------------------------------------
@pytest.mark.slow  # builds and trains real models
@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_features_then_head_equal_the_model(name):
    backend = build(name, num_classes=3)
    x = backend.to_input(images())
    model = backend.model
    model.eval()
    with torch.inference_mode():
        logits = model(x)
        features = backend.pooled_features(model, x)
        assert features.ndim == 2 and features.shape[0] == 4
        assert features.shape[1] == model.get_submodule(final_linear_name(model)).in_features
        torch.testing.assert_close(backend.head_logits(model, features), logits, rtol=1e-5, atol=1e-5)
    assert isinstance(model.get_submodule(final_linear_name(model)), nn.Linear)  # head put back after the swap
    probs = backend.predict_proba(images())
    assert probs.shape == (4, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    feats = backend.extract_features(images())
    np.testing.assert_allclose(backend.predict_proba(feats, "features"), probs, rtol=1e-4, atol=1e-5)


def _expected_trainable(backend: TorchvisionBackend, strategy) -> set[str]:
    model = backend.model
    head = backend.classifier_prefixes(model)
    names = {n for n, _ in model.named_parameters() if any(n.startswith(h + ".") for h in head)}
    stages = backend.stage_parameter_names(model)
    if strategy.train_backbone == "all":
        names |= {n for s in stages for n in s}
    elif strategy.train_backbone == "last_k":
        names |= {n for s in stages[-strategy.last_k_stages :] for n in s}
    return names


def _bn_owner(buffer_name: str) -> str:
    return buffer_name.rsplit(".", 1)[0]


@pytest.mark.slow  # builds and trains real models
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("strategy_name", ["scratch", "linear_probe", "partial_finetune", "full_finetune"])
def test_a_train_step_changes_exactly_the_intended_parameters(name, strategy_name):
    strategy = STRATEGIES[strategy_name]
    backend = build(name, num_classes=3, pretrained=strategy.pretrained)
    counts = backend.apply_phase(phase(backend, strategy, seed=0))
    model = backend.model
    expected = _expected_trainable(backend, strategy)
    assert counts.trainable == sum(p.numel() for n, p in model.named_parameters() if n in expected)
    assert counts.total == sum(p.numel() for p in model.parameters())
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x, y = images(8, seed=1), np.array([0, 1, 2, 0, 1, 2, 0, 1])
    if strategy.cache_features:
        backend.train_step(backend.extract_features(x), y, "features")
    else:
        backend.train_step(x, y)
    assert np.isfinite(backend.pop_train_loss())
    after = model.state_dict()
    for param_name, _ in model.named_parameters():
        changed = not torch.equal(before[param_name], after[param_name])
        assert changed == (param_name in expected), f"{strategy_name}: {param_name} changed={changed}"
    trainable_modules = {n.rsplit(".", 1)[0] for n in expected}
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats
    for key in stats:
        changed = not torch.equal(before[key], after[key])
        trains = _bn_owner(key) in trainable_modules
        # frozen BatchNorm stays in eval mode (statistics untouched); BatchNorm that trains updates them,
        # except under linear_probe, whose features are extracted in inference mode
        assert changed == (trains and not strategy.cache_features), f"{strategy_name}: {key} changed={changed}"


def test_optimizer_groups_use_backbone_lr_scale():
    backend = build("resnet18")
    strategy = STRATEGIES["full_finetune"]
    backend.apply_phase(phase(backend, strategy, optimizer="sgd"))
    head_group, backbone_group = backend.optimizer.param_groups
    assert head_group["lr"] == strategy.head_lr
    assert backbone_group["lr"] == pytest.approx(strategy.head_lr * strategy.backbone_lr_scale)
    assert {id(p) for p in head_group["params"]} == {id(p) for p in backend.model.fc.parameters()}


@pytest.mark.slow  # builds and trains real models
def test_snapshot_restore_and_speed_options_are_recorded():
    backend = TorchvisionBackend("cpu")
    info = backend.build(
        ModelSpec("resnet18", 2, SIZE, weights="none", options=TorchOptions(channels_last=True, amp="bf16"))
    )
    assert info.pretrained == "none" and info.dtype == "bfloat16-autocast" and info.device == "cpu"
    assert info.facts == {
        "memory_format": "channels_last",
        "compiled": False,
        "infer_compiled": False,
        "head": "native",
    }
    assert backend.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    backend.apply_phase(phase(backend, "scratch"))
    state = backend.snapshot()
    backend.train_step(images(4), np.array([0, 1, 0, 1]))
    assert not torch.equal(state["conv1.weight"], backend.model.conv1.weight)
    backend.restore(state)
    assert torch.equal(state["conv1.weight"], backend.model.conv1.weight)
    assert backend.peak_device_memory_mb() is None and backend.device_name() is None


# ---- weights: local file, hub cache, offline -------------------------------------------------------------
def _reference_resnet18(tmp_path: Path, num_classes: int = 5, in_chans: int = 3) -> tuple[nn.Module, Path]:
    """A resnet18 with random (seeded) weights saved as a plain state dict: the 'pretrained' source."""
    torch.manual_seed(123)
    model = tv_models.resnet18(num_classes=num_classes).eval()
    if in_chans == 1:
        conv = model.conv1
        conv.weight = nn.Parameter(conv.weight.detach().sum(1, keepdim=True))
        conv.in_channels = 1
    path = tmp_path / "rn18.pth"
    torch.save(model.state_dict(), path)
    return model, path


@pytest.mark.slow  # builds and trains real models
def test_local_checkpoint_loads_the_backbone_and_outputs_match(tmp_path):
    reference, path = _reference_resnet18(tmp_path)
    backend = TorchvisionBackend("cpu")
    info = backend.build(ModelSpec("resnet18", num_classes=2, image_size=SIZE, weights=str(path)))
    assert info.pretrained == f"file:{path}"
    loaded = backend.model.eval()
    assert loaded.fc.out_features == 2  # a fresh head for the new task
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(loaded.state_dict()[key], value), key
    x = backend.to_input(images())
    with torch.inference_mode():
        expected = torch.flatten(nn.Sequential(*list(reference.children())[:-1])(x), 1)
        torch.testing.assert_close(backend.pooled_features(loaded, x), expected)
    # a checkpoint whose key names differ (another implementation, same architecture) loads positionally
    renamed = {f"t{i}": v for i, v in enumerate(reference.state_dict().values())}
    torch.save({"state_dict": renamed}, tmp_path / "renamed.pth")
    again = build("resnet18", num_classes=2, weights=str(tmp_path / "renamed.pth"))
    assert torch.equal(again.model.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_bad_weight_files_are_backend_errors(tmp_path):
    with pytest.raises(BackendError, match=r"weights file '.*missing\.pth' does not exist"):
        build("resnet18", weights=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="is not a loadable torch state dict"):
        build("resnet18", weights=str(garbage))
    torch.save(tv_models.mobilenet_v3_small().state_dict(), tmp_path / "mnv3.pth")
    with pytest.raises(BackendError, match="expected a checkpoint of the same architecture"):
        build("resnet18", weights=str(tmp_path / "mnv3.pth"))


def test_hub_cache_is_used_offline(offline_hub):
    torch.manual_seed(7)
    reference = tv_models.resnet18()
    cached = Path(hub_cache_path(tv_models.ResNet18_Weights.DEFAULT))
    assert cached.parent == offline_hub / "checkpoints"
    cached.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), cached)
    backend = TorchvisionBackend("cpu")
    info = backend.build(ModelSpec("resnet18", num_classes=4, image_size=SIZE))
    assert info.pretrained == "torchvision:ResNet18_Weights.IMAGENET1K_V1"
    assert torch.equal(backend.model.layer3[0].conv1.weight, reference.layer3[0].conv1.weight)
    assert backend.model.fc.out_features == 4
    assert TorchvisionBackend.available_models()[0] == "resnet18"  # offline-ready first


@pytest.mark.slow  # builds and trains real models
def test_missing_weights_fail_unless_random_init_is_allowed(offline_hub):
    with pytest.raises(
        BackendError,
        match=r"no pretrained weights for torchvision model 'resnet18'.*--weights PATH or --allow-random-init",
    ) as info:
        TorchvisionBackend("cpu").build(ModelSpec("resnet18", num_classes=2, image_size=SIZE))
    assert "\n" not in str(info.value) and "not in the torch hub cache" in str(info.value)
    with pytest.raises(BackendError, match="IMAGENET1K_V1"):
        TorchvisionBackend("cpu").build(ModelSpec("resnet50", num_classes=2, image_size=SIZE, weights="IMAGENET1K_V1"))
    backend = TorchvisionBackend("cpu")
    info = backend.build(
        ModelSpec("resnet50", num_classes=2, image_size=SIZE, weights="IMAGENET1K_V1", allow_random_init=True)
    )
    assert info.pretrained == "none"  # never passed off as a transfer result
    assert info.data_config.crop_pct == pytest.approx(224 / 256)  # V1's preprocessing, not DEFAULT's
    assert backend.model.fc.out_features == 2


# ---- grayscale -------------------------------------------------------------------------------------------
@pytest.mark.slow  # builds and trains real models
def test_in_chans_1_sums_the_pretrained_rgb_stem(tmp_path):
    reference, path = _reference_resnet18(tmp_path)
    gray = build("resnet18", weights=str(path), in_chans=1)
    conv = gray.model.conv1
    assert conv.in_channels == 1 and conv.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(conv.weight.detach(), reference.conv1.weight.sum(dim=1, keepdim=True))
    g = torch.rand(2, 1, SIZE, SIZE)
    with torch.no_grad():  # conv(gray) with summed weights == conv(gray replicated to RGB) with the originals
        torch.testing.assert_close(conv(g), reference.conv1(g.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)
    probs = gray.predict_proba(images(3))
    assert probs.shape == (3, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    rgb = build("resnet18", weights=str(path), in_chans=3)
    assert rgb.model.conv1.in_channels == 3
    assert torch.equal(rgb.model.conv1.weight, reference.conv1.weight)
    # random init adapts the same way, for any stem found from the structure
    mobile = build("mobilenet_v3_small", in_chans=1)
    assert mobile.model.get_submodule(first_conv_name(mobile.model)).in_channels == 1
    assert mobile.predict_proba(images(2)).shape == (2, 3)


@pytest.mark.slow  # builds and trains real models
def test_single_channel_checkpoint_reloads_into_a_single_channel_model(tmp_path):
    reference, path = _reference_resnet18(tmp_path, in_chans=1)
    gray = build("resnet18", weights=str(path), in_chans=1)
    assert torch.equal(gray.model.conv1.weight, reference.conv1.weight)
    with pytest.raises(BackendError, match=r"conv1\.weight.*expected \(64, 3, 7, 7\)"):
        build("resnet18", weights=str(path), in_chans=3)


def test_the_requested_weights_decide_the_data_config():
    """``--weights IMAGENET1K_V1`` resizes and normalizes like V1 (crop 224 of 256), not like DEFAULT (V2: 232)."""
    backend = TorchvisionBackend("cpu")
    v1 = backend.default_data_config("resnet50", 224, "IMAGENET1K_V1")
    v2 = backend.default_data_config("resnet50", 224, "IMAGENET1K_V2")
    assert v1.crop_pct == pytest.approx(224 / 256) and v2.crop_pct == pytest.approx(224 / 232)
    assert backend.default_data_config("resnet50", 224) == v2  # DEFAULT is V2
    assert backend.default_data_config("resnet50", 224, "ResNet50_Weights.IMAGENET1K_V1") == v1
    # the config the cell prepares the cache with is the one build() reports for the same request
    spec = ModelSpec("resnet50", 2, 224, weights="IMAGENET1K_V1")
    assert backend.model_data_config(None, spec) == v1
    assert backend.default_data_config("resnet50", 224, "none") == v2  # files and none: the DEFAULT policy
