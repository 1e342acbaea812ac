"""Input quantizer: each raw feature becomes b bits by b comparators (bitwise soft quantization)."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["InputQuantizer"]


class InputQuantizer(wiring.Component):
    """Raw features in, one bit per beat out: feature ``j`` → ``x >= thresholds[j][k]``, k = 0..b−1.

    Parameters
    ----------
    thresholds : list of list of int
        ``[features][b]`` integers in the raw input format (``hi + 1`` means never set).
    shape : shape-like
        Shape of the raw input.

    Attributes
    ----------
    i : In(stream.Signature(shape))
        Raw features, one per beat, in feature order.
    o : Out(stream.Signature(1))
        ``b`` bits per feature, feature-major: the first layer's input beats.
    """

    def __init__(self, thresholds, shape):
        rows = [[int(t) for t in row] for row in thresholds]
        if not rows or not rows[0] or len({len(r) for r in rows}) != 1:
            raise ValueError("Thresholds must be a non-empty [features][bits] table")
        self._thresholds = rows
        self._shape = Shape.cast(shape)
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(1))})

    @property
    def bits_per_feature(self):
        return len(self._thresholds[0])

    def elaborate(self, platform):
        m = Module()
        n, b = len(self._thresholds), self.bits_per_feature
        width = self._shape.width + 2              # thresholds reach hi + 1; signed compare
        feature = Signal(range(max(2, n)))
        bits = Signal(b)
        pending = Signal(range(b + 1))
        take = Signal()
        m.d.comb += [
            take.eq(self.o.valid & self.o.ready),
            self.o.valid.eq(pending != 0),
            self.o.payload.eq(bits[0]),
            self.i.ready.eq((pending == 0) | ((pending == 1) & take)),
        ]
        x = self.i.payload.as_signed() if self._shape.signed else self.i.payload
        compares = []
        for k in range(b):
            # The feature's k-th threshold, as one mux expression over the (constant) table.
            t = Const(self._thresholds[-1][k], signed(width))
            for j in range(n - 2, -1, -1):
                t = Mux(feature == j, Const(self._thresholds[j][k], signed(width)), t)
            compares.append(x >= t)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [bits.eq(Cat(*compares)), pending.eq(b),
                         feature.eq(Mux(feature == n - 1, 0, feature + 1))]
        with m.Elif(take):
            m.d.sync += [bits.eq(bits >> 1), pending.eq(pending - 1)]
        return m
