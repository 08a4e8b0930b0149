"""The torch engine (timm and torchvision backends): threads, probe kernels, synchronization, FLOP counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def import_framework() -> Any:
    """Import torch in this process."""
    import torch

    return torch


def version() -> str:
    """torch's version."""
    import torch

    return torch.__version__


def apply_threads(threads: int, interop_threads: int) -> dict[str, Any]:
    """``torch.set_num_threads`` and ``torch.set_num_interop_threads`` (the latter raises once inter-op work has
    started or it was set before: kept as it is then, with a warning)."""
    import torch

    warnings: list[str] = []
    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != interop_threads:
        try:
            torch.set_num_interop_threads(interop_threads)
        except RuntimeError as err:
            warnings.append(f"torch inter-op threads stay {torch.get_num_interop_threads()}: {err}")
    return {
        "framework": "torch",
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
        "warnings": warnings,
    }


def current_threads() -> int:
    """torch's intra-op thread count."""
    import torch

    return torch.get_num_threads()


def probe_kernel(op: str, dtype: str, device: str, shape: tuple[int, ...]) -> Callable[[], object]:
    """One kernel of the machine probe: ``matmul`` of two ``(n, n)`` or a 3x3 ``conv`` on ``(batch, channels,
    side, side)`` (NCHW, torch's layout), random inputs (seed 0) in ``dtype`` on ``device``. The inputs require no
    gradient, so no autograd state is recorded; the process's grad mode is left as it is.

    Raises:
        RuntimeError, TypeError, NotImplementedError: the dtype is not implemented for the op on this device.
    """
    import torch

    torch_dtype = getattr(torch, dtype)
    generator = torch.Generator().manual_seed(0)
    if op == "matmul":
        (n,) = shape
        a = torch.randn(n, n, generator=generator).to(device=device, dtype=torch_dtype)
        b = torch.randn(n, n, generator=generator).to(device=device, dtype=torch_dtype)
        return lambda: torch.matmul(a, b)
    batch, channels, side = shape
    x = torch.randn(batch, channels, side, side, generator=generator).to(device=device, dtype=torch_dtype)
    w = torch.randn(channels, channels, 3, 3, generator=generator).to(device=device, dtype=torch_dtype)
    conv = torch.nn.functional.conv2d
    return lambda: conv(x, w, padding=1)


def synchronizer(device: str) -> Callable[[], None]:
    """``torch.cuda.synchronize`` on a CUDA device, nothing on the CPU."""
    import torch

    if device.startswith("cuda"):
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def gpu_name(device: str) -> str | None:
    """The CUDA device's name, ``None`` on the CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.get_device_name(torch.device(device))


def flops_per_image(model: Any, image_size: int, in_chans: int = 3, training: bool = False) -> int:
    """FLOPs of one image (``torch.utils.flop_counter``; ``backends.flops.torch_flops_per_image``): the forward, or
    with ``training`` forward + the gradients the model's current trainability asks for (a frozen stage computes
    no weight gradient, so partial fine-tuning costs less than 3 x the forward)."""
    from ..flops import torch_flops_per_image

    return torch_flops_per_image(model, image_size, in_chans, training=training)
