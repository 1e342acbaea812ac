"""The golden model (DESIGN §3): integer-exact NumPy model of what the RTL computes.

Per layer, with integer input ``x``::

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

import operator
from dataclasses import dataclass

import numpy as np

from .errors import BuildError, InputError

__all__ = [
    "MAX_FRAC_BITS", "LayerConstants", "layer_constants", "network_constants",
    "signed_width", "value_width", "check_input", "layer_int", "run_int",
    "layer_float", "run_float", "error_bound", "quantize_inputs",
]

MAX_FRAC_BITS = 32
MAX_ACC_BITS = 62       # the golden model computes in int64
_EXACT_F64 = 2 ** 53    # float64 BLAS is exact while every partial sum stays below this


def signed_width(lo, hi):
    """Bits of the narrowest two's complement integer holding every value in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def value_width(lo, hi):
    """``(width, signed)`` of the narrowest integer shape holding ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo >= 0:
        return max(1, hi.bit_length()), False
    return signed_width(lo, hi), True


@dataclass(frozen=True, eq=False)
class LayerConstants:
    """Everything the datapath of one layer needs: constants, ranges and widths.

    Attributes
    ----------
    frac_bits : int
        F.
    A : numpy.ndarray
        int64 ``[q, out]`` scaled α.
    beta : numpy.ndarray
        int64 ``[out]`` scaled bias.
    x_lo, x_hi : int
        Range of the layer's integer input.
    s_lo, s_hi : int
        Range of every ``S_i[o]``.
    acc_lo, acc_hi : int
        Range of ``acc[o] + round`` over all rows and inputs.
    round_const : int
        ``⌊2^(F−1)⌋``.
    y_lo, y_hi : int
        Clamp limits of the output (ReLU folded in).
    """

    frac_bits: int
    A: np.ndarray
    beta: np.ndarray
    x_lo: int
    x_hi: int
    s_lo: int
    s_hi: int
    acc_lo: int
    acc_hi: int
    round_const: int
    y_lo: int
    y_hi: int

    @property
    def x_shape(self):
        return value_width(self.x_lo, self.x_hi)

    @property
    def s_width(self):
        return signed_width(self.s_lo, self.s_hi)

    @property
    def a_width(self):
        return signed_width(min(0, int(self.A.min())), max(0, int(self.A.max())))

    @property
    def beta_width(self):
        return signed_width(min(0, int(self.beta.min())), max(0, int(self.beta.max())))

    @property
    def acc_width(self):
        return signed_width(self.acc_lo, self.acc_hi)

    @property
    def y_shape(self):
        return value_width(self.y_lo, self.y_hi)

    def widths(self):
        """Datapath widths, as written to build manifests."""
        return {"x": list(self.x_shape), "s": self.s_width, "alpha_const": self.a_width,
                "bias_const": self.beta_width, "acc": self.acc_width, "y": list(self.y_shape)}


def _frac_bits(frac_bits):
    try:
        frac_bits = operator.index(frac_bits)
    except TypeError:
        raise BuildError(f"frac_bits must be an integer from 0 to {MAX_FRAC_BITS}, "
                         f"not {frac_bits!r}") from None
    if not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise BuildError(f"frac_bits must be an integer from 0 to {MAX_FRAC_BITS}, "
                         f"not {frac_bits}")
    return frac_bits


def layer_constants(package, k, frac_bits):
    """Derive the hardware constants and widths of layer ``k`` for ``frac_bits`` = F."""
    frac_bits = _frac_bits(frac_bits)
    layer = package.layers[k]
    fin, fout = package.input_format(k), layer.output
    unit = float(2 ** frac_bits)
    A = np.rint(layer.alpha.astype(np.float64) * (fin.scale / fout.scale) * unit)
    beta = np.rint(layer.bias.astype(np.float64) / fout.scale * unit)
    if not (np.abs(A).max(initial=0) < 2 ** 62 and np.abs(beta).max(initial=0) < 2 ** 62):
        raise BuildError(f"layer {layer.name!r}: constants overflow 62 bits at "
                         f"frac_bits = {frac_bits}; lower frac_bits")
    A = A.astype(np.int64)
    beta = beta.astype(np.int64)
    f = layer.fan_in
    s_max = f * max(abs(fin.lo), abs(fin.hi))
    s_lo, s_hi = -s_max, s_max
    round_const = (1 << frac_bits) >> 1
    # Exact per-row extremes of Σ_i A_i·S_i + β + round, using Python ints (no overflow).
    acc_lo = acc_hi = None
    A_obj, beta_obj = A.astype(object), beta.astype(object)
    lo_rows = beta_obj + round_const
    hi_rows = beta_obj + round_const
    for i in range(layer.q):
        lo_rows = lo_rows + np.minimum(A_obj[i] * s_lo, A_obj[i] * s_hi)
        hi_rows = hi_rows + np.maximum(A_obj[i] * s_lo, A_obj[i] * s_hi)
    acc_lo, acc_hi = int(min(lo_rows)), int(max(hi_rows))
    if signed_width(acc_lo, acc_hi) > MAX_ACC_BITS:
        raise BuildError(f"layer {layer.name!r}: the accumulator needs "
                         f"{signed_width(acc_lo, acc_hi)} bits at frac_bits = {frac_bits} "
                         f"(at most {MAX_ACC_BITS}); lower frac_bits")
    y_lo = max(fout.lo, 0) if layer.relu else fout.lo
    return LayerConstants(frac_bits=frac_bits, A=A, beta=beta, x_lo=fin.lo, x_hi=fin.hi,
                          s_lo=s_lo, s_hi=s_hi, acc_lo=acc_lo, acc_hi=acc_hi,
                          round_const=round_const, y_lo=y_lo, y_hi=fout.hi)


def network_constants(package, frac_bits):
    return [layer_constants(package, k, frac_bits) for k in range(len(package.layers))]


def check_input(package, x):
    """Validate an integer input batch ``[batch, *input_shape]``; return it as int64 [batch, n]."""
    x = np.asarray(x)
    expected = tuple(package.input_shape)
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise InputError(f"input has shape {list(x.shape)}, expected [batch, "
                         f"{', '.join(map(str, expected))}]")
    if not np.issubdtype(x.dtype, np.integer):
        raise InputError(f"input has dtype {x.dtype}, expected integers in the package's input "
                         f"format ({package.input.bits}-bit "
                         f"{'signed' if package.input.signed else 'unsigned'})")
    lo, hi = package.input.lo, package.input.hi
    if x.size and (x.min() < lo or x.max() > hi):
        raise InputError(f"input values span [{x.min()}, {x.max()}], outside the declared "
                         f"range [{lo}, {hi}]")
    return x.reshape(x.shape[0], -1).astype(np.int64)


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


def _signs(layer):
    return layer.weight_bits.astype(np.float64) * 2 - 1        # [q, out, fan_in]


def _binary_sums(layer, x, signs=None):
    """``S_i = x · B_iᵀ`` exactly, as int64 ``[q, batch, out]``."""
    signs = _signs(layer) if signs is None else signs
    if layer.fan_in * int(np.abs(x).max(initial=0)) < _EXACT_F64:
        xf = x.astype(np.float64)
        return np.stack([(xf @ signs[i].T) for i in range(layer.q)]).astype(np.int64)
    ints = signs.astype(np.int64)                               # exact but slow path
    return np.stack([x @ ints[i].T for i in range(layer.q)])


def layer_int(layer, consts, x):
    """Integer-exact layer: int64 ``[batch, fan_in]`` → int64 ``[batch, out]``."""
    S = _binary_sums(layer, x)
    acc = consts.beta[None, :] + consts.round_const
    for i in range(layer.q):
        acc = acc + consts.A[i][None, :] * S[i]
    y = acc >> consts.frac_bits
    return np.clip(y, consts.y_lo, consts.y_hi)


def run_int(package, x, frac_bits=16, *, chunk=None, constants=None):
    """Integer golden model of the whole network.

    Parameters
    ----------
    x : array ``[batch, *input_shape]`` of integers in the input format.
    chunk : int, optional
        Process the batch in chunks of this size (results do not depend on it).

    Returns
    -------
    list of numpy.ndarray
        Each layer's int64 output ``[batch, out]``; the last is the network's output.
    """
    x = check_input(package, x)
    constants = network_constants(package, frac_bits) if constants is None else constants
    if chunk is not None and x.shape[0] > chunk:
        parts = [run_int(package, x[s:s + chunk], frac_bits, constants=constants)
                 for s in range(0, x.shape[0], chunk)]
        return [np.concatenate(p) for p in zip(*parts)]
    outputs = []
    x = quantize_inputs(package, x)
    for layer, consts in zip(package.layers, constants):
        x = layer_int(layer, consts, x)
        outputs.append(x)
    return outputs


def layer_float(layer, x_real):
    """Float reference of one layer: ``W x + b``, ReLU when the layer has it."""
    z = np.asarray(x_real, np.float64) @ layer.weights().T + layer.bias.astype(np.float64)
    return np.maximum(z, 0) if layer.relu else z


def run_float(package, x_real):
    """Float reference of the whole network on real inputs ``[batch, *input_shape]``."""
    x = quantize_real(package, x_real)
    for layer in package.layers:
        x = layer_float(layer, x)
    return x


def error_bound(layer, consts, x):
    """Per-element bound (in output integer units) of |integer − clamped float| (module doc)."""
    S = _binary_sums(layer, x)
    r = 0.5 if consts.frac_bits > 0 else 1.0
    return r + (np.abs(S).sum(axis=0) + 1) / 2.0 ** (consts.frac_bits + 1)
