"""OpenVINO as an inference engine: the same exported ONNX graph (``onnx_export``), fp32 or INT8, on the CPU.

``OpenVinoInference`` reads the fp32 graph ONNX Runtime runs, fixes its batch axis to the inference batch size
(OpenVINO's CPU plugin plans memory and picks kernels for static shapes; smaller batches are padded to it, larger
ones split, as torch's frozen compiled model does) and compiles it for the CPU with OpenVINO's recommended
settings for one synchronous request: ``PERFORMANCE_HINT=LATENCY`` (one stream over all the threads),
``INFERENCE_NUM_THREADS`` = the cell's threads, and ``INFERENCE_PRECISION_HINT=f32`` (on a CPU with AMX or
AVX512-BF16 OpenVINO would otherwise compute in bf16: an fp32 figure stays fp32; reduced precision is the INT8
engine's job). ``OpenVinoInt8Inference`` compiles the QDQ graph of ONNX Runtime's quantizer (``onnx_quantize``),
which OpenVINO executes in INT8. OpenVINO's GPU device is an Intel GPU, so both run on the CPU whatever
``--device`` says (``facts["device"]``).
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
from .onnx_export import INPUT_NAME
from .onnx_inference import OnnxRuntimeInference, OnnxRuntimeInt8Inference, read_facts


class OpenVinoInference(InferenceEngine):
    """The exported fp32 graph compiled by OpenVINO for the CPU."""

    name = "openvino"
    artifact_kind = OnnxRuntimeInference.artifact_kind
    #: OpenVINO's device of every run
    ov_device = "CPU"
    #: OpenVINO's ``PERFORMANCE_HINT``: ``LATENCY`` (one stream over all the threads: the runtime's advice for one
    #: synchronous request, what the pass times) or ``THROUGHPUT`` (several streams; a benchmark's option)
    performance_hint = "LATENCY"

    def __init__(self, backend_class: type[Backend], device: str) -> None:
        """Args: the backend class that trained the model (unused), the requested device (OpenVINO uses the CPU)."""
        self.backend_class = backend_class
        self.device = device
        self.compiled: Any = None
        self.request: Any = None
        self.batch_size = 0
        self.facts: dict[str, Any] = {}

    @classmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """The fp32 ONNX graph (``OnnxRuntimeInference.export``): OpenVINO reads ONNX directly."""
        return OnnxRuntimeInference.export(backend, directory)

    def load(self, trained: TrainedModel, batch_size: int, threads: int | None = None) -> float | None:
        """Read the graph, fix its batch to ``batch_size``, compile it for the CPU and run it once (all timed)."""
        import openvino as ov

        artifact = Path(trained.artifact)
        if not artifact.is_file():
            raise BackendError(f"exported model {str(artifact)!r} not found")
        if batch_size < 1:
            raise ValueError(f"load needs batch_size >= 1, got {batch_size}")
        start = time.perf_counter()
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint, "INFERENCE_PRECISION_HINT": "f32"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            model = core.read_model(str(artifact))
            side = trained.image_size
            model.reshape({INPUT_NAME: [batch_size, side, side, 3]})
            self.compiled = core.compile_model(model, self.ov_device, config)
        except Exception as exc:
            raise BackendError(f"{self.name} cannot load {artifact.name}: {' '.join(str(exc).split())[:300]}") from exc
        self.request = self.compiled.create_infer_request()
        self.batch_size = int(batch_size)
        self.run(np.zeros((batch_size, trained.image_size, trained.image_size, 3), dtype=np.uint8))
        seconds = time.perf_counter() - start
        self.facts = {
            **read_facts(artifact),
            "runtime": f"openvino {ov.get_version()}",
            "device": self.ov_device,
            "performance_hint": self.performance_hint,
            "inference_precision": _type_name(self.compiled.get_property("INFERENCE_PRECISION_HINT")),
            "intra_op_threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
            "static_batch": self.batch_size,
        }
        return seconds

    def run(self, images: np.ndarray) -> np.ndarray:
        """Probabilities of ``images`` in chunks of exactly the compiled batch (the last chunk padded)."""
        if self.request is None:
            raise BackendError(f"{self.name}: no model loaded (call load() first)")
        size, outputs = self.batch_size, []
        for start in range(0, len(images), size):
            chunk = np.ascontiguousarray(images[start : start + size], dtype=np.uint8)
            short = size - len(chunk)
            if short:
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), dtype=np.uint8)])
            result = self.request.infer({INPUT_NAME: chunk})
            probs = np.array(result[self.compiled.output(0)], dtype=np.float32)
            outputs.append(probs[: size - short])
        return np.concatenate(outputs) if len(outputs) > 1 else outputs[0]

    def synchronize(self) -> None:
        """Nothing to wait for: the request is synchronous."""


class OpenVinoInt8Inference(OpenVinoInference):
    """The INT8 (QDQ) graph of ONNX Runtime's post-training static quantization, compiled by OpenVINO."""

    name = "openvino-int8"
    artifact_kind = OnnxRuntimeInt8Inference.artifact_kind
    needs_calibration = True

    @classmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """The quantized graph (``OnnxRuntimeInt8Inference.export``)."""
        return OnnxRuntimeInt8Inference.export(backend, directory, calibration)


def _type_name(value: Any) -> str:
    """``f32`` for OpenVINO's element type ``f32`` (its ``str`` is ``<Type: 'float32'>``)."""
    name = getattr(value, "get_type_name", None)
    return str(name()) if callable(name) else str(value)
