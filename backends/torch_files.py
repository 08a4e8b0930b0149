"""Reading torch weights files safely (``weights_only=True``): shared by the torch backends and the weight ports."""

from __future__ import annotations

import os
from collections import OrderedDict

import torch

from .errors import BackendError


def read_state_dict(path: str) -> OrderedDict[str, torch.Tensor]:
    """Load a weights file safely (``weights_only=True``), unwrapping ``state_dict``/``model`` containers.

    Raises:
        BackendError: the file is missing or holds no tensor state dict.
    """
    if not os.path.isfile(path):
        raise BackendError(f"weights file {path!r} does not exist; expected a .pth/.pt state dict")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        reason = " ".join(str(exc).split())[:200]
        raise BackendError(
            f"weights file {path!r} is not a loadable torch state dict ({type(exc).__name__}: {reason})"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BackendError(f"weights file {path!r} holds no tensor state dict")
    return OrderedDict((k.removeprefix("module."), v) for k, v in obj.items())
