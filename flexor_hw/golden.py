"""The golden model (docs/design.md): integer-exact NumPy model of what the RTL computes, and the
float reference beside it. It walks the package graph; each op's arithmetic lives in its own
module of :mod:`flexor_hw.ops`, all ending in one requantization (:func:`ops.base.requantize`).

Per weighted node (``linear``; ``conv2d`` at every output pixel), with integer input ``x``::

    S_i[o]  = Σ_c B_i[o, c] · x[c]                         (B ∈ {−1, +1}, exact)
    A_i[o]  = rint(α_i[o] · s_in / s_out · 2^F)            (host constants, :func:`layer_constants`)
    β[o]    = rint(bias[o] / s_out · 2^F)
    acc[o]  = Σ_i A_i[o] · S_i[o] + β[o]                   (exact, never wraps)
    y[o]    = clamp((acc[o] + ⌊2^(F−1)⌋) >> F, lo, hi)      (floor shift; ReLU is lo = 0)

``⌊2^(F−1)⌋`` is 0 for F = 0 (then the shift is a plain floor). The gateware calls
:func:`layer_constants` too, so host and RTL can never disagree about a constant or a width.

Error bound against the float reference, for one layer fed the same integer input: with
``z = Σ_i α_i S_i s_in + bias`` (the float pre-activation),
``|y · s_out − clamp(z, lo · s_out, hi · s_out)| ≤ s_out · (r + (Σ_i |S_i| + 1) / 2^(F+1))``
where ``r = 1/2`` (rounding) for F > 0 and ``r = 1`` for F = 0: each constant is off by at most
1/2 unit of 2^−F, and clamping is 1-Lipschitz. :func:`error_bound` computes it.
"""

import numpy as np

from .errors import InputError
from .ops.base import (MAX_ACC_BITS, MAX_FRAC_BITS, check_frac_bits, signed_width,
                       value_width)
from .ops.weighted import LayerConstants
from .package import INPUT

__all__ = [
    "MAX_FRAC_BITS", "MAX_ACC_BITS", "LayerConstants", "layer_constants", "network_constants",
    "graph_constants", "signed_width", "value_width", "check_input", "layer_int", "run_int",
    "run_graph_int", "layer_float", "run_float", "run_graph_float", "error_bound",
    "quantize_inputs", "quantize_real",
]


def graph_constants(package, frac_bits):
    """Constants of every node that rescales, by node name (pooling without one: ``None``)."""
    frac_bits = check_frac_bits(frac_bits)
    shapes = package.shapes()
    return {n.name: n.constants(package.in_formats(n), [shapes[i] for i in n.inputs], frac_bits)
            for n in package.order()}


def layer_constants(package, k, frac_bits):
    """Constants and widths of layer ``k`` of a chain of linear layers (the layer engines')."""
    frac_bits = check_frac_bits(frac_bits)
    layer = package.layers[k]
    return layer.constants([package.input_format(k)], None, frac_bits)


def network_constants(package, frac_bits):
    return [layer_constants(package, k, frac_bits) for k in range(len(package.layers))]


def _expected_shapes(package):
    shape = list(package.input_shape)
    flat = [int(np.prod(shape))]
    return [shape] if len(shape) == 1 else [shape, flat]


def check_input(package, x):
    """Validate an integer input batch ``[batch, *input_shape]`` (or flattened
    ``[batch, C·H·W]``); return it as int64 ``[batch, n]``."""
    x = np.asarray(x)
    _check_shape(package, x)
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"input has dtype {x.dtype}, expected integers in the package's input "
                         f"format ({package.input.bits}-bit "
                         f"{'signed' if package.input.signed else 'unsigned'})")
    lo, hi = package.input.lo, package.input.hi
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"input values span [{x.min()}, {x.max()}], outside the declared "
                         f"range [{lo}, {hi}]")
    return x.reshape(x.shape[0], -1).astype(np.int64)


def _check_shape(package, x):
    allowed = _expected_shapes(package)
    if x.ndim < 1 or list(x.shape[1:]) not in allowed:
        text = " or ".join("[batch, " + ", ".join(map(str, s)) + "]" for s in allowed)
        raise InputError(f"input has shape {list(x.shape)}, expected {text}")
    if x.shape[0] == 0:
        raise InputError(f"input has shape {list(x.shape)}: no vectors; expected at least one")


