"""``medmnist:`` sources: official split sizes, label shapes, bad npz files, named downloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tlbench.datasets import DatasetError, ResizePolicy, load_dataset, medmnist, parse_dataset_spec
from tlbench.datasets.download import file_md5

POLICY = ResizePolicy(16)


def write_npz(
    path: Path, sizes=(6, 2, 4), rgb: bool = False, label_shape: str = "n1", drop: str | None = None, **override
) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        labels = np.arange(n) % 2
        arrays[f"{split}_labels"] = labels[:, None] if label_shape == "n1" else labels
    arrays.update(override)
    if drop:
        arrays.pop(drop)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(("rgb", "label_shape"), [(False, "n1"), (False, "n"), (True, "n1")])
def test_npz_builds_with_its_own_splits(tmp_path: Path, rgb: bool, label_shape: str) -> None:
    path = write_npz(tmp_path / "tiny.npz", rgb=rgb, label_shape=label_shape)
    dataset = load_dataset(f"medmnist:{path}", POLICY, tmp_path / "cache")
    assert {k: len(v) for k, v in dataset.splits.items()} == {"train": 6, "val": 2, "test": 4}
    assert dataset.class_names == ["0", "1"]
    assert dataset.splits["train"].labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert dataset.splits["test"].images.shape == (4, 16, 16, 3)
    assert dataset.meta["gray_to_rgb"] is (not rgb) and dataset.meta["carved_splits"] == ""
    with np.load(path) as data:
        first = data["test_images"][0]
    expected = first if rgb else np.repeat(first[..., None], 3, axis=2)
    # 28 -> 16 bilinear of random noise: means agree, exact values do not
    assert abs(float(dataset.splits["test"].images[0].mean()) - float(expected.mean())) < 12


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": "val_labels"}, "lacks key\\(s\\) val_labels"),
        ({"train_labels": np.array([0, 1, 0, 1, 0, -1])}, "train_labels has label -1 out of range"),
        ({"test_labels": np.array([0, 1, 2])}, "test_labels has 3 labels but test_images has 4 images"),
        ({"train_labels": np.zeros((6, 3), np.int64)}, "multi-label"),
        ({"val_labels": np.array([0.5, 1.0])}, "non-integer"),
        ({"train_images": np.zeros((6, 28, 28), np.float32)}, "expected uint8"),
        ({"test_images": np.zeros((4, 32, 32), np.uint8)}, "image sizes differ"),
        (
            {"train_labels": np.array([0, 2, 0, 2, 0, 2]), "val_labels": np.array([1, 1])},
            "class 1 appears in val/test but not in train_labels",
        ),
        (
            {"val_labels": np.array([2, 1]), "test_labels": np.array([0, 1, 0, 1])},
            "val_labels has label 2 out of range; expected 0..1",
        ),
        (
            {
                "train_labels": np.zeros(6, np.int64),
                "val_labels": np.zeros(2, np.int64),
                "test_labels": np.zeros(4, np.int64),
            },
            "single class",
        ),
    ],
)
def test_bad_npz_fails_at_parse_time(tmp_path: Path, kwargs: dict, message: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **kwargs)
    with pytest.raises(DatasetError, match=message):
        parse_dataset_spec(f"medmnist:{path}")


def test_missing_or_corrupt_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        parse_dataset_spec(f"medmnist:{tmp_path / 'nope.npz'}")
    (tmp_path / "corrupt.npz").write_bytes(b"PK not really")
    with pytest.raises(DatasetError, match="not a readable npz"):
        parse_dataset_spec(f"medmnist:{tmp_path / 'corrupt.npz'}")
    with pytest.raises(DatasetError, match="needs an argument"):
        parse_dataset_spec("medmnist")


def test_known_flag_names_classes_and_bounds_labels(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "breastmnist.npz")
    assert parse_dataset_spec(f"medmnist:{path}").class_names == ["malignant", "normal, benign"]
    (tmp_path / "three").mkdir()
    three = write_npz(tmp_path / "three" / "breastmnist.npz", train_labels=np.array([0, 1, 2, 0, 1, 2]))
    with pytest.raises(DatasetError, match="label 2 out of range for breastmnist; expected 0..1"):
        parse_dataset_spec(f"medmnist:{three}")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(DatasetError, match="unknown MedMNIST dataset 'fakemnist'.*breastmnist"):
        parse_dataset_spec("medmnist:fakemnist")


def test_named_dataset_downloads_once_with_md5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "server").mkdir()
    published = write_npz(tmp_path / "server" / "breastmnist.npz")
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setattr(medmnist, "_ZENODO", (tmp_path / "server").as_uri() + "/{name}.npz")
    monkeypatch.setitem(
        medmnist.MEDMNIST_INFO, "breastmnist", {**medmnist.MEDMNIST_INFO["breastmnist"], "md5": file_md5(published)}
    )
    source = parse_dataset_spec("medmnist:breastmnist")
    assert source.path == tmp_path / "tlcache" / "downloads" / "medmnist" / "breastmnist.npz"
    assert source.path.read_bytes() == published.read_bytes()
    published.unlink()  # second use: no network needed
    assert parse_dataset_spec("medmnist:BreastMNIST").sizes == {"train": 6, "val": 2, "test": 4}


def test_named_dataset_md5_mismatch_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    published = write_npz(tmp_path / "published.npz")
    monkeypatch.setenv("TLBENCH_CACHE", str(tmp_path / "tlcache"))
    monkeypatch.setattr(medmnist.Path, "home", lambda: tmp_path / "home")
    monkeypatch.setattr(medmnist, "_ZENODO", published.as_uri())
    with pytest.raises(
        DatasetError, match="^download of .* has MD5 [0-9a-f]{32}, expected 750601b1f35ba3300ea97c75c52ff8f6; retry"
    ):
        parse_dataset_spec("medmnist:breastmnist")
    monkeypatch.setattr(medmnist, "_ZENODO", (tmp_path / "offline.npz").as_uri())
    with pytest.raises(
        DatasetError, match="cannot download .*offline\\? pass a local file instead: medmnist:/path/to/breastmnist.npz"
    ):
        parse_dataset_spec("medmnist:breastmnist")
    assert not list((tmp_path / "tlcache" / "downloads" / "medmnist").iterdir())  # no partial file left


@pytest.mark.parametrize(
    ("name", "sizes", "class_names"),
    [
        ("breastmnist", {"train": 546, "val": 78, "test": 156}, ["malignant", "normal, benign"]),
        ("pneumoniamnist", {"train": 3882, "val": 524, "test": 624}, ["normal", "pneumonia"]),
    ],
)
def test_real_files_have_their_official_split_sizes(
    shared_data: Path, name: str, sizes: dict, class_names: list
) -> None:
    source = parse_dataset_spec(f"medmnist:{shared_data / (name + '.npz')}")
    assert source.sizes == sizes and source.class_names == class_names and source.side_px == 28


def test_split_sizes_differing_from_the_official_ones_are_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_npz(tmp_path / "pneumoniamnist.npz")
    dataset = parse_dataset_spec(f"medmnist:{path}").build(POLICY)
    assert dataset.meta["official_split_sizes"] == {"train": 4708, "val": 524, "test": 624}
    assert (
        "split sizes differ from the official pneumoniamnist (train 4708, val 524, test 624)" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("name", "labels", "message"),
    [
        # 2 classes in train; a 7 in test used to be reported as "class 2 appears in val/test but not in train"
        (
            "tiny.npz",
            {"test_labels": np.array([0, 1, 7, 1])},
            "tiny.npz: test_labels has label 7 out of range; expected 0..1 (the classes of train_labels)",
        ),
        (
            "pneumoniamnist.npz",
            {"val_labels": np.array([7, 1])},
            "pneumoniamnist.npz: val_labels has label 7 out of range for pneumoniamnist; expected 0..1",
        ),
        (
            "breastmnist.npz",
            {"test_labels": np.array([0, 5, 0, 1])},
            "breastmnist.npz: test_labels has label 5 out of range for breastmnist; expected 0..1",
        ),
        (
            "breastmnist.npz",
            {"train_labels": np.array([0, 1, 0, 1, 5, 1]), "test_labels": np.array([0, 5, 0, 1])},
            "breastmnist.npz: train_labels has label 5 out of range for breastmnist; expected 0..1",
        ),
        (
            "tiny.npz",
            {"val_labels": np.array([0, -3])},
            "tiny.npz: val_labels has label -3 out of range; expected 0..1 (the classes of train_labels)",
        ),
    ],
)
def test_labels_out_of_range_name_the_split_value_and_range(
    tmp_path: Path, name: str, labels: dict, message: str
) -> None:
    path = write_npz(tmp_path / name, label_shape="n", **labels)
    with pytest.raises(DatasetError) as caught:
        parse_dataset_spec(f"medmnist:{path}")
    assert str(caught.value).endswith(message) and "\n" not in str(caught.value)
