"""``csv:IMAGES_DIR:LABELS.csv`` — ISIC-style images in a folder, labels in a CSV (``image,label``).

Options follow a ``?``: ``csv:imgs:labels.csv?image=isic_id&label=dx&split=fold``.

- ``image`` column (default: the first of ``image``, ``image_id``, ``isic_id``, ``file``, ``filename``,
  ``path``): a path relative to IMAGES_DIR, or a bare name without extension (ISIC ids), matched to the one
  image file of that stem found anywhere under IMAGES_DIR;
- ``label`` column (default: the first of ``label``, ``diagnosis``, ``dx``, ``class``, ``target``): class
  names are its distinct values, sorted (numerically when all are integers);
- ``split`` column (optional): values ``train``/``val``/``test`` (aliases as for folders); without it, or for
  a missing val/test, splits are carved from train like ``folder:`` does.

A row whose image file is missing is reported (first few listed in the log), counted in ``skipped_images``
and left out; when no row names an existing file the spec is refused. A file that cannot be resolved (a
symbolic link loop) counts as missing and is logged. Rows naming the same image file again are logged and
counted in ``meta["repeated_rows"]`` (``meta["conflicting_rows"]`` when the labels differ); they are kept
here, and ``load_dataset``'s duplicate policy treats them like any other identical images (a conflicting
pair is dropped by default). Everything is checked when parsing (reading the CSV and listing the folder, no
decoding).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np

from .base import SPLITS, ArrayDataset, DatasetError, DatasetSource, ResizePolicy
from .folder import SPLIT_ALIASES, carve_splits, is_hidden, is_image_name
from .grouping import GroupBy, groups_of_paths
from .imagefiles import MAX_SKIPPED_EXAMPLES, LabelledFiles, check_classes_present, decode_splits, display_path
from .progress import log

IMAGE_COLUMNS = ("image", "image_id", "isic_id", "file", "filename", "path")
LABEL_COLUMNS = ("label", "diagnosis", "dx", "class", "target")
OPTIONS = ("image", "label", "split")


def parse_argument(spec: str, argument: str) -> tuple[Path, Path, dict[str, str]]:
    """Split ``IMAGES_DIR:LABELS.csv[?options]`` (paths may themselves contain ``:``).

    Raises:
        DatasetError: no ``:``, an unknown option, a missing folder or CSV.
    """
    body, _, query = argument.partition("?")
    options: dict[str, str] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in OPTIONS:
            raise DatasetError(f"unknown csv option {key!r} in {spec!r}; expected {', '.join(OPTIONS)}")
        options[key] = values[-1]
    cuts = [i for i, char in enumerate(body) if char == ":"]
    if not cuts:
        raise DatasetError(f"dataset {spec!r} needs two paths; expected csv:IMAGES_DIR:LABELS.csv")
    for cut in cuts:  # the first cut whose left side is a folder (Windows drive letters contain ':')
        if Path(body[:cut]).expanduser().is_dir():
            images_dir, csv_path = Path(body[:cut]).expanduser(), Path(body[cut + 1 :]).expanduser()
            break
    else:
        raise DatasetError(f"images folder {body[: cuts[-1]]} does not exist; expected csv:IMAGES_DIR:LABELS.csv")
    if not csv_path.is_file():
        raise DatasetError(f"labels file {csv_path} does not exist; expected a CSV with image and label columns")
    return images_dir, csv_path, options


def _pick_column(header: list[str], wanted: str | None, defaults: tuple[str, ...], what: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in header:
            raise DatasetError(
                f"{path} has no column {wanted!r} (columns: {', '.join(header)}); expected the {what} column"
            )
        return wanted
    lowered = {name.lower(): name for name in header}
    for name in defaults:
        if name in lowered:
            return lowered[name]
    raise DatasetError(
        f"{path} has no {what} column (columns: {', '.join(header)}); "
        f"expected one of {', '.join(defaults)} or ?{what}=COLUMN"
    )


def index_images(images_dir: Path) -> tuple[dict[str, os.stat_result], dict[str, list[str]], list[tuple[str, str]]]:
    """Every image file under ``images_dir``: relative path -> stat, stem -> relative paths, and unresolvable ones.

    Folder links are not followed (``os.walk``'s default), so a folder cycle cannot loop; an image name whose
    link cannot be resolved (``a.png -> a.png``) is returned in the third list as ``(shown path, reason)``.
    """
    by_path: dict[str, os.stat_result] = {}
    by_stem: dict[str, list[str]] = {}
    broken: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(images_dir):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        for name in sorted(filenames):
            if is_hidden(name) or not is_image_name(name):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, images_dir)
            try:
                by_path[rel] = os.stat(full)
            except OSError as exc:
                broken.append((display_path(rel), f"symbolic link loop or unreadable entry ({exc.strerror or exc})"))
                continue
            by_stem.setdefault(os.path.splitext(name)[0], []).append(rel)
    return by_path, by_stem, broken


def _sort_classes(values: set[str]) -> list[str]:
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


class CsvSource(DatasetSource):
    """Images in a folder labelled by a CSV (see the module docstring)."""

    slug = "csv"

    def __init__(self, spec: str, images_dir: Path, csv_path: Path, options: dict[str, str]) -> None:
        super().__init__(spec)
        self.images_dir, self.csv_path, self.options = images_dir, csv_path, options
        self.slug = "csv-" + "".join(c if c.isalnum() else "_" for c in csv_path.stem)[:40]
        self.missing: list[tuple[int, str]] = []
        self._read()

    def _read(self) -> None:
        path = self.csv_path
        try:
            with open(path, newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                header = list(reader.fieldnames or [])
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"cannot read {path} ({exc}); expected a UTF-8 CSV with a header row") from None
        if not header:
            raise DatasetError(f"{path} is empty; expected a header row with image and label columns")
        image_col = _pick_column(header, self.options.get("image"), IMAGE_COLUMNS, "image", path)
        label_col = _pick_column(header, self.options.get("label"), LABEL_COLUMNS, "label", path)
        split_col = self.options.get("split")
        self.header, self.rows = header, rows
        if split_col is not None and split_col not in header:
            raise DatasetError(
                f"{path} has no column {split_col!r} (columns: {', '.join(header)}); expected the split column"
            )
        by_path, by_stem, self.broken = index_images(self.images_dir)
        for rel, reason in self.broken[:MAX_SKIPPED_EXAMPLES]:
            log(f"{self.images_dir}: skipped {rel}: {reason}")
        self.stats = by_path
        entries: list[tuple[str, str, str, int]] = []  # (relative path, label, split, CSV line)
        for line, row in enumerate(rows, start=2):
            name, label = (row.get(image_col) or "").strip(), (row.get(label_col) or "").strip()
            if not name or not label:
                raise DatasetError(
                    f"{path} line {line}: empty {image_col if not name else label_col!r}; "
                    "expected an image name and a label"
                )
            split = "train"
            if split_col is not None:
                split = next(
                    (
                        s
                        for s, aliases in SPLIT_ALIASES.items()
                        if (row.get(split_col) or "").strip().lower() in aliases
                    ),
                    "",
                )
                if not split:
                    raise DatasetError(f"{path} line {line}: split {row.get(split_col)!r}; expected train, val or test")
            rel = os.path.normpath(name)
            if rel not in by_path:
                stems = by_stem.get(name, [])
                if len(stems) > 1:
                    raise DatasetError(
                        f"{path} line {line}: image {name!r} matches {len(stems)} files ({', '.join(stems[:3])}); "
                        "expected one"
                    )
                rel = stems[0] if stems else ""
            if not rel:
                self.missing.append((line, name))
                continue
            entries.append((rel, label, split, line))
        if not entries:
            raise DatasetError(
                f"none of the {len(rows)} images named in {path} exists under {self.images_dir}; "
                f"expected files such as {self.images_dir / (rows[0][image_col] if rows else 'IMAGE')}"
            )
        self.class_names = _sort_classes({label for _, label, _, _ in entries})
        if len(self.class_names) < 2:
            raise DatasetError(
                f"{path}: column {label_col!r} has a single class {self.class_names[0]!r}; "
                "expected at least two classes"
            )
        if "train" not in {split for _, _, split, _ in entries}:
            raise DatasetError(
                f"{path}: column {split_col!r} has no train rows; expected train rows (val/test optional)"
            )
        self.entries = entries
        self.repeated = repeated_rows(entries)
        if self.missing:
            shown = ", ".join(f"line {line}: {name}" for line, name in self.missing[:MAX_SKIPPED_EXAMPLES])
            log(f"{path}: {len(self.missing)} row(s) name missing images under {self.images_dir} ({shown})")
        if self.repeated:
            shown = "; ".join(text for text, _ in self.repeated[:MAX_SKIPPED_EXAMPLES])
            log(f"{path}: {len(self.repeated)} row(s) name an image file already named ({shown})")

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        stat = self.csv_path.stat()
        digest.update(
            f"{self.csv_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sorted(self.options.items())}\n".encode(
                "utf-8", "surrogateescape"
            )
        )
        for rel, label, split, _ in self.entries:
            file_stat = self.stats[rel]
            digest.update(
                f"{rel}|{label}|{split}|{file_stat.st_size}|{file_stat.st_mtime_ns}\n".encode(
                    "utf-8", "surrogateescape"
                )
            )
        return f"csv|{digest.hexdigest()}"

    def set_grouping(self, group_by: GroupBy) -> None:
        """Group the images by a CSV column (``column:NAME``) or by a pattern on their paths relative to IMAGES_DIR.

        Raises:
            DatasetError: a column the CSV lacks, or a pattern that matches no image path.
        """
        column = group_by.column
        if column is not None and column not in self.header:
            raise DatasetError(
                f"{self.csv_path} has no column {column!r} (columns: {', '.join(self.header)}); expected the group "
                f"column of --group-by {group_by.text}"
            )
        if column is None:
            groups_of_paths(group_by, [display_path(rel) for rel, _, _, _ in self.entries], self.spec)
        self.group_by = group_by

    def _group(self, rel: str, line: int) -> str | None:
        """The group of the image at ``rel`` named on CSV ``line`` (``None`` without a grouping or a value)."""
        group_by = self.group_by
        if group_by is None:
            return None
        if group_by.column is None:
            return group_by.of_path(display_path(rel))
        return (self.rows[line - 2].get(group_by.column) or "").strip() or None

    def build(self, policy: ResizePolicy, progress: bool = False) -> ArrayDataset:
        return self._build(policy, None, progress)

    def build_to(self, policy: ResizePolicy, directory: Path, progress: bool = False) -> ArrayDataset:
        return self._build(policy, directory, progress)

    def _build(self, policy: ResizePolicy, directory: Path | None, progress: bool) -> ArrayDataset:
        index = {name: i for i, name in enumerate(self.class_names)}
        files: dict[str, LabelledFiles] = {}
        for split in SPLITS:
            rows = [(rel, label, line) for rel, label, s, line in self.entries if s == split]
            if rows:
                paths = [str(self.images_dir / rel) for rel, _, _ in rows]
                labels = np.array([index[label] for _, label, _ in rows], dtype=np.int64)
                names = [f"{rel} (line {line})" for rel, _, line in rows]
                groups = [self._group(rel, line) for rel, _, line in rows] if self.group_by is not None else None
                files[split] = LabelledFiles(paths, labels, names, groups)
        files, carved = carve_splits(files)
        splits, report = decode_splits(files, policy, directory, progress, self.spec)
        check_classes_present(splits, self.class_names, self.spec)
        meta = {"source": f"csv:{self.images_dir}:{self.csv_path}", "carved_splits": ",".join(carved), **report.meta()}
        if self.group_by is not None:
            meta["grouped_by"] = self.group_by.text
        missing = [(f"{self.csv_path} line {line}: {name}", "image file not found") for line, name in self.missing]
        meta["skipped_images"] = len(missing) + len(report.skipped)
        meta["missing_images"] = len(missing)
        meta["skipped_examples"] = ([f"{p}: {r}" for p, r in missing] + meta["skipped_examples"])[:MAX_SKIPPED_EXAMPLES]
        meta["repeated_rows"] = len(self.repeated)
        meta["conflicting_rows"] = sum(conflict for _, conflict in self.repeated)
        return ArrayDataset(name=self.spec, class_names=list(self.class_names), splits=splits, meta=meta)


def repeated_rows(entries: list[tuple[str, str, str, int]]) -> list[tuple[str, bool]]:
    """Rows naming an image file that an earlier row already named, as ``(description, labels differ)``.

    Args:
        entries: ``(relative path, label, split, CSV line)`` per row, in CSV order.
    """
    first: dict[str, tuple[str, int]] = {}
    out: list[tuple[str, bool]] = []
    for rel, label, _, line in entries:
        if rel not in first:
            first[rel] = (label, line)
            continue
        label0, line0 = first[rel]
        shown = display_path(rel)
        if label != label0:
            out.append((f"line {line} names {shown} again with label {label!r} (line {line0}: {label0!r})", True))
        else:
            out.append((f"line {line} names {shown} again (line {line0}, same label {label!r})", False))
    return out


def make_source(spec: str, argument: str | None) -> CsvSource:
    """Factory used by the dataset registry: ``csv:IMAGES_DIR:LABELS.csv[?image=COL&label=COL&split=COL]``.

    Raises:
        DatasetError: a missing path, column or class problem (one line naming it).
    """
    if not argument:
        raise DatasetError(f"dataset {spec!r} needs paths; expected csv:IMAGES_DIR:LABELS.csv")
    images_dir, csv_path, options = parse_argument(spec, argument)
    return CsvSource(spec, images_dir, csv_path, options)
