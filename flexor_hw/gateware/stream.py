"""Stream plumbing shared by the network tops."""

from amaranth.hdl import Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Fork"]


class Fork(wiring.Component):
    """One stream into two (``a`` and ``b``), every beat to both. Eager: each side takes the
    beat when it is ready, and the input moves on once both have it; ``valid`` of each side
    depends on ``i.valid`` and a register, never on the other side's ``ready``."""

    def __init__(self, shape):
        shape = Shape.cast(shape)
        super().__init__({"i": In(stream.Signature(shape)), "a": Out(stream.Signature(shape)),
                          "b": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        sent_a, sent_b = Signal(), Signal()
        done_a = Signal()
        done_b = Signal()
        m.d.comb += [
            self.a.payload.eq(self.i.payload), self.b.payload.eq(self.i.payload),
            self.a.valid.eq(self.i.valid & ~sent_a), self.b.valid.eq(self.i.valid & ~sent_b),
            done_a.eq(sent_a | self.a.ready), done_b.eq(sent_b | self.b.ready),
            self.i.ready.eq(done_a & done_b),
        ]
        with m.If(self.i.valid):
            with m.If(done_a & done_b):
                m.d.sync += [sent_a.eq(0), sent_b.eq(0)]
            with m.Else():
                m.d.sync += [sent_a.eq(done_a), sent_b.eq(done_b)]
        return m
