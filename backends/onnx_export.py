"""A trained backend's model as one ONNX graph that takes the shared uint8 NHWC images and returns probabilities.

Every deployment runtime (``onnx_inference``, ``openvino_inference``) reads this graph, so it carries exactly what
the backend computes at inference, preprocessing included:

* torch backends (``torch`` engine): ``x[..., :1]`` for one input channel, NHWC → NCHW, ``float``,
  ``(x - 255 * mean) / (255 * std)`` with the model's ``DataConfig`` (what ``TorchBackend.to_input`` does), the
  model in eval mode, softmax. Exported with the TorchScript-based exporter (``dynamo=False``): on CPU it is the
  faster and the more robust of torch's two exporters for these convolutional networks, and its graph needs no
  ``onnxscript`` rewrite;
* the Keras backend (``tensorflow`` engine): its own ``KerasBackend.probabilities_function`` (cast, the
  application's ``preprocess_input``, backbone and head with ``training=False``, softmax) converted by ``tf2onnx``;
* Keras on torch (``keras-torch``): the same computation as a Keras model on uint8 images
  (``KerasBackend.inference_model``) exported by Keras 3's own ``model.export(format="onnx")``, which on the torch
  engine runs torch's ONNX exporter;
* Keras on JAX (``keras-jax``) has no exporter here: Keras 3 exports JAX models through ``jax2onnx`` (no other
  route), and the VGG16 graph it writes (jax2onnx 0.17.1, Keras 3.15) is rejected by ONNX Runtime (``MaxPool:
  Unsupported pooling size``), so ``--deploy`` refuses it with that reason (``NO_EXPORTER``).

The graph is fp32 whatever ``--amp`` trained the model in (a deployment graph in reduced precision is an INT8
engine's job); the batch axis is dynamic, the image side fixed. ONNX itself is imported only to check the file.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from .base import Backend, BackendError

#: ONNX opset of the exported graphs (ONNX Runtime >= 1.14 and OpenVINO >= 2023 run it)
ONNX_OPSET = 17
#: name of the graph's input: uint8 ``(batch, side, side, channels)``
INPUT_NAME = "images"
#: name of the graph's output: float32 ``(batch, num_classes)`` probabilities
OUTPUT_NAME = "probabilities"
#: the exporters (torch model zoos on the torch engine; Keras on TensorFlow; Keras on torch) and the modules each needs
EXPORTER_MODULES = {"torch": ("onnx",), "tensorflow": ("onnx", "tf2onnx"), "keras-torch": ("onnx",)}
#: why a registered backend has no exporter, where that is known (the refusal's one line)
NO_EXPORTER = {
    "keras-jax": (
        "Keras 3 exports JAX models only through jax2onnx, whose VGG16 graph ONNX Runtime rejects "
        "(MaxPool: Unsupported pooling size; jax2onnx 0.17.1, Keras 3.15)"
    ),
}
#: the pip extra that installs the exporters and runtimes
DEPLOY_EXTRA = "deploy"


def exporter_of(backend_name: str) -> str | None:
    """The exporter of the registered backend ``backend_name`` (a key of ``EXPORTER_MODULES``), ``None`` when it
    has none: a torch model zoo (``TorchOptions`` on the torch engine) goes through torch's exporter, Keras on
    TensorFlow through tf2onnx, Keras on torch through Keras' own export; Keras on JAX (``NO_EXPORTER``) and test
    doubles have no exporter. Imports no framework."""
    from . import REGISTRY
    from .options import KerasOptions, TorchOptions

    entry = REGISTRY.get(backend_name)
    if entry is None or backend_name in NO_EXPORTER:
        return None
    if entry.engine == "torch" and issubclass(entry.options, TorchOptions):
        return "torch"
    if entry.engine == "torch" and issubclass(entry.options, KerasOptions):
        return "keras-torch"
    return "tensorflow" if entry.engine == "tensorflow" else None


def exportable(backend_name: str) -> bool:
    """Whether the registered backend ``backend_name`` has an exporter (no import)."""
    return exporter_of(backend_name) is not None


def exportable_backends() -> list[str]:
    """The registered backends that export to ONNX."""
    from . import REGISTRY

    return [name for name in REGISTRY if exportable(name)]


def no_exporter_message(backend_name: str) -> str:
    """One line: ``backend_name`` cannot export to ONNX, why where known, and the backends that can."""
    reason = f" ({NO_EXPORTER[backend_name]})" if backend_name in NO_EXPORTER else ""
    return (
        f"backend {backend_name!r} cannot export its model to ONNX{reason}; these backends can: "
        f"{', '.join(exportable_backends())}"
    )


def missing_exporter(backend_name: str) -> str | None:
    """The module the exporter of ``backend_name`` needs and does not find here (no import), ``None`` when none."""
    import importlib.util

    for module in EXPORTER_MODULES.get(exporter_of(backend_name) or "", ()):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def export_onnx(backend: Backend, path: Path) -> dict[str, Any]:
    """Write ``backend``'s trained model to ``path`` as an ONNX graph on uint8 images (see the module docstring).

    Returns:
        Facts about the export: ``exporter``, ``opset``, ``export_s`` (seconds, the check included).

    Raises:
        BackendError: the backend has no exporter (``exporter_of``), or the exporter failed (one line).
    """
    exporter = exporter_of(backend.name)
    if exporter is None:
        raise BackendError(no_exporter_message(backend.name))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        exporters = {"torch": _export_torch, "tensorflow": _export_keras, "keras-torch": _export_keras_model}
        used = exporters[exporter](backend, path)
        _check(path)
    except BackendError:
        raise
    except Exception as exc:  # an exporter's failure is one line in the record, never a lost pass
        first = " ".join(str(exc).split())[:300]
        raise BackendError(f"ONNX export of {backend.name} failed: {type(exc).__name__}: {first}") from exc
    return {"exporter": used, "opset": ONNX_OPSET, "export_s": time.perf_counter() - start}


def _check(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = [i.name for i in model.graph.input]
    if INPUT_NAME not in inputs:
        raise BackendError(f"exported graph {path.name} has inputs {inputs}, expected {INPUT_NAME!r}")


def _export_torch(backend: Any, path: Path) -> str:
    import torch
    from torch import nn

    model, spec, config = backend.model, backend.spec, backend.data_config
    if model is None or spec is None or config is None:
        raise BackendError(f"backend {backend.name!r} has no built model to export")
    gray = spec.in_chans == 1
    channels = 1 if gray else 3

    class UInt8Classifier(nn.Module):
        """uint8 NHWC → probabilities: ``TorchBackend.to_input``, the model, softmax."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model
            shape = (1, channels, 1, 1)
            self.register_buffer("mean", torch.tensor(config.mean[:channels], dtype=torch.float32).view(shape) * 255.0)
            self.register_buffer("std", torch.tensor(config.std[:channels], dtype=torch.float32).view(shape) * 255.0)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images[..., :1] if gray else images
            x = (x.permute(0, 3, 1, 2).float() - self.mean) / self.std
            return torch.softmax(self.model(x).float(), dim=1)

    wrapper = UInt8Classifier().cpu().eval()
    device = next(model.parameters()).device
    was_training = model.training
    example = torch.zeros((2, spec.image_size, spec.image_size, 3), dtype=torch.uint8)
    try:
        model.cpu().eval()
        with warnings.catch_warnings():  # the TorchScript exporter announces its deprecation on every call
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        model.to(device)
        model.train(was_training)
    return f"torch.onnx (TorchScript) {torch.__version__}"


