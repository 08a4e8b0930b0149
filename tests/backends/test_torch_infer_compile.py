"""``--infer-compile``: the trained torch model compiled with inductor freezing predicts what eager predicts."""

from __future__ import annotations

import numpy as np
import pytest
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
