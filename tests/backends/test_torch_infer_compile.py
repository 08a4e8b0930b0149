"""``--infer-compile``: the trained torch model compiled with inductor freezing predicts what eager predicts, and each
model keeps a compiled graph of its own (compiling another one in the process neither recompiles nor discards it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plans import phase

from tlbench.backends import ModelSpec, get_backend_class
from tlbench.backends.options import TorchOptions, options_from_flags
from tlbench.core.strategies import STRATEGIES


@pytest.mark.slow  # torch.compile of a real model
def test_frozen_compiled_model_matches_eager_for_every_batch_size(tmp_path):
    b = get_backend_class("timm")("cpu")
    options = TorchOptions(infer_compile=True)
    info = b.build(ModelSpec("resnet18", 3, 32, weights="none", pretrained=False, seed=0, options=options))
    assert info.facts["infer_compiled"] is True
    b.apply_phase(phase(b, STRATEGIES["full_finetune"]))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (11, 32, 32, 3), dtype=np.uint8)
    b.train_step(x[:8], np.arange(8) % 3)
    eager = b.predict_proba(x)
    seconds = b.prepare_inference(4)
    assert seconds is not None and seconds > 0  # the compile happened here, outside any timed loop
    assert b._infer_forward is not None
    # 11 images = two full batches of 4 + one padded batch of 3; 2 images = one padded batch; all match eager
    np.testing.assert_allclose(b.predict_proba(x), eager, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.predict_proba(x[:2]), eager[:2], rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="training is over"):
        b.train_step(x[:4], np.arange(4) % 3)
    # new weights: the frozen graph holds the old ones as constants, so it is dropped (eager takes over)
    path = tmp_path / "w.pth"
    b.save_weights(str(path))
    b.load_weights(str(path))
    assert b._infer_forward is None
    np.testing.assert_allclose(b.predict_proba(x), eager, rtol=1e-5, atol=1e-6)


def test_infer_compile_is_a_torch_flag_only():
    from tlbench.backends import backend_entry
    from tlbench.backends.options import OptionsError

    assert options_from_flags("timm", backend_entry("timm").options, {"infer_compile": True}).infer_compile is True
    with pytest.raises(OptionsError, match=r"--infer-compile is not an option of backend 'keras'"):
        options_from_flags("keras", backend_entry("keras").options, {"infer_compile": True})
    # the default is left out of the recorded options, so cells finished before the flag existed keep their hash
    assert (
        "infer_compile" not in TorchOptions().to_dict()
        and TorchOptions(infer_compile=True).to_dict()["infer_compile"] is True
    )


class _Tiny(torch.nn.Module):
    """Two instances share ``forward``'s code object, the key dynamo keeps compiled graphs under."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def _counting_backend(compiled: list):
    def backend(graph_module, example_inputs):
        compiled.append(graph_module)
        return graph_module.forward

    return backend


@pytest.mark.slow  # the first compile of a process imports dynamo (~6 s); the check itself takes 0.3 s
def test_compiling_model_b_neither_recompiles_nor_discards_model_a():
    from tlbench.backends.torch_common import compile_own_graph

    compiled: list = []
    backend = _counting_backend(compiled)
    torch.manual_seed(0)
    a, b = _Tiny().eval(), _Tiny().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        trained = torch.compile(a, backend=backend)  # a training-time --compile of the same module
        trained(x)
        assert len(compiled) == 1
        frozen_a = compile_own_graph(a, backend=backend)
        out_a = frozen_a(x)
        assert len(compiled) == 2  # its own graph: the training-time one is not reused
        frozen_b = compile_own_graph(b, backend=backend)
        out_b = frozen_b(x)
        assert len(compiled) == 3
        for _ in range(3):  # interleaved as in the inference pass: no recompile, no graph lost
            torch.testing.assert_close(frozen_a(x), out_a)
            torch.testing.assert_close(frozen_b(x), out_b)
        assert len(compiled) == 3
        # each graph holds its own model: A's figures are A's, B's are B's
        torch.testing.assert_close(out_a, a(x))
        torch.testing.assert_close(out_b, b(x))
        assert not torch.allclose(out_a, out_b)


@pytest.mark.slow  # dynamo traces two real networks
def test_prepare_inference_compiles_each_backend_without_resetting_the_others(monkeypatch):
    import torch._dynamo

    from tlbench.backends import torch_common

    compiled: list = []
    monkeypatch.setattr(torch_common, "INFER_COMPILE_BACKEND", _counting_backend(compiled))
    monkeypatch.setattr(torch._dynamo, "reset", lambda: pytest.fail("prepare_inference reset dynamo"))
    x = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    models, eager = [], []
    for seed in (0, 1):  # one model class, two cells, as in one pass process
        b = get_backend_class("timm")("cpu")
        options = TorchOptions(infer_compile=True)
        b.build(ModelSpec("resnet18", 2, 16, weights="none", pretrained=False, seed=seed, options=options))
        eager.append(b.predict_proba(x))
        assert b.prepare_inference(4) is not None
        models.append(b)
    assert len(compiled) == 2  # one warm-up compile each, at prepare time
    for b, expected in zip(models, eager, strict=True):
        np.testing.assert_allclose(b.predict_proba(x), expected, rtol=1e-5, atol=1e-6)
    assert len(compiled) == 2  # timing A after B was compiled does not recompile A