def _export_keras(backend: Any, path: Path) -> str:
    try:
        import tf2onnx
    except ImportError:
        raise BackendError(
            "exporting a Keras model to ONNX needs the package 'tf2onnx'; install it with: "
            f"pip install 'tlbench[{DEPLOY_EXTRA}]'"
        ) from None
    function = backend.probabilities_function()
    tf2onnx.convert.from_function(
        function, input_signature=function.input_signature, opset=ONNX_OPSET, output_path=str(path)
    )
    import onnx

    model = onnx.load(str(path))  # tf2onnx names the tensors after the function's: the runtimes want fixed names
    _rename(model, model.graph.input[0].name, INPUT_NAME)
    _rename(model, model.graph.output[0].name, OUTPUT_NAME)
    onnx.save(model, str(path))
    return f"tf2onnx {tf2onnx.__version__}"


def _export_keras_model(backend: Any, path: Path) -> str:
    """Keras 3's own ONNX export of ``KerasBackend.inference_model`` (on the torch engine: torch's exporter)."""
    import keras
    import onnx

    model = backend.inference_model()
    side = backend.spec.image_size
    spec = keras.InputSpec(shape=(None, side, side, 3), dtype="uint8", name=INPUT_NAME)
    with warnings.catch_warnings():  # tracer warnings on every shape check of Keras' torch ops
        warnings.simplefilter("ignore")
        model.export(str(path), format="onnx", input_signature=[spec], opset_version=ONNX_OPSET, verbose=False)
    graph = onnx.load(str(path))
    _rename(graph, graph.graph.input[0].name, INPUT_NAME)
    _rename(graph, graph.graph.output[0].name, OUTPUT_NAME)
    onnx.save(graph, str(path))
    return f"keras {keras.__version__} export (format=onnx, {keras.backend.backend()})"


def _rename(model: Any, old: str, new: str) -> None:
    """Rename the graph tensor ``old`` to ``new`` everywhere it appears."""
    if old == new:
        return
    graph = model.graph
    for value in [*graph.input, *graph.output]:
        if value.name == old:
            value.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
