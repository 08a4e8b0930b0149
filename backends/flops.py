"""FLOPs per image, counted the same way for torch and Keras models (the numerator of MFU and FLOP/s figures).

Convention (that of ``torch.utils.flop_counter.FlopCounterMode``): only matrix multiplications and
convolutions are counted, a multiply-add is **2 FLOPs**, and bias additions, normalization, activations,
pooling and element-wise ops count 0 (they are memory-bound and a small share of a CNN's work).

* Inference FLOPs: one forward pass of one image.
* Training FLOPs: forward + backward of one image as ``FlopCounterMode`` sees them: for every counted layer the
  gradient with respect to its input (when something before it needs one) and with respect to its weight (when
  the weight is trainable). For a fully trainable CNN that is close to 3x the forward; a frozen backbone makes
  it close to 1x (only the trainable head gets a backward), so the figure follows the strategy.
  One correction to torch's counter: it counts the weight gradient of a *grouped* convolution as if it were
  dense (``groups`` times too much: 960x for a 960-channel depthwise layer), so ``torch_flops_per_image``
  counts each gradient of a convolution as the forward's multiply-adds, which is exact for any grouping.

torch and TensorFlow are imported inside the functions only.
"""

from __future__ import annotations

import math
from typing import Any


def torch_flops_per_image(model: Any, image_size: int, in_chans: int = 3, training: bool = False) -> int:
    """FLOPs of one ``in_chans x image_size x image_size`` image through a ``torch.nn.Module``.

    Inference: a batch of 1, in eval mode, under ``torch.no_grad``. Training: a batch of 2 in train mode (a
    BatchNorm layer needs more than one value per channel), forward and ``torch.autograd.grad`` of the summed
    output with respect to the parameters that require grad, divided by 2. ``.grad`` fields, BatchNorm running
    statistics and the module's train/eval mode are left as they were.

    Args:
        model: the module (on any device; inputs follow its first parameter's device and dtype).
        image_size: square input side in pixels.
        in_chans: input channels.
        training: count forward + backward instead of forward only.

    Returns:
        FLOPs (2 per multiply-add) per image.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    was_training = model.training
    try:
        if not training:
            model.eval()
            x = torch.zeros(1, in_chans, image_size, image_size, device=device, dtype=dtype)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(x)
            return int(counter.get_total_flops())
        model.train()
        saved = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
        trainable = [p for p in model.parameters() if p.requires_grad]
        x = torch.zeros(2, in_chans, image_size, image_size, device=device, dtype=dtype)
        try:
            with FlopCounterMode(display=False, custom_mapping=_conv_backward_mapping()) as counter:
                out = _first_tensor(model(x))
                if trainable and out.requires_grad:
                    torch.autograd.grad(out.float().sum(), trainable, allow_unused=True)
        finally:
            with torch.no_grad():
                for name, buffer in model.named_buffers():
                    buffer.copy_(saved[name])
        return int(round(counter.get_total_flops() / 2))
    finally:
        model.train(was_training)


def conv_backward_flops(
    grad_out_shape: Any,
    x_shape: Any,
    w_shape: Any,
    _bias: Any,
    _stride: Any,
    _padding: Any,
    _dilation: Any,
    transposed: bool,
    _output_padding: Any,
    _groups: Any,
    output_mask: Any,
    out_shape: Any = None,
) -> int:
    """FLOPs of ``aten.convolution_backward``: the forward's multiply-adds once per gradient computed.

    Both the input gradient (a transposed convolution) and the weight gradient (a correlation of the input
    with the output gradient) take exactly as many multiply-adds as the forward convolution, whatever the
    grouping; ``output_mask`` says which of the two are computed.
    """
    from torch.utils.flop_counter import conv_flop_count

    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=bool(transposed))
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def _conv_backward_mapping() -> dict[Any, Any]:
    import torch

    return {torch.ops.aten.convolution_backward: conv_backward_flops}


def _first_tensor(out: Any) -> Any:
    """The first tensor of a model output (tensor, tuple/list, or dict)."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out


# ---- Keras ------------------------------------------------------------------------------------------


def _spatial_size(shape: tuple[int, ...], data_format: str) -> int:
    """Product of the spatial dimensions of a ``(batch, ..., channels)`` or ``(batch, channels, ...)`` shape."""
    dims = shape[1:-1] if data_format == "channels_last" else shape[2:]
    return math.prod(int(d) for d in dims)


