"""Engines as data: per framework, the one place that says how a cell process uses it.

A training backend runs on one engine (the framework that does the arithmetic: torch, TensorFlow, JAX). What the
rest of tlbench needs of an engine without importing it is one ``EngineEntry`` row; what needs the framework lives in
the engine's own module (``torch_engine.py``, ``tensorflow_engine.py``, ``jax_engine.py``), imported only when a cell
process asks for it.
Each module implements the same functions:

* ``import_framework()``: import the framework in a cell process (the backend's module then finds it loaded);
* ``apply_threads(threads, interop_threads)``: set its thread pools, return what it reports afterwards;
* ``version()``: its version string (the machine probe's cache key);
* ``probe_kernel(op, dtype, device, shape)``: one ``matmul``/``conv`` kernel of the machine probe in that dtype;
* ``synchronizer(device)``: the device synchronization of the probe's clock reads;
* ``gpu_name(device)``: the accelerator's name;
* ``flops_per_image(model, image_size, in_chans)``: the framework's FLOP counter (``backends.flops``).

Adding an engine is one module implementing those functions, one ``EngineEntry`` row here, and its tests
(``tests/backends/engines/test_engines.py`` walks the registry); a backend names its engine in its registry row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

#: the functions every engine module implements
ENGINE_FUNCTIONS = (
    "import_framework",
    "apply_threads",
    "version",
    "probe_kernel",
    "synchronizer",
    "gpu_name",
    "flops_per_image",
)


@dataclass(frozen=True)
class EngineEntry:
    """One engine.

    Attributes:
        name: identifier (a backend's registry row names it).
        module: the module implementing ``ENGINE_FUNCTIONS``, imported lazily.
        packages: distributions whose versions ``environment.json`` and every record name.
        extra: the pip extra that installs it (``pip install 'tlbench[EXTRA]'``).
    """

    name: str
    module: str
    packages: tuple[str, ...]
    extra: str


ENGINES: dict[str, EngineEntry] = {
    entry.name: entry
    for entry in (
        EngineEntry("torch", "tlbench.backends.engines.torch_engine", ("torch",), "torch"),
        EngineEntry(
            "tensorflow", "tlbench.backends.engines.tensorflow_engine", ("tensorflow", "tensorflow-cpu"), "keras"
        ),
        EngineEntry("jax", "tlbench.backends.engines.jax_engine", ("jax", "jaxlib"), "keras-jax"),
    )
}


class EngineUnavailable(RuntimeError):
    """The engine's framework is not installed (one line naming the extra)."""


def engine_entry(name: str) -> EngineEntry:
    """The row of engine ``name``.

    Raises:
        KeyError: unknown engine (the message lists the registered ones).
    """
    if name not in ENGINES:
        raise KeyError(f"unknown engine {name!r}; expected one of: {', '.join(ENGINES)}")
    return ENGINES[name]


def load_engine(name: str) -> ModuleType:
    """The engine module of ``name`` (imports the module, not yet the framework).

    Raises:
        KeyError: unknown engine.
    """
    return importlib.import_module(engine_entry(name).module)


def engine_available(name: str) -> bool:
    """Whether ``name``'s framework can be imported here (without importing it)."""
    import importlib.util

    top = engine_entry(name).packages[0].replace("-", "_")
    return importlib.util.find_spec(top) is not None


def start_engine(name: str) -> ModuleType:
    """Import engine ``name``'s framework in this process and return its module.

    Raises:
        EngineUnavailable: the framework is not installed (names the pip extra).
    """
    entry = engine_entry(name)
    module = load_engine(name)
    try:
        module.import_framework()
    except ImportError as exc:
        raise EngineUnavailable(
            f"engine {name!r} is not installed ({exc}); install it with: pip install 'tlbench[{entry.extra}]'"
        ) from None
    return module
