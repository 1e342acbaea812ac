"""Weight stream: a ROM read ahead of its consumer through a registered pipeline, so the ROM's
output has a register of its own and nothing but wiring sits between the memory and it."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

__all__ = ["WeightStream", "PREFETCH_DEPTH"]

# Words held or in flight. A word issued at cycle t is in the ROM's output register at t + 2
# and counted at t + 3; the issue decision sees the count of the cycle before, so a consumer
# taking a word every cycle needs four (tested).
PREFETCH_DEPTH = 4


class WeightStream(wiring.Component):
    """Words ``0, 1, …, n_words − 1, 0, 1, …`` of a two-cycle ROM as a stream.

    A layer's weights are read in the same cyclic order for every vector, whatever the
    stalls: the order does not depend on when the engine steps. So the ROM runs ahead on its
    own: its address is a register, its read data goes into a register (block RAM output
    registers; ``Rom(..., latency=2)``), and the words wait in a queue of
    :data:`PREFETCH_DEPTH` registers whose head is ``o.payload``. Taking the head every cycle
    never finds the queue empty once ``primed`` has risen (it rises once, when the queue is
    first full, and stays high).

    Parameters
    ----------
    rom : :class:`flexor_hw.gateware.rom.Rom`
        With ``latency=2``; the stream drives its ``addr``. Add it as a submodule yourself.
    """

    def __init__(self, rom):
        if rom.latency != 2:
            raise ValueError(f"The weight stream reads a ROM with a latency of 2 cycles, not "
                             f"{rom.latency}")
        self._rom = rom
        super().__init__({"o": Out(stream.Signature(rom.width)), "primed": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rom, depth, n_words = self._rom, PREFETCH_DEPTH, self._rom.depth
        raddr = Signal(range(max(2, n_words)))
        v1, v2 = Signal(), Signal()                     # a word in the ROM, in its register
        count = Signal(range(depth + 1))
        slots = [Signal(rom.width, name=f"slot{k}") for k in range(depth)]
        issue = count + v1 + v2 < depth
        pop = self.o.valid & self.o.ready
        m.d.comb += [rom.addr.eq(raddr), self.o.valid.eq(count != 0),
                     self.o.payload.eq(slots[0])]
        m.d.sync += [v1.eq(issue), v2.eq(v1), count.eq(count + v2 - pop)]
        with m.If(issue):
            m.d.sync += raddr.eq(Mux(raddr == n_words - 1, 0, raddr + 1))
        with m.If(count == depth):
            m.d.sync += self.primed.eq(1)
        # Slot k's next value: shifted down on a pop; the arriving word goes to the first free
        # slot after the shift. ``count`` is a register, so each is one small mux.
        for k in range(depth):
            above = slots[k + 1] if k + 1 < depth else slots[k]
            with m.If(pop):
                with m.If(v2 & (count == k + 1)):
                    m.d.sync += slots[k].eq(rom.data)
                with m.Elif(count > k + 1):
                    m.d.sync += slots[k].eq(above)
            with m.Elif(v2 & (count == k)):
                m.d.sync += slots[k].eq(rom.data)
        return m
