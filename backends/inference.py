"""The inference-engine seam: run a *trained* model, with no training methods.

A training ``Backend`` builds, trains and saves a model in its framework. Serving that model is a narrower job that
other runtimes can do too (ONNX Runtime, OpenVINO, a compiled graph), so it has its own contract:

* ``export`` (a classmethod): turn a trained backend into the engine's artifact in a directory (the framework's own
  weights file for ``FrameworkInference``; an ``.onnx`` file for an ONNX runtime; a quantized one, calibrated on
  the training images it is given, for an INT8 engine);
* ``load``: prepare that artifact for inference at a batch size (with its own thread pool where the engine keeps
  one), returning the seconds spent (compilation, graph optimization: recorded apart, never inside a throughput);
* ``run``: class probabilities for a uint8 NHWC image batch (the same bytes every engine gets);
* ``synchronize``: wait for queued device work before a clock is read.

``TrainedModel`` says what was trained (backend, model, classes, input size, seed) and where its artifact is, so an
engine in another process (the suite's inference pass) can rebuild it. ``FrameworkInference`` is the training
framework itself behind this seam: the architecture rebuilt without pretrained weights, the saved weights loaded,
``Backend.prepare_inference`` applied exactly as in the cell. ``INFERENCE_ENGINES`` lists the engines by name;
adding a runtime is one subclass and one row: a ``DeployEngineEntry`` (its class imported lazily, the pip extra
that installs its runtime), so listing the engines imports no runtime.
"""

from __future__ import annotations

import abc
import importlib
import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .base import Backend, BackendError, ModelSpec


@dataclass(frozen=True)
class TrainedModel:
    """A finished cell's model, enough to rebuild and load it anywhere.

    Attributes:
        backend: registry name of the backend that trained it.
        model: model name (architecture).
        num_classes: classes of its head.
        image_size: input side it was trained and tested at.
        seed: the cell's seed (the architecture's random init before the weights are loaded).
        artifact: the engine's file (``Backend.save_weights`` output for ``FrameworkInference``).
        in_chans: input channels.
        options: the backend's typed options (``BackendOptions``) it ran with.
    """

    backend: str
    model: str
    num_classes: int
    image_size: int
    seed: int
    artifact: Path
    in_chans: int = 3
    options: Any = field(default=None, compare=False)


class InferenceEngine(abc.ABC):
    """Runs a trained model for inference only."""

    #: registry name (``INFERENCE_ENGINES``), recorded with every figure the engine measured
    name: ClassVar[str] = ""
    #: what ``export`` writes; engines with the same kind share one exported file (``onnx``: ONNX Runtime and
    #: OpenVINO read the same graph)
    artifact_kind: ClassVar[str] = ""
    #: whether ``export`` needs training images (post-training quantization calibrates on them)
    needs_calibration: ClassVar[bool] = False

    @classmethod
    @abc.abstractmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """Write the trained model held by ``backend`` as this engine's artifact under ``directory``; its path.

        Args:
            backend: a built backend holding the trained weights.
            directory: where the artifact goes.
            calibration: uint8 NHWC batches of training images, for engines that calibrate (``needs_calibration``);
                the others ignore them.
        """

    @abc.abstractmethod
    def load(self, trained: TrainedModel, batch_size: int, threads: int | None = None) -> float | None:
        """Load ``trained.artifact`` and prepare it for batches of ``batch_size``.

        Args:
            trained: what was trained and where its artifact is.
            batch_size: the batch size inference runs at.
            threads: intra-op threads of the engine's own pool (a deployment runtime); ``None``: its default. The
                training framework ignores it: its threads were set for the process (``apply_framework_threads``).

        Returns:
            Seconds spent preparing (compilation, graph optimization), or ``None`` when nothing is prepared.

        Raises:
            BackendError: the artifact is missing or does not fit the model (one line).
        """

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (float32, ``(N, num_classes)``) for a uint8 NHWC batch."""

    @abc.abstractmethod
    def synchronize(self) -> None:
        """Block until queued device work is done (called before every clock read)."""


class FrameworkInference(InferenceEngine):
    """The training framework as an inference engine: ``Backend.predict_proba`` on the reloaded trained model."""

    name = "framework"

    def __init__(self, backend_class: type[Backend], device: str) -> None:
        """Args: the backend class that trained the model, and the device to run on."""
        self.backend_class = backend_class
        self.device = device
        self.backend: Backend | None = None

    artifact_kind = "framework-weights"

    @classmethod
    def export(cls, backend: Backend, directory: Path, calibration: Sequence[np.ndarray] | None = None) -> Path:
        """The framework's own weights file (``Backend.save_weights``: a state dict, ``.weights.h5``; no pickle)."""
        path = Path(directory) / f"weights{backend.weights_suffix}"
        backend.save_weights(str(path))
        return path

    @classmethod
    def of(cls, backend: Backend) -> FrameworkInference:
        """A live backend (a cell's trained model, already prepared for inference) behind this seam."""
        engine = cls(type(backend), backend.requested_device)
        engine.backend = backend
        return engine

    def rebuild(self, trained: TrainedModel) -> Backend:
        """The architecture of ``trained`` built without pretrained weights, then its saved weights loaded.

        Raises:
            BackendError: the model does not build or the weights do not fit it (one line).
        """
        backend = self.backend_class(self.device)
        backend.build(
            ModelSpec(
                name=trained.model,
                num_classes=trained.num_classes,
                image_size=trained.image_size,
                weights="none",
                pretrained=False,
                allow_random_init=True,
                in_chans=trained.in_chans,
                seed=trained.seed,
                options=trained.options,
            )
        )
        if not Path(trained.artifact).is_file():
            raise BackendError(f"trained weights {str(trained.artifact)!r} not found")
        backend.load_weights(str(trained.artifact))
        self.backend = backend
        return backend

    def load(self, trained: TrainedModel, batch_size: int, threads: int | None = None) -> float | None:
        """Rebuild the trained model and apply ``Backend.prepare_inference`` (``--infer-compile``) as the cell did."""
        return self.rebuild(trained).prepare_inference(batch_size)

    def run(self, images: np.ndarray) -> np.ndarray:
        return self._loaded().predict_proba(images)

    def synchronize(self) -> None:
        self._loaded().synchronize()

    def _loaded(self) -> Backend:
        if self.backend is None:
            raise BackendError("FrameworkInference: no model loaded (call load() first)")
        return self.backend


