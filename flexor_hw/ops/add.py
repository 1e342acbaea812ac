"""``add``: the residual join ``y = clamp((A_a·a + A_b·b' + round) >> F)`` (ReLU: ``lo = 0``),
``A_a = rint(s_a/s_out·2^F)``, ``A_b = rint(s_b/s_out·2^F)``. ``b'`` is the second input after
the optional shortcut transform of CIFAR ResNets (option A): keep every ``stride``-th row and
column, then zero-pad channels ``[before, after]``."""

from dataclasses import dataclass

import numpy as np

from ..errors import PackageError
from .base import Node, QuantFormat, check_acc, fixed, is_int, requantize, round_const

__all__ = ["Add", "AddConstants"]


@dataclass(frozen=True, eq=False)
class AddConstants:
    frac_bits: int
    A_a: int
    A_b: int
    round_const: int
    acc_lo: int
    acc_hi: int
    y_lo: int
    y_hi: int


@dataclass(eq=False)
class Add(Node):
    name: str
    output: QuantFormat
    relu: bool = False
    inputs: tuple = ()
    stride: int = 1
    pad_channels: tuple = (0, 0)

    op = "add"
    arity = 2

    @classmethod
    def from_json(cls, entry, where):
        for key in ("output", "relu"):
            if key not in entry:
                raise PackageError(f"manifest: {where} has no {key!r}")
        if not isinstance(entry["relu"], bool):
            raise PackageError(f"manifest: {where} relu must be true or false")
        shortcut = entry.get("shortcut") or {}
        if not isinstance(shortcut, dict):
            raise PackageError(f"manifest: {where} shortcut must be an object with stride "
                               f"and pad_channels")
        stride = shortcut.get("stride", 1)
        if not is_int(stride) or stride < 1:
            raise PackageError(f"manifest: {where} shortcut.stride must be a positive integer, "
                               f"not {stride!r}")
        pad = shortcut.get("pad_channels", [0, 0])
        if not isinstance(pad, list) or len(pad) != 2 or not all(is_int(p) and p >= 0
                                                                 for p in pad):
            raise PackageError(f"manifest: {where} shortcut.pad_channels must be [before, "
                               f"after] of integers >= 0, not {pad!r}")
        return cls(name=entry["name"], inputs=tuple(entry["inputs"]),
                   output=QuantFormat.from_json(entry["output"], f"{where} output"),
                   relu=entry["relu"], stride=stride, pad_channels=tuple(pad))

    def to_json(self):
        out = {**self.base_json(), "relu": self.relu, "output": self.output.to_json()}
        if self.stride != 1 or any(self.pad_channels):
            out["shortcut"] = {"stride": self.stride, "pad_channels": list(self.pad_channels)}
        return out

    def shortcut_shape(self, shape):
        if self.stride == 1 and not any(self.pad_channels):
            return tuple(shape)
        if len(shape) != 3:
            raise PackageError(f"manifest: node {self.name!r}: a shortcut needs a [C, H, W] "
                               f"input, but {self.inputs[1]!r} gives {list(shape)}")
        c, h, w = shape
        s = self.stride
        return (c + sum(self.pad_channels), -(-h // s), -(-w // s))

    def infer_shape(self, in_shapes):
        a, b = tuple(in_shapes[0]), self.shortcut_shape(in_shapes[1])
        if a != b:
            via = "" if b == tuple(in_shapes[1]) else f" after its shortcut ({list(b)})"
            raise PackageError(f"manifest: node {self.name!r} adds {self.inputs[0]!r} of shape "
                               f"{list(a)} to {self.inputs[1]!r} of shape "
                               f"{list(in_shapes[1])}{via}; the shapes must match")
        return a

    def shortcut(self, b):
        """The option-A transform on a batch ``[n, C, H, W]`` (identity without one)."""
        if self.stride == 1 and not any(self.pad_channels):
            return b
        b = b[:, :, ::self.stride, ::self.stride]
        before, after = self.pad_channels
        return np.pad(b, ((0, 0), (before, after), (0, 0), (0, 0)))

    def constants(self, in_formats, in_shapes, frac_bits):
        fa, fb = in_formats
        A_a = int(fixed(self.name, "A_a", fa.scale / self.output.scale, frac_bits))
        A_b = int(fixed(self.name, "A_b", fb.scale / self.output.scale, frac_bits))
        rc = round_const(frac_bits)
        ta = sorted((A_a * fa.lo, A_a * fa.hi))
        tb = sorted((A_b * fb.lo, A_b * fb.hi, 0))          # padded channels read 0
        acc_lo, acc_hi = ta[0] + tb[0] + rc, ta[1] + tb[-1] + rc
        check_acc(self.name, acc_lo, acc_hi, frac_bits)
        y_lo = max(self.output.lo, 0) if self.relu else self.output.lo
        return AddConstants(frac_bits, A_a, A_b, rc, acc_lo, acc_hi, y_lo, self.output.hi)

    def run_int(self, xs, consts):
        a, b = xs[0], self.shortcut(xs[1])
        acc = np.multiply(a, consts.A_a, dtype=np.int64)
        acc += np.multiply(b, consts.A_b, dtype=np.int64)
        return requantize(acc, consts.frac_bits, consts.y_lo, consts.y_hi)

    def run_float(self, xs):
        z = np.asarray(xs[0], np.float64) + self.shortcut(np.asarray(xs[1], np.float64))
        return np.maximum(z, 0) if self.relu else z
