"""Backends: the framework-free contract (``base``) and a lazy registry of implementations.

The registry maps a backend name to ``"module:Class"``; the module is imported only when that backend is
asked for, so importing ``tlbench.backends`` never imports torch or TensorFlow. Extra backends (third-party
plugins, test doubles) are added with the environment variable ``TLBENCH_BACKENDS="name=module:Class,..."``,
which cell subprocesses inherit.
"""

from __future__ import annotations

import importlib
import os

from tlbench.backends.base import Backend, BackendError, BuildInfo, DataConfig, ModelSpec, OptimConfig, ParamCounts

BACKENDS: dict[str, str] = {
    "timm": "tlbench.backends.timm_backend:TimmBackend",
    "torchvision": "tlbench.backends.torchvision_backend:TorchvisionBackend",
    "keras": "tlbench.backends.keras_backend:KerasBackend",
}


def _plugin_backends(text: str) -> dict[str, str]:
    """Parse ``name=module:Class`` entries (comma-separated) from ``TLBENCH_BACKENDS``."""
    entries = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ValueError(f"TLBENCH_BACKENDS entry {item!r} is malformed; expected name=module:Class")
        entries[name.strip()] = target.strip()
    return entries


BACKENDS.update(_plugin_backends(os.environ.get("TLBENCH_BACKENDS", "")))

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "BuildInfo",
    "DataConfig",
    "ModelSpec",
    "OptimConfig",
    "ParamCounts",
    "backend_names",
    "get_backend_class",
]


def backend_names() -> list[str]:
    """Names of all registered backends."""
    return list(BACKENDS)


def get_backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name``.

    Raises:
        KeyError: ``name`` is not registered (the message lists the valid names).
        BackendError: the backend's framework is not installed (the message names the pip extra).
    """
    if name not in BACKENDS:
        raise KeyError(f"unknown backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if missing.startswith("tlbench"):
            raise
        raise BackendError(
            f"backend {name!r} needs the package {missing!r}; install it with: pip install 'tlbench[{_extra(name)}]'"
        ) from exc
    return getattr(module, class_name)


def _extra(name: str) -> str:
    return {"torchvision": "torch"}.get(name, name)
