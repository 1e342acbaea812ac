"""``linear``: a fully connected layer. After a spatial node its input is flattened in
PyTorch's ``x.flatten(1)`` order ``(c, y, x)``."""

from dataclasses import dataclass

import numpy as np

from ..errors import PackageError
from .weighted import WeightedNode

__all__ = ["Linear"]


@dataclass(eq=False)
class Linear(WeightedNode):
    op = "linear"

    @classmethod
    def from_json(cls, entry, where):
        return cls(**cls._parse_common(entry, where, 2, "[out, in]"))

    def infer_shape(self, in_shapes):
        features = int(np.prod(in_shapes[0]))
        if features != self.fan_in:
            raise PackageError(f"manifest: node {self.name!r} has {self.fan_in} inputs but its "
                               f"input {self.inputs[0]!r} has {features} features "
                               f"(shape {list(in_shapes[0])})")
        return (self.out_features,)

    def macs(self, in_shapes):
        return self.numel

    def run_int(self, xs, consts):
        x = xs[0].reshape(len(xs[0]), -1)
        return self.requantize_rows(self.binary_sums(x), consts)

    def run_float(self, xs):
        return self.affine_float(xs[0].reshape(len(xs[0]), -1))
