"""A numpy-only ``Backend`` for runner tests: softmax regression on 4×4 mean-pooled pixels.

Special model names drive failure tests: ``raise`` raises in ``build``; ``crash`` kills the process
(``os._exit(3)``) as a segfault or OOM kill would; ``slow`` sleeps 30 s per train step.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from tlbench.backends.base import Backend, BackendError, BuildInfo, DataConfig, ModelSpec, OptimConfig, ParamCounts
from tlbench.benchmarks.strategies import Strategy

GRID = 4


class FakeBackend(Backend):
    name = "fake"

    @classmethod
    def available_models(cls) -> list[str]:
        return ["softmax", "raise", "crash", "slow"]

    @classmethod
    def framework_versions(cls) -> dict[str, str]:
        return {"numpy": np.__version__}

    def default_data_config(self, model_name: str, image_size: int) -> DataConfig:
        return DataConfig(image_size=image_size, crop_pct=1.0, interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3)

    def build(self, spec: ModelSpec) -> BuildInfo:
        if spec.name == "raise":
            raise BackendError("fake model 'raise' always fails to build")
        if spec.name == "crash":
            os._exit(3)
        self.spec = spec
        rng = np.random.default_rng(int(spec.options.get("seed", 0)))
        self.dim = GRID * GRID * 3
        self.w = rng.normal(0, 0.01, (self.dim, spec.num_classes))
        self.b = np.zeros(spec.num_classes)
        self.losses: list[float] = []
        return BuildInfo(pretrained="none" if not spec.pretrained else ("fake:init" if spec.weights == "default" else f"fake:{spec.weights}"), data_config=self.default_data_config(spec.name, spec.image_size), dtype="float64", device="cpu")

    def apply_strategy(self, strategy: Strategy, optim: OptimConfig) -> ParamCounts:
        self.lr = strategy.head_lr * 50
        return ParamCounts(trainable=self.w.size + self.b.size, total=self.w.size + self.b.size)

    def extract_features(self, images: np.ndarray) -> np.ndarray:
        n, h, w, c = images.shape
        x = images.astype(np.float64) / 255.0
        x = x[:, : h - h % GRID, : w - w % GRID].reshape(n, GRID, h // GRID, GRID, w // GRID, c).mean(axis=(2, 4))
        return x.reshape(n, -1).astype(np.float32)

    def _proba(self, f: np.ndarray) -> np.ndarray:
        z = f @ self.w + self.b
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def train_head_step(self, features: np.ndarray, labels: np.ndarray) -> None:
        p = self._proba(features)
        self.losses.append(float(-np.log(p[np.arange(len(labels)), labels] + 1e-12).mean()))
        p[np.arange(len(labels)), labels] -= 1
        self.w -= self.lr * features.T @ p / len(labels)
        self.b -= self.lr * p.mean(axis=0)

    def train_step(self, images: np.ndarray, labels: np.ndarray) -> None:
        if self.spec.name == "slow":
            time.sleep(30)
        self.train_head_step(self.extract_features(images), labels)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        return self._proba(self.extract_features(images)).astype(np.float32)

    def predict_head_proba(self, features: np.ndarray) -> np.ndarray:
        return self._proba(features).astype(np.float32)

    def pop_train_loss(self) -> float:
        mean = float(np.mean(self.losses)) if self.losses else float("nan")
        self.losses = []
        return mean

    def snapshot(self) -> Any:
        return (self.w.copy(), self.b.copy())

    def restore(self, state: Any) -> None:
        self.w, self.b = state[0].copy(), state[1].copy()

    def synchronize(self) -> None:
        return None

    def reset_peak_memory(self) -> None:
        return None

    def peak_device_memory_mb(self) -> float | None:
        return None
