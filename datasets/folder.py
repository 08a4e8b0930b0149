"""``folder:PATH`` — an ImageFolder tree: ``PATH/<split>/<class>/...image files``.

Splits come from subfolders named ``train`` (or ``training``), ``val``/``valid``/``validation`` and
``test``/``testing`` (any case). A missing val (or test) split is carved from train by a seeded stratified
split (``CARVE_SEED``; ``VAL_FRACTION``/``TEST_FRACTION`` of train), recorded in ``meta["carved_splits"]``.
Without any split folder, ``PATH/<class>/`` is the whole dataset and val and test are both carved.

Class names are the class folder names, sorted, identical in every split. Image files are found recursively
inside each class folder by extension (every extension Pillow registers); hidden files and OS junk
(``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX``) are ignored silently; other files are ignored
and listed in the log. Symbolic links are followed, but an entry whose link cannot be resolved ("Too many
levels of symbolic links") and a folder link leading back to a folder already walked (a cycle) are skipped,
counted in ``skipped_images``/``symlink_loops`` and logged. File names need not be valid UTF-8: the tree
fingerprint hashes their bytes, and messages show undecodable bytes escaped (``display_path``). Scanning reads
the directory tree only (no decoding), so ``parse`` stays cheap and every layout problem fails there, before
any work: missing path, no class folder, a single class, an empty class folder, class folders differing
between splits.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .base import SPLITS, ArrayDataset, DatasetError, DatasetSource, ResizePolicy
from .grouping import GroupBy, groups_of_paths
from .imagefiles import (
    MAX_SKIPPED_EXAMPLES,
    SPLIT_ALIASES,
    LabelledFiles,
    check_classes_present,
    decode_splits,
    display_path,
)
from .progress import log
from .splitting import stratified_group_indices, stratified_indices

CARVE_SEED = 0
VAL_FRACTION = 0.1
TEST_FRACTION = 0.2
JUNK_NAMES = {"thumbs.db", "desktop.ini", "__macosx", "ehthumbs.db", "icon\r"}
IMAGE_EXTENSIONS = frozenset(ext.lower() for ext in Image.registered_extensions())
#: ignored (non-image) files listed in the log
MAX_IGNORED_EXAMPLES = 5


def is_hidden(name: str) -> bool:
    """Hidden files and OS junk that are never data (``.DS_Store``, ``Thumbs.db``...)."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


