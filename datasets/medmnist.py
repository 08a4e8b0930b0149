"""``medmnist:PATH.npz`` and ``medmnist:NAME`` — MedMNIST v2 single-label 2-D datasets.

The npz holds ``{train,val,test}_images`` (uint8 ``(N, H, W)`` gray or ``(N, H, W, 3)`` RGB) and
``{train,val,test}_labels`` (``(N,)`` or ``(N, 1)`` integers). The official splits are used as they are.
Class names come from the official label table when the file (or ``NAME``) is a known MedMNIST flag, else
they are ``"0"``, ``"1"``... Checking reads the npy headers and the labels only (no image data), so it is
cheap enough for ``parse``. ``NAME`` looks for ``$TLBENCH_CACHE/downloads/medmnist/NAME.npz`` (then the
``medmnist`` package's ``~/.medmnist/NAME.npz``) and otherwise downloads the official file (MD5-checked).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import SPLITS, ArrayDataset, DatasetError, DatasetSource, ResizePolicy, Split
from .cache import open_images_for_writing
from .download import downloads_dir, fetch
from .progress import log, progress_bar
from .resize import resize_array_batch

_ZENODO = "https://zenodo.org/records/10519652/files/{name}.npz?download=1"
#: official single-label 2-D MedMNIST v2 datasets (28 px files): MD5, class names, split sizes
MEDMNIST_INFO: dict[str, dict[str, Any]] = {
    "pathmnist": {
        "md5": "a8b06965200029087d5bd730944a56c1",
        "labels": [
            "adipose",
            "background",
            "debris",
            "lymphocytes",
            "mucus",
            "smooth muscle",
            "normal colon mucosa",
            "cancer-associated stroma",
            "colorectal adenocarcinoma epithelium",
        ],
        "n_samples": (89996, 10004, 7180),
    },
    "dermamnist": {
        "md5": "0744692d530f8e62ec473284d019b0c7",
        "labels": [
            "actinic keratoses and intraepithelial carcinoma",
            "basal cell carcinoma",
            "benign keratosis-like lesions",
            "dermatofibroma",
            "melanoma",
            "melanocytic nevi",
            "vascular lesions",
        ],
        "n_samples": (7007, 1003, 2005),
    },
    "octmnist": {
        "md5": "c68d92d5b585d8d81f7112f81e2d0842",
        "labels": ["choroidal neovascularization", "diabetic macular edema", "drusen", "normal"],
        "n_samples": (97477, 10832, 1000),
    },
    "pneumoniamnist": {
        "md5": "28209eda62fecd6e6a2d98b1501bb15f",
        "labels": ["normal", "pneumonia"],
        "n_samples": (4708, 524, 624),
    },
    "retinamnist": {
        "md5": "bd4c0672f1bba3e3a89f0e4e876791e4",
        "labels": ["0", "1", "2", "3", "4"],
        "n_samples": (1080, 120, 400),
    },
    "breastmnist": {
        "md5": "750601b1f35ba3300ea97c75c52ff8f6",
        "labels": ["malignant", "normal, benign"],
        "n_samples": (546, 78, 156),
    },
    "bloodmnist": {
        "md5": "7053d0359d879ad8a5505303e11de1dc",
        "labels": [
            "basophil",
            "eosinophil",
            "erythroblast",
            "immature granulocytes",
            "lymphocyte",
            "monocyte",
            "neutrophil",
            "platelet",
        ],
        "n_samples": (11959, 1712, 3421),
    },
    "tissuemnist": {
        "md5": "ebe78ee8b05294063de985d821c1c34b",
        "labels": [
            "Collecting Duct, Connecting Tubule",
            "Distal Convoluted Tubule",
            "Glomerular endothelial cells",
            "Interstitial endothelial cells",
            "Leukocytes",
            "Podocytes",
            "Proximal Tubule Segments",
            "Thick Ascending Limb",
        ],
        "n_samples": (165466, 23640, 47280),
    },
}
#: images resized per progress step
_CHUNK = 256


def npz_header(archive: zipfile.ZipFile, key: str, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``key`` of an npz, read from its npy header without loading the data.

    Raises:
        DatasetError: the entry is not a valid npy array.
    """
    try:
        with archive.open(f"{key}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(handle)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"{path}: key {key!r} is not a readable array ({exc}); expected a MedMNIST npz") from None
    return tuple(shape), np.dtype(dtype)


def check_npz(path: Path, flag: str | None = None) -> tuple[dict[str, int], int, int]:
    """Check a MedMNIST npz without reading its images.

    Args:
        path: the npz.
        flag: a known MedMNIST flag (e.g. ``breastmnist``) whose class count bounds the labels, or ``None``
            (then train_labels define the classes ``0..max``).

    Returns:
        Split sizes, number of classes (max label + 1) and image side in pixels.

    Raises:
        DatasetError: missing file or keys, bad shapes or dtypes, labels out of range (checked before the
            classes of train are compared with val/test), length mismatch.
    """
    if not path.is_file():
        raise DatasetError(
            f"MedMNIST file {path} does not exist; expected a .npz with {{train,val,test}}_{{images,labels}}"
        )
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path} is not a readable npz ({exc}); expected a MedMNIST .npz") from None
    with archive:
        keys = {name[:-4] for name in archive.namelist() if name.endswith(".npy")}
        expected = [f"{split}_{part}" for split in SPLITS for part in ("images", "labels")]
        missing = [key for key in expected if key not in keys]
        if missing:
            raise DatasetError(f"{path} lacks key(s) {', '.join(missing)}; expected {', '.join(expected)}")
        sizes: dict[str, int] = {}
        sides: set[tuple[int, int]] = set()
        for split in SPLITS:
            shape, dtype = npz_header(archive, f"{split}_images", path)
            if dtype != np.uint8 or not (len(shape) == 3 or (len(shape) == 4 and shape[-1] in (1, 3))):
                raise DatasetError(
                    f"{path}: {split}_images is {dtype} {shape}; expected uint8 (N, H, W) or (N, H, W, 3)"
                )
            sizes[split] = shape[0]
            sides.add(tuple(shape[1:3]))
        if len(sides) != 1:
            raise DatasetError(f"{path}: image sizes differ between splits ({sorted(sides)}); expected one size")
    labels = read_labels(path, sizes)
    check_label_range(path, labels, flag)
    num_classes = (
        int(max(int(lab.max()) for lab in labels.values() if lab.size)) + 1
        if any(lab.size for lab in labels.values())
        else 0
    )
    if num_classes < 2:
        raise DatasetError(f"{path}: labels have a single class; expected at least two classes")
    train_classes = set(np.unique(labels["train"]).tolist())
    absent = [c for c in range(num_classes) if c not in train_classes]
    if absent:
        raise DatasetError(
            f"{path}: class {absent[0]} appears in val/test but not in train_labels; "
            f"expected every class 0..{num_classes - 1} in train"
        )
    side = next(iter(sides))
    return sizes, num_classes, int(min(side))


