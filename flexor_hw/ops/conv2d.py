"""``conv2d``: 2-D convolution, any kernel, stride and zero padding, groups = 1.

The golden model is one im2col product: each output pixel's window is a row in the weights'
fan-in order ``(c, ky, kx)`` (the order the encrypted slices fix), so a conv is a ``linear``
applied at every output pixel. Padding reads integer 0.
"""

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import PackageError
from .base import pair
from .weighted import WeightedNode

__all__ = ["Conv2d", "im2col", "im2col_t", "conv_output_size"]

_CHUNK_ELEMENTS = 1 << 24      # im2col rows per chunk × fan-in (64 MB in float32)


def conv_output_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _windows(x, kernel, stride, padding):
    """Strided view ``[b, C, OH, OW, kh, kw]`` of the zero-padded input."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def im2col(x, kernel, stride, padding, dtype):
    """``x [b, C, H, W]`` → ``[b·OH·OW, C·kh·kw]`` in ``dtype``; rows in ``(b, oy, ox)`` order,
    columns in ``(c, ky, kx)`` order."""
    win = _windows(x, kernel, stride, padding)
    b, c, oh, ow, kh, kw = win.shape
    cols = np.empty((b, oh, ow, c, kh, kw), dtype)
    np.copyto(cols, win.transpose(0, 2, 3, 1, 4, 5), casting="unsafe")
    return cols.reshape(b * oh * ow, c * kh * kw)


def im2col_t(x, kernel, stride, padding, dtype):
    """The transpose of :func:`im2col`, ``[C·kh·kw, b·OH·OW]``, built directly (each copy runs
    along a row of the map, so it is several times faster than transposing)."""
    win = _windows(x, kernel, stride, padding)
    b, c, oh, ow, kh, kw = win.shape
    cols = np.empty((c, kh, kw, b, oh, ow), dtype)
    np.copyto(cols, win.transpose(1, 4, 5, 0, 2, 3), casting="unsafe")
    return cols.reshape(c * kh * kw, b * oh * ow)


@dataclass(eq=False)
class Conv2d(WeightedNode):
    stride: tuple = (1, 1)
    padding: tuple = (0, 0)

    op = "conv2d"

    @classmethod
    def from_json(cls, entry, where):
        fields = cls._parse_common(entry, where, 4, "[out, in, kh, kw]")
        return cls(**fields, stride=pair(entry.get("stride", 1), where, "stride", minimum=1),
                   padding=pair(entry.get("padding", 0), where, "padding", minimum=0))

    def extra_json(self):
        return {"stride": list(self.stride), "padding": list(self.padding)}

    @property
    def kernel(self):
        return tuple(self.weight_shape[2:])

    @property
    def in_channels(self):
        return int(self.weight_shape[1])

    def infer_shape(self, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 3:
            raise PackageError(f"manifest: node {self.name!r} (conv2d) needs a [C, H, W] input, "
                               f"but {self.inputs[0]!r} gives {list(shape)}")
        c, h, w = shape
        if c != self.in_channels:
            raise PackageError(f"manifest: node {self.name!r} has {self.in_channels} input "
                               f"channels but its input {self.inputs[0]!r} has {c} "
                               f"(shape {list(shape)})")
        oh, ow = (conv_output_size(n, k, s, p) for n, k, s, p in
                  zip((h, w), self.kernel, self.stride, self.padding))
        if oh < 1 or ow < 1:
            raise PackageError(f"manifest: node {self.name!r}: kernel {list(self.kernel)} with "
                               f"padding {list(self.padding)} does not fit its {h}×{w} input")
        return (self.out_features, oh, ow)

    def macs(self, in_shapes):
        _, oh, ow = self.infer_shape(in_shapes)
        return self.numel * oh * ow

    def _per_chunk(self, x, fn, dtype):
        """Run ``fn(cols_t) → [out, pixels]`` over image chunks; return ``[b, out, OH, OW]``."""
        b, _, h, w = x.shape
        oh, ow = (conv_output_size(n, k, s, p) for n, k, s, p in
                  zip((h, w), self.kernel, self.stride, self.padding))
        step = max(1, _CHUNK_ELEMENTS // max(1, oh * ow * self.fan_in))
        parts = []
        for s in range(0, b, step):
            cols_t = im2col_t(x[s:s + step], self.kernel, self.stride, self.padding, dtype)
            y = fn(cols_t).reshape(self.out_features, -1, oh, ow)
            parts.append(y.transpose(1, 0, 2, 3))
        return np.ascontiguousarray(np.concatenate(parts) if len(parts) > 1 else parts[0])

    def run_int(self, xs, consts):
        x = xs[0]
        x_max = int(np.abs(x).max(initial=0))
        # float32 holds the window exactly (|x| < 2^24) and halves the im2col traffic
        dtype = np.float32 if x_max < 2 ** 24 else np.int64
        return self._per_chunk(
            x, lambda cols_t: self.requantize_cols(self.binary_sums_t(cols_t, x_max), consts),
            dtype)

    def run_float(self, xs):
        def affine(cols_t):
            z = self.weights() @ cols_t + self.bias.astype(np.float64)[:, None]
            return np.maximum(z, 0) if self.relu else z
        return self._per_chunk(np.asarray(xs[0], np.float64), affine, np.float64)
