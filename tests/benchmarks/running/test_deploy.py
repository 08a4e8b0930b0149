"""``--deploy`` in the inference pass: engines exported once per artifact, timed beside the framework, test metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tlbench.backends.base import BackendError
from tlbench.backends.inference import DEPLOY_ENGINES, INFERENCE_ENGINES, DeployEngineEntry, InferenceEngine
from tlbench.benchmarks.running import deploy
from tlbench.benchmarks.running.config import RunOptions
from tlbench.benchmarks.running.deploy import DeployError, parse_deploy


def test_parse_deploy_checks_names_repeats_and_installed_runtimes(monkeypatch):
    assert parse_deploy("onnxruntime, onnxruntime-int8") == ("onnxruntime", "onnxruntime-int8")
    assert parse_deploy(["openvino"]) == ("openvino",) and parse_deploy("") == ()
    with pytest.raises(DeployError, match="unknown --deploy engine 'tensorrt'; expected some of: onnxruntime, "):
        parse_deploy("onnxruntime,tensorrt")
    with pytest.raises(DeployError, match="--deploy names 'openvino' twice"):
        parse_deploy("openvino,openvino")
    absent = DeployEngineEntry("openvino", "x:Y", "deploy", ("no_such_runtime_xyz",))
    monkeypatch.setitem(DEPLOY_ENGINES, "openvino", absent)
    with pytest.raises(
        DeployError,
        match=r"^--deploy inference engine 'openvino' needs the package 'no_such_runtime_xyz'; install it with: "
        r"pip install 'tlbench\[deploy\]'$",
    ):
        parse_deploy("openvino")


def test_the_deploy_option_is_recorded_but_never_changes_a_cells_identity():
    options = RunOptions(deploy=["onnxruntime"])  # a list after a JSON round trip
    assert options.deploy == ("onnxruntime",)
    assert RunOptions.from_dict(json.loads(json.dumps({"deploy": ["openvino"]}))).deploy == ("openvino",)
    assert options.fingerprint("timm") == RunOptions().fingerprint("timm")


class Lookup(InferenceEngine):
    """Probabilities looked up by image: image ``i`` (its first pixel) gets row ``i`` of ``table``."""

    name = "lookup"
    artifact_kind = "table"
    table = np.zeros((0, 2), np.float32)
    exports: list[str] = []

    def __init__(self, backend_class, device):
        self.facts = {}

    @classmethod
    def export(cls, backend, directory, calibration=None):
        cls.exports.append(cls.name)
        path = Path(directory) / "table.npy"
        np.save(path, cls.table)
        return path

    def load(self, trained, batch_size, threads=None):
        self.loaded = np.load(trained.artifact)
        self.facts = {"threads": threads}
        return 0.25

    def run(self, images):
        return self.loaded[np.asarray(images)[:, 0, 0, 0]]

    def synchronize(self):
        pass


def test_deploy_figures_hold_speed_export_and_the_exported_models_test_metrics():
    labels = np.array([0, 1, 1, 0])
    framework = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.7, 0.3]], np.float32)
    exported = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3]], np.float32)
    engine = Lookup(None, "cpu")
    engine.loaded = exported
    test_images = np.arange(4, dtype=np.uint8).reshape(4, 1, 1, 1)
    items = [
        deploy.DeployedEngine("lookup", engine, export_s=3.0, prepare_s=0.25, facts={"threads": 2}),
        deploy.DeployedEngine("broken", error="export: ONNX export of fake failed"),
    ]
    speed = {
        "images_per_s": 300.0,
        "latency_ms_p50": 10.0,
        "latency_ms_p90": 12.0,
        "latency_cv": 0.1,
        "repeats": 20,
        "timed_s": 0.2,
        "batch_size": 3,
        "latencies_ms": [10.0] * 20,
    }
    out = deploy.deploy_figures(items, {"lookup": speed}, 100.0, framework, labels, test_images, batch_size=3)
    assert out["broken"] == {"error": "export: ONNX export of fake failed"}
    got = out["lookup"]
    assert "latencies_ms" not in got and got["images_per_s"] == 300.0 and got["speedup"] == pytest.approx(3.0)
    assert got["export_s"] == 3.0 and got["prepare_s"] == 0.25 and got["facts"] == {"threads": 2}
    # the exported model misclassifies image 2: accuracy 0.75 (framework 1.0); its ranking is still perfect
    assert got["accuracy"] == 0.75 and got["accuracy_change"] == pytest.approx(-0.25)
    assert got["roc_auc"] == 1.0 and got["roc_auc_change"] == 0.0
    assert got["max_abs_prob_diff"] == pytest.approx(0.2) and got["mean_abs_prob_diff"] == pytest.approx(0.1)
    assert got["argmax_agreement"] == 0.75 and got["test_images"] == 4
    assert deploy.describe(got).startswith("300.0 img/s (3.00x the framework), export 3.0 s, prepare 0.2 s, accuracy")
    assert deploy.describe(out["broken"]) == "failed: export: ONNX export of fake failed"


def test_engines_share_one_export_per_artifact_and_a_failing_one_costs_only_itself(fake_backend, tmp_path, monkeypatch):
    from fake_backend import FakeBackend

    from tlbench.backends import ModelSpec
    from tlbench.backends.inference import TrainedModel

    class Twin(Lookup):
        name = "twin"  # reads the same artifact kind: no second export

    class Calibrated(Lookup):
        name = "calibrated"
        artifact_kind = "table-int8"
        needs_calibration = True

        @classmethod
        def export(cls, backend, directory, calibration=None):
            assert [len(b) for b in calibration] == [2, 1]
            raise BackendError("INT8 quantization failed: no kernel")

    class Unloadable(Lookup):
        name = "unloadable"
        artifact_kind = "other"

        def load(self, trained, batch_size, threads=None):
            raise RuntimeError("session refused the graph")

    for cls in (Lookup, Twin, Calibrated, Unloadable):
        monkeypatch.setitem(INFERENCE_ENGINES, cls.name, cls)
    Lookup.exports = []
    Lookup.table = np.eye(2, dtype=np.float32)
    backend = FakeBackend("cpu")
    backend.build(ModelSpec("softmax", 2, 8, weights="none", pretrained=False))
    trained = TrainedModel("fake", "softmax", 2, 8, 0, tmp_path / "weights.json")
    calls: list[int] = []

    def calibration():
        calls.append(1)
        return [np.zeros((2, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8)]

    log: list[str] = []
    items = deploy.prepare_engines(
        ["lookup", "twin", "calibrated", "unloadable"], backend, trained, tmp_path, 4, 2, calibration, log.append
    )
    assert [(i.name, i.engine is not None, i.error) for i in items] == [
        ("lookup", True, None),
        ("twin", True, None),
        ("calibrated", False, "export: INT8 quantization failed: no kernel"),
        ("unloadable", False, "RuntimeError: session refused the graph"),
    ]
    assert Lookup.exports == ["lookup", "unloadable"] and calls == [1]  # "twin" reused lookup's export
    assert items[0].prepare_s == 0.25 and items[0].facts == {"threads": 2} and items[1].export_s == items[0].export_s
    np.testing.assert_array_equal(items[1].engine.run(np.array([1, 0], np.uint8).reshape(2, 1, 1, 1)), np.eye(2)[::-1])
    assert log[2] == "calibrated: export: INT8 quantization failed: no kernel"


def test_calibration_uses_the_rows_the_cell_trained_on():
    train = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    batches = deploy.calibration_images(train, np.array([40, 3, 7, 11]), batch_size=3)
    assert [b.ravel().tolist() for b in batches] == [[3, 7, 11], [40]]
    assert sum(len(b) for b in deploy.calibration_images(train, None, 16)) == 50
    with pytest.raises(ValueError, match="at least one training image"):
        deploy.calibration_images(train, np.array([], dtype=int), 4)


def test_a_cells_export_directory_is_fresh_and_kept_only_when_asked(tmp_path):
    cell = tmp_path / "cells" / "timm__resnet18__scratch__digits__s0"
    kept = deploy.deploy_directory(cell, tmp_path / "scratch", keep=True)
    assert kept == cell / "deploy" and kept.is_dir()
    (kept / "model.onnx").write_text("old")
    assert not list(deploy.deploy_directory(cell, tmp_path / "scratch", keep=True).iterdir())  # never reused
    assert deploy.deploy_directory(cell, tmp_path / "scratch", keep=False) == tmp_path / "scratch" / cell.name


@pytest.mark.slow
def test_the_pass_times_the_framework_and_its_deployed_engines_together(cache_dir, tmp_path, monkeypatch):
    """A torchvision cell's weights, re-timed by the pass with ONNX Runtime fp32 and INT8 beside the framework."""
    pytest.importorskip("onnxruntime")
    import torch

    from tlbench.backends import ModelSpec, get_backend_class
    from tlbench.benchmarks.running import infer_pass
    from tlbench.benchmarks.running.config import SuiteConfig

    monkeypatch.delenv("TLBENCH_SAVE_WEIGHTS", raising=False)
    backend = get_backend_class("torchvision")("cpu")
    backend.build(ModelSpec("resnet18", 10, 32, weights="none", pretrained=False, seed=0))
    with torch.no_grad():
        backend.model.fc.weight.mul_(40.0)
    record = {
        "backend": "torchvision",
        "model": "resnet18",
        "strategy": "scratch",
        "dataset": "digits",
        "seed": 0,
        "status": "ok",
        "infer_images_per_s": 100.0,
        "image_size": 32,
        "infer_batch_size": 32,
        "num_classes": 10,
        "flops_per_image": 1e8,
    }
    out = tmp_path / "suite"
    cell = out / "cells" / "torchvision__resnet18__scratch__digits__s0"
    cell.mkdir(parents=True)
    backend.save_weights(str(cell / "weights.pth"))
    options = RunOptions(
        epochs=1,
        image_size=32,
        batch_size=32,
        device="cpu",
        weights="none",
        infer_repeats=10,
        infer_warmup=1,
        infer_min_time_s=0.0,
        threads=2,
        cache_dir=str(cache_dir),
        deploy=("onnxruntime", "onnxruntime-int8"),
    )
    suite = SuiteConfig(name="d", backends=("torchvision",), models=("resnet18",), options=options)
    outcome = infer_pass.run_group([record], suite, out)
    assert "error" not in outcome, outcome
    assert outcome["models"] == 1 and list(outcome["cells"]) == [cell.name]
    stats = outcome["cells"][cell.name]
    figures = stats["deploy"]
    assert list(figures) == ["onnxruntime", "onnxruntime-int8"]
    fp32, int8 = figures["onnxruntime"], figures["onnxruntime-int8"]
    assert fp32["max_abs_prob_diff"] < 1e-4 and fp32["argmax_agreement"] == 1.0 and fp32["accuracy_change"] == 0.0
    assert fp32["batch_size"] == int8["batch_size"] == stats["batch_size"] == 32  # the same batches
    assert fp32["repeats"] >= 10 and int8["repeats"] >= 10 and fp32["images_per_s"] > 0
    assert fp32["speedup"] == pytest.approx(fp32["images_per_s"] / stats["images_per_s"])
    assert fp32["facts"]["intra_op_threads"] == 2 and fp32["facts"]["precision"] == "fp32"
    assert int8["facts"]["quantization"]["calibration_images"] == 256 and int8["max_abs_prob_diff"] > 1e-4
    # the INT8 graph's export seconds hold the fp32 export it quantized (shared, exported once) and the quantizer
    assert int8["export_s"] == pytest.approx(fp32["export_s"] + int8["facts"]["quantization"]["quantize_s"])
    assert int8["test_images"] == fp32["test_images"] > 0 and 0 <= int8["accuracy"] <= 1
    assert not (cell / "deploy").exists()  # exports went to a scratch directory, gone with the pass
    updated = infer_pass.passed_record(record, stats, outcome, wall_s=5.0)
    assert updated["deploy"] == figures and updated["infer_images_per_s"] == stats["images_per_s"]
    log = (out / "infer_pass.log").read_text()
    assert f"{cell.name}@onnxruntime-int8: " in log and "x the framework" in log


def test_a_passed_record_without_deploy_has_none():
    from tlbench.benchmarks.running.infer_pass import passed_record

    stats = {"images_per_s": 1.0, "latency_ms_p50": 1.0, "latency_ms_p90": 1.0, "repeats": 10}
    stats |= {"timed_s": 1.0, "latency_cv": 0.0}
    record = {"infer_images_per_s": 2.0}
    outcome = {"models": 1, "rounds": 10, "contention": {}}
    assert passed_record(record, stats, outcome, 1.0)["deploy"] is None
    with_deploy = {**stats, "deploy": {"onnxruntime": {"error": "x"}}}
    assert passed_record(record, with_deploy, outcome, 1.0)["deploy"] == {"onnxruntime": {"error": "x"}}
