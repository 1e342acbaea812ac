"""Argmax over each vector of a stream: the class index of a classifier's outputs."""

from amaranth.hdl import Cat, Const, Module, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Argmax"]


class Argmax(wiring.Component):
    """Index of the largest of every ``n`` consecutive beats (the first one on ties, as
    ``numpy.argmax``), one output beat per vector.

    Takes a beat at most every other cycle (:attr:`cycles_per_beat`): the compare with the
    running maximum gets a cycle of its own and the update the next, so the only loop
    (maximum → compare → maximum) is cut by a register. A classifier's last layer emits far
    fewer beats than that allows; :class:`NetworkTop` counts it in its cycles per inference.

    Parameters
    ----------
    n : int
        Beats per vector.
    shape : shape-like
        Shape of the input values.
    """

    #: Cycles from a vector's last beat being taken to its index on ``o`` (o.valid high).
    latency = 4
    #: Fewest cycles between two beats taken.
    cycles_per_beat = 2

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

    @property
    def cycles_per_vector(self):
        return self.vector_cycles(self._n)

    @classmethod
    def vector_cycles(cls, n):
        """Steady-state cycles per vector of ``n`` beats: two per beat, and a last beat waits
        for the result before it to have left (``latency + 1`` cycles after that vector's
        last beat)."""
        return max(cls.cycles_per_beat * n, cls.latency + 1)

    def elaborate(self, platform):
        m = Module()
        n = self._n
        count = Signal(range(max(2, n)))
        first = Signal(init=1)          # count == 0, as a register
        last = Signal(init=n == 1)      # count == n - 1, as a register
        # Keys compare as unsigned (a signed value with its sign bit flipped), and a vector's
        # first beat carries a 1 above its key, so it wins whatever the maximum holds.
        width = self._shape.width
        key = self.i.payload.as_unsigned()
        if self._shape.signed:
            key = key ^ (1 << (width - 1))

        # Stage A: the beat, registered with its place in the vector.
        a_valid, a_first, a_last = Signal(), Signal(), Signal()
        a_key, a_index = Signal(width), Signal.like(count)
        # Stage B: compare with the maximum; stage C: update it. Stage A holds its beat
        # through stage C (the next beat is taken no earlier than C's cycle).
        win, c_last = Signal(), Signal()
        best, best_index = Signal(width), Signal.like(count)
        done = Signal()                 # stage C took a vector's last beat last cycle
        # A beat is taken only while stage A is empty, so a compare always sees the update
        # of the beat before it. Beats of the next vector flow while a result waits; only a
        # last beat waits for the result before it to have left. i.ready reads registers
        # only, so the consumer's o.ready reaches no enable in here (nor upstream).
        busy = Signal()                 # a vector's result is in the pipeline or waiting
        m.d.comb += self.i.ready.eq(~a_valid & ~(last & busy))
        taken = self.i.valid & self.i.ready
        with m.If(taken & last):
            m.d.sync += busy.eq(1)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += busy.eq(0)
        m.d.sync += a_valid.eq(taken)
        with m.If(taken):
            m.d.sync += [a_key.eq(key), a_index.eq(count), a_first.eq(first), a_last.eq(last)]
            with m.If(last):
                m.d.sync += [count.eq(0), first.eq(1), last.eq(n == 1)]
            with m.Else():
                m.d.sync += [count.eq(count + 1), first.eq(0), last.eq(count == n - 2)]

        # The compare in two halves: stage B registers each half's verdicts, stage C joins
        # them (the joined verdict enables the update directly).
        cand, held = Cat(a_key, a_first), Cat(best, Const(0, 1))
        h = (width + 1) // 2
        hi_gt, hi_eq, lo_gt = Signal(), Signal(), Signal()
        m.d.sync += [hi_gt.eq(a_valid & (cand[h:] > held[h:])),
                     hi_eq.eq(a_valid & (cand[h:] == held[h:])),
                     lo_gt.eq(cand[:h] > held[:h]), c_last.eq(a_valid & a_last)]
        m.d.comb += win.eq(hi_gt | (hi_eq & lo_gt))
        with m.If(win):
            m.d.sync += [best.eq(a_key), best_index.eq(a_index)]
        m.d.sync += done.eq(c_last)

        # The index goes out a cycle after the last beat's update, from best_index itself.
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(done):
            m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(best_index)]
        return m
