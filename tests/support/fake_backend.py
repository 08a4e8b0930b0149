"""A numpy-only ``Backend`` for runner tests: softmax regression on 4×4 mean-pooled pixels.

Its "backbone" is one parameter-free stage (the pooling), so every plan phase trains the head alone. Special
model names drive failure tests: ``raise`` raises in ``build``; ``crash`` kills the process (``os._exit(3)``)
as a segfault or OOM kill would; ``sigkill`` is killed by SIGKILL (as by the kernel's OOM killer); ``slow``
sleeps 30 s per train step; ``nap`` sleeps ``$TLBENCH_FAKE_NAP_S`` seconds (default 4) in ``build``, then trains
like ``softmax`` (a cell that is reliably running for a few seconds).
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import numpy as np

from tlbench.backends.base import Backend, BackendError, BuildInfo, DataConfig, Inputs, ModelSpec, ParamCounts
from tlbench.core.plan import PhasePlan

GRID = 4


class FakeBackend(Backend):
    name = "fake"
    weights_suffix = ".json"

    @classmethod
    def available_models(cls) -> list[str]:
        return ["softmax", "raise", "crash", "sigkill", "slow", "nap"]

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__}

    def default_data_config(self, model_name: str, image_size: int, weights: str = "default") -> DataConfig:
        return DataConfig(
            image_size=image_size, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3
        )

    def build(self, spec: ModelSpec) -> BuildInfo:
        if spec.name == "raise":
            raise BackendError("fake model 'raise' always fails to build")
        if spec.name == "crash":
            os._exit(3)
        if spec.name == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if spec.name == "nap":
            time.sleep(float(os.environ.get("TLBENCH_FAKE_NAP_S", "4")))
        self.spec = spec
        rng = np.random.default_rng(spec.seed)
        self.dim = GRID * GRID * 3
        self.w = rng.normal(0, 0.01, (self.dim, spec.num_classes))
        self.b = np.zeros(spec.num_classes)
        self.losses: list[float] = []
        self.phases: list[PhasePlan] = []
        self.grad_norms: list[float] = []
        self.lr_scales: list[float] = []  # every set_lr_scale of every phase, in order
        source = (
            "none" if not spec.pretrained else ("fake:init" if spec.weights == "default" else f"fake:{spec.weights}")
        )
        return BuildInfo(
            pretrained=source,
            data_config=self.default_data_config(spec.name, spec.image_size),
            dtype="float64",
            device="cpu",
        )

    def stages(self) -> list[str]:
        return ["pool"]

    def apply_phase(self, phase: PhasePlan) -> ParamCounts:
        self.check_phase(phase)
        self.phases.append(phase)
        self.distillation = phase.distillation
        self.lr = self.planned_lr = phase.head_lr * 50
        self.clip = phase.optimizer.clip_grad_norm
        return ParamCounts(trainable=self.w.size + self.b.size, total=self.w.size + self.b.size)

    def set_lr_scale(self, factor: float) -> None:
        self.lr = self.planned_lr * factor
        self.lr_scales.append(factor)

    def applied_learning_rates(self) -> dict[str, float | None]:
        return {"head": self.lr / 50, "pool": None}

    def extract_features(self, images: np.ndarray, pooled: bool = False) -> np.ndarray:
        n, h, w, c = images.shape
        x = images.astype(np.float64) / 255.0
        x = x[:, : h - h % GRID, : w - w % GRID].reshape(n, GRID, h // GRID, GRID, w // GRID, c).mean(axis=(2, 4))
        return x.reshape(n, -1).astype(np.float32)

    def _proba(self, f: np.ndarray) -> np.ndarray:
        z = f @ self.w + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def train_step(
        self, batch: np.ndarray, labels: np.ndarray, inputs: Inputs = "images", soft_targets: np.ndarray | None = None
    ) -> None:
        if inputs == "images":
            if self.spec.name == "slow":
                time.sleep(30)
            batch = self.extract_features(batch)
        p = self._proba(batch)
        self.losses.append(float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean()))
        grad = p.copy()
        grad[np.arange(len(labels)), labels] -= 1
        if soft_targets is not None and self.distillation is not None:
            t, a = self.distillation.temperature, self.distillation.alpha
            z = (batch @ self.w + self.b) / t
            z -= z.max(axis=1, keepdims=True)
            student = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
            teacher = np.exp(np.log(np.clip(soft_targets, 1e-12, 1)) / t)
            teacher /= teacher.sum(axis=1, keepdims=True)
            grad = (1 - a) * grad + a * t * (student - teacher)  # d/dz of T^2 * KL(teacher_T || student_T)
        grad_w, grad_b = batch.T @ grad / len(labels), grad.mean(axis=0)
        norm = float(np.sqrt((grad_w**2).sum() + (grad_b**2).sum()))
        if self.clip is not None and norm > self.clip:  # one global norm, as torch's clip_grad_norm_
            grad_w, grad_b = grad_w * self.clip / norm, grad_b * self.clip / norm
        self.grad_norms.append(min(norm, self.clip) if self.clip is not None else norm)
        self.w -= self.lr * grad_w
        self.b -= self.lr * grad_b

    def predict_proba(self, batch: np.ndarray, inputs: Inputs = "images") -> np.ndarray:
        features = self.extract_features(batch) if inputs == "images" else batch
        return self._proba(features).astype(np.float32)

    def pop_train_loss(self) -> float:
        mean = float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        return mean

    def snapshot(self) -> Any:
        return (self.w.copy(), self.b.copy())

    def restore(self, state: Any) -> None:
        self.w, self.b = state[0].copy(), state[1].copy()

    def shrink_perturb(self, shrink: float, sigma: float, seed: int, stages, toward: Any | None = None) -> None:
        rng = np.random.default_rng(seed)  # the head is the only parameter ("pool" has none)
        w0, b0 = toward if toward is not None else (0.0, 0.0)
        self.w = w0 + shrink * (self.w - w0) + rng.normal(0.0, sigma, self.w.shape)
        self.b = b0 + shrink * (self.b - b0) + rng.normal(0.0, sigma, self.b.shape)

    def save_weights(self, path: str) -> None:
        with open(path, "w") as handle:
            json.dump({"w": self.w.tolist(), "b": self.b.tolist()}, handle)

    def load_weights(self, path: str) -> None:
        with open(path) as handle:
            data = json.load(handle)
        self.w, self.b = np.asarray(data["w"]), np.asarray(data["b"])

    def synchronize(self) -> None:
        return None

    def reset_peak_memory(self) -> None:
        return None

    def peak_device_memory_mb(self) -> float | None:
        return None
