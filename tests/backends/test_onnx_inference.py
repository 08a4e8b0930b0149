"""Deployment runtimes behind the inference seam: the exported graph computes what the framework computes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlbench.backends import ModelSpec, get_backend_class
from tlbench.backends.base import BackendError
from tlbench.backends.inference import (
    DEPLOY_ENGINES,
    INFERENCE_ENGINES,
    DeployEngineEntry,
    TrainedModel,
    inference_engine,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

SIDE = 32
CLASSES = 3


def trained_torch(backend: str, model: str, in_chans: int = 3):
    """A torch backend's model at 32 px, random init with a sharpened classifier (probabilities far from uniform)."""
    import torch

    b = get_backend_class(backend)("cpu")
    b.build(ModelSpec(model, CLASSES, SIDE, weights="none", pretrained=False, seed=0, in_chans=in_chans))
    with torch.no_grad():
        b.model.fc.weight.mul_(40.0)
        b.model.fc.bias.copy_(torch.tensor([0.5, -0.5, 0.0]))
    return b


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIDE, SIDE, 3), dtype=np.uint8)


def loaded(name: str, backend, directory: Path, batch: int, calibration=None):
    engine = inference_engine(name, type(backend), "cpu")
    artifact = engine.export(backend, directory, calibration=calibration)
    trained = TrainedModel(backend.name, backend.spec.name, CLASSES, SIDE, 0, artifact)
    seconds = engine.load(trained, batch, threads=2)
    return engine, artifact, seconds


@pytest.fixture(scope="module")
def resnet():
    return trained_torch("torchvision", "resnet18")


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_the_exported_fp32_model_gives_the_frameworks_probabilities(resnet, tmp_path, name):
    x = images(11)
    reference = resnet.predict_proba(x)
    assert reference.max() > 0.9 and reference.min() < 0.05  # far from uniform: preprocessing errors would show
    engine, artifact, seconds = loaded(name, resnet, tmp_path, batch=4)
    assert artifact == tmp_path / "model.onnx" and seconds > 0
    probs = engine.run(x)  # 11 images: OpenVINO's static batch of 4 runs 4 + 4 + 3 (padded)
    assert probs.shape == (11, CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, reference, rtol=0, atol=1e-4)
    np.testing.assert_allclose(engine.run(x[:2]), reference[:2], rtol=0, atol=1e-4)
    engine.synchronize()
    facts = engine.facts
    assert facts["precision"] == "fp32" and facts["opset"] == 17 and facts["exporter"].startswith("torch.onnx")
    if name == "onnxruntime":
        assert facts["provider"] == "CPUExecutionProvider" and facts["intra_op_threads"] == 2
    else:
        assert facts["inference_precision"] == "f32" and facts["intra_op_threads"] == 2 and facts["static_batch"] == 4


def test_a_gray_model_takes_the_first_channel_as_the_framework_does(tmp_path):
    gray = trained_torch("timm", "resnet18", in_chans=1)
    x = images(4, seed=1)
    engine, _, _ = loaded("onnxruntime", gray, tmp_path, batch=4)
    np.testing.assert_allclose(engine.run(x), gray.predict_proba(x), rtol=0, atol=1e-4)


