"""CLI: every user mistake is one line naming the bad value and the choices, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tlbench.benchmarks.cli import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["run", "--backends", "tensorflow"],
            "unknown backend 'tensorflow'; expected one of: timm, torchvision, keras",
        ),
        (
            ["run", "--strategies", "linear_probe,finetune"],
            "unknown strategy 'finetune'; expected one of: scratch, linear_probe, partial_finetune, full_finetune",
        ),
        (["run", "--dataset", "imagenet"], "unknown dataset 'imagenet'; expected one of: digits"),
        (["run", "--models", "resnet_9000"], "unknown timm model 'resnet_9000'"),
        (["run", "--seeds", "0,one"], "--seeds expects comma-separated integers, got '0,one'"),
        (["run", "--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["run", "--image-size", "8"], "--image-size must be >= 16, got 8"),
        (["run", "--batch-size", "-4"], "--batch-size must be >= 1, got -4"),
        (["run", "--device", "tpu"], "unknown device 'tpu'; expected one of: auto, cpu, cuda, gpu, cuda:N"),
        (["run", "--augment", "mixup"], "unknown --augment 'mixup'; expected one of: none, flip, crop-flip"),
        (["run", "--amp", "int8"], "unknown --amp 'int8'; expected one of: bf16, fp16 (or leave it out for float32)"),
        (
            ["run", "--weights", "/nonexistent/w.pth"],
            "--weights '/nonexistent/w.pth' is not a file; "
            "expected default, none, a local weights file or a weights name",
        ),
        (
            ["run", "--weights", "IMAGENET1K_V1"],
            "--weights 'IMAGENET1K_V1' is a weights name, but backend 'timm' takes only default, none or a file",
        ),
        (
            ["run", "--weights", "keras=/tmp/w.h5"],
            "--weights names backend 'keras', which is not in --backends; expected some of: timm",
        ),
        (
            ["run", "--weights", "timm=/nonexistent/w.pth"],
            "--weights timm='/nonexistent/w.pth' is not a file; "
            "expected default, none, a local weights file or a weights name",
        ),
        (
            ["run", "--weights", "timm=none,/tmp/w.pth"],
            "--weights entry '/tmp/w.pth' is malformed; expected backend=VALUE",
        ),
        (["run", "--weights", "timm=none,timm=default"], "--weights names backend 'timm' twice"),
        (
            ["run", "--backends", "timm,torchvision", "--models", "resnet18", "--weights", "timm=IMAGENET1K_V1"],
            "--weights 'IMAGENET1K_V1' is a weights name, but backend 'timm' takes only default, none or a file",
        ),
        (["run", "--lr", "-1"], "--lr must be a positive number, got -1.0"),
        # impossible combinations exit 2 before any cell runs (typed backend options, validated once)
        (
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "16"],
            "backend 'keras' needs --image-size >= 32 (five stride-2 stages), got 16",
        ),
        (
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "32", "--in-chans", "1"],
            "backend 'keras' takes --in-chans 3 (gray replicated to RGB), got 1",
        ),
        (
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "32", "--amp", "fp16"],
            "backend 'keras' takes --amp bf16 only (mixed_bfloat16), got --amp fp16",
        ),
        (
            ["run", "--amp", "fp16", "--device", "cpu"],
            "--amp fp16 needs a CUDA device but backend 'timm' would run on the CPU (--device cpu); "
            "use --amp bf16 on CPU",
        ),
        (
            ["run", "--amp", "fp16"],
            "--amp fp16 needs a CUDA device but backend 'timm' would run on the CPU (--device auto)",
        ),
        # a flag a backend would ignore is refused instead of silently changing nothing
        (
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "32", "--channels-last"],
            "--channels-last is not an option of backend 'keras' (it takes: --amp,",
        ),
        (
            ["run", "--backends", "timm,keras", "--models", "vgg16", "--image-size", "32", "--compile"],
            "--compile is not an option of backend 'keras'",
        ),
        (
            ["run", "--jit-compile"],
            "--jit-compile is not an option of backend 'timm' "
            "(it takes: --amp, --channels-last, --compile, --head, --infer-compile",
        ),
        (
            ["run", "--backends", "keras", "--models", "vgg16", "--image-size", "32", "--infer-compile"],
            "--infer-compile is not an option of backend 'keras'",
        ),
        (["run", "--wait-quiet", "-1"], "--wait-quiet must be a number of seconds >= 0, got -1.0"),
        (["run", "--cell-timeout", "0"], "--cell-timeout must be a positive number of seconds, got 0.0"),
        (["run", "--cell-timeout", "-5"], "--cell-timeout must be a positive number of seconds, got -5.0"),
        (["run", "--cell-timeout", "nan"], "--cell-timeout must be a positive number of seconds, got nan"),
        (["run", "--dedup", "maybe"], "unknown --dedup 'maybe'; expected one of: drop, keep, error"),
        (["run", "--threads", "0"], "invalid threads 0: expected a positive integer"),
        (["run", "--allocator", "hoard"], "invalid allocator 'hoard': choose from"),
        (["run", "--epochs", "three"], "argument --epochs: invalid int value: 'three'"),
        (["report", "/nonexistent/suite"], "suite directory '/nonexistent/suite' does not exist"),
        (["list", "everything"], "argument what: invalid choice: 'everything'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("tlbench: error: ")
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_report_on_directory_without_results(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no results.jsonl records" in capsys.readouterr().err


def test_list_subcommands(capsys):
    assert main(["list", "strategies"]) == 0
    out = capsys.readouterr().out
    from tlbench.core.strategies import STRATEGIES

    assert [line.split()[0] for line in out.splitlines()] == [*STRATEGIES, "partial_finetune@K"]
    assert main(["list", "backends"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()][:3] == ["timm", "torchvision", "keras"]
    assert main(["list", "datasets"]) == 0
    assert "digits" in capsys.readouterr().out
    assert main(["list", "models", "--backend", "timm"]) == 0
    assert capsys.readouterr().out.startswith("timm: tf_efficientnet_lite0")


@pytest.mark.slow  # a fresh interpreter imports the package
def test_console_script_usage_error_has_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "tlbench", "run", "--backends", "nope"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "tlbench: error: unknown backend 'nope'; expected one of: timm, torchvision, keras, keras-jax, keras-torch"
    )


def test_image_size_defaults_to_the_models_native_size_except_for_the_default_suite():
    from tlbench.backends import get_backend_class
    from tlbench.benchmarks.cli import build_parser, suite_from_args

    assert suite_from_args(build_parser().parse_args(["run"])).options.image_size == 64  # the default suite keeps 64 px
    assert (
        suite_from_args(
            build_parser().parse_args(["run", "--strategies", "scratch", "--seeds", "0,1"])
        ).options.image_size
        == 64
    )
    options = suite_from_args(build_parser().parse_args(["run", "--dataset", "digits", "--models", "resnet18"])).options
    assert options.image_size is None  # native, per model
    timm = get_backend_class("timm")
    assert [timm.native_image_size(f"tf_efficientnet_lite{i}") for i in range(3)] == [224, 240, 260]
    assert options.image_size_for(timm, "tf_efficientnet_lite2", "default") == 260
    torchvision = get_backend_class("torchvision")
    assert torchvision.native_image_size("resnet50") == 224 and torchvision.native_image_size("inception_v3") == 299
    assert get_backend_class("keras").native_image_size("vgg16") == 224
    assert (
        suite_from_args(
            build_parser().parse_args(["run", "--dataset", "digits", "--models", "resnet18", "--image-size", "96"])
        ).options.image_size
        == 96
    )


def test_the_inference_pass_is_on_by_default_off_on_request_and_under_ray():
    from tlbench.benchmarks.cli import build_parser, suite_from_args

    def options(*argv):
        return suite_from_args(build_parser().parse_args(["run", *argv])).options

    assert options().infer_pass is True
    assert options("--no-infer-pass").infer_pass is False
    # cells measured on Ray nodes are not timed again by the driver (another machine): no weights to save for it
    assert options("--executor", "ray").infer_pass is False


def test_the_console_line_of_a_tuning_trial_gives_its_val_score_not_test_nor_inference():
    from tlbench.benchmarks.cli import cell_summary

    trial = {
        "backend": "timm",
        "model": "m",
        "strategy": "full_finetune~head_lr=0.001,weight_decay=0.0001",
        "dataset": "d",
        "seed": 0,
        "status": "ok",
        "train_images_per_s": 12.34,
        "accuracy": None,
        "infer_images_per_s": None,
        "wall_s": 40.0,
        "tuning": {"trial": {"head_lr": 0.001}, "by": "roc_auc", "val_score": 0.91234},
    }
    assert cell_summary(trial) == (
        "timm/m/full_finetune~head_lr=0.001,weight_decay=0.0001/d/s0: trial val roc_auc=0.912 train=12.3 img/s "
        "wall=40.0 s"
    )
