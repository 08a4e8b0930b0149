"""Decoding rules: modes, 16-bit scaling, alpha, EXIF, degenerate/oversized/unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tlbench.datasets.base import ResizePolicy
from tlbench.datasets.decode import MIN_SIDE_PX, decode_file, scale_to_uint8
from tlbench.datasets.resize import resize_image

POLICY = ResizePolicy(16)


def test_scale_to_uint8_uses_the_image_range_not_clipping() -> None:
    values = np.array([[1000, 1500], [2000, 3000]], dtype=np.uint16)
    assert scale_to_uint8(values).tolist() == [[0, 64], [128, 255]]
    assert scale_to_uint8(np.full((2, 2), 7, np.uint16)).tolist() == [[0, 0], [0, 0]]
    floats = np.array([[np.nan, 0.0], [0.5, 1.0]])
    assert scale_to_uint8(floats).tolist() == [[0, 0], [128, 255]]


def test_16_bit_png_is_scaled_by_its_dynamic_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(30000, 31000, 32).astype(np.uint16), (32, 1))  # clipping would give all 255
    path = tmp_path / "xray16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    decoded = decode_file(path, ResizePolicy(32))
    assert decoded.gray and decoded.array is not None
    assert decoded.array.shape == (32, 32, 3)
    assert decoded.array[..., 0].min() <= 5 and decoded.array[..., 0].max() >= 250
    assert np.array_equal(decoded.array[..., 0], decoded.array[..., 2])  # replicated
    assert np.all(np.diff(decoded.array[0, :, 0].astype(int)) >= 0)  # the ramp survives


def test_32_bit_integer_image_is_scaled(tmp_path: Path) -> None:
    values = np.tile(np.arange(32, dtype=np.int32) * 100000, (32, 1))
    path = tmp_path / "int32.tif"
    Image.fromarray(values, mode="I").save(path)
    decoded = decode_file(path, ResizePolicy(32))
    assert decoded.gray and decoded.array[0, 0, 0] == 0 and decoded.array[0, -1, 0] == 255


def test_rgba_is_composited_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[:, :8, 3] = 255  # left half opaque, right half transparent (white hidden under alpha 0 elsewhere)
    rgba[:, 8:, :3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = decode_file(path, ResizePolicy(16, interpolation="nearest")).array
    assert out[:, :8].reshape(-1, 3).tolist()[0] == [200, 100, 50]
    assert out[:, 8:].max() == 0


def test_la_palette_and_cmyk_become_rgb(tmp_path: Path) -> None:
    la = Image.fromarray(np.stack([np.full((16, 16), 120, np.uint8), np.full((16, 16), 255, np.uint8)], -1), "LA")
    la.save(tmp_path / "la.png")
    palette = Image.new("RGB", (16, 16), (10, 200, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.save(tmp_path / "p.png")
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    gray = decode_file(tmp_path / "la.png", POLICY)
    assert gray.gray and gray.array[0, 0].tolist() == [120, 120, 120]
    pal = decode_file(tmp_path / "p.png", POLICY)
    assert not pal.gray and pal.array[0, 0].tolist() == [10, 200, 30]
    cmyk = decode_file(tmp_path / "cmyk.jpg", POLICY).array
    assert cmyk[8, 8, 0] > 200 and cmyk[8, 8, 1] < 60 and cmyk[8, 8, 2] < 60  # red


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    array = np.zeros((16, 32, 3), np.uint8)
    array[:, :16] = 255  # white left half of a landscape image
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    policy = ResizePolicy(16, interpolation="nearest")
    out = decode_file(path, policy).array
    # displayed portrait 16x32 -> center 16x16 crop; after rotation the white half is on top
    displayed = np.asarray(Image.open(path).transpose(Image.Transpose.ROTATE_270))
    assert displayed.shape[:2] == (32, 16)
    expected = resize_image(Image.fromarray(displayed), policy)
    assert np.abs(out.astype(int) - expected.astype(int)).max() <= 2


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.png", b"", "not an image"),
        ("text.jpg", b"this is not a jpeg at all", "not an image"),
    ],
)
def test_unreadable_files_are_skipped_with_a_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    decoded = decode_file(path, POLICY)
    assert decoded.array is None and reason in decoded.reason


def test_truncated_jpeg_is_skipped(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "trunc.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=95)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    decoded = decode_file(path, POLICY)
    assert decoded.array is None and "unreadable" in decoded.reason and "truncated" in decoded.reason


def test_tiny_image_is_skipped_as_degenerate(tmp_path: Path) -> None:
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "pixel.png")
    decoded = decode_file(tmp_path / "pixel.png", POLICY)
    assert decoded.array is None and decoded.reason == f"1x1 px is smaller than the {MIN_SIDE_PX} px minimum side"


def test_missing_file_is_skipped(tmp_path: Path) -> None:
    decoded = decode_file(tmp_path / "gone.png", POLICY)
    assert decoded.array is None and "unreadable" in decoded.reason


@pytest.mark.slow  # decodes 10,000 px images
def test_10000_px_images_decode(tmp_path: Path) -> None:
    big = Image.new("L", (10_000, 10_000), 0)
    big.paste(255, (0, 0, 5_000, 10_000))  # left half white
    big.save(tmp_path / "big.png", optimize=False, compress_level=1)
    big.convert("RGB").save(tmp_path / "big.jpg", quality=80)
    del big
    for name in ("big.png", "big.jpg"):
        decoded = decode_file(tmp_path / name, ResizePolicy(32))
        assert decoded.array is not None, decoded.reason
        assert decoded.array.shape == (32, 32, 3)
        assert decoded.array[:, :12].min() >= 240 and decoded.array[:, 20:].max() <= 15
