"""What every op shares: integer formats, the requantization contract, field and array checks.

The contract (docs/design.md) in one place: every op that rescales computes an exact integer ``acc``
and ends with :func:`requantize`, ``y = clamp((acc + ⌊2^(F−1)⌋) >> F, lo, hi)`` (arithmetic
shift; ReLU is ``lo = 0``); constants are ``rint(real · 2^F)``.
"""

import math
import operator
from dataclasses import dataclass

import numpy as np

from ..errors import BuildError, PackageError

__all__ = ["QuantFormat", "QUANTIZED_BIT", "MAX_FRAC_BITS", "MAX_ACC_BITS", "Node",
           "signed_width", "value_width", "check_frac_bits", "requantize", "fixed",
           "round_const", "is_int", "check_array"]

MAX_FRAC_BITS = 32
MAX_ACC_BITS = 62       # the golden model computes in int64


@dataclass(frozen=True)
class QuantFormat:
    """Integer activation format: real value ≈ ``scale · x``, ``x`` a ``bits``-wide integer."""

    scale: float
    bits: int
    signed: bool

    @property
    def lo(self):
        return -(1 << (self.bits - 1)) if self.signed else 0

    @property
    def hi(self):
        return (1 << (self.bits - 1)) - 1 if self.signed else (1 << self.bits) - 1

    def to_json(self):
        return {"scale": float(self.scale), "bits": int(self.bits), "signed": bool(self.signed)}

    @classmethod
    def from_json(cls, obj, where):
        if not isinstance(obj, dict):
            raise PackageError(f"manifest: {where} must be an object with scale, bits, signed")
        for key in ("scale", "bits", "signed"):
            if key not in obj:
                raise PackageError(f"manifest: {where} has no {key!r}")
        scale, bits, signed = obj["scale"], obj["bits"], obj["signed"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) \
                or not math.isfinite(scale) or scale <= 0:
            raise PackageError(f"manifest: {where}.scale must be a finite positive number, "
                               f"not {scale!r}")
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 32:
            raise PackageError(f"manifest: {where}.bits must be an integer from 1 to 32, "
                               f"not {bits!r}")
        if not isinstance(signed, bool):
            raise PackageError(f"manifest: {where}.signed must be true or false, not {signed!r}")
        if signed and bits < 2:
            raise PackageError(f"manifest: {where}.bits must be at least 2 for a signed format")
        return cls(float(scale), bits, signed)


QUANTIZED_BIT = QuantFormat(1.0, 1, False)     # what an input quantizer's comparators emit


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


def check_frac_bits(frac_bits):
    try:
        frac_bits = operator.index(frac_bits)
    except TypeError:
        raise BuildError(f"frac_bits must be an integer from 0 to {MAX_FRAC_BITS}, "
                         f"not {frac_bits!r}") from None
    if not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise BuildError(f"frac_bits must be an integer from 0 to {MAX_FRAC_BITS}, "
                         f"not {frac_bits}")
    return frac_bits


def round_const(frac_bits):
    """``⌊2^(F−1)⌋``: 0 for F = 0, where the shift is a plain floor."""
    return (1 << frac_bits) >> 1


def fixed(node, what, real, frac_bits):
    """``rint(real · 2^F)`` as int64, refusing constants that would not fit the datapath."""
    value = np.rint(np.asarray(real, np.float64) * float(2 ** frac_bits))
    if not np.abs(value).max(initial=0) < 2 ** 62:
        raise BuildError(f"node {node!r}: {what} overflows 62 bits at frac_bits = "
                         f"{frac_bits}; lower frac_bits")
    return value.astype(np.int64)


def check_acc(node, acc_lo, acc_hi, frac_bits):
    width = signed_width(acc_lo, acc_hi)
    if width > MAX_ACC_BITS:
        raise BuildError(f"node {node!r}: the accumulator needs {width} bits at frac_bits = "
                         f"{frac_bits} (at most {MAX_ACC_BITS}); lower frac_bits")


def requantize(acc, frac_bits, lo, hi):
    """``clamp((acc + ⌊2^(F−1)⌋) >> F, lo, hi)`` (``acc`` excludes the rounding).

    Works in place on ``acc``, an int64 array the caller hands over: this runs over every
    output of every conv, and temporaries would double its memory traffic.
    """
    acc += round_const(frac_bits)
    acc >>= frac_bits
    return np.clip(acc, lo, hi, out=acc)


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_array(member, array, shape, *, binary=False, floating=False, int_range=None):
    """Validate one archive member; return it in its canonical dtype."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise PackageError(f"member {member!r} holds Python objects; expected numbers")
    if array.shape != tuple(shape):
        raise PackageError(f"member {member!r} has shape {list(array.shape)}, "
                           f"expected {list(shape)}")
    if binary:
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
            raise PackageError(f"member {member!r} has dtype {array.dtype}, expected uint8 0/1")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise PackageError(f"member {member!r} holds values other than 0 and 1")
        return array.astype(np.uint8)
    if floating:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise PackageError(f"member {member!r} has dtype {array.dtype}, expected float32")
        if not np.isfinite(array).all():
            raise PackageError(f"member {member!r} holds NaN or infinite values")
        return array.astype(np.float32)
    if int_range is not None:
        lo, hi = int_range
        if not np.issubdtype(array.dtype, np.integer):
            raise PackageError(f"member {member!r} has dtype {array.dtype}, expected integers")
        if array.size and (array.min() < lo or array.max() > hi):
            raise PackageError(f"member {member!r} holds values outside [{lo}, {hi}]")
        return array.astype(np.int8 if hi <= 127 and lo >= -128 else np.int32)
    return array


def pair(value, where, key, *, minimum):
    """A ``[h, w]`` pair of integers ≥ ``minimum`` from the manifest (an int means both)."""
    if is_int(value):
        value = [value, value]
    if not isinstance(value, list) or len(value) != 2 or \
            not all(is_int(v) and v >= minimum for v in value):
        raise PackageError(f"manifest: {where} {key} must be an integer or a pair of integers "
                           f">= {minimum}, not {value!r}")
    return tuple(value)


class Node:
    """One node of a package's graph. Subclasses (one module per op) implement:

    ``from_json(entry, where)`` (classmethod), ``to_json()``, ``members()`` / ``read_members``
    (arrays), ``infer_shape(in_shapes)``, ``output_format(in_formats)``,
    ``constants(in_formats, in_shapes, frac_bits)``, ``run_int(xs, consts)``,
    ``run_float(xs)`` and ``macs(in_shapes)``.

    ``xs`` are batches ``[batch, *shape]``; spatial shapes are ``(C, H, W)`` (PyTorch order),
    flat ones ``(features,)``.
    """

    op = None
    arity = 1               # number of inputs
    weighted = False

    def members(self):
        return {}

    def read_members(self, prefix, get, has):
        pass

    def output_format(self, in_formats):
        return self.output

    def macs(self, in_shapes):
        return 0

    @property
    def kind(self):
        return self.op

    def base_json(self):
        return {"name": self.name, "op": self.op, "inputs": list(self.inputs)}
