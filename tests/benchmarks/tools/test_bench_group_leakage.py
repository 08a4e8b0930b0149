"""Patients in two splits before and after ``--group-by``, counted from file names on a synthetic folder: carved per
image every val image has a sibling in train; carved by patient none has, and the folder's own test split is
counted the same in both arms; bad input is one line and exit 2."""

from __future__ import annotations

from pathlib import Path

from tlbench.benchmarks.tools.bench_group_leakage import carved_files, count_leakage, main

PATTERN = r"(person\d+)_"


def _folder(root: Path) -> Path:
    """8 patients per class with 10 train images each; the test folder holds patients 0 and 1 again (2 images
    each) and two new ones, plus one file without a patient."""
    for label in ("NORMAL", "PNEUMONIA"):
        offset = 0 if label == "NORMAL" else 100
        for patient in range(8):
            for image in range(10):
                path = root / "train" / label / f"person{offset + patient}_{image}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not decoded")
        for patient in (0, 1, 50, 51):
            for image in range(2):
                path = root / "test" / label / f"person{offset + patient}_t{image}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"not decoded")
    (root / "test" / "NORMAL" / "scan.png").write_bytes(b"not decoded")
    return root


def test_carved_per_image_every_val_image_has_a_sibling_and_by_patient_none(tmp_path):
    folder = _folder(tmp_path / "xray")
    per_image = count_leakage(carved_files(folder, PATTERN, by_patient=False))
    by_patient = count_leakage(carved_files(folder, PATTERN, by_patient=True))
    assert per_image.images == {"train": 144, "val": 16, "test": 17}  # 10 % of 160 carved to val
    assert per_image.images_with_sibling["val"] == per_image.images["val"]  # 10 images per patient: all siblings
    assert per_image.shared_patients["train/val"] == per_image.patients["val"] > 0
    assert by_patient.shared_patients["train/val"] == 0 and by_patient.images_with_sibling["val"] == 0
    # the folder's own test split: patients 0 and 1 of each class come back, 2 images each, in both arms
    assert per_image.shared_patients["train/test"] == 4 and per_image.images_with_sibling["test"] == 8
    assert by_patient.shared_patients["train/test"] + by_patient.shared_patients["val/test"] == 4
    assert by_patient.images_with_sibling["test"] == 8
    assert per_image.ungrouped_images == by_patient.ungrouped_images == 1
    assert by_patient.patients["train"] + by_patient.patients["val"] == 16


def test_the_table_and_its_file(tmp_path, capsys):
    folder = _folder(tmp_path / "xray")
    out = tmp_path / "results" / "bench_group_leakage.md"
    assert main(["--folder", str(folder), "--group-by", PATTERN, "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert f"--folder {folder} --group-by '(person\\d+)_' --out {out}`" in text  # the command that made it
    rows = [line for line in text.splitlines() if line.startswith("| per-image") or line.startswith("| by-patient")]
    assert rows[0].endswith("| 16 of 16 (100 %) | 8 of 17 (47 %) | 1 |")
    assert rows[1].startswith("| by-patient | 0 |") and "| 0 of " in rows[1]


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["--folder", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"bench_group_leakage: error: --folder {str(tmp_path / 'missing')!r} is not a directory"
    )
    folder = _folder(tmp_path / "xray")
    assert main(["--folder", str(folder), "--group-by", r"(patient\d+)"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "matches none of the" in err[0] and "expected a pattern" in err[0]
