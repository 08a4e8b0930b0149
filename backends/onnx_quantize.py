"""Post-training static INT8 quantization of an exported ONNX graph with ONNX Runtime's own quantizer.

The recipe is ONNX Runtime's documented one for CNNs on CPU: ``quant_pre_process`` (shape inference and graph
optimization before quantizing), then ``quantize_static`` in the QDQ format (read by ONNX Runtime and, as INT8,
by OpenVINO), weights signed INT8 per output channel, activations unsigned INT8 (U8S8, the fast path of x86
kernels), ranges calibrated (MinMax) on training images fed through a ``CalibrationDataReader``. Two choices
follow the runtime's guidance:

* ``reduce_range`` (7-bit weights) on a CPU without VNNI (``avx512_vnni``/``avx_vnni``) or AMX, whose 8-bit
  multiply-add (``VPMADDUBSW``) saturates with full-range weights; with VNNI/AMX the full range is kept;
* the final ``Softmax`` stays in float: quantized probabilities (steps of 1/256) would tie many test images and
  cost ROC-AUC that is not the network's.

Only training images calibrate (never validation or test), taken evenly across the split.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BackendError
from .onnx_export import INPUT_NAME

#: training images the calibration reads at most (ONNX Runtime's examples calibrate on a few hundred)
CALIBRATION_IMAGES = 256
#: CPU flags (``/proc/cpuinfo``) of the instructions that make INT8 convolutions fast
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def calibration_batches(images: Any, batch_size: int, limit: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """At most ``limit`` images taken evenly across ``images`` (a training split), in uint8 batches.

    Raises:
        ValueError: no images.
    """
    count = len(images)
    if count == 0:
        raise ValueError("calibration needs at least one training image")
    rows = np.unique(np.linspace(0, count - 1, min(count, limit)).round().astype(np.int64))
    size = max(1, min(batch_size, len(rows)))
    return [np.ascontiguousarray(images[rows[i : i + size]], dtype=np.uint8) for i in range(0, len(rows), size)]


def int8_cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The ``INT8_FLAGS`` this CPU has (read from ``/proc/cpuinfo`` unless given; ``[]`` where it is unreadable)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return [flag for flag in INT8_FLAGS if flag in flags]


def quantize_int8(source: Path, target: Path, calibration: Sequence[np.ndarray]) -> dict[str, Any]:
    """Quantize the fp32 graph ``source`` into ``target`` (QDQ, calibrated on ``calibration`` batches).

    Returns:
        Facts: ``method``, ``format``, ``activations``, ``weights``, ``per_channel``, ``reduce_range``, ``cpu_int8``
        (the CPU's INT8 flags), ``calibration_images``, ``float_ops`` (op types left in float), ``quantize_s``.

    Raises:
        BackendError: no calibration images, or the quantizer failed (one line).
    """
    if not calibration or not sum(len(batch) for batch in calibration):
        raise BackendError("INT8 quantization needs calibration images (training images), none were given")
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class TrainingImages(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    flags = int8_cpu_flags()
    reduce_range = not flags
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    prepared = target.with_name(f"{target.stem}.pre.onnx")
    try:
        pre = _pre_process(source, prepared)
        quantize_static(
            str(pre),
            str(target),
            TrainingImages(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=reduce_range,
            nodes_to_exclude=_softmax_nodes(pre),
        )
    except BackendError:
        raise
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise BackendError(f"INT8 quantization failed: {type(exc).__name__}: {first}") from exc
    finally:
        prepared.unlink(missing_ok=True)
    return {
        "method": "onnxruntime.quantization.quantize_static (MinMax calibration)",
        "format": "QDQ",
        "activations": "uint8",
        "weights": "int8",
        "per_channel": True,
        "reduce_range": reduce_range,
        "cpu_int8": flags,
        "calibration_images": int(sum(len(batch) for batch in calibration)),
        "float_ops": ["Softmax"],
        "quantize_s": time.perf_counter() - start,
    }


def _pre_process(source: Path, prepared: Path) -> Path:
    """ONNX Runtime's pre-processing before quantization; the graph itself where it cannot run."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(prepared))
    except Exception:  # optional step: symbolic shape inference does not know every op
        return source
    return prepared


def _softmax_nodes(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Softmax"]
