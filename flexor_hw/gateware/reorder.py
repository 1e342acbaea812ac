"""Flatten for a linear layer after a spatial node: ``(y, x, c)`` stream order → PyTorch's
``x.flatten(1)`` order ``(c, y, x)``."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .window import _positive

__all__ = ["Flatten"]


class Flatten(wiring.Component):
    """Reorders each image of ``channels × height × width`` activations from ``(y, x, c)``
    to ``(c, y, x)`` through a double-buffered frame memory (two images; block RAM on FPGAs):
    one image is written at its transposed addresses while the previous one is read in order.
    One beat per cycle on each side; ``o.valid`` and ``o.payload`` are registers.
    """

    def __init__(self, shape, channels, height, width):
        self._shape = Shape.cast(shape)
        self._c = _positive("Channels", channels)
        self._hw = _positive("Height", height) * _positive("Width", width)
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    @property
    def beats_per_image(self):
        return self._c * self._hw

    def elaborate(self, platform):
        m = Module()
        C, HW = self._c, self._hw
        n = C * HW
        m.submodules.mem = mem = memory.Memory(shape=self._shape, depth=2 * n, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")

        # full[b]: buffer b holds a complete image not yet read out.
        full = Signal(2)
        w_buf, r_buf = Signal(), Signal()
        w_pix = Signal(range(HW))             # pixel (y, x) being written
        w_c = Signal(range(C))
        w_addr = Signal(range(n))             # c·HW + pixel
        r_addr = Signal(range(n))

        can_write = Signal()
        m.d.comb += [can_write.eq(~full.bit_select(w_buf, 1)), self.i.ready.eq(can_write)]
        write = Signal()
        m.d.comb += [write.eq(self.i.valid & can_write),
                     wr.addr.eq(Mux(w_buf, n, 0) + w_addr), wr.data.eq(self.i.payload),
                     wr.en.eq(write)]
        done_write = Signal()
        m.d.comb += done_write.eq(write & (w_c == C - 1) & (w_pix == HW - 1))
        with m.If(write):
            with m.If(w_c == C - 1):
                m.d.sync += [w_c.eq(0), w_pix.eq(Mux(w_pix == HW - 1, 0, w_pix + 1)),
                             w_addr.eq(Mux(w_pix == HW - 1, 0, w_pix + 1))]
            with m.Else():
                m.d.sync += [w_c.eq(w_c + 1), w_addr.eq(w_addr + HW)]
            with m.If(done_write):
                m.d.sync += w_buf.eq(~w_buf)

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)
        avail = Signal()
        m.d.comb += avail.eq(full.bit_select(r_buf, 1))
        take = Signal()
        m.d.comb += [take.eq(advance & avail),
                     rd.addr.eq(Mux(r_buf, n, 0) + r_addr), rd.en.eq(take),
                     self.o.payload.eq(rd.data)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(avail)
        done_read = Signal()
        m.d.comb += done_read.eq(take & (r_addr == n - 1))
        with m.If(take):
            m.d.sync += r_addr.eq(Mux(r_addr == n - 1, 0, r_addr + 1))
            with m.If(done_read):
                m.d.sync += r_buf.eq(~r_buf)
        # Buffer flags: set when the writer completes one, cleared when the reader does.
        for b in range(2):
            set_b = done_write & (w_buf == b)
            clear_b = done_read & (r_buf == b)
            with m.If(set_b | clear_b):
                m.d.sync += full[b].eq(set_b)
        return m
