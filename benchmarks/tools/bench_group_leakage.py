"""Patients in two splits, before and after ``--group-by`` (issue 22): a folder dataset carved per image, as tlbench
carves it without ``--group-by``, against carved by patient, counted from the file names alone (no image decoded).

For each arm (``per-image``, ``by-patient``) and each pair of splits, the patients present in both, and for the val
and test splits the images whose patient also has an image in an earlier split (train, then val): a model selected
on those images is selected on near-copies of its training data. The split folders the dataset brings itself (the
chest X-ray folder's ``test``) are the same in both arms and counted too (whether such a folder's patient numbers
restart per split is the dataset's business; they are reported, never asserted). The carving is the loader's own
(``carve_splits``, seed ``CARVE_SEED``), so these are the splits every cell of a suite trains and selects on.

``python -m tlbench.benchmarks.tools.bench_group_leakage --out results/bench_group_leakage.md`` (the chest X-ray
folder and the pattern of ``suites/*_chest_xray.toml``) prints and writes the table; the README quotes it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from ...datasets import DatasetError
from ...datasets.folder import CARVE_SEED, carve_splits, scan_tree, tree_files
from ...datasets.grouping import groups_of_paths, parse_group_by, scan_split_groups
from ...datasets.imagefiles import LabelledFiles, display_path

EXIT_USAGE = 2
DEFAULT_FOLDER = "../shared/data/chest_xray_pneumonia"
#: the chest X-ray suites' pattern: ``person<N>_`` (pneumonia), ``IM-<N>-`` and ``NORMAL2-IM-<N>-`` (normal)
DEFAULT_GROUP_BY = r"((?:person|NORMAL2-IM-|IM-)\d+)[_-]"
SPLITS = ("train", "val", "test")
ARMS = ("per-image", "by-patient")


@dataclass(frozen=True)
class SplitLeakage:
    """One arm's counts: images and patients per split, patients shared by each pair of splits, and per later split
    the images whose patient is in an earlier one."""

    images: dict[str, int]
    patients: dict[str, int]
    shared_patients: dict[str, int]
    images_with_sibling: dict[str, int]
    ungrouped_images: int


def carved_files(folder: Path, group_by: str, by_patient: bool) -> dict[str, LabelledFiles]:
    """The three splits of ``folder`` as the loader carves them, each file with its patient.

    Args:
        folder: an ImageFolder tree (``PATH/{train,test}/<class>/*`` or ``PATH/<class>/*``).
        group_by: the regular expression whose first group names the patient in a path relative to ``folder``.
        by_patient: carve whole patients (``--group-by``), else per image (the patients are only read, not used).

    Raises:
        DatasetError: a bad folder layout, or a pattern that matches no path.
    """
    grouping = parse_group_by(group_by)
    tree = scan_tree(folder)
    files = tree_files(tree, grouping)
    relative = [name for part in files.values() for name in part.names or []]
    groups_of_paths(grouping, [display_path(name) for name in relative], f"folder:{folder}")
    if by_patient:
        return carve_splits(files, CARVE_SEED)[0]
    pairs = (zip(part.names or [], part.groups or [], strict=True) for part in files.values())
    group_of = {name: group for pairs_of_split in pairs for name, group in pairs_of_split}
    carved = carve_splits({name: replace(part, groups=None) for name, part in files.items()}, CARVE_SEED)[0]
    return {name: replace(part, groups=[group_of[rel] for rel in part.names or []]) for name, part in carved.items()}


def count_leakage(files: dict[str, LabelledFiles]) -> SplitLeakage:
    """Patients per split, shared by each pair, and later-split images whose patient is in an earlier split (the
    data checks' ``scan_split_groups``)."""
    scan = scan_split_groups({name: list(files[name].groups or [None] * len(files[name].paths)) for name in SPLITS})
    return SplitLeakage(
        images={name: len(files[name].paths) for name in SPLITS},
        patients=scan.per_split,
        shared_patients=scan.shared_by_pair,
        images_with_sibling={name: int(scan.leaked[name].sum()) for name in SPLITS[1:]},
        ungrouped_images=scan.ungrouped,
    )


def _share(count: int, total: int) -> str:
    return f"{count} of {total} ({100 * count / total:.0f} %)" if total else "0 of 0"


def leakage_table(arms: dict[str, SplitLeakage]) -> str:
    """One row per arm: patients shared per pair of splits, and val/test images with a patient in an earlier split."""
    lines = [
        "| carved | patients train/val | patients train/test | patients val/test | val images with a patient in train "
        "| test images with a patient in train or val | images without a patient |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, counts in arms.items():
        shared = counts.shared_patients
        lines.append(
            f"| {arm} | {shared['train/val']} | {shared['train/test']} | {shared['val/test']} | "
            f"{_share(counts.images_with_sibling['val'], counts.images['val'])} | "
            f"{_share(counts.images_with_sibling['test'], counts.images['test'])} | {counts.ungrouped_images} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Count the patients in two splits of a folder dataset carved per image and by patient."""
    parser = argparse.ArgumentParser(
        prog="python -m tlbench.benchmarks.tools.bench_group_leakage", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help=f"an ImageFolder tree (default {DEFAULT_FOLDER})")
    parser.add_argument(
        "--group-by", default=DEFAULT_GROUP_BY, help="the pattern naming the patient (default: the chest X-ray one)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"bench_group_leakage: error: --folder {args.folder!r} is not a directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        arms = {arm: count_leakage(carved_files(folder, args.group_by, arm == "by-patient")) for arm in ARMS}
    except DatasetError as exc:
        print(f"bench_group_leakage: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m tlbench.benchmarks.tools.bench_group_leakage", *map(shlex.quote, given)])
    header = (
        f"`folder:{os.path.normpath(args.folder)}` with `--group-by '{args.group_by}'` (carve seed {CARVE_SEED}; "
        f"the folder's own splits are the same in both arms); made by `{command}`.\n\n"
    )
    text = header + leakage_table(arms)
    print(text, end="")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
