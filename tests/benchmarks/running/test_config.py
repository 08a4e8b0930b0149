"""Run options: per-backend weights maps, option fingerprints."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tlbench.benchmarks.cli import build_parser, suite_from_args
from tlbench.benchmarks.running.backend_options import backend_options
from tlbench.benchmarks.running.config import RunOptions, SuiteConfig, format_weights_map, parse_weights_map
from tlbench.benchmarks.running.results import load_results
from tlbench.benchmarks.running.runner import run_cell_inprocess, run_suite

#: in-process cells here are not watched (a process per timed part): what is tested is the suite, not the watch
pytestmark = pytest.mark.usefixtures("quick_watch")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default", None),
        ("none", None),
        ("/data/w.pth", None),
        ("IMAGENET1K_V1", None),
        ("keras=/w/vgg16.weights.h5", {"keras": "/w/vgg16.weights.h5"}),
        ("keras=a.weights.h5, torchvision=b.pth", {"keras": "a.weights.h5", "torchvision": "b.pth"}),
        ("torchvision=IMAGENET1K_V1,timm=none", {"torchvision": "IMAGENET1K_V1", "timm": "none"}),
    ],
)
def test_parse_weights_map(text, expected):
    assert parse_weights_map(text) == expected
    if expected is not None:
        assert parse_weights_map(format_weights_map(expected)) == expected


def test_an_existing_file_with_equals_in_its_name_is_one_value(tmp_path):
    path = tmp_path / "lr=0.1.pth"
    path.write_bytes(b"x")
    assert parse_weights_map(str(path)) is None
    assert RunOptions(weights=str(path)).weights_for("keras") == str(path)


def test_weights_for_each_backend():
    options = RunOptions(weights="keras=/w/a.weights.h5,torchvision=none")
    assert options.weights_for("keras") == "/w/a.weights.h5"
    assert options.weights_for("torchvision") == "none"
    assert options.weights_for("timm") == "default"  # not named: the backend's own default
    assert RunOptions(weights="/w/b.pth").weights_for("timm") == "/w/b.pth"
    assert RunOptions().fingerprint() != options.fingerprint()
    # a backend's fingerprint covers only its own weights and options
    assert options.fingerprint("timm") == RunOptions().fingerprint("timm")
    assert options.fingerprint("keras") != RunOptions().fingerprint("keras")


def test_backend_options_are_typed_and_fingerprinted_per_backend():
    from tlbench.backends import KerasOptions, TorchOptions

    options = RunOptions(backend_options={"timm": {"channels_last": True}, "keras": {"jit_compile": True}})
    assert backend_options(options, "timm") == TorchOptions(channels_last=True)
    assert backend_options(options, "keras") == KerasOptions(jit_compile=True)
    assert backend_options(options, "torchvision") == TorchOptions()
    # adding a Keras option never invalidates finished torch cells (and vice versa)
    keras_only = RunOptions(backend_options={"keras": {"jit_compile": True}})
    assert keras_only.fingerprint("timm") == RunOptions().fingerprint("timm")
    assert keras_only.fingerprint("keras") != RunOptions().fingerprint("keras")


RESULTS = Path(__file__).resolve().parents[3] / "results"


def test_committed_suites_keep_their_fingerprints():
    """Options added later (patient grouping, schedules, early stopping, selection, tuning...) leave the fingerprint of
    a suite that does not use them unchanged: committed cells keep their meaning and resume still counts them."""
    suites = sorted(RESULTS.glob("*/suite.json"))
    assert suites, "no committed suite to check"
    for path in suites:
        suite = json.loads(path.read_text())
        options = RunOptions.from_dict(suite["options"])
        recorded = {r["options_hash"] for r in load_results(path.parent / "results.jsonl")}
        assert recorded <= {options.fingerprint(b) for b in suite["backends"]}, path.parent.name


@pytest.mark.parametrize("change", [{"group_by": "person(\\d+)_"}, {"group_leakage": "keep"}])
def test_new_options_change_the_fingerprint_only_when_used(change):
    assert RunOptions(**change).fingerprint("timm") != RunOptions().fingerprint("timm")
    assert RunOptions.from_dict({**RunOptions().__dict__, **change}) == RunOptions(**change)


@pytest.mark.slow  # builds real models
def test_cli_keeps_paths_inside_the_working_directory_relative_and_others_absolute(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "ckpt").mkdir(parents=True)
    (work / "ckpt" / "vgg.pth").write_bytes(b"x")
    (tmp_path / "outside.pth").write_bytes(b"x")
    monkeypatch.chdir(work)
    args = build_parser().parse_args(
        [
            "run",
            "--backends",
            "timm,torchvision",
            "--models",
            "resnet18",
            "--weights",
            f"torchvision={work / 'ckpt' / 'vgg.pth'},timm=../outside.pth",
        ]
    )
    options = suite_from_args(args).options
    assert options.weights == f"torchvision=ckpt/vgg.pth,timm={tmp_path / 'outside.pth'}"
    assert options.weights_for("torchvision") == "ckpt/vgg.pth"
    assert options.weights_for("timm") == str(tmp_path / "outside.pth")
    args = build_parser().parse_args(["run", "--weights", "./ckpt/vgg.pth"])
    assert suite_from_args(args).options.weights == "ckpt/vgg.pth"


@pytest.mark.slow  # builds real models
def test_each_cell_builds_with_its_backends_weights(fake_backend, cache_dir, tmp_path, monkeypatch):
    from tlbench import backends

    monkeypatch.setenv("TLBENCH_BACKENDS", "fake=fake_backend:FakeBackend,fake2=fake_backend:FakeBackend")
    monkeypatch.setitem(
        backends.REGISTRY, "fake2", backends.BackendEntry("fake2", "fake_backend:FakeBackend", "fake", ())
    )
    options = RunOptions(
        epochs=1,
        image_size=16,
        batch_size=64,
        device="cpu",
        infer_warmup=1,
        infer_min_time_s=0.0,
        cache_dir=str(cache_dir),
    )
    suite = SuiteConfig(
        name="w",
        backends=("fake", "fake2"),
        models=("softmax",),
        strategies=("scratch", "linear_probe"),
        datasets=("digits",),
        seeds=(0,),
        options=replace(options, weights="fake=/w/a.pth"),
    )
    out = tmp_path / "suite"
    run_suite(suite, out, cell_runner=run_cell_inprocess)
    pretrained = {(r["backend"], r["strategy"]): r["pretrained"] for r in load_results(out / "results.jsonl")}
    assert pretrained == {
        ("fake", "scratch"): "none",
        ("fake", "linear_probe"): "fake:/w/a.pth",
        ("fake2", "scratch"): "none",
        ("fake2", "linear_probe"): "fake:init",
    }
    assert json.loads((out / "suite.json").read_text())["options"]["weights"] == "fake=/w/a.pth"