@dataclass(frozen=True)
class DeployEngineEntry:
    """A deployment runtime's row of ``INFERENCE_ENGINES``: its class is imported only when it is used.

    Calling the row (``entry(backend_class, device)``) makes the engine, like calling an ``InferenceEngine`` class.

    Attributes:
        name: registry name (``tlbench run --deploy NAME``).
        target: ``"module:Class"`` of the ``InferenceEngine`` subclass.
        extra: the pip extra that installs its runtime (``pip install 'tlbench[EXTRA]'``).
        modules: the modules it imports (checked without importing them by ``missing_module``).
    """

    name: str
    target: str
    extra: str
    modules: tuple[str, ...]

    def missing_module(self) -> str | None:
        """The first of ``modules`` that is not installed here, ``None`` when all are."""
        for module in self.modules:
            if importlib.util.find_spec(module) is None:
                return module
        return None

    def engine_class(self) -> type[InferenceEngine]:
        """The engine's class (imports its module, not yet its runtime)."""
        module_name, class_name = self.target.split(":")
        return getattr(importlib.import_module(module_name), class_name)

    def __call__(self, backend_class: type[Backend], device: str) -> InferenceEngine:
        missing = self.missing_module()
        if missing is not None:
            raise BackendError(self.missing_message(missing))
        return self.engine_class()(backend_class, device)

    def missing_message(self, module: str) -> str:
        """One line: the package ``module`` is missing and which extra installs it."""
        return (
            f"inference engine {self.name!r} needs the package {module!r}; install it with: "
            f"pip install 'tlbench[{self.extra}]'"
        )


#: the deployment runtimes (``tlbench run --deploy``): fp32 and post-training INT8 (static, calibrated on training
#: images) in ONNX Runtime and OpenVINO, all reading the model exported to ONNX with its preprocessing inside
DEPLOY_ENGINES: dict[str, DeployEngineEntry] = {
    entry.name: entry
    for entry in (
        DeployEngineEntry(
            "onnxruntime", "tlbench.backends.onnx_inference:OnnxRuntimeInference", "deploy", ("onnx", "onnxruntime")
        ),
        DeployEngineEntry(
            "onnxruntime-int8",
            "tlbench.backends.onnx_inference:OnnxRuntimeInt8Inference",
            "deploy",
            ("onnx", "onnxruntime"),
        ),
        DeployEngineEntry(
            "openvino",
            "tlbench.backends.openvino_inference:OpenVinoInference",
            "deploy",
            ("onnx", "onnxruntime", "openvino"),
        ),
        DeployEngineEntry(
            "openvino-int8",
            "tlbench.backends.openvino_inference:OpenVinoInt8Inference",
            "deploy",
            ("onnx", "onnxruntime", "openvino"),
        ),
    )
}

#: inference engines by name: ``name -> factory(backend_class, device)``
INFERENCE_ENGINES: dict[str, Callable[[type[Backend], str], InferenceEngine]] = {
    FrameworkInference.name: FrameworkInference,
    **DEPLOY_ENGINES,
}


def inference_engine(name: str, backend_class: type[Backend], device: str) -> InferenceEngine:
    """The inference engine ``name`` for models trained by ``backend_class``.

    Raises:
        KeyError: unknown engine (the message lists the registered ones).
        BackendError: the engine's runtime is not installed (one line naming the pip extra).
    """
    if name not in INFERENCE_ENGINES:
        raise KeyError(f"unknown inference engine {name!r}; expected one of: {', '.join(INFERENCE_ENGINES)}")
    return INFERENCE_ENGINES[name](backend_class, device)
