"""Plain dataclasses describing a suite: the matrix and the run options shared by every cell."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ...backends.options import BackendOptions
    from .runtime import RuntimeSettings

DEFAULT_SUITE = "default"


#: one ``backend=value`` entry of a per-backend ``--weights`` map
_WEIGHTS_ENTRY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.+)")


def parse_weights_map(text: str) -> dict[str, str] | None:
    """Parse a per-backend weights map ``"name=value,name=value"``; ``None`` when ``text`` is a single value.

    A single value (``default``, ``none``, a path, a weights name) contains no ``name=`` entry; an existing
    file whose path happens to contain ``=`` is also a single value.

    Raises:
        ValueError: a map with a malformed or repeated entry (the message quotes it).
    """
    items = [item.strip() for item in text.split(",")]
    if not any(_WEIGHTS_ENTRY.fullmatch(item) for item in items) or os.path.isfile(text):
        return None
    mapping: dict[str, str] = {}
    for item in items:
        match = _WEIGHTS_ENTRY.fullmatch(item)
        if match is None:
            raise ValueError(
                f"--weights entry {item!r} is malformed; expected backend=VALUE (e.g. keras=vgg16.weights.h5)"
            )
        name, value = match.group(1), match.group(2).strip()
        if name in mapping:
            raise ValueError(f"--weights names backend {name!r} twice")
        mapping[name] = value
    return mapping


def format_weights_map(mapping: dict[str, str]) -> str:
    """The inverse of ``parse_weights_map``."""
    return ",".join(f"{name}={value}" for name, value in mapping.items())


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
    ``digits`` finishes in well under 5 minutes on a 2-core CPU (see README). ``image_size=None`` means each
    model's native pretrained input size (what ``tlbench run`` uses once the matrix is not the default suite's).
    Backend-specific options
    (``--amp``, ``--channels-last``, ``--compile``, ``--jit-compile``) live in ``backend_options``, one typed
    options dict per backend (``tlbench.backends.options``), validated by the command line before any cell.
    """

    epochs: int = 5
    image_size: int | None = 64
    batch_size: int = 32
    device: str = "auto"
    weights: str = "default"
    allow_random_init: bool = False
    in_chans: int = 3
    optimizer: str = "adamw"
    lr: float | None = None
    augment: str = "none"
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_train_images: int | None = None
    warmup_steps: int = 2
    infer_warmup: int = 3
    infer_repeats: int = 10
    infer_min_time_s: float = 2.0
    dedup: str = "drop"
    near_duplicates: bool = False
    threads: int | None = None
    allocator: str = "auto"
    teacher: str | None = None
    cache_dir: str | None = None
    wait_quiet_s: float = 0.0
    infer_pass: bool = True
    #: deployment runtimes the inference pass exports each cell's model to and times (``running.deploy``)
    deploy: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "deploy", tuple(self.deploy))  # a list after a JSON round trip

    def image_size_for(self, backend_class: Any, model: str, weights: str) -> int:
        """The input side of ``model``: ``image_size``, or the model's native size when that is ``None``."""
        return self.image_size if self.image_size is not None else int(backend_class.native_image_size(model, weights))

    def weights_for(self, backend: str) -> str:
        """The weights value that applies to ``backend``.

        ``weights`` is either one value for every backend (``default``, ``none``, a file, a weights name) or a
        per-backend map ``"keras=vgg16.weights.h5,torchvision=vgg16.pth"`` (see ``parse_weights_map``), so that
        frameworks can start from the same pretrained weights in their own file formats; a backend the map
        does not name gets ``default``.
        """
        mapping = parse_weights_map(self.weights)
        return self.weights if mapping is None else mapping.get(backend, "default")

    def runtime(self) -> RuntimeSettings:
        """The resolved runtime of every cell process (threads, allocator); see ``running.runtime``.

        Raises:
            ValueError: bad thread count or an allocator that is not installed (one line).
        """
        from .runtime import resolve_runtime

        return resolve_runtime(self.threads, self.allocator)

    def options_for(self, backend: str) -> BackendOptions:
        """The typed options of ``backend`` (its registry row's options class)."""
        from ...backends import backend_entry

        return backend_entry(backend).options.from_dict(self.backend_options.get(backend, {}))

    def fingerprint(self, backend: str | None = None) -> str:
        """Hash of the options that change ``backend``'s results: the shared ones and that backend's own.

        Where the cache lives, the allocator, ``--wait-quiet``, the inference pass and ``--deploy`` (measured after
        the cells, from their weights) and options of
        other backends do not count, so adding
        ``--jit-compile`` for Keras never invalidates finished torch cells. The thread count does: float sums,
        hence bit-exact results, depend on it.
        """
        payload = {
            k: v
            for k, v in asdict(self).items()
            if k not in ("cache_dir", "backend_options", "allocator", "wait_quiet_s", "infer_pass", "deploy")
        }
        payload["weights"] = self.weights_for(backend) if backend is not None else self.weights
        if backend is not None:
            payload["backend_options"] = self.backend_options.get(backend, {})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOptions:
        """Build from a dict, ignoring unknown keys (older suites' flat backend flags)."""
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
            for d, m, b, s, seed in itertools.product(
                self.datasets, self.models, self.backends, self.strategies, self.seeds
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (stored as ``suite.json``)."""
        return asdict(self)