@pytest.mark.slow  # ONNX Runtime and OpenVINO calibrate and quantize the graph (seconds each)
@pytest.mark.parametrize("name", ["onnxruntime-int8", "openvino-int8"])
def test_int8_engines_run_the_calibrated_quantized_graph(resnet, tmp_path, name):
    x = images(16, seed=2)
    calibration = [images(8, seed=3), images(8, seed=4)]
    engine, artifact, _ = loaded(name, resnet, tmp_path, batch=8, calibration=calibration)
    assert artifact.name == "model.int8.onnx" and (tmp_path / "model.onnx").is_file()
    probs = engine.run(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # the softmax stays in float
    reference = resnet.predict_proba(x)
    diff = np.abs(probs - reference)
    assert diff.max() > 1e-4  # quantized: not the fp32 graph
    assert diff.mean() < 0.05 and (probs.argmax(1) == reference.argmax(1)).mean() >= 0.75  # still the same model
    quantization = engine.facts["quantization"]
    assert engine.facts["precision"] == "int8" and quantization["calibration_images"] == 16
    assert quantization["format"] == "QDQ" and quantization["float_ops"] == ["Softmax"]
    assert engine.facts["export_s"] >= quantization["quantize_s"] > 0
    import onnx

    ops = {node.op_type for node in onnx.load(str(artifact)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_export_without_calibration_images_is_one_line(resnet, tmp_path):
    engine = inference_engine("onnxruntime-int8", type(resnet), "cpu")
    with pytest.raises(BackendError, match="needs calibration images"):
        engine.export(resnet, tmp_path)


def test_a_backend_on_no_exportable_engine_cannot_export(fake_backend, tmp_path):
    from fake_backend import FakeBackend

    b = FakeBackend("cpu")
    b.build(ModelSpec("softmax", 3, 8, weights="none", pretrained=False))
    with pytest.raises(
        BackendError,
        match=r"^backend 'fake' cannot export its model to ONNX; these backends can: timm, torchvision, keras, "
        r"keras-torch$",
    ):
        inference_engine("onnxruntime", FakeBackend, "cpu").export(b, tmp_path)


def test_loading_a_missing_artifact_or_running_unloaded_is_one_line(tmp_path):
    for name in DEPLOY_ENGINES:
        engine = inference_engine(name, object, "cpu")  # type: ignore[arg-type]
        with pytest.raises(BackendError, match="no model loaded"):
            engine.run(images(1))
        gone = TrainedModel("timm", "resnet18", CLASSES, SIDE, 0, tmp_path / "nope.onnx")
        with pytest.raises(BackendError, match="nope.onnx.*not found"):
            engine.load(gone, 4)


def test_the_registry_lists_the_runtimes_lazily_and_names_the_extra():
    assert list(INFERENCE_ENGINES) == ["framework", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"]
    assert {entry.extra for entry in DEPLOY_ENGINES.values()} == {"deploy"}
    for name, entry in DEPLOY_ENGINES.items():
        cls = entry.engine_class()
        assert cls.name == name and entry.missing_module() is None
        assert cls.needs_calibration == name.endswith("-int8")
    # engines that read the same graph share one export
    kinds = {name: entry.engine_class().artifact_kind for name, entry in DEPLOY_ENGINES.items()}
    assert kinds == {
        "onnxruntime": "onnx",
        "onnxruntime-int8": "onnx-int8",
        "openvino": "onnx",
        "openvino-int8": "onnx-int8",
    }
    absent = DeployEngineEntry("tensorrt", "nowhere:Engine", "deploy", ("numpy", "no_such_runtime_xyz"))
    assert absent.missing_module() == "no_such_runtime_xyz"
    with pytest.raises(
        BackendError,
        match=r"^inference engine 'tensorrt' needs the package 'no_such_runtime_xyz'; install it with: "
        r"pip install 'tlbench\[deploy\]'$",
    ):
        absent(object, "cpu")  # type: ignore[arg-type]


def test_calibration_takes_training_images_evenly_in_batches():
    from tlbench.backends.onnx_quantize import calibration_batches

    index = np.arange(1000)
    pool = np.stack([index // 256, index % 256], axis=1).astype(np.uint8).reshape(1000, 1, 1, 2)  # image i holds i
    batches = calibration_batches(pool, batch_size=100, limit=256)
    assert [len(b) for b in batches] == [100, 100, 56] and all(b.dtype == np.uint8 for b in batches)
    chosen = np.concatenate(batches).reshape(-1, 2).astype(int) @ np.array([256, 1])
    assert chosen[0] == 0 and chosen[-1] == 999 and len(set(chosen)) == 256  # first and last, evenly between
    assert np.ptp(np.diff(chosen)) <= 1
    assert [len(b) for b in calibration_batches(pool[:5], batch_size=4)] == [4, 1]
    with pytest.raises(ValueError, match="at least one training image"):
        calibration_batches(pool[:0], 4)


def test_int8_flags_are_read_from_cpuinfo():
    from tlbench.backends.onnx_quantize import int8_cpu_flags

    vnni = "processor : 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\nprocessor : 1\nflags : fpu amx_int8\n"
    assert int8_cpu_flags(vnni) == ["avx512_vnni", "amx_int8"]
    assert int8_cpu_flags("flags : fpu sse4_2 avx2\n") == []


@pytest.mark.slow
def test_a_keras_model_exports_through_tf2onnx(tmp_path):
    pytest.importorskip("tf2onnx")
    b = get_backend_class("keras")("cpu")
    b.build(ModelSpec("vgg16", CLASSES, SIDE, weights="none", pretrained=False, seed=0))
    last = [layer for layer in b.head.layers if getattr(layer, "kernel", None) is not None][-1]
    last.kernel.assign(last.kernel.numpy() * 1e4)  # sharpen: probabilities far from uniform
    x = images(5, seed=5)
    reference = b.predict_proba(x)
    assert reference.max() > 0.6
    engine, _, _ = loaded("onnxruntime", b, tmp_path, batch=5)
    np.testing.assert_allclose(engine.run(x), reference, rtol=0, atol=1e-4)
    assert engine.facts["exporter"].startswith("tf2onnx")


#: Keras loads on one engine per process: the keras-torch export runs in a fresh one
KERAS_TORCH_EXPORT = """
import json, sys, tempfile
from pathlib import Path
import numpy as np
from tlbench.backends import ModelSpec, get_backend_class
from tlbench.backends.inference import TrainedModel, inference_engine

b = get_backend_class("keras-torch")("cpu")
b.build(ModelSpec("vgg16", 3, 32, weights="none", pretrained=False, seed=0))
last = [layer for layer in b.head.layers if getattr(layer, "kernel", None) is not None][-1]
last.kernel.assign(np.asarray(last.kernel.numpy()) * 1e4)  # sharpen: probabilities far from uniform
x = np.random.default_rng(5).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
reference = b.predict_proba(x)
engine = inference_engine("onnxruntime", type(b), "cpu")
directory = Path(tempfile.mkdtemp())
artifact = engine.export(b, directory)
engine.load(TrainedModel("keras-torch", "vgg16", 3, 32, 0, artifact), 5)
got = engine.run(x)
print(json.dumps({"max_diff": float(np.abs(got - reference).max()), "max_prob": float(reference.max()),
                  "exporter": engine.facts["exporter"], "shape": list(got.shape)}))
"""


@pytest.mark.slow
def test_a_keras_torch_model_exports_through_keras_own_export():
    import json
    import subprocess
    import sys

    from tlbench.backends import REGISTRY
    from tlbench.backends.engines import engine_available

    if not engine_available(REGISTRY["keras-torch"].engine):
        pytest.skip("keras-torch not installed")  # CI installs every extra
    proc = subprocess.run(
        [sys.executable, "-c", KERAS_TORCH_EXPORT], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["shape"] == [5, 3] and figures["max_prob"] > 0.6
    assert figures["max_diff"] < 1e-4  # the exported graph computes what Keras on torch computes
    assert figures["exporter"].startswith("keras ") and "torch" in figures["exporter"]


def test_keras_on_jax_is_refused_with_its_reason(tmp_path):
    from tlbench.backends.onnx_export import exportable, no_exporter_message

    assert not exportable("keras-jax") and exportable("keras-torch")
    assert no_exporter_message("keras-jax").startswith(
        "backend 'keras-jax' cannot export its model to ONNX (Keras 3 exports JAX models only through jax2onnx, "
    )
