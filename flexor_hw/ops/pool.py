"""Pooling: ``maxpool2d`` (the max of integer codes, format unchanged) and
``global_avgpool`` (``y = clamp((A · Σ_hw x + round) >> F)``, ``A = rint(s_in/(H·W·s_out)·2^F)``;
output ``[C]``, as PyTorch's ``adaptive_avg_pool2d(x, 1).flatten(1)``)."""

from dataclasses import dataclass

import numpy as np

from ..errors import PackageError
from .base import Node, QuantFormat, check_acc, fixed, pair, requantize, round_const

__all__ = ["MaxPool2d", "GlobalAvgPool", "PoolConstants"]


def _spatial(node, shape):
    if len(shape) != 3:
        raise PackageError(f"manifest: node {node.name!r} ({node.op}) needs a [C, H, W] input, "
                           f"but {node.inputs[0]!r} gives {list(shape)}")
    return shape


@dataclass(eq=False)
class MaxPool2d(Node):
    name: str
    kernel: tuple
    stride: tuple
    inputs: tuple = ("input",)

    op = "maxpool2d"

    @classmethod
    def from_json(cls, entry, where):
        if "kernel" not in entry:
            raise PackageError(f"manifest: {where} has no 'kernel'")
        kernel = pair(entry["kernel"], where, "kernel", minimum=1)
        stride = pair(entry.get("stride", list(kernel)), where, "stride", minimum=1)
        return cls(name=entry["name"], inputs=tuple(entry["inputs"]), kernel=kernel,
                   stride=stride)

    def to_json(self):
        return {**self.base_json(), "kernel": list(self.kernel), "stride": list(self.stride)}

    def infer_shape(self, in_shapes):
        c, h, w = _spatial(self, in_shapes[0])
        oh, ow = ((n - k) // s + 1 for n, k, s in zip((h, w), self.kernel, self.stride))
        if oh < 1 or ow < 1:
            raise PackageError(f"manifest: node {self.name!r}: kernel {list(self.kernel)} does "
                               f"not fit its {h}×{w} input")
        return (c, oh, ow)

    def output_format(self, in_formats):
        return in_formats[0]

    def constants(self, in_formats, in_shapes, frac_bits):
        return None

    def _pool(self, x):
        """The maximum over the window as ``kh·kw`` elementwise maxima of strided slices (a
        reduction over a sliding-window view is several times slower)."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        _, oh, ow = self.infer_shape([x.shape[1:]])
        out = None
        for ky in range(kh):
            for kx in range(kw):
                part = x[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                out = part.copy() if out is None else np.maximum(out, part, out=out)
        return out

    def run_int(self, xs, consts):
        return np.ascontiguousarray(self._pool(xs[0]))

    def run_float(self, xs):
        return np.ascontiguousarray(self._pool(np.asarray(xs[0], np.float64)))

    def macs(self, in_shapes):
        return 0


@dataclass(frozen=True, eq=False)
class PoolConstants:
    """``A`` and the clamp of a global average pool, with its accumulator range."""

    frac_bits: int
    A: int
    round_const: int
    acc_lo: int
    acc_hi: int
    y_lo: int
    y_hi: int


@dataclass(eq=False)
class GlobalAvgPool(Node):
    name: str
    output: QuantFormat
    inputs: tuple = ("input",)

    op = "global_avgpool"

    @classmethod
    def from_json(cls, entry, where):
        if "output" not in entry:
            raise PackageError(f"manifest: {where} has no 'output'")
        return cls(name=entry["name"], inputs=tuple(entry["inputs"]),
                   output=QuantFormat.from_json(entry["output"], f"{where} output"))

    def to_json(self):
        return {**self.base_json(), "output": self.output.to_json()}

    def infer_shape(self, in_shapes):
        return (_spatial(self, in_shapes[0])[0],)

    def constants(self, in_formats, in_shapes, frac_bits):
        (fin,), (shape,) = in_formats, in_shapes
        hw = shape[1] * shape[2]
        A = int(fixed(self.name, "the pooling constant",
                      fin.scale / (hw * self.output.scale), frac_bits))
        rc = round_const(frac_bits)
        ends = [A * hw * fin.lo + rc, A * hw * fin.hi + rc]
        check_acc(self.name, min(ends), max(ends), frac_bits)
        return PoolConstants(frac_bits, A, rc, min(ends), max(ends), self.output.lo,
                             self.output.hi)

    def run_int(self, xs, consts):
        total = xs[0].sum(axis=(2, 3), dtype=np.int64)
        return requantize(total * consts.A, consts.frac_bits, consts.y_lo, consts.y_hi)

    def run_float(self, xs):
        return np.asarray(xs[0], np.float64).mean(axis=(2, 3))

    def macs(self, in_shapes):
        return 0
