"""The JAX engine (the Keras backend on JAX, ``keras-jax``): threads, probe kernels, synchronization, FLOP counter.

XLA's CPU client sizes its thread pool when JAX initializes its backends (the first ``jax.devices()`` or
computation, not ``import jax``), from ``XLA_FLAGS`` (``--xla_cpu_multi_thread_eigen`` and
``intra_op_parallelism_threads``, the settings JAX's maintainers give for limiting its CPU threads): nothing can
change it afterwards. So ``apply_threads`` writes the flags into the environment while no backend is initialized
(the cell process applies its engine's threads before the backend imports Keras), and only reports them, with a
warning, once JAX computes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

#: the ``XLA_FLAGS`` entries this engine owns (replaced, the others kept)
THREAD_FLAGS = ("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads")


def import_framework() -> Any:
    """Import JAX in this process."""
    import jax

    return jax


def version() -> str:
    """JAX's version (jaxlib's appended when it differs)."""
    import jax
    import jaxlib

    return jax.__version__ if jaxlib.__version__ == jax.__version__ else f"{jax.__version__}+jaxlib{jaxlib.__version__}"


def thread_flags(threads: int, existing: str = "") -> str:
    """``XLA_FLAGS`` with XLA's CPU thread settings for ``threads`` intra-op threads (other flags kept)."""
    kept = [flag for flag in existing.split() if not flag.startswith(THREAD_FLAGS)]
    eigen = "true" if threads > 1 else "false"
    return " ".join([*kept, f"--xla_cpu_multi_thread_eigen={eigen}", f"intra_op_parallelism_threads={threads}"])


def apply_threads(threads: int, interop_threads: int) -> dict[str, Any]:
    """Set XLA's CPU threads through ``XLA_FLAGS`` before JAX starts (afterwards they stay, with a warning).

    XLA runs one computation at a time per device stream; it has no inter-op pool to size (reported as 1).
    """
    warnings: list[str] = []
    wanted = thread_flags(threads, os.environ.get("XLA_FLAGS", ""))
    if started() and os.environ.get("XLA_FLAGS", "") != wanted:
        warnings.append(f"jax threads stay as XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}: JAX already computes")
    else:
        os.environ["XLA_FLAGS"] = wanted
    import_framework()
    return {
        "framework": "jax",
        "intra_op_threads": current_threads(),
        "inter_op_threads": 1,
        "warnings": warnings,
    }


def started() -> bool:
    """Whether JAX has initialized its backends in this process (``XLA_FLAGS`` has then been read)."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
    except ImportError:  # pragma: no cover - a JAX without this module: assume the worst
        return True
    return bool(getattr(xla_bridge, "_backends", True))


def current_threads() -> int:
    """The intra-op threads ``XLA_FLAGS`` gave XLA (every core when it names none)."""
    for flag in os.environ.get("XLA_FLAGS", "").split():
        if flag.startswith("intra_op_parallelism_threads="):
            return int(flag.partition("=")[2])
    return os.cpu_count() or 1


def _device(device: str) -> Any:
    import jax

    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return jax.devices("gpu")[index]
    return jax.devices("cpu")[0]


def probe_kernel(op: str, dtype: str, device: str, shape: tuple[int, ...]) -> Callable[[], object]:
    """One kernel of the machine probe, jit-compiled: ``matmul`` of two ``(n, n)`` or a 3x3 ``conv`` on ``(batch,
    channels, side, side)`` (run NHWC, XLA's CPU layout), random inputs (seed 0) in ``dtype``.

    Raises:
        NotImplementedError: the dtype is not implemented for the op on this device.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    target = _device(device)
    try:
        jax_dtype = jnp.dtype(dtype)
        if op == "matmul":
            (n,) = shape
            a = jax.device_put(jnp.asarray(rng.standard_normal((n, n), dtype=np.float32), jax_dtype), target)
            b = jax.device_put(jnp.asarray(rng.standard_normal((n, n), dtype=np.float32), jax_dtype), target)
            run = jax.jit(lambda: jnp.matmul(a, b))
        else:
            batch, channels, side = shape
            x = rng.standard_normal((batch, side, side, channels), dtype=np.float32)
            w = rng.standard_normal((3, 3, channels, channels), dtype=np.float32)
            x, w = (jax.device_put(jnp.asarray(v, jax_dtype), target) for v in (x, w))
            numbers = ("NHWC", "HWIO", "NHWC")
            run = jax.jit(lambda: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=numbers))
        run().block_until_ready()  # compile once: a dtype without a kernel fails here
    except (TypeError, ValueError, RuntimeError) as err:
        raise NotImplementedError(str(err).splitlines()[0]) from None
    return lambda: run().block_until_ready()


def synchronizer(device: str) -> Callable[[], None]:
    """Nothing to wait for: each probe call blocks until its result is ready (``block_until_ready``)."""
    return lambda: None


def gpu_name(device: str) -> str | None:
    """The GPU's name as JAX reports it, ``None`` on the CPU (or when JAX sees no GPU)."""
    if not device.startswith("cuda"):
        return None
    try:
        return str(_device(device).device_kind)
    except (RuntimeError, IndexError):
        return None


def flops_per_image(model: Any, image_size: int, in_chans: int | None = None, training: bool = False) -> int:
    """Forward FLOPs of one image through a Keras model, counted over its layers as for every Keras engine
    (``backends.flops.keras_flops_per_image``), so the three engines report the same figure.

    Raises:
        NotImplementedError: ``training``: Keras has no counter of the backward pass (MFU then takes 3 x forward).
    """
    if training:
        raise NotImplementedError("Keras counts forward FLOPs only")
    from ..flops import keras_flops_per_image

    return keras_flops_per_image(model, image_size, in_chans)