def is_image_name(name: str) -> bool:
    """Whether the file extension is one Pillow can decode."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass
class FileEntry:
    """One image file: path, size and mtime (the cache key uses all three)."""

    path: str
    size: int
    mtime_ns: int


@dataclass
class ScannedTree:
    """Result of scanning a folder tree (no decoding)."""

    root: Path
    class_names: list[str]
    #: split -> class index -> files (sorted by path)
    files: dict[str, list[list[FileEntry]]]
    #: split folder name used for each present split
    split_dirs: dict[str, str]
    ignored: list[str] = field(default_factory=list)
    hidden: int = 0
    #: ``(path, reason)`` of entries skipped while walking: symbolic link loops and cycles
    broken: list[tuple[str, str]] = field(default_factory=list)


class _Cycle(Exception):
    """A folder link leads back to a folder already walked or to one of its parents."""


def _folder_id(path: str | Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _kind(child: os.DirEntry, visited: set[tuple[int, int]]) -> str:
    """``"dir"``, ``"file"`` or ``"other"``.

    Raises:
        OSError: the entry cannot be resolved (a symbolic link loop such as ``a -> a``).
        _Cycle: a folder already walked (or a parent of the walk's root) reached again through a link.
    """
    if child.is_dir():
        folder = _folder_id(child.path)
        if folder in visited:
            raise _Cycle()
        visited.add(folder)
        return "dir"
    return "file" if child.is_file() else "other"


def _walk_images(directory: Path, tree: ScannedTree) -> list[FileEntry]:
    entries: list[FileEntry] = []
    stack = [directory]
    visited = {_folder_id(folder) for folder in (directory, *directory.resolve().parents)}
    while stack:
        current = stack.pop()
        try:
            children = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            raise DatasetError(
                f"cannot list {display_path(str(current))}: {exc.strerror or exc}; expected a readable folder"
            ) from None
        for child in children:
            if is_hidden(child.name):
                tree.hidden += 1
                continue
            try:
                kind = _kind(child, visited)
                stat = child.stat() if kind == "file" and is_image_name(child.name) else None
            except _Cycle:
                tree.broken.append(
                    (display_path(child.path), "symbolic link loop (leads back to a folder already listed)")
                )
                continue
            except OSError as exc:
                tree.broken.append(
                    (display_path(child.path), f"symbolic link loop or unreadable entry ({exc.strerror or exc})")
                )
                continue
            if kind == "dir":
                stack.append(Path(child.path))
            elif stat is not None:
                entries.append(FileEntry(child.path, stat.st_size, stat.st_mtime_ns))
            else:
                tree.ignored.append(display_path(child.path))
    return sorted(entries, key=lambda e: e.path)


def _is_dir(entry: os.DirEntry, broken: list[tuple[str, str]] | None) -> bool:
    try:
        return entry.is_dir()
    except OSError as exc:  # a symbolic link loop is not a folder
        if broken is not None:
            broken.append((display_path(entry.path), f"symbolic link loop or unreadable entry ({exc.strerror or exc})"))
        return False


def _subdirs(directory: Path, broken: list[tuple[str, str]] | None = None) -> list[str]:
    """Sorted names of the visible sub-folders; unresolvable links are appended to ``broken`` when given."""
    try:
        return sorted(e.name for e in os.scandir(directory) if not is_hidden(e.name) and _is_dir(e, broken))
    except OSError as exc:
        raise DatasetError(
            f"cannot list {display_path(str(directory))}: {exc.strerror or exc}; expected a readable folder"
        ) from None


def _count_hidden(directory: Path) -> int:
    try:
        return sum(1 for entry in os.scandir(directory) if is_hidden(entry.name))
    except OSError:
        return 0


def find_split_dirs(root: Path) -> dict[str, str]:
    """Map split name -> folder name among ``root``'s subfolders (case-insensitive aliases).

    Raises:
        DatasetError: two folders claim the same split, or split folders exist but no train folder.
    """
    found: dict[str, str] = {}
    for name in _subdirs(root):
        for split, aliases in SPLIT_ALIASES.items():
            if name.lower() in aliases:
                if split in found:
                    raise DatasetError(
                        f"{root} has both {found[split]}/ and {name}/ for the {split} split; expected one"
                    )
                found[split] = name
    if found and "train" not in found:
        present = ", ".join(f"{d}/" for d in found.values())
        raise DatasetError(
            f"{root} has {present} but no train/ folder; "
            "expected train/ (with optional val/, test/) or class folders directly"
        )
    return found


def scan_tree(root: Path) -> ScannedTree:
    """List the classes and image files of an ImageFolder tree and check its layout.

    Raises:
        DatasetError: one line naming the path and what was expected.
    """
    if not root.exists():
        raise DatasetError(f"dataset folder {root} does not exist; expected an ImageFolder directory")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a directory; expected an ImageFolder directory (PATH/train/<class>/...)")
    split_dirs = find_split_dirs(root)
    split_paths = {split: root / name for split, name in split_dirs.items()} or {"train": root}
    train_classes = _subdirs(split_paths["train"])
    if not train_classes:
        raise DatasetError(f"{split_paths['train']} has no class folders; expected one subfolder per class")
    if len(train_classes) < 2:
        raise DatasetError(
            f"{split_paths['train']} has a single class folder {train_classes[0]!r}; expected at least two classes"
        )
    tree = ScannedTree(root=root, class_names=train_classes, files={}, split_dirs=split_dirs or {"train": "."})
    tree.hidden = sum(_count_hidden(directory) for directory in {root, *split_paths.values()})
    for split, path in split_paths.items():
        classes = _subdirs(path, tree.broken)
        if split != "train":
            missing = [c for c in train_classes if c not in classes]
            extra = [c for c in classes if c not in train_classes]
            if missing:
                raise DatasetError(
                    f"class {missing[0]!r} has no folder in {path}; "
                    f"expected the same class folders as {split_paths['train']}: {', '.join(train_classes)}"
                )
            if extra:
                raise DatasetError(
                    f"{path} has class folder {extra[0]!r} absent from {split_paths['train']}; "
                    f"expected the classes {', '.join(train_classes)}"
                )
        per_class = []
        for class_name in train_classes:
            entries = _walk_images(path / class_name, tree)
            if not entries:
                raise DatasetError(
                    f"class folder {path / class_name} has no image files; expected at least one image "
                    f"({', '.join(sorted(IMAGE_EXTENSIONS & {'.png', '.jpg', '.jpeg', '.tif', '.bmp'}))}...)"
                )
            per_class.append(entries)
        tree.files[split] = per_class
    return tree


def tree_fingerprint(tree: ScannedTree) -> str:
    """Digest of every image file's relative path, size and mtime, and of the split layout.

    Names are hashed as the bytes the file system holds (``os.fsencode``), so names that are not valid
    UTF-8 are fingerprinted like any other.
    """
    digest = hashlib.sha256()
    for split in sorted(tree.files):
        for class_name, entries in zip(tree.class_names, tree.files[split], strict=True):
            for entry in entries:
                rel = os.path.relpath(entry.path, tree.root)
                fields = (
                    split.encode(),
                    os.fsencode(class_name),
                    os.fsencode(rel),
                    b"%d" % entry.size,
                    b"%d" % entry.mtime_ns,
                )
                digest.update(b"|".join(fields) + b"\n")
    return digest.hexdigest()


def carve_splits(files: dict[str, LabelledFiles], seed: int = CARVE_SEED) -> tuple[dict[str, LabelledFiles], list[str]]:
    """Complete ``files`` to train/val/test by seeded stratified carving from train.

    Test is carved first (``TEST_FRACTION`` of train), then val (``VAL_FRACTION`` of the original train),
    so the carved sizes do not depend on which splits were present. When train's files carry groups
    (``--group-by``), whole groups are carved (``stratified_group_indices``): no patient on both sides.

    Returns:
        The three splits and the names of the carved ones.
    """
    carved: list[str] = []
    train = files["train"]
    fractions = {"test": TEST_FRACTION, "val": VAL_FRACTION}
    total = len(train.paths)
    for split in ("test", "val"):
        if split in files:
            continue
        fraction = fractions[split] * total / len(train.paths)
        if train.groups is not None:
            kept, taken = stratified_group_indices(train.labels, train.groups, fraction, seed)
        else:
            kept, taken = stratified_indices(train.labels, fraction, seed)
        files[split] = train.subset(taken)
        train = train.subset(kept)
        carved.append(split)
    files["train"] = train
    return {name: files[name] for name in SPLITS}, sorted(carved, key=SPLITS.index)


def tree_files(tree: ScannedTree, group_by: GroupBy | None = None) -> dict[str, LabelledFiles]:
    """Per split, the file paths in class order with their labels, their paths relative to the root and, with
    ``group_by``, each file's group (its pattern searched in the relative path)."""
    out = {}
    for split, per_class in tree.files.items():
        paths = [entry.path for entries in per_class for entry in entries]
        labels = np.concatenate(
            [np.full(len(entries), index, dtype=np.int64) for index, entries in enumerate(per_class)]
        )
        relative = [os.path.relpath(path, tree.root) for path in paths]
        groups = [group_by.of_path(display_path(rel)) for rel in relative] if group_by is not None else None
        out[split] = LabelledFiles(paths, labels, relative, groups)
    return out


class FolderSource(DatasetSource):
    """An ImageFolder tree (see the module docstring).

    Args:
        spec: the dataset spec it came from.
        root: the folder.
        rename_splits: e.g. ``{"val": "test"}`` to use a source's val folder as the test split (hymenoptera).
        source_label: what ``meta["source"]`` says.
    """

    slug = "folder"

    def __init__(
        self, spec: str, root: Path, rename_splits: dict[str, str] | None = None, source_label: str | None = None
    ) -> None:
        super().__init__(spec)
        self.root = Path(root)
        self.rename_splits = dict(rename_splits or {})
        self.source_label = source_label or f"folder:{self.root}"
        self.tree = scan_tree(self.root)
        self.slug = "folder-" + "".join(c if c.isalnum() else "_" for c in self.root.name)[:40]

    def fingerprint(self) -> str:
        renames = ",".join(f"{a}>{b}" for a, b in sorted(self.rename_splits.items()))
        carve = f"seed{CARVE_SEED}-val{VAL_FRACTION}-test{TEST_FRACTION}"
        return f"folder|{tree_fingerprint(self.tree)}|{renames}|{carve}"

    def set_grouping(self, group_by: GroupBy) -> None:
        """Group the images by a pattern on their paths relative to the root (checked now: it must match one).

        Raises:
            DatasetError: a ``column:`` grouping (folders have no columns), or a pattern that matches no path.
        """
        if group_by.column is not None:
            raise DatasetError(
                f"--group-by '{group_by.text}' names a CSV column, but {self.spec!r} is a folder; expected a regular "
                "expression on the image paths (e.g. 'person(\\d+)_')"
            )
        relative = [
            display_path(os.path.relpath(entry.path, self.root))
            for per_class in self.tree.files.values()
            for entries in per_class
            for entry in entries
        ]
        groups_of_paths(group_by, relative, self.spec)
        self.group_by = group_by

    def _split_files(self) -> tuple[dict[str, LabelledFiles], list[str]]:
        files = tree_files(self.tree, self.group_by)
        files = {self.rename_splits.get(name, name): part for name, part in files.items()}
        return carve_splits(files)

    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        return self._build(policy, None, progress)

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        return self._build(policy, directory, progress)

    def _build(self, policy: ResizePolicy, directory: Path | None, progress: bool) -> ArrayDataset:
        files, carved = self._split_files()
        tree = self.tree
        log(
            f"{self.spec}: {sum(len(f.paths) for f in files.values())} image files, "
            f"classes {', '.join(tree.class_names)}; "
            + ", ".join(f"{name} {len(part.paths)}" for name, part in files.items())
            + (f" (carved from train: {', '.join(carved)})" if carved else "")
        )
        if tree.ignored:
            log(
                f"{self.spec}: ignored {len(tree.ignored)} non-image file(s), "
                f"e.g. {', '.join(tree.ignored[:MAX_IGNORED_EXAMPLES])}"
            )
        for path, reason in tree.broken[:MAX_SKIPPED_EXAMPLES]:
            log(f"{self.spec}: skipped {path}: {reason}")
        splits, report = decode_splits(files, policy, directory, progress, self.spec)
        check_classes_present(splits, tree.class_names, self.spec)
        meta = {
            "source": self.source_label,
            "split_folders": {self.rename_splits.get(k, k): v for k, v in tree.split_dirs.items()},
            "carved_splits": ",".join(carved),
            "carve_seed": CARVE_SEED if carved else None,
            **({"grouped_by": self.group_by.text} if self.group_by is not None else {}),
            "ignored_files": len(tree.ignored),
            "hidden_files": tree.hidden,
            **report.meta(),
            "symlink_loops": len(tree.broken),
        }
        meta["skipped_images"] += len(tree.broken)
        broken = [f"{path}: {reason}" for path, reason in tree.broken]
        meta["skipped_examples"] = (broken + meta["skipped_examples"])[:MAX_SKIPPED_EXAMPLES]
        return ArrayDataset(name=self.spec, class_names=list(tree.class_names), splits=splits, meta=meta)


def make_source(spec: str, argument: str | None) -> FolderSource:
    """Factory used by the dataset registry: ``folder:PATH``.

    Raises:
        DatasetError: no path given, or a layout problem (see ``scan_tree``).
    """
    if not argument:
        raise DatasetError(f"dataset {spec!r} needs a path; expected folder:PATH (an ImageFolder directory)")
    return FolderSource(spec, Path(argument).expanduser())
