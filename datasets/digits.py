"""``digits``: scikit-learn's bundled handwritten digits (1,797 8×8 images, 10 classes), fully offline.

Pixel values 0..16 become uint8 0..255; grayscale is replicated to three channels. The split is fixed
(seed 0, stratified): 60 % train, 20 % val, 20 % test, independent of the run seed so that every seed and
every backend sees the same test images.
"""

from __future__ import annotations

import numpy as np

from .base import ArrayDataset, DatasetSource, ResizePolicy, Split
from .resize import resize_array_batch
from .splitting import stratified_indices

SPLIT_SEED = 0


class DigitsSource(DatasetSource):
    """The embedded offline default dataset."""

    slug = "digits"

    def fingerprint(self) -> str:
        import sklearn

        return f"sklearn-digits-{sklearn.__version__}-split{SPLIT_SEED}-60/20/20"

    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        labels = bunch.target.astype(np.int64)
        rest, test = stratified_indices(labels, 0.2, SPLIT_SEED)
        train_rel, val_rel = stratified_indices(labels[rest], 0.25, SPLIT_SEED)
        parts = {"train": rest[train_rel], "val": rest[val_rel], "test": test}
        splits = {
            name: Split(images=resize_array_batch(images[idx], policy), labels=labels[idx])
            for name, idx in parts.items()
        }
        return ArrayDataset(
            name=self.spec,
            class_names=[str(c) for c in bunch.target_names],
            splits=splits,
            meta={"source": "sklearn.datasets.load_digits", "gray_to_rgb": True, "carved_splits": "val,test"},
        )


def make_source(spec: str, argument: str | None) -> DigitsSource:
    """Factory used by the dataset registry (``digits`` takes no argument)."""
    return DigitsSource(spec)
