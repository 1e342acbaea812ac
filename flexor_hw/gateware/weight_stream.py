"""Weight stream: a ROM read ahead of its consumer through a registered pipeline, so the ROM's
output has a register of its own and nothing but wiring sits between the memory and it."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

__all__ = ["WeightStream", "PREFETCH_DEPTH", "PRIME_CYCLES"]

# Words held or in flight. A word issued at cycle t is in the ROM's output register at t + 2
# and counted at t + 3; the issue decision sees the count of the cycle before, so a consumer
# taking a word every cycle needs four (tested).
PREFETCH_DEPTH = 4

# Clock edges from reset until ``primed`` is high (tested). A consumer that cannot want a word
# sooner needs no gate on it: a layer engine loads its first vector ``fan_in`` beats after
# reset at the earliest, and steps a cycle after that.
PRIME_CYCLES = 7


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
        slots = [Signal(rom.width, name=f"slot{k}") for k in range(depth)]
        # How many words are held, one-hot (at[k]: k words): the pop feeds one small mux per
        # bit and no adder, so the step register's fan-out is the only long wire behind it.
        at = [Signal(name=f"at{k}", init=k == 0) for k in range(depth + 1)]
        at_next = [Signal(name=f"at{k}_next") for k in range(depth + 1)]
        arrive = [Signal(name=f"arrive{k}") for k in range(depth + 1)]  # v2 & at[k]
        pop = ~at[0] & self.o.ready
        grow, shrink = v2 & ~pop, pop & ~v2
        issue = Cat(*(at[k] & (k + v1 + v2 < depth) for k in range(depth + 1))).any()
        m.d.comb += [rom.addr.eq(raddr), self.o.valid.eq(~at[0]), self.o.payload.eq(slots[0])]
        for k in range(depth + 1):
            below = at[k - 1] if k > 0 else 0
            above = at[k + 1] if k < depth else 0
            m.d.comb += at_next[k].eq(Mux(grow, below, Mux(shrink, above, at[k])))
            m.d.sync += [at[k].eq(at_next[k]), arrive[k].eq(v1 & at_next[k])]
        m.d.sync += [v1.eq(issue), v2.eq(v1)]
        with m.If(issue):
            m.d.sync += raddr.eq(Mux(raddr == n_words - 1, 0, raddr + 1))
        with m.If(at[depth]):
            m.d.sync += self.primed.eq(1)
        # Slot k's next value: shifted down on a pop; the arriving word goes to the first free
        # slot after the shift.
        for k in range(depth):
            above = slots[k + 1] if k + 1 < depth else slots[k]
            keep_above = ~Cat(*at[:k + 2]).any()                        # more than k + 1
            with m.If(pop):
                with m.If(arrive[k + 1]):
                    m.d.sync += slots[k].eq(rom.data)
                with m.Elif(keep_above):
                    m.d.sync += slots[k].eq(above)
            with m.Elif(arrive[k]):
                m.d.sync += slots[k].eq(rom.data)
        return m
