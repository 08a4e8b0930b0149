"""``tlbench run --deploy``: checked at the edge, one line and exit 2 for every mistake, recorded in the options."""

from __future__ import annotations

import pytest

from tlbench.backends.inference import DEPLOY_ENGINES, DeployEngineEntry
from tlbench.benchmarks.cli import build_parser, main, suite_from_args


def test_deploy_engines_reach_the_options():
    args = build_parser().parse_args(["run", "--deploy", "onnxruntime,onnxruntime-int8", "--models", "resnet18"])
    assert suite_from_args(args).options.deploy == ("onnxruntime", "onnxruntime-int8")
    assert suite_from_args(build_parser().parse_args(["run"])).options.deploy == ()  # off by default


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--deploy", "tensorrt"], "unknown --deploy engine 'tensorrt'; expected some of: onnxruntime, "),
        (["--deploy", "openvino,openvino"], "--deploy names 'openvino' twice"),
        (["--deploy", " , "], "--deploy needs at least one engine name"),
        (
            ["--deploy", "onnxruntime", "--no-infer-pass"],
            "--deploy is measured by the inference pass; drop --no-infer-pass (and --executor ray)",
        ),
        (
            ["--deploy", "onnxruntime", "--backends", "fake", "--models", "softmax"],
            "--deploy cannot export backend 'fake' to ONNX; expected some of: timm, torchvision, keras, keras-torch",
        ),
        (
            ["--deploy", "openvino", "--backends", "keras-jax", "--models", "vgg16"],
            "--deploy cannot export backend 'keras-jax' to ONNX (Keras 3 exports JAX models only through jax2onnx, "
            "whose VGG16 graph ONNX Runtime rejects",
        ),
    ],
)
def test_deploy_mistakes_are_one_line_exit_2(fake_backend, argv, message, capsys):
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tlbench: error: ") and message in err[0]


def test_a_missing_runtime_or_exporter_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(DEPLOY_ENGINES, "openvino", DeployEngineEntry("openvino", "x:Y", "deploy", ("no_ov_xyz",)))
    assert main(["run", "--deploy", "openvino"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tlbench: error: --deploy inference engine 'openvino' needs the package 'no_ov_xyz'; install it with: "
        "pip install 'tlbench[deploy]'"
    )
    from tlbench.backends import onnx_export

    monkeypatch.setitem(onnx_export.EXPORTER_MODULES, "tensorflow", ("onnx", "no_tf2onnx_xyz"))
    assert main(["run", "--deploy", "onnxruntime", "--backends", "keras", "--models", "vgg16"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tlbench: error: --deploy needs the package 'no_tf2onnx_xyz' to export backend 'keras'; install it with: "
        "pip install 'tlbench[deploy]'"
    )
