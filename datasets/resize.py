"""Resize decoded images with a ``ResizePolicy``: shorter side to size/crop_pct, then center crop."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .base import ResizePolicy

_INTERPOLATION = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def resample_filter(name: str) -> Image.Resampling:
    """Pillow resampling filter for an interpolation name (``bilinear``, ``bicubic``...)."""
    try:
        return _INTERPOLATION[name]
    except KeyError:
        raise ValueError(f"unknown interpolation {name!r}; expected one of: {', '.join(_INTERPOLATION)}") from None


def resize_image(image: Image.Image, policy: ResizePolicy) -> np.ndarray:
    """Resize a Pillow image with ``policy`` and return a uint8 ``(S, S, 3)`` array.

    A gray (``L``) image is resized in one channel and then replicated to three (same bytes as converting
    first, a third of the work); any other mode is converted to RGB first.

    Args:
        image: an image of any size (at least 1×1).
        policy: target size, crop fraction and interpolation.
    """
    size = policy.image_size
    scale_size = max(size, int(round(size / policy.crop_pct)))
    width, height = image.size
    if width <= height:
        new_w, new_h = scale_size, max(scale_size, int(round(height * scale_size / width)))
    else:
        new_w, new_h = max(scale_size, int(round(width * scale_size / height))), scale_size
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image = image.resize((new_w, new_h), resample_filter(policy.interpolation))
    left = (new_w - size) // 2
    top = (new_h - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return np.repeat(array[:, :, None], 3, axis=2) if array.ndim == 2 else array


def resize_array_batch(images: np.ndarray, policy: ResizePolicy, out: np.ndarray | None = None) -> np.ndarray:
    """Resize a uint8 batch ``(N, H, W)`` (gray) or ``(N, H, W, 3)`` to ``(N, S, S, 3)``.

    Gray images are replicated to three channels.

    Args:
        images: the batch (any array-like indexable by image, e.g. a memory map).
        policy: target size, crop fraction and interpolation.
        out: optional preallocated ``(N, S, S, 3)`` uint8 array to fill (e.g. a memory map of the cache file).
    """
    if out is None:
        out = np.empty((len(images), policy.image_size, policy.image_size, 3), dtype=np.uint8)
    for i, array in enumerate(images):
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        out[i] = resize_image(Image.fromarray(np.ascontiguousarray(array)), policy)
    return out