def check_label_range(path: Path, labels: dict[str, np.ndarray], flag: str | None) -> None:
    """Fail on the first split holding a label outside the valid class range.

    The range is ``0..K-1`` with ``K`` the class count of a known ``flag``; otherwise the classes are those
    of train_labels (``0..max``), so a val/test label above them is out of range.

    Raises:
        DatasetError: naming the split's key, the bad label value and the valid range.
    """
    if flag in MEDMNIST_INFO:
        high, why = len(MEDMNIST_INFO[flag]["labels"]) - 1, f" for {flag}"
    else:
        train = labels["train"]
        high, why = (int(train.max()) if train.size else -1), ""
    for split in SPLITS:
        values = labels[split]
        bad = values[(values < 0) | (values > high)]
        if bad.size:
            expected = f"0..{high}" + ("" if why else " (the classes of train_labels)")
            raise DatasetError(f"{path}: {split}_labels has label {int(bad[0])} out of range{why}; expected {expected}")


def read_labels(path: Path, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Read and check every split's labels as int64 ``(N,)``.

    Raises:
        DatasetError: multi-label or non-integer labels, or a length different from images (the class range
            is checked by ``check_label_range``).
    """
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for split in SPLITS:
            key = f"{split}_labels"
            labels = np.asarray(data[key])
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1:
                raise DatasetError(
                    f"{path}: {key} has shape {labels.shape}; expected (N,) or (N, 1) single-label classes "
                    "(multi-label MedMNIST sets such as chestmnist are not supported)"
                )
            if labels.size and not np.issubdtype(labels.dtype, np.integer):
                if not np.issubdtype(labels.dtype, np.floating) or not np.all(labels == np.round(labels)):
                    raise DatasetError(f"{path}: {key} has non-integer values ({labels.dtype}); expected class indices")
            if len(labels) != sizes[split]:
                raise DatasetError(
                    f"{path}: {key} has {len(labels)} labels but {split}_images has {sizes[split]} images; "
                    "expected equal lengths"
                )
            out[split] = labels.astype(np.int64)
    return out


class MedMNISTSource(DatasetSource):
    """A MedMNIST npz (see the module docstring)."""

    def __init__(self, spec: str, path: Path, flag: str | None) -> None:
        super().__init__(spec)
        self.path = path
        self.flag = flag if flag in MEDMNIST_INFO else None
        self.slug = f"medmnist-{self.flag or ''.join(c if c.isalnum() else '_' for c in path.stem)[:40]}"
        self.sizes, self.num_classes, self.side_px = check_npz(path, self.flag)
        if self.flag is not None:
            self.class_names = list(MEDMNIST_INFO[self.flag]["labels"])
        else:
            self.class_names = [str(i) for i in range(self.num_classes)]

    def fingerprint(self) -> str:
        stat = self.path.stat()
        return f"medmnist|{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.flag}"

    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        return self._build(policy, None, progress)

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        return self._build(policy, directory, progress)

    def _build(self, policy: ResizePolicy, directory: Path | None, progress: bool) -> ArrayDataset:
        labels = read_labels(self.path, self.sizes)
        size = policy.image_size
        bar = progress_bar(sum(self.sizes.values()), f"caching {self.spec}", progress)
        splits: dict[str, Split] = {}
        gray = False
        try:
            with np.load(self.path, allow_pickle=False) as data:
                for split in SPLITS:
                    images = data[f"{split}_images"]
                    gray = gray or images.ndim == 3 or images.shape[-1] == 1
                    n = len(images)
                    out = (
                        np.empty((n, size, size, 3), np.uint8)
                        if directory is None
                        else open_images_for_writing(directory, split, n, size)
                    )
                    for start in range(0, n, _CHUNK):
                        stop = min(n, start + _CHUNK)
                        resize_array_batch(images[start:stop], policy, out=out[start:stop])
                        bar.update(stop - start)
                    if isinstance(out, np.memmap):
                        out.flush()
                    splits[split] = Split(images=out, labels=labels[split])
        finally:
            bar.close()
        log(
            f"{self.spec}: "
            + ", ".join(f"{name} {len(split)}" for name, split in splits.items())
            + f" images of {self.side_px} px, {self.num_classes} classes"
        )
        official = dict(zip(SPLITS, MEDMNIST_INFO[self.flag]["n_samples"], strict=True)) if self.flag else None
        if official is not None and official != self.sizes:
            log(
                f"{self.spec}: split sizes differ from the official {self.flag} "
                f"({', '.join(f'{k} {v}' for k, v in official.items())})"
            )
        meta = {
            "source": f"medmnist:{self.path}",
            "medmnist_flag": self.flag,
            "source_image_px": self.side_px,
            "official_split_sizes": official,
            "gray_to_rgb": gray,
            "carved_splits": "",
            "skipped_images": 0,
        }
        return ArrayDataset(name=self.spec, class_names=self.class_names, splits=splits, meta=meta)


def resolve_name(name: str) -> Path:
    """The local npz of a MedMNIST flag: cached, else ``~/.medmnist``, else downloaded (MD5-checked).

    Raises:
        DatasetError: unknown name, or offline without a cached file.
    """
    if name not in MEDMNIST_INFO:
        raise DatasetError(
            f"unknown MedMNIST dataset {name!r}; expected a .npz path or one of: {', '.join(MEDMNIST_INFO)}"
        )
    target = downloads_dir() / "medmnist" / f"{name}.npz"
    legacy = Path.home() / ".medmnist" / f"{name}.npz"
    if not target.is_file() and legacy.is_file():
        return legacy
    hint = f"pass a local file instead: medmnist:/path/to/{name}.npz"
    return fetch(_ZENODO.format(name=name), target, MEDMNIST_INFO[name]["md5"], hint)


def make_source(spec: str, argument: str | None) -> MedMNISTSource:
    """Factory used by the dataset registry: ``medmnist:PATH.npz`` or ``medmnist:NAME``.

    Raises:
        DatasetError: missing argument, missing file, bad npz, unknown name or failed download.
    """
    if not argument:
        raise DatasetError(
            f"dataset {spec!r} needs an argument; "
            f"expected medmnist:PATH.npz or medmnist:NAME ({', '.join(MEDMNIST_INFO)})"
        )
    looks_like_path = argument.endswith(".npz") or "/" in argument or "\\" in argument
    if looks_like_path:
        path = Path(argument).expanduser()
        return MedMNISTSource(spec, path, path.stem.lower())
    return MedMNISTSource(spec, resolve_name(argument.lower()), argument.lower())
