"""Per-image fingerprints computed while a cache entry is written: exact content digests and difference hashes.

- ``content_hashes``: a 16-byte BLAKE2b digest of each image's shape and decoded, resized uint8 bytes — two
  images have the same digest exactly when the cached arrays are identical (so duplicates are judged at the
  cached resolution, after resizing);
- ``difference_hashes``: a 128-bit perceptual hash (dHash in both directions: the gray image averaged down
  to 8 × 9 cells, one bit per horizontal neighbour comparison, and to 9 × 8 cells, one bit per vertical
  one), stored as 16 bytes; re-encoded or slightly edited copies of one picture differ by few bits. (The
  common 64-bit horizontal dHash is too coarse for chest X-rays: one test image in eight shares its hash
  with some other patient's train image.)

Both are small arrays (32 bytes an image) saved beside the images, so warm loads never rehash.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: bytes of a content digest
CONTENT_HASH_BYTES = 16
#: bytes of a difference hash (2 × 8 × 8 bits)
DHASH_BYTES = 16
#: comparisons per row and rows of the dHash grid (each direction)
_DHASH_SIDE = 8
#: images hashed per step (bounds the float copy made for the perceptual hash)
_CHUNK = 256


def content_hash(image: np.ndarray) -> bytes:
    """16-byte BLAKE2b digest of an image's shape and bytes."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    digest = hashlib.blake2b(repr(array.shape).encode(), digest_size=CONTENT_HASH_BYTES)
    digest.update(array.data)
    return digest.digest()


def _cell_means(gray: np.ndarray, cells: int, axis: int) -> np.ndarray:
    """Average ``gray`` along ``axis`` into ``cells`` equal-as-possible bands (nearest rows when too small)."""
    size = gray.shape[axis]
    if size < cells:
        return np.take(gray, (np.arange(cells) * size) // cells, axis=axis)
    bounds = np.linspace(0, size, cells + 1).round().astype(np.int64)
    sums = np.add.reduceat(gray, bounds[:-1], axis=axis)
    shape = [1] * gray.ndim
    shape[axis] = cells
    return sums / np.diff(bounds).reshape(shape)


def difference_hashes_of(images: np.ndarray) -> np.ndarray:
    """Horizontal and vertical dHash of a batch ``(N, H, W, 3)`` uint8 as ``(N, 16)`` uint8 (128 bits each)."""
    gray = np.asarray(images, dtype=np.float32).mean(axis=3)
    side = _DHASH_SIDE
    wide = _cell_means(_cell_means(gray, side, axis=1), side + 1, axis=2)
    tall = _cell_means(_cell_means(gray, side + 1, axis=1), side, axis=2)
    bits = [wide[:, :, 1:] > wide[:, :, :-1], tall[:, 1:, :] > tall[:, :-1, :]]
    return np.packbits(np.concatenate([b.reshape(len(images), -1) for b in bits], axis=1), axis=1)


def image_hashes(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Content digests ``(N, 16)`` and difference hashes ``(N, 8)`` (uint8) of every image of a split.

    Args:
        images: uint8 ``(N, H, W, 3)``, possibly a memory map (read chunk by chunk).
    """
    n = len(images)
    content = np.zeros((n, CONTENT_HASH_BYTES), dtype=np.uint8)
    perceptual = np.zeros((n, DHASH_BYTES), dtype=np.uint8)
    for start in range(0, n, _CHUNK):
        chunk = np.asarray(images[start : start + _CHUNK])
        for offset, image in enumerate(chunk):
            content[start + offset] = np.frombuffer(content_hash(image), dtype=np.uint8)
        perceptual[start : start + len(chunk)] = difference_hashes_of(chunk)
    return content, perceptual


def hamming_within(queries: np.ndarray, references: np.ndarray, max_bits: int) -> np.ndarray:
    """For each query hash, whether some reference hash differs from it in at most ``max_bits`` bits.

    Args:
        queries: ``(Q, B)`` uint8 difference hashes (``B`` a multiple of 8).
        references: ``(R, B)`` uint8 difference hashes.
        max_bits: largest Hamming distance that counts as near.

    Returns:
        ``(Q, R)`` bool matrix.
    """
    q = np.ascontiguousarray(queries).view(">u8")
    r = np.ascontiguousarray(references).view(">u8")
    distance = _popcount(q[:, None, :] ^ r[None, :, :]).sum(axis=2, dtype=np.int64)
    return distance <= max_bits


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(values)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values[..., None].view(np.uint8)].sum(axis=-1)
