"""The TensorFlow engine (the Keras backend on TensorFlow): threads, probe kernels, synchronization, FLOP counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def import_framework() -> Any:
    """Import TensorFlow in this process."""
    import tensorflow as tf

    return tf


def version() -> str:
    """TensorFlow's version."""
    import tensorflow as tf

    return tf.__version__


def apply_threads(threads: int, interop_threads: int) -> dict[str, Any]:
    """``tf.config.threading.set_{intra,inter}_op_parallelism_threads`` (``RuntimeError`` once the runtime is
    initialized: the ``TF_NUM_*`` variables set before the process started have then already applied)."""
    import tensorflow as tf

    warnings: list[str] = []
    threading = tf.config.threading
    for what, setter, getter, value in (
        ("intra-op", threading.set_intra_op_parallelism_threads, threading.get_intra_op_parallelism_threads, threads),
        (
            "inter-op",
            threading.set_inter_op_parallelism_threads,
            threading.get_inter_op_parallelism_threads,
            interop_threads,
        ),
    ):
        if getter() == value:
            continue
        try:
            setter(value)
        except RuntimeError as err:
            warnings.append(f"tensorflow {what} threads stay {getter()}: {err}")
    return {
        "framework": "tensorflow",
        "intra_op_threads": threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": threading.get_inter_op_parallelism_threads(),
        "warnings": warnings,
    }


def current_threads() -> int:
    """TensorFlow's intra-op thread count (0 = its default: every core)."""
    import os

    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count() or 1


def _tf_device(device: str) -> str:
    return "/GPU:" + (device.split(":")[1] if ":" in device else "0") if device.startswith("cuda") else "/CPU:0"


def probe_kernel(op: str, dtype: str, device: str, shape: tuple[int, ...]) -> Callable[[], object]:
    """One kernel of the machine probe: ``matmul`` of two ``(n, n)`` or a 3x3 ``conv`` on ``(batch, channels,
    side, side)`` (run NHWC, TensorFlow's CPU layout), random inputs (seed 0) in ``dtype``.

    Raises:
        RuntimeError, TypeError, NotImplementedError: the dtype is not implemented for the op on this device.
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    tf_dtype = getattr(tf, dtype)
    try:
        with tf.device(_tf_device(device)):
            if op == "matmul":
                (n,) = shape
                a = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), tf_dtype)
                b = tf.cast(tf.constant(rng.standard_normal((n, n), dtype=np.float32)), tf_dtype)
                run = tf.function(lambda: tf.linalg.matmul(a, b))
            else:
                batch, channels, side = shape
                x = tf.cast(tf.constant(rng.standard_normal((batch, side, side, channels), dtype=np.float32)), tf_dtype)
                w = tf.cast(tf.constant(rng.standard_normal((3, 3, channels, channels), dtype=np.float32)), tf_dtype)
                run = tf.function(lambda: tf.nn.conv2d(x, w, strides=1, padding="SAME"))
            run()  # trace once: a dtype without a kernel fails here
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as err:
        raise NotImplementedError(str(err).splitlines()[0]) from None
    # the result must reach the host before a clock read: .numpy() waits for the computation
    return lambda: run().numpy()


def synchronizer(device: str) -> Callable[[], None]:
    """Nothing to wait for: each probe call returns a host array (``.numpy()`` blocks until it is computed)."""
    return lambda: None


def gpu_name(device: str) -> str | None:
    """The GPU's name as TensorFlow reports it, ``None`` on the CPU."""
    if not device.startswith("cuda"):
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= len(gpus):
        return None
    return tf.config.experimental.get_device_details(gpus[index]).get("device_name")


def flops_per_image(model: Any, image_size: int, in_chans: int | None = None, training: bool = False) -> int:
    """Forward FLOPs of one image, counted over the Keras layers (``backends.flops.keras_flops_per_image``).

    Raises:
        NotImplementedError: ``training``: Keras has no counter of the backward pass (MFU then takes 3 x forward).
    """
    if training:
        raise NotImplementedError("Keras counts forward FLOPs only")
    from ..flops import keras_flops_per_image

    return keras_flops_per_image(model, image_size, in_chans)