def quantize_inputs(package, x):
    """The input quantizer: int ``[batch, features]`` raw → 0/1 ``[batch, features·b]``.

    Bit ``k`` of feature ``j`` is ``x[j] >= thresholds[j, k]``; bits are feature-major.
    Packages without a quantizer pass ``x`` through.
    """
    if package.thresholds is None:
        return x
    bits = x[:, :, None] >= package.thresholds[None, :, :]
    return bits.reshape(x.shape[0], -1).astype(np.int64)


def quantize_real(package, x_real):
    """Real inputs ``[batch, ...]`` → what the first layer sees (0/1 bits with a quantizer)."""
    x = np.asarray(x_real, np.float64).reshape(len(x_real), -1)
    if package.thresholds is None:
        return x
    t = package.thresholds.astype(np.float64) * package.input.scale
    return (x[:, :, None] >= t[None]).reshape(len(x), -1).astype(np.float64)


def layer_int(layer, consts, x):
    """Integer-exact linear layer: int64 ``[batch, fan_in]`` → int64 ``[batch, out]``."""
    return layer.run_int([x], consts)


def _walk(package, x, fn):
    """Run ``fn(node, input batches)`` over the graph in order; every node's output, in
    order (the last is the network's)."""
    values = {INPUT: x}
    outputs = []
    for node in package.order():
        y = fn(node, [values[i] for i in node.inputs])
        values[node.name] = y
        outputs.append(y)
    return outputs


def _first_input(package, x):
    """Flat ``[batch, n]`` → what nodes reading ``"input"`` see."""
    if package.thresholds is not None:
        return quantize_inputs(package, x)
    return x.reshape(len(x), *package.input_shape)


def run_int(package, x, frac_bits=16, *, chunk=None, constants=None):
    """Integer golden model of the whole network (docs/design.md), exact.

    Parameters
    ----------
    x : array ``[batch, *input_shape]`` (or ``[batch, C·H·W]``) of integers in the input format.
    chunk : int, optional
        Process the batch in chunks of this size (results do not depend on it).
    constants : dict, optional
        :func:`graph_constants` of the package, when the caller has them.

    Returns
    -------
    list of numpy.ndarray
        Each node's int64 output ``[batch, *shape]`` in execution order; the last is the
        network's output.
    """
    x = check_input(package, x)
    if constants is None:
        constants = graph_constants(package, frac_bits)
    if chunk is not None and x.shape[0] > chunk:
        parts = [run_int(package, x[s:s + chunk], frac_bits, constants=constants)
                 for s in range(0, x.shape[0], chunk)]
        return [np.concatenate(p) for p in zip(*parts)]
    return _walk(package, _first_input(package, x),
                 lambda node, xs: node.run_int(xs, constants[node.name]))


def run_graph_int(package, x, frac_bits=16, **kwargs):
    """:func:`run_int` as a dict: node name → int64 output."""
    outs = run_int(package, x, frac_bits, **kwargs)
    return {n.name: y for n, y in zip(package.order(), outs)}


def layer_float(layer, x_real):
    """Float reference of one linear layer: ``W x + b``, ReLU when the layer has it."""
    return layer.run_float([np.asarray(x_real, np.float64)])


def run_float(package, x_real, *, all_outputs=False):
    """Float reference (PyTorch-equivalent) of the whole network on real inputs
    ``[batch, *input_shape]`` (or flattened); the network's output, or every node's."""
    x = np.asarray(x_real, np.float64)
    _check_shape(package, x)
    x = quantize_real(package, x)
    if package.thresholds is None:
        x = x.reshape(len(x), *package.input_shape)
    outs = _walk(package, x, lambda node, xs: node.run_float(xs))
    return outs if all_outputs else outs[-1]


def run_graph_float(package, x_real):
    """:func:`run_float` as a dict: node name → float64 output."""
    outs = run_float(package, x_real, all_outputs=True)
    return {n.name: y for n, y in zip(package.order(), outs)}


def error_bound(layer, consts, x):
    """Per-element bound (in output integer units) of |integer − clamped float| (module doc)."""
    S = layer.binary_sums(x)
    r = 0.5 if consts.frac_bits > 0 else 1.0
    return r + (np.abs(S).sum(axis=0) + 1) / 2.0 ** (consts.frac_bits + 1)
