"""Decode one image file with Pillow into an RGB (or gray) image ready for resizing.

Rules, applied in this order:

- the file must open as an image (zero-byte, truncated, non-image and unreadable files are *skipped*, never
  fatal: the caller counts and lists them);
- images with a side under ``MIN_SIDE_PX`` (e.g. 1×1 px placeholders) are skipped as degenerate; images over
  ``MAX_PIXELS`` are skipped (decompression-bomb guard); anything in between (10,000×10,000 px included) is
  decoded, JPEGs through Pillow's draft mode so that huge files decode at a reduced scale that is still at
  least twice the target size;
- the EXIF orientation is applied (``ImageOps.exif_transpose``); multi-frame files use their first frame;
- modes: ``L``/``1`` stay gray; 16-bit and 32-bit gray (``I;16``, ``I;16B``, ``I``, ``F``) are scaled to 8 bit
  by the image's own min..max range (a constant image becomes 0), never clipped; ``RGBA``/``LA``/``PA`` and
  palette images with transparency are composited on black (transparent pixels become black, which keeps a
  fixed background whatever colour hides under alpha 0); ``P``, ``CMYK``, ``YCbCr``, ``HSV`` are converted
  to ``RGB``. A gray image is reported as such so the caller can record ``gray_to_rgb``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .base import ResizePolicy
from .resize import resize_image

#: images with a side shorter than this are degenerate (1×1 tracking pixels, broken exports) and skipped
MIN_SIDE_PX = 8
#: larger images are refused as decompression bombs (Pillow refuses above 2 × its own warning limit)
MAX_PIXELS = 2 * 89_478_485
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class SkipImage(Exception):
    """An individual image that cannot be used; the message says why (the dataset goes on without it)."""


@dataclass(frozen=True)
class Decoded:
    """Result of decoding one file: ``array`` is ``None`` when skipped, with ``reason`` saying why."""

    array: np.ndarray | None
    gray: bool = False
    reason: str = ""


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Scale any numeric array to uint8 by its own min..max range (constant input gives zeros).

    Args:
        values: a 2-D array of any numeric dtype (16-bit PNG, 32-bit int or float images).
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(values[finite].min()), float(values[finite].max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _composite_on_black(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("RGB")


def to_display_mode(image: Image.Image) -> tuple[Image.Image, bool]:
    """Bring a decoded image to ``L`` (gray) or ``RGB``; returns ``(image, is_gray)``.

    Raises:
        SkipImage: a mode Pillow cannot convert to RGB.
    """
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(scale_to_uint8(np.asarray(image))), True
    if mode == "P" and "transparency" in image.info:
        return _composite_on_black(image), False
    if mode in ("LA", "La"):
        gray = _composite_on_black(image).convert("L")
        return gray, True
    if mode in _ALPHA_MODES:
        return _composite_on_black(image), False
    if mode in ("1", "L"):
        return image.convert("L"), True
    if mode == "RGB":
        return image, False
    try:
        return image.convert("RGB"), False
    except (ValueError, OSError) as exc:
        raise SkipImage(f"mode {mode} cannot be converted to RGB ({exc})") from None


def open_image(path: Path | str, target_px: int) -> Image.Image:
    """Open, check and fully decode ``path``; ``target_px`` lets JPEG decode at a reduced scale.

    Raises:
        SkipImage: unreadable, not an image, truncated, degenerate or oversized.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if min(width, height) < MIN_SIDE_PX:
                    raise SkipImage(f"{width}x{height} px is smaller than the {MIN_SIDE_PX} px minimum side")
                if width * height > MAX_PIXELS:
                    raise SkipImage(f"{width}x{height} px exceeds the {MAX_PIXELS:,}-pixel limit")
                if image.format == "JPEG" and min(width, height) >= 4 * target_px:
                    scale = 2 * target_px / min(width, height)
                    image.draft(
                        image.mode if image.mode in ("L", "RGB") else "RGB",
                        (max(1, int(width * scale)), max(1, int(height * scale))),
                    )
                image.load()
                return ImageOps.exif_transpose(image)
    except SkipImage:
        raise
    except Image.DecompressionBombError as exc:
        raise SkipImage(f"refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise SkipImage("not an image Pillow can identify (empty, corrupt or another file type)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise SkipImage(f"unreadable ({' '.join(str(exc).split()) or type(exc).__name__})") from None


def decode_file(path: Path | str, policy: ResizePolicy) -> Decoded:
    """Decode ``path`` and resize it with ``policy`` to a uint8 ``(S, S, 3)`` array, or say why it is skipped.

    Args:
        path: image file.
        policy: target size, crop fraction and interpolation (the model's eval transform).
    """
    try:
        image = open_image(path, round(policy.image_size / policy.crop_pct))
        image, gray = to_display_mode(image)
        return Decoded(array=resize_image(image, policy), gray=gray)
    except SkipImage as exc:
        return Decoded(array=None, reason=str(exc))
