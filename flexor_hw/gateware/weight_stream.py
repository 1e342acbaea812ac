"""Weight stream: a ROM's words in cyclic order, the ROM's read stalled while the consumer
waits (or, behind a banked ROM, read ahead into a ring), so the ROM's output has a register
of its own and nothing but wiring sits between the memory and it."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from .pipeline import copy_register, mux_tree

#: Bits of the word each copy of the read pointer chooses.
PIECE_BITS = 64

#: Words wider than this take their slots' enables per piece (:class:`WeightStream`): one
#: pointer's compare enabled the ring's 192-bit slots of LeNet-5's conv2 on the ECP5-25k
#: (placed at 105.6 to 109.5 MHz at three seeds; with the enables per piece 95.0 to 104.5),
#: and its 640-bit ones on the 45k with 338 endpoints late (73.2 MHz; per piece 82.9).
ENABLE_PIECES_ABOVE = 256

__all__ = ["WeightStream", "prefetch_depth", "prime_cycles"]


def prefetch_depth(latency):
    """Words held or in flight for a ROM of ``latency`` cycles. A word issued at cycle t is
    in the ROM's output register at t + latency and counted at t + latency + 1; the issue
    decision sees the count of the cycle before, so a consumer taking a word every cycle needs
    ``latency + 2`` (tested)."""
    return latency + 2


def prime_cycles(latency, stall=False):
    """Clock edges from reset until ``primed`` is high (tested): a ROM that stalls is read
    ``latency`` times and holds its first word; the ring fills. A consumer that cannot want a
    word sooner needs no gate on it: a layer engine loads its first vector ``fan_in`` beats
    after reset at the earliest, and steps a cycle after that."""
    return latency if stall else 2 * latency + 3


class WeightStream(wiring.Component):
    """Words ``0, 1, …, n_words − 1, 0, 1, …`` of a ROM as a stream.

    A ROM that stalls (``Rom(..., stall=True)``; not banked) is the stream itself: its
    address counts on and every register of its read loads only when a word is taken (and
    ``latency`` times after reset, to prime it), so ``o.payload`` is the ROM's ``data``, the
    word taken next. Nothing else holds words: in block RAM the word's register is the
    blocks' output register (:mod:`flexor_hw.outreg`, its clock enable the take), and the
    take reaches only the blocks' clock enables and the address, not a flip-flop a bit.
    (A ring of ``latency + 2`` words took LeNet-5's conv2 on the ECP5-25k 815 LUT4 and
    1,315 flip-flops beside its block RAMs.)

    A banked ROM (five cycles, its registers many and spread over the device) runs ahead
    instead. A layer's weights are read in the same cyclic order for every vector, whatever
    the stalls: the order does not depend on when the engine steps. So the ROM runs ahead on
    its own: its address is a register, its read data goes into a register (block RAM output
    registers; ``Rom(..., latency=2)``), and the words wait in a ring of
    :func:`prefetch_depth` registers: an arriving word goes to the write pointer's slot,
    ``o.payload`` is the read pointer's, so taking a word moves a pointer and a count, not
    every bit of every slot (a wide unit's ``o.ready`` fanned out to 768 flip-flops and was
    the placed LeNet-5's longest path, 13.3 ns of routing). Taking the head every cycle never
    finds the queue empty once ``primed`` has risen (it rises once, when the queue is first
    full, and stays high).

    Parameters
    ----------
    rom : :class:`flexor_hw.gateware.rom.Rom`
        One that stalls, or one with a latency of 2 cycles or more (a banked block RAM ROM's
        is 5); the stream drives its ``addr`` (and ``en``). Add it as a submodule yourself.
    emit : bool
        The read pointer's copies (one per :data:`PIECE_BITS` bits of the word, each
        choosing its piece of the head) as ``flexor_copy`` instances, which Yosys keeps
        apart; else plain registers.
    """

    def __init__(self, rom, *, emit=False):
        if rom.latency < 2 and not rom.stall:
            raise ValueError(f"The weight stream reads a ROM with a latency of 2 cycles or more, "
                             f"not {rom.latency}")
        self._rom, self._emit = rom, emit
        super().__init__({"o": Out(stream.Signature(rom.width)), "primed": Out(1)})
        #: ``o.valid``'s next value (it is a register), for a consumer that registers what
        #: it will accept next
        self.valid_next = Signal(name="valid_next")

    @property
    def prime_cycles(self):
        """Clock edges from reset until ``primed`` is high (:func:`prime_cycles`)."""
        return prime_cycles(self._rom.latency, self._rom.stall)

    def elaborate(self, platform):
        if self._rom.stall:
            return self._stalled()
        m = Module()
        rom, n_words = self._rom, self._rom.depth
        depth = prefetch_depth(rom.latency)
        raddr = Signal(range(max(2, n_words)))
        # a word in the ROM's pipeline, one flag per cycle; the last: in its output register
        flight = [Signal(name=f"v{k + 1}") for k in range(rom.latency)]
        arrives = flight[-1]
        slots = [Signal(rom.width, name=f"slot{k}", reset_less=True) for k in range(depth)]
        # How many words are held, one-hot (at[k]: k words): the pop feeds one small mux per
        # bit and no adder.
        at = [Signal(name=f"at{k}", init=k == 0) for k in range(depth + 1)]
        rptr = Signal(range(depth), name="rptr")
        wptr = Signal(range(depth), name="wptr")
        pop = ~at[0] & self.o.ready
        grow, shrink = arrives & ~pop, pop & ~arrives
        # A word is issued while the ring has a place for it beside those held and in
        # flight: ``issue`` is a register holding that for the next cycle, from a count of
        # the free places (issues take one, pops give one back), so it enables the ROM's
        # address register straight from a flip-flop (the sum of the in-flight flags and
        # the compares behind it, into the address register of fc1's banked ROM across the
        # device, were the placed LeNet-5's longest path at a seed: 8.8 ns of routing).
        free = Signal(range(depth + 1), init=depth, name="free")
        issue = Signal(init=1, name="issue")
        free_next = free - issue + pop
        m.d.sync += [free.eq(free_next), issue.eq(free_next != 0)]
        # The head: each piece of the word chosen by a copy of the read pointer of its own
        # (one register chose all 192 bits of LeNet-5's conv2 word, its multiplexers placed
        # by the decoders across the device: 11 ns of routing, the longest path at a seed).
        rptr_next = Mux(pop, Mux(rptr == depth - 1, 0, rptr + 1), rptr)
        pieces = []
        for j, lo in enumerate(range(0, rom.width, PIECE_BITS)):
            hi = min(rom.width, lo + PIECE_BITS)
            # (no reset: a cycle after one, the pointer is 0 and nothing pops until the
            # ring primes again, so the copy is 0 long before a word is taken)
            sel = copy_register(m, rptr_next, f"rptr_{j}", emit=self._emit) \
                if rom.width > PIECE_BITS else rptr
            # a balanced tree on the pointer's bits, not a chain of compares (the chain, six
            # deep, into fc1's word register was the placed LeNet-5's longest path at a seed:
            # 10.0 ns)
            pieces.append(mux_tree(sel, [slot[lo:hi] for slot in slots]))
        m.d.comb += [rom.addr.eq(raddr), self.o.valid.eq(~at[0]),
                     self.o.payload.eq(Cat(*pieces))]
        for k in range(depth + 1):
            below = at[k - 1] if k > 0 else 0
            above = at[k + 1] if k < depth else 0
            m.d.sync += at[k].eq(Mux(grow, below, Mux(shrink, above, at[k])))
        m.d.comb += self.valid_next.eq(~Mux(grow, 0, Mux(shrink, at[1], at[0])))
        m.d.sync += [a.eq(b) for a, b in zip(flight, [issue] + flight[:-1])]
        with m.If(issue):
            m.d.sync += raddr.eq(Mux(raddr == n_words - 1, 0, raddr + 1))
        with m.If(at[depth]):
            m.d.sync += self.primed.eq(1)
        m.d.sync += rptr.eq(rptr_next)
        # the word in the ROM's output register goes to the write pointer's slot
        if rom.width <= ENABLE_PIECES_ABOVE:
            with m.If(arrives):
                m.d.sync += wptr.eq(Mux(wptr == depth - 1, 0, wptr + 1))
                for k in range(depth):
                    with m.If(wptr == k):
                        m.d.sync += slots[k].eq(rom.data)
            return m
        wptr_next = Mux(arrives, Mux(wptr == depth - 1, 0, wptr + 1), wptr)
        m.d.sync += wptr.eq(wptr_next)
        # A wide word: each piece of each slot enabled by a register of its own, set a cycle
        # ahead from the flag of the word a cycle from arriving and the next write pointer
        # (one pointer's compare enabled all 2,187 slot flip-flops of LeNet-5's conv2 on the
        # ECP5-85k: 16.9 ns of routing, the longest path placed).
        coming = flight[-2]
        for j, lo in enumerate(range(0, rom.width, PIECE_BITS)):
            hi = min(rom.width, lo + PIECE_BITS)
            for k in range(depth):
                en = copy_register(m, coming & (wptr_next == k), f"we{k}_{j}", emit=self._emit)
                with m.If(en):
                    m.d.sync += slots[k][lo:hi].eq(rom.data[lo:hi])
        return m

    def _stalled(self):
        m = Module()
        rom, n_words = self._rom, self._rom.depth
        raddr = Signal(range(max(2, n_words)))
        # the reads since reset, up to the ROM's latency: primed once its first word is out
        reads = Signal(range(rom.latency + 1))
        go = Signal()
        m.d.comb += [go.eq(self.o.ready | ~self.primed), rom.en.eq(go), rom.addr.eq(raddr),
                     self.o.valid.eq(self.primed), self.o.payload.eq(rom.data)]
        with m.If(go):
            m.d.sync += raddr.eq(Mux(raddr == n_words - 1, 0, raddr + 1))
        with m.If(~self.primed):
            m.d.sync += [reads.eq(reads + 1), self.primed.eq(reads == rom.latency - 1)]
        m.d.comb += self.valid_next.eq(self.primed | (reads == rom.latency - 1))
        return m
