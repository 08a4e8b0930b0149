"""Plain dataclasses describing a suite: the matrix and the run options shared by every cell.

Nothing here imports a backend or the runtime: a backend's typed options are ``backend_options.backend_options``,
the resolved threads and allocator ``runtime.runtime_settings``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar

DEFAULT_SUITE = "default"
#: how each step after the first of an ``--increments`` run can start (``cell_incremental.py``)
INCREMENT_MODES = ("continue", "retrain", "shrink_perturb", "shrink_pretrained")
#: the modes ``--increments`` runs when ``--increment-modes`` is not given (Ash & Adams 2020's three)
DEFAULT_INCREMENT_MODES = ("continue", "retrain", "shrink_perturb")
#: the modes that shrink and perturb the previous step's weights (both take ``--shrink-perturb LAMBDA,SIGMA``)
SHRINK_MODES = ("shrink_perturb", "shrink_pretrained")
#: shrink-and-perturb's (lambda, sigma) when ``--shrink-perturb`` is not given (Ash & Adams 2020's choice)
SHRINK_PERTURB = (0.3, 0.0001)


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
    #: label efficiency (``--train-sizes``, ``--draws``): the train subset and its draw; ``None``: the whole split
    train_size: str | None = None
    draw: int | None = None


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every cell of a suite (recorded with each result).

    The defaults are the default suite's: chosen so that timm ``tf_efficientnet_lite0`` × 4 strategies on
    ``digits`` finishes in well under 5 minutes on a 2-core CPU (see README). ``image_size=None`` means each
    model's native pretrained input size (what ``tlbench run`` uses once the matrix is not the default suite's).
    Backend-specific options (``--amp``, ``--channels-last``, ``--compile``, ``--jit-compile``) live in
    ``backend_options``, one typed options dict per backend (``tlbench.backends.options``), validated by the
    command line before any cell.
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
    group_by: str | None = None
    group_leakage: str = "drop"
    schedule: str = "none"
    lr_warmup_epochs: int = 1
    step_every: int = 5
    step_gamma: float = 0.1
    patience: int | None = None
    select_by: str = "accuracy"
    select_from: str = "all"
    clip_grad_norm: float | None = None
    tune: bool = False
    #: with ``tune``: ``halving`` (successive halving of the trials that train a backbone, ``halving.py``) or ``grid``
    #: (every point for every epoch); not fingerprinted (the winners are)
    tune_scheduler: str = "halving"
    #: with ``tune_scheduler == "halving"``: a rung keeps the best ``1/tune_eta`` of its trials and trains ``tune_eta``
    #: times fewer epochs than the next (not fingerprinted either)
    tune_eta: int = 3
    #: with ``tune``: the configuration each ``backend|model|strategy|dataset`` won on validation (``None``: every
    #: trial failed), filled by ``tuning_run.run_tuned_suite``; part of the fingerprint (other winners re-run cells)
    tuned: dict[str, dict[str, float] | None] = field(default_factory=dict)
    #: with ``tune``: what was searched and how the winner was found, per key (recorded, not fingerprinted)
    tuning_facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    #: options added after results were committed: ``fingerprint`` leaves them out while they hold their default, so
    #: the cells finished before they existed keep their fingerprint (and resume still counts them)
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = (
        "group_by",
        "group_leakage",
        "schedule",
        "lr_warmup_epochs",
        "step_every",
        "step_gamma",
        "patience",
        "select_by",
        "select_from",
        "clip_grad_norm",
        "tune",
        "tuned",
        "increments",
        "increment_modes",
        "shrink_perturb",
    )

    def plan_options(self) -> dict[str, Any]:
        """The keyword arguments of ``core.plan.make_plan`` these options decide beyond epochs, learning rate,
        optimizer and augmentation: gradient clipping, the learning-rate schedule and the epoch selection."""
        from ...core.plan import Schedule, Selection

        return {
            "clip_grad_norm": self.clip_grad_norm,
            "schedule": Schedule(self.schedule, self.lr_warmup_epochs, self.step_every, self.step_gamma),
            "selection": Selection(self.select_by, self.select_from, self.patience),
        }

    #: deployment runtimes the inference pass exports each cell's model to and times (``running.deploy``)
    deploy: tuple[str, ...] = ()
    #: ``--increments K``: the train split arrives in K chunks, each network cell trains K steps per mode
    increments: int | None = None
    #: ``--increment-modes``: how steps 2..K start (some of ``INCREMENT_MODES``)
    increment_modes: tuple[str, ...] = DEFAULT_INCREMENT_MODES
    #: ``--shrink-perturb LAMBDA,SIGMA``: the shrink factor and noise std of ``SHRINK_MODES``
    shrink_perturb: tuple[float, float] = SHRINK_PERTURB

    def __post_init__(self) -> None:
        object.__setattr__(self, "deploy", tuple(self.deploy))  # a list after a JSON round trip
        object.__setattr__(self, "increment_modes", tuple(self.increment_modes))
        object.__setattr__(self, "shrink_perturb", tuple(self.shrink_perturb))

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

    def fingerprint(self, backend: str | None = None) -> str:
        """Hash of the options that change ``backend``'s results: the shared ones and that backend's own.

        Where the cache lives, the allocator, ``--wait-quiet``, the inference pass and ``--deploy`` (measured after
        the cells, from their weights), ``--tune-scheduler`` and ``--tune-eta`` (the winners
        they found are fingerprinted) and options of
        other backends do not count, nor do options of ``OMITTED_AT_DEFAULT`` at their default, so adding
        ``--jit-compile`` for Keras never invalidates finished torch cells. The thread count does: float sums,
        hence bit-exact results, depend on it.
        """
        defaults = {f.name: f.default_factory() if f.default is MISSING else f.default for f in fields(self)}
        payload = {
            k: v
            for k, v in asdict(self).items()
            if k
            not in (
                "cache_dir",
                "backend_options",
                "allocator",
                "wait_quiet_s",
                "infer_pass",
                "tuning_facts",
                "tune_scheduler",
                "tune_eta",
                "deploy",
            )
            and not (k in self.OMITTED_AT_DEFAULT and v == defaults[k])
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
    #: label efficiency: train sizes (``"25"`` per class, ``"10%"``) and draws per size; ``()``: the whole split
    train_sizes: tuple[str, ...] = ()
    draws: int = 1

    def subsets(self) -> list[tuple[str | None, int | None]]:
        """The (train size, draw) pairs each cell of the matrix runs with: ``[(None, None)]`` without train sizes;
        ``100%`` runs draw 0 only (it is the same set in every draw)."""
        if not self.train_sizes:
            return [(None, None)]
        from ...datasets.subsets import draws_of

        return [(size, draw) for size in self.train_sizes for draw in draws_of(size, self.draws)]

    def cells(self) -> list[CellConfig]:
        """All cells, in matrix order (dataset, train size, draw, model, backend, strategy, seed)."""
        return [
            CellConfig(backend=b, model=m, strategy=s, dataset=d, seed=seed, train_size=size, draw=draw)
            for d, (size, draw), m, b, s, seed in itertools.product(
                self.datasets, self.subsets(), self.models, self.backends, self.strategies, self.seeds
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (stored as ``suite.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteConfig:
        """Build from a ``suite.json`` (``to_dict``); unknown option keys of older suites are ignored."""
        return cls(
            name=str(data.get("name", DEFAULT_SUITE)),
            backends=tuple(data.get("backends", ())),
            models=tuple(data.get("models", ())),
            strategies=tuple(data.get("strategies", ())),
            datasets=tuple(data.get("datasets", ())),
            seeds=tuple(int(seed) for seed in data.get("seeds", ())),
            options=RunOptions.from_dict(data.get("options") or {}),
            train_sizes=tuple(str(size) for size in data.get("train_sizes", ())),
            draws=int(data.get("draws", 1)),
        )

    def matrix(self) -> dict[str, Any]:
        """What makes two runs the same matrix: the cells (backends, models, strategies, datasets, seeds, in any
        order) and, per backend, the options that change its results (``RunOptions.fingerprint``); train sizes and
        draws only when given (a matrix without them keeps its hash)."""
        matrix = {
            "backends": sorted(self.backends),
            "models": sorted(self.models),
            "strategies": sorted(self.strategies),
            "datasets": sorted(self.datasets),
            "seeds": sorted(self.seeds),
            "options": {backend: self.options.fingerprint(backend) for backend in sorted(self.backends)},
        }
        if self.train_sizes:
            matrix.update(train_sizes=sorted(self.train_sizes), draws=self.draws)
        return matrix

    def matrix_hash(self) -> str:
        """12 hex digits of ``matrix()``."""
        return hashlib.sha256(json.dumps(self.matrix(), sort_keys=True).encode()).hexdigest()[:12]
