"""Argmax over each vector of a stream: the class index of a classifier's outputs."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """Index of the largest of every ``n`` consecutive beats (the first one on ties, as
    ``numpy.argmax``), one output beat per vector.

    Parameters
    ----------
    n : int
        Beats per vector.
    shape : shape-like
        Shape of the input values.
    """

    def __init__(self, n, shape):
        if not isinstance(n, int) or n <= 0:
            raise TypeError(f"N must be a positive integer, not {n!r}")
        self._n = n
        self._shape = Shape.cast(shape)
        super().__init__({
            "i": In(stream.Signature(self._shape)),
            "o": Out(stream.Signature(range(max(2, n)))),
        })

    @property
    def n(self):
        return self._n

    def elaborate(self, platform):
        m = Module()
        count = Signal(range(max(2, self._n)))
        best = Signal(self._shape)
        best_index = Signal.like(count)
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            better = (count == 0) | (self.i.payload > best)
            index = Mux(better, count, best_index)
            with m.If(better):
                m.d.sync += best.eq(self.i.payload)
            m.d.sync += best_index.eq(index)
            with m.If(count == self._n - 1):
                m.d.sync += [count.eq(0), self.o.valid.eq(1), self.o.payload.eq(index)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m
