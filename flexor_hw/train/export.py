"""Export of a trained :class:`FlexorNet` as a format-v3 package.

BatchNorm is folded into the preceding layer's α (or weight scale) and bias; ReLU becomes the
``relu`` flag of the node before it; int layers export the very integers their forward pass
used; float layers (an FP32 baseline) are quantized to int8 per channel. Output scales come
from calibration data (:mod:`flexor_hw.calibrate`).
"""

import numpy as np
import torch
from torch import nn

from ..calibrate import calibrate_scales
from ..errors import FlexorError
from ..ops import Conv2d, Linear, MaxPool2d, QuantFormat
from ..ops.weighted import fold_batchnorm, int_weights
from ..package import Package
from .layers import FlexorConv2d, FlexorLinear, IntConv2d, IntLinear, int_quantize

__all__ = ["export_net"]

_WEIGHTED = (FlexorLinear, FlexorConv2d, IntLinear, IntConv2d, nn.Linear, nn.Conv2d)
_CONV = (FlexorConv2d, IntConv2d, nn.Conv2d)


def _numpy(t):
    return t.detach().cpu().double().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def _weighted_node(name, m, inputs):
    conv = isinstance(m, _CONV)
    cls = Conv2d if conv else Linear
    extra = dict(stride=tuple(m.stride), padding=tuple(m.padding)) if conv else {}
    if isinstance(m, (FlexorLinear, FlexorConv2d)):
        shape = m.flexor.shape
        fields = dict(q=m.q, n_in=m.n_in, n_out=m.n_out, n_tap=m.n_tap,
                      xor=m.xor.numpy().astype(np.uint8), encrypted=m.flexor.stored_bits(),
                      alpha=m.alpha.detach().numpy().astype(np.float32))
    else:
        if isinstance(m, (IntLinear, IntConv2d)):
            bits = m.bits
            w_int, scale = int_quantize(m.weight.detach(), bits)
            w_int, scale = w_int.numpy().astype(np.int8 if bits <= 8 else np.int16), \
                scale.numpy().astype(np.float32)
        else:
            bits = 8
            w_int, scale = int_weights(_numpy(m.weight), bits)
        shape = tuple(w_int.shape)
        fields = dict(int_bits=bits, weight=w_int, alpha=scale[None])
    bias = (np.zeros(shape[0], np.float32) if m.bias is None
            else m.bias.detach().numpy().astype(np.float32))
    return cls(name=name, weight_shape=tuple(shape), relu=False,
               output=QuantFormat(1.0, 8, True), bias=bias, inputs=(inputs,), **fields, **extra)


def export_net(model, name, input_format, calibration_x, *, output_bits=8,
               last_output_bits=16):
    """Export a trained :class:`FlexorNet`; ``calibration_x`` holds real-valued inputs
    ``[n, *model.input_shape]`` (``x_int · input_format.scale``)."""
    model.eval()
    nodes, prev = [], "input"
    for mname, m in model.body.named_children():
        last = nodes[-1] if nodes else None
        if isinstance(m, _WEIGHTED):
            nodes.append(_weighted_node(mname, m, prev))
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if last is None or not last.weighted or last.relu:
                raise FlexorError(f"cannot export {mname!r}: BatchNorm must follow a conv or "
                                  f"linear layer directly")
            fold_batchnorm(last, _numpy(m.weight), _numpy(m.bias), _numpy(m.running_mean),
                           _numpy(m.running_var), m.eps)
            continue
        elif isinstance(m, nn.ReLU):
            if last is None or not last.weighted:
                raise FlexorError(f"cannot export {mname!r}: ReLU must follow a conv or linear "
                                  f"layer (or its BatchNorm)")
            last.relu = True
            continue
        elif isinstance(m, nn.MaxPool2d):
            pad = m.padding if isinstance(m.padding, tuple) else (m.padding,) * 2
            if any(pad) or m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise FlexorError(f"cannot export {mname!r}: max pooling with padding, "
                                  f"dilation or ceil_mode")
            k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
            s = m.stride if isinstance(m.stride, tuple) else (m.stride,) * 2
            nodes.append(MaxPool2d(name=mname, kernel=tuple(k), stride=tuple(s),
                                   inputs=(prev,)))
        elif isinstance(m, (nn.Flatten, nn.Dropout, nn.Identity)):
            continue
        else:
            raise FlexorError(f"cannot export {mname!r}: {type(m).__name__} has no package op")
        prev = nodes[-1].name
    out = nodes[-1]
    for node in nodes:
        if node.weighted:
            top = node is out
            node.output = QuantFormat(1.0, last_output_bits if top else output_bits,
                                      top or not node.relu)
    package = Package(name=name, input_shape=tuple(model.input_shape), input=input_format,
                      nodes=nodes).validate()
    calibrate_scales(package, calibration_x)
    return package.validate()
