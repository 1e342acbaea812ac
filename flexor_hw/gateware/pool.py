"""Pooling units on ``(y, x, c)`` activation streams."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .window import SlidingWindow, _positive

__all__ = ["MaxPool", "GroupMax", "GlobalAvgPool"]


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


def _clamp_shift(value, frac_bits, y_lo, y_hi):
    """``clamp((value + ⌊2^(F−1)⌋) >> F, lo, hi)`` (the contract's requantization)."""
    shifted = (value + ((1 << frac_bits) >> 1)) >> frac_bits
    return Mux(shifted < y_lo, y_lo, Mux(shifted > y_hi, y_hi, shifted))


class GlobalAvgPool(wiring.Component):
    """Global average pooling of a ``(y, x, c)`` stream: one accumulator per channel, then
    ``clamp((A · Σ_hw x + round) >> F, lo, hi)`` per channel, in channel order.

    Takes ``pixels · channels`` beats, then gives ``channels`` beats (it takes no input while
    it gives them). Parameters are plain integers: ``A`` and ``frac_bits`` from the host's
    constants (:class:`flexor_hw.ops.pool.PoolConstants`), the clamp ``y_lo, y_hi``.
    """

    def __init__(self, in_shape, out_shape, channels, pixels, A, frac_bits, y_lo, y_hi):
        self._in, self._out = Shape.cast(in_shape), Shape.cast(out_shape)
        self._c = _positive("Channels", channels)
        self._n = _positive("Pixels", pixels)
        self._A, self._f, self._lo, self._hi = int(A), int(frac_bits), int(y_lo), int(y_hi)
        super().__init__({"i": In(stream.Signature(self._in)),
                          "o": Out(stream.Signature(self._out))})

    def elaborate(self, platform):
        from amaranth.hdl import Array, signed
        m = Module()
        C, n = self._c, self._n
        width, is_signed = self._in.width, self._in.signed
        lo = -(1 << (width - 1)) if is_signed else 0
        hi = (1 << (width - is_signed)) - 1
        acc_shape = signed(max(-lo * n, hi * n).bit_length() + 1)
        accs = Array(Signal(acc_shape, name=f"acc{c}") for c in range(C))
        c = Signal(range(C))
        pix = Signal(range(n))
        emitting = Signal()
        m.d.comb += self.i.ready.eq(~emitting)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += accs[c].eq(Mux(pix == 0, 0, accs[c]) + self.i.payload)
            m.d.sync += c.eq(Mux(c == C - 1, 0, c + 1))
            with m.If(c == C - 1):
                m.d.sync += pix.eq(Mux(pix == n - 1, 0, pix + 1))
                with m.If(pix == n - 1):
                    m.d.sync += emitting.eq(1)
        # Emit: one channel per cycle into the output register.
        e = Signal(range(C))
        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        with m.If(advance):
            m.d.sync += self.o.valid.eq(emitting)
            with m.If(emitting):
                m.d.sync += self.o.payload.eq(
                    _clamp_shift(accs[e] * self._A, self._f, self._lo, self._hi))
                m.d.sync += e.eq(Mux(e == C - 1, 0, e + 1))
                with m.If(e == C - 1):
                    m.d.sync += emitting.eq(0)
        return m
