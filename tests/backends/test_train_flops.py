"""Training FLOPs follow the phase a torch backend is in: a frozen stage computes no weight gradient."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tlbench.backends.base import ModelSpec  # noqa: E402
from tlbench.core.plan import make_plan  # noqa: E402
from tlbench.core.strategies import get_strategy  # noqa: E402


def _train_flops(strategy: str) -> tuple[int, int]:
    from tlbench.backends.torchvision_backend import TorchvisionBackend

    backend = TorchvisionBackend("cpu")
    backend.build(ModelSpec("resnet18", num_classes=3, image_size=32, weights="none", pretrained=False))
    phase = make_plan(get_strategy(strategy), backend.stages(), epochs=2).phases[-1]
    backend.apply_phase(phase)
    return backend.flops_per_image(), backend.train_flops_per_image()


def test_partial_finetuning_costs_less_than_full_and_more_than_one_forward() -> None:
    forward, full = _train_flops("full_finetune")
    _, partial = _train_flops("partial_finetune")
    _, last_stage = _train_flops("partial_finetune@1")
    assert 2.5 * forward < full <= 3 * forward  # everything trains; the stem's input needs no gradient
    assert forward < last_stage < partial < full  # more trainable stages, more gradients
