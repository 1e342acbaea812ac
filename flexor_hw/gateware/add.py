"""Residual join: the option-A shortcut on a ``(y, x, c)`` stream, and the requantized add."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .mul import const_product
from .pipeline import Credits, OutputFifo, delay
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

    #: Registered stages from a take to the FIFO's write: the operands (in the
    #: multipliers), the products (in them too), the products in the fabric, their sum and
    #: the requantized sum.
    STAGES = 5
    #: Places of the output FIFO: a beat taken returns its place ``STAGES`` + 3 cycles
    #: later (the FIFO's head register, the returned credit, the room), so that many keep
    #: a beat a cycle going.
    FIFO_DEPTH = STAGES + 3

    def __init__(self, a_shape, b_shape, out_shape, A_a, A_b, frac_bits, y_lo, y_hi, *,
                 emit=False, lut=False):
        self._out = Shape.cast(out_shape)
        self._k = (int(A_a), int(A_b), int(frac_bits), int(y_lo), int(y_hi))
        self._emit = emit
        self._lut = lut
        super().__init__({"a": In(stream.Signature(a_shape)),
                          "b": In(stream.Signature(b_shape)),
                          "o": Out(stream.Signature(self._out))})

    def elaborate(self, platform):
        m = Module()
        A_a, A_b, f, lo, hi = self._k
        # Five registered stages (operands, products, the products again, their sum, the
        # requantized sum) that always move,
        # into an output FIFO whose places are reserved as beats are taken: the inputs'
        # ready is a register and the two streams' valid, never the output's ready (that
        # chain ran through the add from the next window's compare to this block's skip
        # FIFO read, ResNet-20's longest path at 74.2 MHz on the ECP5-85k). The skip operand
        # comes straight from a block RAM (5.6 ns on the ECP5); each product is a
        # :class:`~.mul.Multiplier` (its operand and product registers inside the ECP5's
        # MULT18X18D: a bare multiplier between fabric registers took 4.5 ns of logic).
        depth = self.FIFO_DEPTH
        m.submodules.fifo = fifo = OutputFifo(self._out, depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        credits = Credits(depth)
        take = Signal()
        m.d.comb += [take.eq(self.a.valid & self.b.valid & credits.room),
                     self.a.ready.eq(take), self.b.ready.eq(take)]
        credits.count(m, take, self.o.valid & self.o.ready)
        pa = const_product(m, self.a.payload, A_a, "mul_a", self._emit, lut=self._lut)
        pb = const_product(m, self.b.payload, A_b, "mul_b", self._emit, lut=self._lut)
        # the products into fabric registers before the sum: a MULT18X18D sits in a DSP
        # column, and its product straight into the adder and clamp was the placed
        # ResNet-20's longest path (8.5 ns of its 12.5 routing)
        pa_r = Signal(pa.shape(), name="pa_r")
        pb_r = Signal(pb.shape(), name="pb_r")
        # the sum registered before the rounding shift and the clamp (the sum's carry chain,
        # the rounding's and the clamp's compares in one cycle ended ResNet-20's placed adds
        # at 10.6 ns)
        total = Signal((pa_r + pb_r).shape(), name="total")
        y = Signal(self._out)
        m.d.sync += [pa_r.eq(pa), pb_r.eq(pb), total.eq(pa_r + pb_r),
                     y.eq(_clamp_shift(total, f, lo, hi))]
        m.d.comb += [fifo.w_en.eq(delay(m, take, self.STAGES, "v")), fifo.w_data.eq(y)]
        return m
