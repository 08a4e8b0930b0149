"""Plain dataclasses describing a suite: the matrix and the run options shared by every cell."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

DEFAULT_SUITE = "default"


@dataclass(frozen=True)
class CellConfig:
    """One cell of the matrix."""

    backend: str
    model: str
    strategy: str
    dataset: str
    seed: int


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every cell of a suite (recorded with each result).

    The defaults are the default suite's: chosen so that timm ``tf_efficientnet_lite0`` × 4 strategies on
    ``digits`` finishes in well under 5 minutes on a 2-core CPU (see README).
    """

    epochs: int = 3
    image_size: int = 64
    batch_size: int = 32
    device: str = "auto"
    weights: str = "default"
    allow_random_init: bool = False
    in_chans: int = 3
    optimizer: str = "adamw"
    lr: float | None = None
    augment: str = "none"
    channels_last: bool = False
    amp: str = ""
    compile: bool = False
    jit_compile: bool = False
    max_train_images: int | None = None
    warmup_steps: int = 2
    infer_warmup: int = 3
    infer_repeats: int = 10
    cache_dir: str | None = None

    def fingerprint(self) -> str:
        """Hash of the options that change results (not where the cache lives)."""
        payload = {k: v for k, v in asdict(self).items() if k not in ("cache_dir",)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunOptions":
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class SuiteConfig:
    """The matrix backend × model × strategy × dataset × seed, plus shared options."""

    name: str = DEFAULT_SUITE
    backends: tuple[str, ...] = ("timm",)
    models: tuple[str, ...] = ("tf_efficientnet_lite0",)
    strategies: tuple[str, ...] = ("linear_probe", "partial_finetune", "full_finetune", "scratch")
    datasets: tuple[str, ...] = ("digits",)
    seeds: tuple[int, ...] = (0,)
    options: RunOptions = field(default_factory=RunOptions)

    def cells(self) -> list[CellConfig]:
        """All cells, in matrix order (dataset, model, backend, strategy, seed)."""
        return [
            CellConfig(backend=b, model=m, strategy=s, dataset=d, seed=seed)
            for d, m, b, s, seed in itertools.product(self.datasets, self.models, self.backends, self.strategies, self.seeds)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (stored as ``suite.json``)."""
        return asdict(self)
