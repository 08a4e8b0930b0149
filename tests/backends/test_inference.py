"""The inference-engine seam: a trained model exported, loaded in a fresh engine and run without training methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlbench.backends.base import BackendError, ModelSpec
from tlbench.backends.inference import (
    INFERENCE_ENGINES,
    FrameworkInference,
    InferenceEngine,
    TrainedModel,
    inference_engine,
)


def _trained(fake_backend: str, tmp_path: Path) -> tuple[object, TrainedModel, np.ndarray]:
    from fake_backend import FakeBackend

    backend = FakeBackend("cpu")
    backend.build(ModelSpec(name="softmax", num_classes=3, image_size=8, weights="none", pretrained=False, seed=1))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    # move the head away from its init so that loading the weights is observable
    w, b = backend.snapshot()
    backend.restore((w * 50 + 0.3, b + 0.5))
    artifact = FrameworkInference.export(backend, tmp_path)
    trained = TrainedModel("fake", "softmax", num_classes=3, image_size=8, seed=99, artifact=artifact)
    return backend, trained, images


def test_export_load_run_gives_the_trained_models_probabilities(fake_backend, tmp_path):
    from fake_backend import FakeBackend

    backend, trained, images = _trained(fake_backend, tmp_path)
    assert trained.artifact == tmp_path / "weights.json" and trained.artifact.is_file()
    engine = inference_engine("framework", FakeBackend, "cpu")
    assert engine.load(trained, batch_size=5) is None  # nothing to specialize for the fake backend
    engine.synchronize()
    np.testing.assert_allclose(engine.run(images), backend.predict_proba(images), rtol=0, atol=0)
    # seed 99 alone (no weights) would give another model
    fresh = FakeBackend("cpu")
    fresh.build(ModelSpec(name="softmax", num_classes=3, image_size=8, weights="none", pretrained=False, seed=99))
    assert not np.allclose(fresh.predict_proba(images), engine.run(images))


def test_a_live_backend_behind_the_seam(fake_backend, tmp_path):
    backend, _, images = _trained(fake_backend, tmp_path)
    engine = FrameworkInference.of(backend)
    np.testing.assert_array_equal(engine.run(images), backend.predict_proba(images))


def test_missing_artifact_and_unloaded_engine_are_one_line_errors(fake_backend, tmp_path):
    from fake_backend import FakeBackend

    _, trained, images = _trained(fake_backend, tmp_path)
    gone = TrainedModel("fake", "softmax", 3, 8, 0, artifact=tmp_path / "nope.json")
    with pytest.raises(BackendError, match="nope.json.*not found"):
        FrameworkInference(FakeBackend, "cpu").load(gone, 5)
    with pytest.raises(BackendError, match="no model loaded"):
        FrameworkInference(FakeBackend, "cpu").run(images)


def test_the_registry_and_the_contract() -> None:
    assert set(INFERENCE_ENGINES) == {"framework", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"}
    with pytest.raises(KeyError, match="'onnx'.*framework"):
        inference_engine("onnx", object, "cpu")  # type: ignore[arg-type]

    class Incomplete(InferenceEngine):
        name = "incomplete"

        def run(self, images):  # no export, load, synchronize
            return images

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]
    # no training method is part of the seam
    assert not {"train_step", "apply_phase", "build"} & set(dir(InferenceEngine))
