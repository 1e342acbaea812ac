"""Residual join: the option-A shortcut on a ``(y, x, c)`` stream, and the requantized add."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .pool import _clamp_shift
from .window import _positive

__all__ = ["Shortcut", "ResidualAdd"]


class Shortcut(wiring.Component):
    """Option-A shortcut of CIFAR ResNets on a ``(y, x, c)`` stream: keep the pixels whose row
    and column are multiples of ``stride``, and give each kept pixel ``pad_before`` zero
    channels, its ``channels`` values, then ``pad_after`` zero channels. Dropped pixels are
    taken without output. Combinational (no latency)."""

    def __init__(self, shape, channels, height, width, stride, pad_before=0, pad_after=0):
        self._shape = Shape.cast(shape)
        self._c = _positive("Channels", channels)
        self._h = _positive("Height", height)
        self._w = _positive("Width", width)
        self._s = _positive("Stride", stride)
        self._pb = _positive("Pad before", pad_before, 0)
        self._pa = _positive("Pad after", pad_after, 0)
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    def elaborate(self, platform):
        m = Module()
        C, H, W, s, pb, pa = self._c, self._h, self._w, self._s, self._pb, self._pa
        y = Signal(range(H))
        x = Signal(range(W))
        ys = Signal(range(s))           # y mod s, x mod s
        xs = Signal(range(s))
        oc = Signal(range(C + pb + pa))  # position within the pixel's output channels
        keep = Signal()
        m.d.comb += keep.eq((ys == 0) & (xs == 0))
        in_data = Signal()
        m.d.comb += in_data.eq((oc >= pb) & (oc < pb + C))
        with m.If(keep):
            m.d.comb += [self.o.valid.eq(Mux(in_data, self.i.valid, 1)),
                         self.o.payload.eq(Mux(in_data, self.i.payload, 0)),
                         self.i.ready.eq(in_data & self.o.ready)]
        with m.Else():
            m.d.comb += self.i.ready.eq(in_data)      # take the channels, emit nothing
        step = Signal()
        m.d.comb += step.eq(Mux(keep, self.o.valid & self.o.ready,
                                Mux(in_data, self.i.valid, 1)))
        last = pb + C + pa - 1
        with m.If(step):
            m.d.sync += oc.eq(Mux(oc == last, 0, oc + 1))
            with m.If(oc == last):
                m.d.sync += [x.eq(Mux(x == W - 1, 0, x + 1)),
                             xs.eq(Mux((x == W - 1) | (xs == s - 1), 0, xs + 1))]
                with m.If(x == W - 1):
                    m.d.sync += [y.eq(Mux(y == H - 1, 0, y + 1)),
                                 ys.eq(Mux((y == H - 1) | (ys == s - 1), 0, ys + 1))]
        return m


class ResidualAdd(wiring.Component):
    """``y = clamp((A_a·a + A_b·b + round) >> F, lo, hi)`` of two streams, beat by beat.

    ``o.valid`` and ``o.payload`` are registers; both inputs are taken in the same cycle.
    Plain integer parameters, from :class:`flexor_hw.ops.add.AddConstants`.
    """

    def __init__(self, a_shape, b_shape, out_shape, A_a, A_b, frac_bits, y_lo, y_hi):
        self._out = Shape.cast(out_shape)
        self._k = (int(A_a), int(A_b), int(frac_bits), int(y_lo), int(y_hi))
        super().__init__({"a": In(stream.Signature(a_shape)),
                          "b": In(stream.Signature(b_shape)),
                          "o": Out(stream.Signature(self._out))})

    def elaborate(self, platform):
        m = Module()
        A_a, A_b, f, lo, hi = self._k
        # Three registered stages (operands, products, requantized sum) that move together
        # when the output register can take: the skip operand comes straight from a block
        # RAM (5.6 ns on the ECP5) and the products are multipliers.
        adv, take = Signal(), Signal()
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready),
                     take.eq(self.a.valid & self.b.valid & adv),
                     self.a.ready.eq(take), self.b.ready.eq(take)]
        v1, v2 = Signal(), Signal()
        a1, b1 = Signal.like(self.a.payload), Signal.like(self.b.payload)
        pa = Signal((a1 * A_a).shape(), name="pa")
        pb = Signal((b1 * A_b).shape(), name="pb")
        with m.If(adv):
            m.d.sync += [v1.eq(take), a1.eq(self.a.payload), b1.eq(self.b.payload),
                         v2.eq(v1), pa.eq(a1 * A_a), pb.eq(b1 * A_b),
                         self.o.valid.eq(v2), self.o.payload.eq(_clamp_shift(pa + pb, f, lo, hi))]
        return m
