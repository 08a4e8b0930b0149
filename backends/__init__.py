"""Backends: the framework-free contract (``base``), typed options (``options``) and a lazy registry.

One registry row per backend (``BackendEntry``) says everything the rest of tlbench needs about it without
importing its framework: where the class lives, which pip extra installs it, which distributions to record in
``environment.json`` and which typed options it takes. Importing ``tlbench.backends`` never imports torch or
TensorFlow; the module of a backend is imported only when that backend is asked for. Extra backends
(third-party plugins, test doubles) are added with ``TLBENCH_BACKENDS="name=module:Class,..."`` (they take the
common options only), which cell subprocesses inherit.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from .base import Backend, BackendError, BuildInfo, DataConfig, ModelSpec, ParamCounts
from .options import BackendOptions, KerasOptions, OptionsError, TorchOptions


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend.

    Attributes:
        name: registry name (``--backends``).
        target: ``"module:Class"`` of the ``Backend`` subclass, imported lazily.
        extra: the pip extra that installs its framework (``pip install 'tlbench[EXTRA]'``).
        packages: distributions whose versions ``environment.json`` records.
        options: its typed options class (framework-free).
        engine: the engine it computes on (a row of ``backends.engines.ENGINES``: ``torch``, ``tensorflow``),
            which says how a cell process sets its threads, probes the machine and counts FLOPs; ``none`` for a
            backend that brings no engine (test doubles, plugins).
    """

    name: str
    target: str
    extra: str
    packages: tuple[str, ...]
    options: type[BackendOptions] = BackendOptions
    engine: str = "none"


REGISTRY: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            "timm",
            "tlbench.backends.timm_backend:TimmBackend",
            "timm",
            ("torch", "torchvision", "timm"),
            TorchOptions,
            "torch",
        ),
        BackendEntry(
            "torchvision",
            "tlbench.backends.torchvision_backend:TorchvisionBackend",
            "torch",
            ("torch", "torchvision"),
            TorchOptions,
            "torch",
        ),
        BackendEntry(
            "keras",
            "tlbench.backends.keras_backend:KerasBackend",
            "keras",
            ("tensorflow", "tensorflow-cpu", "keras"),
            KerasOptions,
            "tensorflow",
        ),
        # the same Keras model, head, plan and options on the two other engines Keras 3 runs on
        BackendEntry(
            "keras-jax",
            "tlbench.backends.keras_jax_backend:KerasJaxBackend",
            "keras-jax",
            ("jax", "jaxlib", "keras"),
            KerasOptions,
            "jax",
        ),
        BackendEntry(
            "keras-torch",
            "tlbench.backends.keras_torch_backend:KerasTorchBackend",
            "keras-torch",
            ("torch", "keras"),
            KerasOptions,
            "torch",
        ),
    )
}


def _plugin_entries(text: str) -> dict[str, BackendEntry]:
    """Parse ``name=module:Class`` entries (comma-separated) from ``TLBENCH_BACKENDS``."""
    entries = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ValueError(f"TLBENCH_BACKENDS entry {item!r} is malformed; expected name=module:Class")
        name = name.strip()
        entries[name] = BackendEntry(name, target.strip(), extra=name, packages=())
    return entries


REGISTRY.update(_plugin_entries(os.environ.get("TLBENCH_BACKENDS", "")))

__all__ = [
    "REGISTRY",
    "Backend",
    "BackendEntry",
    "BackendError",
    "BackendOptions",
    "BuildInfo",
    "DataConfig",
    "KerasOptions",
    "ModelSpec",
    "OptionsError",
    "ParamCounts",
    "TorchOptions",
    "backend_entry",
    "backend_names",
    "get_backend_class",
    "register_backend",
]


def backend_names() -> list[str]:
    """Names of all registered backends."""
    return list(REGISTRY)


def backend_entry(name: str) -> BackendEntry:
    """The registry row of ``name``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
    """
    if name not in REGISTRY:
        raise KeyError(f"unknown backend {name!r}; expected one of: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def register_backend(entry: BackendEntry) -> None:
    """Add (or replace) a registry row in this process (cell subprocesses need ``TLBENCH_BACKENDS`` too)."""
    REGISTRY[entry.name] = entry


def get_backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
        BackendError: the backend's framework is not installed (the message names the pip extra).
    """
    entry = backend_entry(name)
    module_name, class_name = entry.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.startswith("tlbench") or missing == module_name:
            raise
        raise BackendError(
            f"backend {name!r} needs the package {missing!r}; install it with: pip install 'tlbench[{entry.extra}]'"
        ) from exc
    return getattr(module, class_name)
