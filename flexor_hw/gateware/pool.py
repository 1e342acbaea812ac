"""Pooling units on ``(y, x, c)`` activation streams."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .window import SlidingWindow, _positive

__all__ = ["MaxPool", "GroupMax"]


class GroupMax(wiring.Component):
    """The maximum of each group of ``group`` consecutive beats, one output beat per group.

    ``o.valid`` and ``o.payload`` are registers; a group's maximum leaves one cycle after its
    last beat arrives.
    """

    def __init__(self, shape, group):
        self._shape = Shape.cast(shape)
        self._group = _positive("Group", group)
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    def elaborate(self, platform):
        m = Module()
        n = self._group
        best = Signal(self._shape)
        count = Signal(range(max(2, n)))
        m.d.comb += self.i.ready.eq(~self.o.valid | self.o.ready)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(self.i.valid & self.i.ready):
            value = self.i.payload
            running = Mux(count == 0, value, Mux(value > best, value, best))
            with m.If(count == n - 1):
                m.d.sync += [count.eq(0), self.o.payload.eq(running), self.o.valid.eq(1)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), best.eq(running)]
        return m


class MaxPool(wiring.Component):
    """2-D max pooling (no padding) of a ``(y, x, c)`` stream into a ``(y', x', c)`` stream:
    a :class:`SlidingWindow` presents each pooling window channel by channel and a
    :class:`GroupMax` reduces it. Any kernel and stride; ``kh·kw`` cycles per output."""

    def __init__(self, shape, channels, height, width, kernel, *, stride=None):
        self._window = SlidingWindow(shape, channels, height, width, kernel,
                                     stride=kernel if stride is None else stride)
        kh, kw = self._window._k
        self._max = GroupMax(shape, kh * kw)
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    @property
    def output_size(self):
        return self._window.output_size

    @property
    def beats_per_image(self):
        oh, ow = self.output_size
        return oh * ow * self._window._c

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self._window
        m.submodules.max = self._max
        wiring.connect(m, wiring.flipped(self.i), self._window.i)
        wiring.connect(m, self._window.o, self._max.i)
        wiring.connect(m, self._max.o, wiring.flipped(self.o))
        return m