def _einsum_flops(equation: str, kernel_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """2 x output elements x the product of the kernel dimensions summed over (absent from the output)."""
    lhs, out_spec = equation.replace(" ", "").split("->")
    kernel_spec = lhs.split(",")[1]
    contracted = [size for letter, size in zip(kernel_spec, kernel_shape, strict=True) if letter not in out_spec]
    return 2 * math.prod(int(d) for d in output_shape) * math.prod(int(d) for d in contracted)


def keras_layer_flops(layer: Any, input_shape: tuple[int, ...], output_shape: tuple[int, ...]) -> int:
    """FLOPs of one call of a Keras layer with concrete input/output shapes (0 for uncounted layer types).

    Counted: ``Conv1D/2D/3D`` (incl. grouped), ``DepthwiseConv1D/2D``, ``SeparableConv1D/2D``,
    ``Conv*DTranspose``, ``Dense`` (on any rank: every leading position is a matmul row), ``EinsumDense``.
    """
    from keras import layers

    name = type(layer).__name__
    batch = int(output_shape[0])
    data_format = getattr(layer, "data_format", "channels_last")
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        spatial = _spatial_size(output_shape, data_format)
        macs = math.prod(layer.depthwise_kernel.shape) + math.prod(layer.pointwise_kernel.shape)
        return 2 * batch * spatial * int(macs)
    if "Transpose" in name and hasattr(layer, "kernel"):
        # every input position scatters kernel x in x out MACs (as torch's counter counts transposed convs)
        return 2 * batch * _spatial_size(input_shape, data_format) * int(math.prod(layer.kernel.shape))
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        # kernel (k..., in, multiplier): each output element costs prod(k) MACs
        return 2 * batch * _spatial_size(output_shape, data_format) * int(math.prod(layer.kernel.shape))
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D)):
        # kernel (k..., in / groups, out): each output position costs prod(kernel) MACs over all output channels
        return 2 * batch * _spatial_size(output_shape, data_format) * int(math.prod(layer.kernel.shape))
    if isinstance(layer, layers.Dense):
        rows = math.prod(int(d) for d in input_shape[:-1])
        return 2 * rows * int(math.prod(layer.kernel.shape))
    if isinstance(layer, layers.EinsumDense):
        return _einsum_flops(layer.equation, tuple(layer.kernel.shape), output_shape)
    return 0


def _counted_types() -> tuple[type, ...]:
    from keras import layers

    return (
        layers.Conv1D,
        layers.Conv2D,
        layers.Conv3D,
        layers.DepthwiseConv1D,
        layers.DepthwiseConv2D,
        layers.SeparableConv1D,
        layers.SeparableConv2D,
        layers.Conv1DTranspose,
        layers.Conv2DTranspose,
        layers.Conv3DTranspose,
        layers.Dense,
        layers.EinsumDense,
    )


def _shape_of(value: Any) -> tuple[int, ...]:
    while isinstance(value, (tuple, list)):
        value = value[0]
    if isinstance(value, dict):
        value = next(iter(value.values()))
    return tuple(int(d) for d in value.shape)


def keras_flops_per_image(model: Any, image_size: int, in_chans: int | None = None) -> int:
    """Forward FLOPs of one ``image_size x image_size`` image through a Keras model, from its layers.

    The model (Functional, Sequential or subclassed, with nested models) takes ``(None, None, None, C)``
    inputs (or exactly ``image_size``). It is run once, eagerly, on one zero image with
    ``training=False``; every counted layer (see ``keras_layer_flops``) records its concrete input and output
    shapes on the way, and its FLOPs follow from its kernel. A layer called twice is counted twice.

    Args:
        model: a built Keras model.
        image_size: square input side in pixels.
        in_chans: input channels (default: the model input's last dimension, or 3).

    Raises:
        ValueError: the model's input has a fixed spatial size other than ``image_size``.
    """
    import numpy as np

    input_shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else (None, None, None, None)
    if in_chans is None:
        in_chans = int(input_shape[-1]) if input_shape[-1] is not None else 3
    for side in input_shape[1:-1]:
        if side is not None and int(side) != image_size:
            raise ValueError(f"model input {input_shape} is fixed at {side} px, not image_size={image_size}")
    counted = _counted_types()
    calls: list[tuple[Any, tuple[int, ...], tuple[int, ...]]] = []
    patched = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if not isinstance(layer, counted) or "call" in vars(layer):
            continue
        original = layer.call

        def recording_call(*args: Any, _layer: Any = layer, _call: Any = original, **kwargs: Any) -> Any:
            out = _call(*args, **kwargs)
            calls.append((_layer, _shape_of(args[0] if args else next(iter(kwargs.values()))), _shape_of(out)))
            return out

        layer.call = recording_call
        patched.append(layer)
    try:
        model(np.zeros((1, image_size, image_size, in_chans), dtype="float32"), training=False)
    finally:
        for layer in patched:
            vars(layer).pop("call", None)
    return int(sum(keras_layer_flops(layer, shape_in, shape_out) for layer, shape_in, shape_out in calls))
