"""Dataset data structures shared by every loader: uint8 NHWC arrays per split, labels, class names."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset problem the user must fix; the message names the path/key and what was expected."""


@dataclass(frozen=True)
class ResizePolicy:
    """How every image is brought to the model's input size, once, before any backend sees it.

    The shorter side is resized to ``round(image_size / crop_pct)`` with ``interpolation``, then the center
    ``image_size`` × ``image_size`` square is cropped (timm/torchvision eval transform).
    """

    image_size: int
    crop_pct: float = 1.0
    interpolation: str = "bilinear"

    def key(self) -> str:
        """Short identifier used in cache keys."""
        return f"s{self.image_size}-c{self.crop_pct:.4f}-{self.interpolation}"


@dataclass
class Split:
    """One split: ``images`` uint8 ``(N, H, W, 3)`` (possibly memory-mapped) and int64 ``labels`` ``(N,)``.

    Attributes:
        images: the images.
        labels: their class indices.
        names: optional short name of each image (a path relative to the dataset root, never absolute), set
            by file-based sources and used in duplicate reports; array sources leave it ``None``.
        content_hashes: optional ``(N, 16)`` uint8 digests of the cached bytes (set by the cache).
        difference_hashes: optional ``(N, 16)`` uint8 perceptual hashes (set by the cache).
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str] | None = None
    content_hashes: np.ndarray | None = None
    difference_hashes: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class ArrayDataset:
    """A decoded, resized dataset: what every backend receives.

    Attributes:
        name: the dataset spec it came from (e.g. ``digits`` or ``folder:/data/xray``).
        class_names: class names, index = label.
        splits: ``train``, ``val``, ``test``.
        meta: provenance recorded in the results: ``source``, ``gray_to_rgb`` (channels replicated),
            ``carved_splits`` (splits made from train by a seeded stratified split), ``skipped_images``
            (count) and ``skipped_examples`` (first few paths with their reason); ``load_dataset`` adds
            ``duplicates`` (see ``tlbench.datasets.duplicates``) and ``split_sizes`` (after de-duplication).
    """

    name: str
    class_names: list[str]
    splits: dict[str, Split]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)


class DatasetSource(abc.ABC):
    """A parsed dataset spec. Sources are cheap to create (no decoding); ``build`` does the work."""

    #: short name used in cache directory names
    slug: str = "dataset"

    def __init__(self, spec: str) -> None:
        self.spec = spec

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """A string that changes whenever the source content changes (file list, sizes, mtimes...)."""

    @abc.abstractmethod
    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        """Decode every image once and resize it with ``policy``; returns in-memory arrays."""

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        """Like ``build``, but a source may stream its images into ``directory/<split>_images.npy``.

        The cache calls this with an empty staging directory. Sources whose data can exceed RAM override it
        and return splits whose ``images`` are memory maps of those files (so nothing is held in memory);
        the default builds in memory.

        Args:
            policy: the resize policy.
            directory: empty staging directory of the cache entry being built.
            progress: show progress while decoding.
        """
        return self.build(policy, progress=progress)
