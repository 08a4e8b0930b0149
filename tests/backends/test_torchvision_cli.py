"""torchvision through the ``tlbench`` command line: bad values exit 2 in one line; a suite runs end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torchvision import models as tv_models

from tlbench.backends.torchvision_backend import LISTED_MODELS
from tlbench.benchmarks.cli import build_parser, main, suite_from_args


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "nope"], "unknown torchvision model 'nope'"),
        (
            ["--models", "resnet18", "--weights", "IMAGENET1K_V9"],
            "weights 'IMAGENET1K_V9' for torchvision model 'resnet18'",
        ),
        (["--models", "resnet18", "--weights", "no/such/file.pth"], "--weights 'no/such/file.pth' is not a file"),
    ],
)
def test_bad_values_exit_2_with_one_line(capsys, tmp_path, argv, message):
    out = tmp_path / "suite"
    code, stdout, stderr = run_cli(capsys, "run", "--backends", "torchvision", "--out", str(out), *argv)
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("tlbench: error: ") and message in stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()


def test_weights_names_reach_only_backends_that_take_them(capsys, tmp_path):
    code, _, stderr = run_cli(
        capsys,
        "run",
        "--backends",
        "timm,torchvision",
        "--models",
        "resnet18",
        "--weights",
        "IMAGENET1K_V1",
        "--out",
        str(tmp_path),
    )
    assert code == 2 and "backend 'timm' takes only default, none or a file" in stderr
    parse = build_parser().parse_args
    assert (
        suite_from_args(
            parse(["run", "--backends", "torchvision", "--models", "resnet50", "--weights", "IMAGENET1K_V1"])
        ).options.weights
        == "IMAGENET1K_V1"
    )
    assert (
        suite_from_args(
            parse(["run", "--backends", "torchvision", "--models", "resnet18", "--weights", "DEFAULT"])
        ).options.weights
        == "default"
    )


def test_list_models_shows_the_torchvision_models(capsys):
    code, stdout, _ = run_cli(capsys, "list", "models", "--backend", "torchvision")
    assert code == 0 and stdout.startswith("torchvision: ")
    assert set(stdout.split(": ", 1)[1].strip().split(", ")) == set(LISTED_MODELS)


@pytest.mark.slow  # a real suite end to end
def test_suite_from_a_local_checkpoint_runs_end_to_end(capsys, tmp_path, cache_dir):
    torch.manual_seed(0)
    checkpoint = tmp_path / "rn18.pth"
    torch.save(tv_models.resnet18(num_classes=7).state_dict(), checkpoint)
    out = tmp_path / "suite"
    code, stdout, stderr = run_cli(
        capsys,
        "run",
        "--out",
        str(out),
        "--backends",
        "torchvision",
        "--models",
        "resnet18",
        "--weights",
        str(checkpoint),
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
    # each cell's record, then the inference pass's (both resnet18s reloaded from their weights, timed interleaved)
    assert [r["strategy"] for r in lines] == ["linear_probe", "partial_finetune"] * 2
    records = lines[:2]
    for own, new in zip(records, lines[2:], strict=True):
        assert (
            new["infer_pass"]["models"] == 2
            and new["infer_pass"]["in_cell"]["infer_images_per_s"] == own["infer_images_per_s"]
        )
        assert new["infer_images_per_s"] > 0 and new["backend_facts"] == own["backend_facts"]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["backend"] == "torchvision" and record["pretrained"] == f"file:{checkpoint}"
        assert record["split_sizes"]["train"] == 200 and record["num_classes"] == 10
        assert record["framework_versions"]["torchvision"]
        facts = record["backend_facts"]
        assert facts["memory_format"] == "contiguous" and facts["compiled"] is False and record["dtype"] == "float32"
        assert (record["train_images_per_s"] or record["feature_extract_images_per_s"]) > 0 and record[
            "infer_images_per_s"
        ] > 0
    probe, partial = records
    assert probe["trainable_params"] == 512 * 10 + 10  # the new fc alone
    # partial: fc + layer3 + layer4 of resnet18, counted from the model itself
    model = tv_models.resnet18(num_classes=10)
    expected = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("fc.", "layer3.", "layer4.")))
    assert partial["trainable_params"] == expected < partial["total_params"]
    assert probe["accuracy"] > 0.3  # random-conv features of digits: far above chance (0.1)
    assert "THE ANSWER" in stdout  # the console's answer and its table; the full tables in the files
    assert "torchvision" in (out / "summary.md").read_text() and "resnet18" in (out / "summary.md").read_text()
