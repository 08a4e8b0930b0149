"""keras through the ``tlbench`` command line: bad values exit 2 in one line; a keras suite runs end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlbench.benchmarks.cli import build_parser, main, suite_from_args
from tlbench.benchmarks.running.backend_options import backend_options

pytestmark = pytest.mark.slow  # TensorFlow: imported, built and trained


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--backends", "keras", "--models", "nope"],
            "unknown keras model 'nope'; expected one of: vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121",
        ),
        (
            ["--backends", "timm,keras", "--models", "tf_efficientnet_lite0"],
            "unknown keras model 'tf_efficientnet_lite0'",
        ),
        (
            ["--backends", "keras", "--models", "vgg16", "--weights", "IMAGENET1K_V1"],
            "backend 'keras' takes only default, none or a file",
        ),
    ],
)
def test_bad_values_exit_2_with_one_line(capsys, tmp_path, argv, message):
    out = tmp_path / "suite"
    code, stdout, stderr = run_cli(capsys, "run", "--out", str(out), *argv)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("tlbench: error: ") and message in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()


def test_vgg16_is_one_name_for_keras_and_timm(capsys):
    args = build_parser().parse_args(
        ["run", "--backends", "keras,timm", "--models", "vgg16", "--image-size", "32", "--amp", "bf16"]
    )
    suite = suite_from_args(args)
    assert [(c.backend, c.model) for c in suite.cells()[:5:4]] == [("keras", "vgg16"), ("timm", "vgg16")]
    assert backend_options(suite.options, "keras").amp == backend_options(suite.options, "timm").amp == "bf16"
    keras_only = suite_from_args(
        build_parser().parse_args(
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "32", "--jit-compile"]
        )
    )
    assert backend_options(keras_only.options, "keras").jit_compile is True
    code, stdout, _ = run_cli(capsys, "list", "models", "--backend", "keras")
    assert code == 0 and stdout == "keras: vgg16, resnet50, mobilenet_v2, efficientnet_b0, densenet121\n"


def test_keras_suite_from_a_local_weights_file_runs_end_to_end(capsys, tmp_path, cache_dir):
    import keras

    keras.utils.set_random_seed(0)
    weights = tmp_path / "vgg16.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3)).save_weights(weights)
    out = tmp_path / "suite"
    code, stdout, stderr = run_cli(
        capsys,
        "run",
        "--out",
        str(out),
        "--backends",
        "keras",
        "--models",
        "vgg16",
        "--weights",
        str(weights),
        "--strategies",
        "linear_probe,partial_finetune",
        "--dataset",
        "digits",
        "--image-size",
        "32",
        "--epochs",
        "1",
        "--min-time",
        "0",
        "--max-train-images",
        "200",
        "--batch-size",
        "50",
        "--cache-dir",
        str(cache_dir),
        "--device",
        "cpu",
        "--no-probe",
    )
    assert code == 0, stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    # each cell's record, then the inference pass's: both Keras models reloaded from their saved weights.h5 and
    # timed interleaved in one fresh process
    assert [r["strategy"] for r in lines] == ["linear_probe", "partial_finetune"] * 2
    records, passed = lines[:2], lines[2:]
    for own, new in zip(records, passed, strict=True):
        assert (
            new["infer_pass"]["models"] == 2
            and new["infer_pass"]["in_cell"]["infer_images_per_s"] == own["infer_images_per_s"]
        )
        assert new["infer_images_per_s"] > 0 and new["accuracy"] == own["accuracy"]
    assert not list(out.glob("cells/*/weights*"))
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["backend"] == "keras" and record["pretrained"] == f"file:{weights}"
        assert record["split_sizes"]["train"] == 200 and record["num_classes"] == 10
        assert set(record["framework_versions"]) == {"tensorflow", "keras"}
        assert (
            record["dtype"] == "float32"
            and record["device"] == "/CPU:0"
            and record["backend_facts"]["jit_compile"] is False
        )
        assert (
            (record["train_images_per_s"] or record["feature_extract_images_per_s"]) > 0
            and record["infer_images_per_s"] > 0
            and record["peak_device_mb"] is None
        )
    probe, partial = records
    head = 512 * 256 + 256 + 256 * 10 + 10  # the FCN head's two 1x1 convolutions
    assert probe["trainable_params"] == head and probe["feature_dim"] == 512  # 1x1x512 VGG16 map at 32 px
    blocks45 = 6 * (3 * 3 * 512 * 512 + 512)  # block4_conv2..block5_conv3 are 512->512, block4_conv1 is 256->512
    blocks45 += (3 * 3 * 256 * 512 + 512) - (3 * 3 * 512 * 512 + 512)
    assert partial["trainable_params"] == blocks45 + head < partial["total_params"] == 14_714_688 + head
    assert probe["accuracy"] > 0.3 and probe["epochs"] == 30  # random-conv VGG16 features of digits beat chance (0.1)
    assert np.isfinite(partial["val_accuracy"])
    assert "THE ANSWER" in stdout and "partial_finetune" in stdout  # the console's answer and its table
    assert "keras" in (out / "summary.md").read_text() and "vgg16" in (out / "summary.md").read_text()
