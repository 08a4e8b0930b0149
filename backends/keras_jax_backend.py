"""The Keras backend on JAX (``keras-jax``): the same ``keras.applications`` model, head, plan and options as
``keras`` (``KerasBackend``), trained and run by jit-compiled JAX functions.

Keras layers hold state in variables; JAX transforms pure functions. So each step is Keras' stateless API, the
pattern of Keras' own JAX trainer: ``Model.stateless_call`` (the backbone with ``training`` as in the TensorFlow
backend: ``False`` while it is frozen, so its BatchNorm layers stay in inference mode, and Keras keeps every
BatchNorm layer with ``trainable=False`` in inference mode inside a partly trainable backbone), ``jax.value_and_grad``
of the same objective (cross-entropy from logits, the distillation term, the L2-SP and head-L2 penalties), and one
``Optimizer.stateless_apply`` per learning rate of the phase (the head's and each stage's), all in one ``jax.jit``.
The new values are written back into the Keras variables after every step, so predictions, snapshots and weights
files see the trained model as with TensorFlow. Augmentation and ``preprocess_input`` run eagerly before the step
(random ops stay outside the compiled step, as the TensorFlow backend keeps them outside XLA).

Steps are always compiled (``jax.jit``: JAX runs op by op otherwise), so ``--jit-compile`` changes nothing here; the
first step of each phase and each new batch shape compiles (in ``train_first_steps_s``). Keras is imported with
``KERAS_BACKEND=jax`` when the backend is created (``import_keras_on``); XLA's CPU threads come from the ``jax``
engine (``engines/jax_engine.py``), set before JAX computes.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import numpy as np

from .base import BackendError, BuildInfo, ModelSpec
from .keras_backend import KerasBackend, import_keras_on


class KerasJaxBackend(KerasBackend):
    """``KerasBackend`` with JAX under Keras."""

    name = "keras-jax"
    keras_engine = "jax"

    # ---- the engine ----------------------------------------------------------------------------------------
    def _import_framework(self) -> tuple[Any, Any]:
        keras = import_keras_on("jax", self.name)
        import jax

        self._jax = jax
        self._loss_total: Any = 0.0
        return None, keras

    def _configure_device(self, device: str) -> str:
        request = (device or "auto").lower()
        if request not in ("auto", "cpu", "gpu", "cuda") and not request.startswith("cuda:"):
            raise BackendError(f"unknown device {device!r}; expected auto, cpu, cuda or cuda:N")
        gpu = self._jax.default_backend() == "gpu"
        if request == "cpu" or (request == "auto" and not gpu):
            if gpu:
                raise BackendError("keras-jax runs on JAX's default device, a GPU here; use --device auto or cuda")
            return "cpu"
        if not gpu:
            raise BackendError(f"device {device!r} requested but JAX sees no GPU; use --device cpu or auto")
        return "cuda:0"

    def _new_loss_sum(self) -> Any:
        return None

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        versions = {}
        for dist in ("jax", "jaxlib", "keras"):
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return versions

    def build(self, spec: ModelSpec) -> BuildInfo:
        info = super().build(spec)
        info.facts.update(keras_engine="jax", jit_compile="always (jax.jit)")
        return info

    # ---- compiled functions ----------------------------------------------------------------------------------
    def _state(self) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        """The current values of the backbone's and the head's trainable and non-trainable variables."""
        return (
            [v.value for v in self.backbone.trainable_variables],
            [v.value for v in self.backbone.non_trainable_variables],
            [v.value for v in self.head.trainable_variables],
            [v.value for v in self.head.non_trainable_variables],
        )

    def _make_inference_functions(self) -> None:
        jax, ops = self._jax, self._keras.ops
        backbone, head, preprocess = self.backbone, self.head, self._preprocess

        def features(state: Any, images: Any) -> Any:
            bb_t, bb_nt, _, _ = state
            x = preprocess(ops.cast(images, "float32"))
            return backbone.stateless_call(bb_t, bb_nt, x, training=False)[0]

        def probabilities(state: Any, feats: Any) -> Any:
            _, _, h_t, h_nt = state
            logits = head.stateless_call(h_t, h_nt, feats, training=False)[0]
            return jax.nn.softmax(ops.cast(logits, "float32"), axis=-1)

        predict = jax.jit(lambda state, images: probabilities(state, features(state, images)))
        pooled = jax.jit(lambda state, images: ops.cast(features(state, images), "float32"))
        predict_head = jax.jit(probabilities)
        self._predict_fn = lambda images: np.asarray(predict(self._state(), images))
        self._features_fn = lambda images: np.asarray(pooled(self._state(), images))
        self._predict_head_fn = lambda feats: np.asarray(predict_head(self._state(), feats))

    def _make_train_functions(self) -> None:
        jax, keras = self._jax, self._keras
        ops = keras.ops
        backbone, head, preprocess, augmenter = self.backbone, self.head, self._preprocess, self._augmenter
        groups, backbone_trains, distillation = list(self._groups), self.backbone_trains, self._distillation
        trainable = list(backbone.trainable_variables) + list(head.trainable_variables)
        non_trainable = list(backbone.non_trainable_variables) + list(head.non_trainable_variables)
        n_bb_t, n_bb_nt = len(backbone.trainable_variables), len(backbone.non_trainable_variables)
        position = {id(v): i for i, v in enumerate(trainable)}
        missing = [v.path for _, variables in groups for v in variables if id(v) not in position]
        if missing:
            raise BackendError(f"keras-jax: optimizer variables that are not trainable: {missing[:3]}")
        group_positions = [[position[id(v)] for v in variables] for _, variables in groups]
        l2sp = [(position[id(v)], anchor) for v, anchor in self._l2sp]
        head_l2 = [position[id(v)] for v in self._head_l2]
        alpha, beta = self._l2sp_alpha, self._head_l2_beta
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

        def objective(values: list[Any], labels: Any, logits: Any, soft: Any) -> tuple[Any, Any]:
            loss = loss_fn(labels, logits)
            total = loss
            if distillation is not None:
                t, mix = distillation.temperature, distillation.alpha
                teacher_t = ops.softmax(ops.log(ops.maximum(soft, 1e-12)) / t, axis=-1)
                log_student_t = ops.log_softmax(ops.cast(logits, "float32") / t, axis=-1)
                kl = ops.mean(ops.sum(teacher_t * (ops.log(ops.maximum(teacher_t, 1e-12)) - log_student_t), axis=1))
                total = (1 - mix) * loss + mix * t * t * kl
            if l2sp:
                total += alpha * sum(ops.sum(ops.square(ops.cast(values[i], "float32") - a)) for i, a in l2sp)
            if head_l2:
                total += beta * sum(ops.sum(ops.square(ops.cast(values[i], "float32"))) for i in head_l2)
            return loss, total

        def compute(values: list[Any], nt_values: list[Any], x: Any, labels: Any, soft: Any, head_only: bool) -> Any:
            if head_only:
                feats, bb_nt = x, nt_values[:n_bb_nt]
            else:
                feats, bb_nt = backbone.stateless_call(
                    values[:n_bb_t], nt_values[:n_bb_nt], x, training=backbone_trains
                )
                if not backbone_trains:
                    feats = jax.lax.stop_gradient(feats)
            logits, h_nt = head.stateless_call(values[n_bb_t:], nt_values[n_bb_nt:], feats, training=True)
            loss, total = objective(values, labels, logits, soft)
            return total, (loss, list(bb_nt) + list(h_nt))

        gradient = jax.value_and_grad(compute, has_aux=True)

        clip_norm = self._clip_grad_norm

        def step(values, nt_values, opt_values, x, labels, soft, head_only):
            (_, (loss, nt_new)), grads = gradient(values, nt_values, x, labels, soft, head_only)
            if clip_norm is not None:  # one global norm over every group's gradients (tf.clip_by_global_norm)
                norm = ops.sqrt(sum(ops.sum(ops.square(g)) for g in grads))
                grads = [g * (clip_norm / ops.maximum(norm, clip_norm)) for g in grads]
            new_values, new_opt = list(values), []
            for (optimizer, _), indices, state in zip(groups, group_positions, opt_values, strict=True):
                updated, state = optimizer.stateless_apply(
                    state, [grads[i] for i in indices], [values[i] for i in indices]
                )
                for i, value in zip(indices, updated, strict=True):
                    new_values[i] = value
                new_opt.append(state)
            return loss, new_values, nt_new, new_opt

        compiled = jax.jit(step, static_argnames="head_only")

        def run(x: Any, labels: Any, soft: Any, head_only: bool) -> None:
            opt_values = [[v.value for v in optimizer.variables] for optimizer, _ in groups]
            loss, values, nt_values, opt_values = compiled(
                [v.value for v in trainable],
                [v.value for v in non_trainable],
                opt_values,
                x,
                labels,
                soft,
                head_only=head_only,
            )
            for variable, value in zip(trainable, values, strict=True):
                variable.assign(value)
            for variable, value in zip(non_trainable, nt_values, strict=True):
                variable.assign(value)
            for (optimizer, _), state in zip(groups, opt_values, strict=True):
                for variable, value in zip(optimizer.variables, state, strict=True):
                    variable.assign(value)
            self._loss_total = self._loss_total + loss

        def prepare_train(images: Any) -> Any:  # eager: random augmentation outside the compiled step
            x = ops.cast(ops.convert_to_tensor(images), "float32")
            if augmenter is not None:
                x = augmenter(x, training=True)
            return preprocess(x)

        self._prepare_train_fn = prepare_train
        self._train_fn = lambda x, labels, soft: run(x, labels, soft, False)
        self._train_head_fn = lambda feats, labels, soft: run(feats, labels, soft, True)

    # ---- losses, device -------------------------------------------------------------------------------------
    def pop_train_loss(self) -> float:
        mean = float(self._loss_total) / max(1, self._loss_steps)
        self._loss_total = 0.0
        self._loss_steps = 0
        return mean

    def synchronize(self) -> None:
        """Wait for the queued steps: block until the running loss sum (the last step's output) is ready."""
        if hasattr(self._loss_total, "block_until_ready"):
            self._loss_total.block_until_ready()

    def probabilities_function(self) -> Any:
        raise BackendError("backend 'keras-jax' cannot export its model to ONNX (the keras backend on TensorFlow can)")
