"""ONNX Runtime as an inference engine: the trained model exported to ONNX (``onnx_export``), fp32 or INT8.

``OnnxRuntimeInference`` runs the exported graph (preprocessing inside, uint8 NHWC in, probabilities out) in an
``InferenceSession`` with the runtime's recommended CPU settings: every graph optimization (``ORT_ENABLE_ALL``:
BatchNorm folded, Conv+activation fused, layouts for the CPU's kernels), sequential execution, the cell's
intra-op threads and one inter-op thread (the training frameworks' setting, so the comparison is same threads), and
no spin-waiting of idle threads (ONNX Runtime's setting beside other work: the pass runs models back to back).
On a CUDA device it takes the TensorRT or CUDA execution provider where the installed ONNX Runtime has one,
else the CPU one; ``facts`` says which ran.

``OnnxRuntimeInt8Inference`` runs the same graph after post-training static quantization (``onnx_quantize``:
QDQ, calibrated on training images). Nothing here imports ``onnxruntime`` before ``export`` or ``load``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Backend
from .errors import BackendError
from .inference import InferenceEngine, TrainedModel
from .onnx_export import INPUT_NAME, export_onnx

#: the exported fp32 graph's file name
FP32_FILE = "model.onnx"
#: the quantized graph's file name
INT8_FILE = "model.int8.onnx"


def is_cuda(device: str) -> bool:
    """Whether ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``gpu``) asks for a GPU when one exists."""
    return device == "auto" or device == "gpu" or device.startswith("cuda")


def write_facts(artifact: Path, facts: dict[str, Any]) -> None:
    """Keep the export's facts beside its artifact (``<artifact>.json``), for the engine that loads it."""
    import json

    artifact.with_name(f"{artifact.name}.json").write_text(json.dumps(facts, indent=1, default=str))


def read_facts(artifact: Path) -> dict[str, Any]:
    """The facts ``write_facts`` kept for ``artifact`` (``{}`` when none)."""
    import json

    path = artifact.with_name(f"{artifact.name}.json")
    return json.loads(path.read_text()) if path.is_file() else {}


class OnnxRuntimeInference(InferenceEngine):
    """The exported fp32 graph in ONNX Runtime."""

    name = "onnxruntime"
    artifact_kind = "onnx"

    def __init__(self, backend_class: type[Backend], device: str) -> None:
        """Args: the backend class that trained the model (unused: the graph is self-contained), the device."""
        self.backend_class = backend_class
        self.device = device
        self.session: Any = None
        self.facts: dict[str, Any] = {}

    @classmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """Export ``backend``'s model as ``model.onnx`` (uint8 NHWC in, probabilities out) under ``directory``."""
        path = Path(directory) / FP32_FILE
        write_facts(path, {"precision": "fp32", **export_onnx(backend, path)})
        return path

    def load(self, trained: TrainedModel, batch_size: int, threads: int | None = None) -> float | None:
        """An ``InferenceSession`` of ``trained.artifact``, optimized and run once at ``batch_size`` (all timed)."""
        import onnxruntime as ort

        artifact = Path(trained.artifact)
        if not artifact.is_file():
            raise BackendError(f"exported model {str(artifact)!r} not found")
        start = time.perf_counter()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.inter_op_num_threads = 1
        if threads is not None:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        # no spin-waiting after a run: in the pass's interleaved rounds the next model (the framework's) starts at
        # once, and spinning intra-op threads would take its cores (ONNX Runtime's advice beside other workloads)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = self._providers(ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(artifact), options, providers=providers)
        except Exception as exc:
            raise BackendError(f"{self.name} cannot load {artifact.name}: {' '.join(str(exc).split())[:300]}") from exc
        side, chans = trained.image_size, 3
        self.run(np.zeros((batch_size, side, side, chans), dtype=np.uint8))
        seconds = time.perf_counter() - start
        self.facts = {
            **read_facts(artifact),
            "runtime": f"onnxruntime {ort.__version__}",
            "provider": self.session.get_providers()[0],
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "graph_optimization": "ORT_ENABLE_ALL",
            "intra_op_spinning": False,
        }
        return seconds

    def _providers(self, available: list[str]) -> list[str]:
        if is_cuda(self.device):
            for provider in ("TensorrtExecutionProvider", "CUDAExecutionProvider"):
                if provider in available:
                    return [provider, "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def run(self, images: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise BackendError(f"{self.name}: no model loaded (call load() first)")
        batch = np.ascontiguousarray(images, dtype=np.uint8)
        return np.asarray(self.session.run(None, {INPUT_NAME: batch})[0], dtype=np.float32)

    def synchronize(self) -> None:
        """Nothing to wait for: ``run`` returns host arrays, so the device work is done."""


class OnnxRuntimeInt8Inference(OnnxRuntimeInference):
    """The exported graph after post-training static INT8 quantization, in ONNX Runtime."""

    name = "onnxruntime-int8"
    artifact_kind = "onnx-int8"
    needs_calibration = True

    @classmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """Export the fp32 graph, then quantize it into ``model.int8.onnx`` calibrated on ``calibration``.

        An fp32 graph already exported into ``directory`` (by the fp32 engine of the same pass) is quantized as it is.

        Raises:
            BackendError: no calibration images, or the export or the quantizer failed (one line).
        """
        from .onnx_quantize import quantize_int8

        if not calibration:
            raise BackendError(f"{cls.name} needs calibration images (training images) to quantize")
        fp32 = Path(directory) / FP32_FILE
        if not (fp32.is_file() and read_facts(fp32)):
            fp32 = OnnxRuntimeInference.export(backend, directory)
        path = Path(directory) / INT8_FILE
        exported = read_facts(fp32)
        quantized = quantize_int8(fp32, path, calibration)
        write_facts(
            path,
            {
                **exported,
                "precision": "int8",
                "quantization": quantized,
                "export_s": exported["export_s"] + quantized["quantize_s"],
            },
        )
        return path
