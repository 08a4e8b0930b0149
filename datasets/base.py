"""Dataset data structures shared by every loader: uint8 NHWC arrays per split, labels, class names."""

from __future__ import annotations

import abc
import re
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


#: prefix of a grouping by a CSV column (``--group-by column:patient_id``)
COLUMN_PREFIX = "column:"


@dataclass(frozen=True)
class GroupBy:
    """A parsed ``--group-by``: a regular expression on relative paths, or a CSV column.

    Attributes:
        text: the value as given (recorded, and part of the dataset cache key).
    """

    text: str

    @property
    def column(self) -> str | None:
        """The CSV column of ``column:NAME``, else ``None``."""
        return self.text[len(COLUMN_PREFIX) :] if self.text.startswith(COLUMN_PREFIX) else None

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled regular expression, ``None`` for a column."""
        return None if self.column is not None else re.compile(self.text)

    def of_path(self, relative: str) -> str | None:
        """The group of the file at ``relative`` (path from the dataset root, ``/``-separated), or ``None``."""
        pattern = self.pattern
        if pattern is None:
            raise ValueError(f"--group-by {self.text!r} groups by a column, not by path")
        match = pattern.search(relative.replace("\\", "/"))
        return match.group(1) if match is not None and match.group(1) is not None else None


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
        groups: optional group of each image (the patient, ``--group-by``; ``None`` for an image without one),
            set by file-based sources when a grouping was asked for (see ``grouping``).
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str] | None = None
    content_hashes: np.ndarray | None = None
    difference_hashes: np.ndarray | None = None
    groups: list[str | None] | None = None

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
            ``duplicates`` (see ``tlbench.datasets.duplicates``), ``groups`` (with a grouping, see
            ``tlbench.datasets.grouping``) and ``split_sizes`` (after de-duplication).
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
    #: the grouping of images into patients (``--group-by``), part of the cache key; ``None``: no grouping
    group_by: GroupBy | None = None

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def set_grouping(self, group_by: GroupBy) -> None:
        """Group images by ``group_by`` (carved splits take whole groups; each image's group is kept).

        Only sources of image files can: this default refuses, naming the dataset.

        Raises:
            DatasetError: the source has no file paths (nor columns) to group by.
        """
        raise DatasetError(
            f"dataset {self.spec!r} has no image file paths to group; --group-by '{group_by.text}' needs a "
            "folder: or csv: dataset"
        )

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
