"""make_digits_checkpoint: trains from scratch, keeps the best epoch, saves a loadable state dict + provenance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tlbench.backends.base import ModelSpec
from tlbench.backends.torchvision_backend import TorchvisionBackend
from tlbench.benchmarks.tools.make_digits_checkpoint import main, make_checkpoint


@pytest.mark.slow  # trains a real model
def test_checkpoint_is_saved_and_reloads_as_a_pretrained_source(tmp_path, cache_dir):
    out = tmp_path / "rn18_digits.pth"
    result = make_checkpoint(
        str(out),
        model="resnet18",
        epochs=2,
        image_size=32,
        batch_size=50,
        max_train_images=300,
        cache_dir=str(cache_dir),
    )
    assert out.is_file() and not (tmp_path / "rn18_digits.pth.tmp").exists()
    assert result.num_classes == 10 and result.best_epoch in (1, 2)
    assert result.test_accuracy > 0.2  # 2 epochs from scratch on 300 digits: well above chance (0.1)
    sidecar = json.loads((tmp_path / "rn18_digits.pth.json").read_text())
    assert (
        sidecar["model"] == "resnet18"
        and sidecar["dataset"] == "digits"
        and sidecar["val_accuracy"] == result.val_accuracy
    )
    state = torch.load(out, weights_only=True)
    assert state["fc.weight"].shape == (10, 512)
    backend = TorchvisionBackend("cpu")
    info = backend.build(ModelSpec("resnet18", num_classes=2, image_size=32, weights=str(out)))
    assert info.pretrained == f"file:{out}"
    assert torch.equal(backend.model.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])
    assert backend.model.fc.out_features == 2
    assert np.isfinite(backend.predict_proba(np.zeros((2, 32, 32, 3), np.uint8))).all()


def run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own checks (choices) exit from inside parse_args
        return int(exc.code)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--out", "/no/such/dir/w.pth"], "output directory '/no/such/dir' does not exist"),
        (["--model", "nope"], "unknown torchvision model 'nope'"),
        (["--dataset", "nodata"], "unknown dataset 'nodata'"),
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--in-chans", "2"], "argument --in-chans: invalid choice: 2"),
    ],
)
def test_bad_values_exit_2_with_one_line(capsys, tmp_path, argv, message):
    code = run_main(["--out", str(tmp_path / "w.pth"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and err.startswith("make_digits_checkpoint: error: ")
    assert not (tmp_path / "w.pth").exists()
