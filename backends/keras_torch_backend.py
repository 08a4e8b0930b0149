"""The Keras backend on PyTorch (``keras-torch``): the same ``keras.applications`` model, head, plan and options as
``keras`` (``KerasBackend``), trained and run eagerly by torch.

Under ``KERAS_BACKEND=torch`` Keras variables are ``torch.nn.Parameter`` objects, with ``requires_grad`` following
their ``trainable`` flag. A training step is the pattern of Keras' torch trainer: the backbone called with
``training`` as in the TensorFlow backend (``False`` while frozen, so its BatchNorm layers stay in inference mode;
Keras keeps every BatchNorm layer with ``trainable=False`` in inference mode inside a partly trainable backbone),
the same objective (cross-entropy from logits, the distillation term, the L2-SP and head-L2 penalties) written with
``keras.ops``, ``backward()``, and one ``Optimizer.apply`` per learning rate of the phase (the head's and each
stage's) under ``torch.no_grad``. Inference runs under ``torch.no_grad``.

The device is chosen before Keras is imported (``KERAS_TORCH_DEVICE``: Keras reads it once); threads are the torch
engine's (``engines/torch_engine.py``). ``--jit-compile`` is rejected: these steps are not ``torch.compile``-d.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata
from typing import Any

import numpy as np

from .base import BackendError, BuildInfo, ModelSpec
from .keras_backend import KerasBackend, import_keras_on


def torch_device_name(requested: str, cuda_available: bool) -> str:
    """Keras' torch device for ``--device`` (``auto``: CUDA when available).

    Raises:
        BackendError: unknown device, or CUDA requested without a visible GPU.
    """
    request = (requested or "auto").lower()
    if request not in ("auto", "cpu", "gpu", "cuda") and not request.startswith("cuda:"):
        raise BackendError(f"unknown device {requested!r}; expected auto, cpu, cuda or cuda:N")
    if request == "cpu" or (request == "auto" and not cuda_available):
        return "cpu"
    if not cuda_available:
        raise BackendError(f"device {requested!r} requested but torch sees no GPU; use --device cpu or auto")
    return request if request.startswith("cuda:") else "cuda:0"


class KerasTorchBackend(KerasBackend):
    """``KerasBackend`` with PyTorch under Keras."""

    name = "keras-torch"
    keras_engine = "torch"

    # ---- the engine ----------------------------------------------------------------------------------------
    def _import_framework(self) -> tuple[Any, Any]:
        import torch

        self._torch = torch
        device = torch_device_name(self.requested_device, torch.cuda.is_available())
        if "keras" not in sys.modules:
            os.environ["KERAS_TORCH_DEVICE"] = device
        keras = import_keras_on("torch", self.name)
        from keras.src.backend.torch.core import get_device

        if str(get_device()) != device:
            raise BackendError(
                f"backend 'keras-torch' needs Keras on {device}, but Keras was loaded on {get_device()} in this process"
            )
        self._torch_device = device
        return None, keras

    def _configure_device(self, device: str) -> str:
        return self._torch_device

    def _new_loss_sum(self) -> Any:
        return self._torch.zeros((), device=self._torch_device)

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        versions = {}
        for dist in ("torch", "keras"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return versions

    def build(self, spec: ModelSpec) -> BuildInfo:
        if getattr(spec.options, "jit_compile", False):
            raise BackendError("backend 'keras-torch' has no --jit-compile (its steps run eagerly in torch)")
        info = super().build(spec)
        info.facts.update(keras_engine="torch")
        return info

    # ---- eager functions ------------------------------------------------------------------------------------
    def _make_inference_functions(self) -> None:
        torch, ops = self._torch, self._keras.ops
        backbone, head, preprocess = self.backbone, self.head, self._preprocess

        def features(images: Any) -> Any:
            x = preprocess(ops.cast(ops.convert_to_tensor(images), "float32"))
            return backbone(x, training=False)

        def probabilities(feats: Any) -> Any:
            return ops.softmax(ops.cast(head(feats, training=False), "float32"), axis=-1)

        def numpy(function: Any) -> Any:
            def run(batch: Any) -> np.ndarray:
                with torch.no_grad():
                    return ops.convert_to_numpy(function(batch))

            return run

        self._predict_fn = numpy(lambda images: probabilities(features(images)))
        self._features_fn = numpy(lambda images: ops.cast(features(images), "float32"))
        self._predict_head_fn = numpy(lambda feats: probabilities(ops.convert_to_tensor(feats)))

    def _make_train_functions(self) -> None:
        torch, keras = self._torch, self._keras
        ops = keras.ops
        backbone, head, preprocess, augmenter = self.backbone, self.head, self._preprocess, self._augmenter
        groups, backbone_trains, distillation = list(self._groups), self.backbone_trains, self._distillation
        all_vars = [v for _, variables in groups for v in variables]
        l2sp, alpha = list(self._l2sp), self._l2sp_alpha
        head_l2, beta = list(self._head_l2), self._head_l2_beta
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def objective(labels: Any, logits: Any, soft: Any) -> tuple[Any, Any]:
            loss = loss_fn(labels, logits)
            total = loss
            if distillation is not None:
                t, mix = distillation.temperature, distillation.alpha
                teacher_t = ops.softmax(ops.log(ops.maximum(soft, 1e-12)) / t, axis=-1)
                log_student_t = ops.log_softmax(ops.cast(logits, "float32") / t, axis=-1)
                kl = ops.mean(ops.sum(teacher_t * (ops.log(ops.maximum(teacher_t, 1e-12)) - log_student_t), axis=1))
                total = (1 - mix) * loss + mix * t * t * kl
            if l2sp:
                total += alpha * sum(ops.sum(ops.square(ops.cast(v.value, "float32") - a)) for v, a in l2sp)
            if head_l2:
                total += beta * sum(ops.sum(ops.square(ops.cast(v.value, "float32"))) for v in head_l2)
            return loss, total

        clip_norm = self._clip_grad_norm

        def run(x: Any, labels: Any, soft: Any, head_only: bool) -> None:
            labels, soft = ops.convert_to_tensor(labels), ops.convert_to_tensor(soft)
            if head_only:
                feats = ops.convert_to_tensor(x)
            else:
                feats = backbone(x, training=backbone_trains)
                if not backbone_trains:
                    feats = feats.detach()
            loss, total = objective(labels, head(feats, training=True), soft)
            for variable in all_vars:
                variable.value.grad = None
            total.backward()
            grads = [variable.value.grad for variable in all_vars]
            with torch.no_grad():
                if clip_norm is not None:  # one global norm over every group's gradients (tf.clip_by_global_norm)
                    present = [g for g in grads if g is not None]
                    norm = torch.sqrt(sum((g.float() ** 2).sum() for g in present))
                    scale = clip_norm / torch.clamp(norm, min=clip_norm)
                    grads = [None if g is None else g * scale for g in grads]
                start = 0
                for optimizer, variables in groups:
                    optimizer.apply(grads[start : start + len(variables)], variables)
                    start += len(variables)
            self._loss_sum += loss.detach()

        def prepare_train(images: Any) -> Any:
            with torch.no_grad():
                x = ops.cast(ops.convert_to_tensor(images), "float32")
                if augmenter is not None:
                    x = augmenter(x, training=True)
                return preprocess(x)

        self._prepare_train_fn = prepare_train
        self._train_fn = lambda x, labels, soft: run(x, labels, soft, False)
        self._train_head_fn = lambda feats, labels, soft: run(feats, labels, soft, True)

    # ---- losses, device -------------------------------------------------------------------------------------
    def pop_train_loss(self) -> float:
        mean = float(self._loss_sum.item()) / max(1, self._loss_steps)
        self._loss_sum.zero_()
        self._loss_steps = 0
        return mean

    def synchronize(self) -> None:
        if self._torch_device.startswith("cuda"):
            self._torch.cuda.synchronize(self._torch_device)

    def reset_peak_memory(self) -> None:
        if self._torch_device.startswith("cuda"):
            self._torch.cuda.reset_peak_memory_stats(self._torch_device)

    def peak_device_memory_mb(self) -> float | None:
        if self._torch_device.startswith("cuda"):
            return self._torch.cuda.max_memory_allocated(self._torch_device) / 2**20
        return None

    def device_name(self) -> str | None:
        if self._torch_device.startswith("cuda"):
            return self._torch.cuda.get_device_name(self._torch_device)
        return None

    def probabilities_function(self) -> Any:
        raise BackendError(
            "backend 'keras-torch' has no tf.function; its ONNX export is Keras' own on inference_model()"
        )
