"""bench_torchvision_options: variants parsed to run options, recorded as built, medians and ratios to the first."""

from __future__ import annotations

import json

import pytest

from tlbench.benchmarks.tools.bench_torchvision_options import bench, main, parse_variant


def test_parse_variant():
    assert parse_variant("fp32") == {"channels_last": False, "amp": "", "compile": False}
    assert parse_variant("channels_last+bf16") == {"channels_last": True, "amp": "bf16", "compile": False}
    with pytest.raises(ValueError, match=r"unknown variant token 'fp8' in 'bf16\+fp8'"):
        parse_variant("bf16+fp8")


@pytest.mark.slow  # trains real models
def test_variants_are_built_as_asked_and_ratios_are_to_the_first():
    results = bench(
        ["fp32", "channels_last+bf16"],
        model="resnet18",
        image_size=32,
        batch_size=4,
        rounds=2,
        train_steps=1,
        infer_repeats=10,
        warmup_steps=1,
    )
    assert [r.variant for r in results] == ["fp32", "channels_last+bf16"]
    assert [(r.dtype, r.memory_format, r.compiled) for r in results] == [
        ("float32", "contiguous", False),
        ("bfloat16-autocast", "channels_last", False),
    ]
    assert results[0].train_ratio == 1.0 and results[0].infer_ratio == 1.0
    for r in results:
        assert r.train_images_per_s > 0 and r.infer_images_per_s > 0 and r.rounds == 2
        assert r.train_ratio == pytest.approx(r.train_images_per_s / results[0].train_images_per_s)
        assert r.infer_ratio == pytest.approx(r.infer_images_per_s / results[0].infer_images_per_s)
        # one batch of 4 per timed call: throughput and median latency describe the same calls
        assert r.infer_latency_ms_p50 > 0


@pytest.mark.slow  # trains real models
def test_cli_writes_json_and_rejects_bad_values(capsys, tmp_path):
    out = tmp_path / "bench.json"
    code = main(
        [
            "--model",
            "mobilenet_v3_small",
            "--image-size",
            "32",
            "--batch-size",
            "4",
            "--rounds",
            "1",
            "--train-steps",
            "1",
            "--variants",
            "fp32,channels_last",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "| channels_last" in printed and "train ratio" in printed
    assert [row["variant"] for row in json.loads(out.read_text())] == ["fp32", "channels_last"]
    for argv, message in [
        (["--variants", "fp32,bogus"], "unknown variant token 'bogus'"),
        (["--variants", "fp16"], "--amp fp16 needs a CUDA device"),
        (["--model", "nope"], "unknown torchvision model 'nope'"),
        (["--batch-size", "1"], "--batch-size must be >= 2"),
        (["--out", str(tmp_path / "no" / "x.json")], "output directory"),
    ]:
        assert main(["--image-size", "32", "--rounds", "1", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_infer_compile_variant_is_inference_only_and_never_the_reference():
    from tlbench.benchmarks.tools.bench_torchvision_options import VariantResult, format_table

    assert parse_variant("channels_last+infer_compile") == {
        "channels_last": True,
        "amp": "",
        "compile": False,
        "infer_compile": True,
    }
    with pytest.raises(
        ValueError, match="the first variant is the reference and must train; got inference-only 'infer_compile'"
    ):
        bench(["infer_compile", "fp32"], model="resnet18", image_size=32, batch_size=4, rounds=1)
    rows = [
        VariantResult(
            "fp32",
            "float32",
            "contiguous",
            False,
            10.0,
            1.0,
            100.0,
            1.0,
            40.0,
            3,
            infer_gflop_per_s=77.0,
            infer_mfu=0.256,
        ),
        VariantResult(
            "infer_compile",
            "float32",
            "contiguous",
            False,
            None,
            None,
            150.0,
            1.5,
            26.7,
            3,
            infer_compiled=True,
            infer_prepare_s=28.4,
            infer_gflop_per_s=115.5,
            infer_mfu=0.384,
        ),
    ]
    table = format_table(rows)
    assert "| infer_compile" in table and "— (inference only)" in table and "1.50x" in table
    assert "infer MFU" in table and "38.4 %" in table and "25.6 %" in table
    assert "Compiled for inference before the timed rounds (not in any throughput): infer_compile 28.4 s" in table
