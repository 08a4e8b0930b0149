"""Result records: one artifact directory per cell (readable, collision-free ids), and the other-code warning."""

from __future__ import annotations

import json
from pathlib import Path

from tlbench.benchmarks.running.artifacts import cell_dir, existing_cell_dir, load_curve, write_curve
from tlbench.benchmarks.running.config import CellConfig
from tlbench.benchmarks.running.results import cell_id, code_label, legacy_cell_id, other_code_warnings


def test_plain_cells_keep_their_readable_id() -> None:
    assert cell_id("timm", "tf_efficientnet_lite0", "linear_probe", "digits", 0) == (
        "timm__tf_efficientnet_lite0__linear_probe__digits__s0"
    )
    assert cell_id("fake", "softmax", "scratch", "digits", 12) == "fake__softmax__scratch__digits__s12"


def test_two_long_dataset_specs_sharing_200_characters_get_their_own_directories(tmp_path: Path) -> None:
    common = "folder:/data/" + "x" * 187
    assert len(common) == 200
    first, second = common + "/first_hospital", common + "/second_hospital"
    ids = [cell_id("timm", "resnet18", "full_finetune", spec, 0) for spec in (first, second)]
    # before: both squashed and cut at 200 characters, i.e. one directory for two cells (and their weights)
    assert legacy_cell_id("timm", "resnet18", "full_finetune", first, 0) == legacy_cell_id(
        "timm", "resnet18", "full_finetune", second, 0
    )
    assert ids[0] != ids[1]
    for name in ids:
        assert len(name) <= 200 and name.startswith("timm__resnet18__full_finetune__folder-data-xxx")
        assert name.split("__")[-2] == "s0"  # the seed stays readable, the last part is the hash of the whole key
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-")
    assert "hospital" in ids[0]  # the end of the path is kept in the prefix
    cells = [CellConfig("timm", "resnet18", "full_finetune", spec, 0) for spec in (first, second)]
    directories = [cell_dir(tmp_path, cell) for cell in cells]
    assert directories[0] != directories[1] and directories[0].parent == tmp_path / "cells"
    for directory in directories:  # creatable: the name fits the file system
        directory.mkdir(parents=True)


def test_ids_that_squashing_would_merge_stay_apart() -> None:
    a = cell_id("timm", "m", "scratch", "folder:a/b", 0)
    b = cell_id("timm", "m", "scratch", "folder:a-b", 0)
    c = cell_id("timm", "m", "scratch", "folder-a-b", 0)  # plain: kept as it is, no hash
    assert len({a, b, c}) == 3 and c == "timm__m__scratch__folder-a-b__s0"
    # a double underscore inside a name is not plain: "a__b" + "c" and "a" + "b__c" must differ
    assert cell_id("x__y", "z", "s", "d", 0) != cell_id("x", "y__z", "s", "d", 0)
    # the same key always gives the same id (resume finds its directory again)
    assert a == cell_id("timm", "m", "scratch", "folder:a/b", 0)


def test_artifacts_of_cells_run_before_hashed_ids_are_still_read(tmp_path: Path) -> None:
    record = {"backend": "timm", "model": "m", "strategy": "scratch", "dataset": "medmnist:../d/b.npz", "seed": 1}
    legacy = tmp_path / "cells" / legacy_cell_id("timm", "m", "scratch", "medmnist:../d/b.npz", 1)
    assert legacy.name == "timm__m__scratch__medmnist-..-d-b.npz__s1" != cell_dir(tmp_path, record).name
    write_curve(legacy, [{"epoch": 1, "val_accuracy": 0.5}])
    assert existing_cell_dir(tmp_path, record) == legacy
    assert load_curve(tmp_path, record) == [{"epoch": 1, "val_accuracy": 0.5}]
    # once the cell has run again under its new id, that directory is the one read
    write_curve(cell_dir(tmp_path, record), [{"epoch": 1, "val_accuracy": 0.75}])
    assert existing_cell_dir(tmp_path, record) == cell_dir(tmp_path, record)
    assert json.loads((cell_dir(tmp_path, record) / "curve.json").read_text())[0]["val_accuracy"] == 0.75
    assert load_curve(tmp_path, record)[0]["val_accuracy"] == 0.75


def _record(seed: int, code: dict | None) -> dict:
    return {
        "backend": "timm",
        "model": "m",
        "strategy": "scratch",
        "dataset": "digits",
        "seed": seed,
        "code_version": code,
    }


def test_cells_made_by_other_code_are_named_in_one_warning() -> None:
    now = {"commit": "a" * 40, "diff_sha": None}
    edited = {"commit": "a" * 40, "diff_sha": "0123456789ab"}
    assert other_code_warnings([_record(0, now), _record(1, now)]) == []
    (line,) = other_code_warnings([_record(0, now), _record(1, edited), _record(2, now), _record(3, None)])
    assert line == (
        "cells made by other code: 2 cell(s) by aaaaaaa, but 1 by aaaaaaa+diff 0123456789ab "
        "(timm/m/scratch/digits/s1); 1 by unknown code (timm/m/scratch/digits/s3) "
        "(kept with --reuse-results; re-run them to compare one code version)"
    )
    many = [_record(seed, now) for seed in range(7)] + [_record(seed, None) for seed in range(7, 13)]
    (line,) = other_code_warnings(many, shown=2)
    assert "6 by unknown code (timm/m/scratch/digits/s7, timm/m/scratch/digits/s8 and 4 more)" in line
    assert code_label({"commit": "b" * 40, "diff_sha": None}) == "bbbbbbb" and code_label({}) == "unknown code"
