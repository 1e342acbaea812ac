"""Activation vector buffer: a layer's input vectors in a memory, read ``lanes`` elements per
step along the vector, cyclically, as the layer's weight rows run through it."""

import math
import operator

from amaranth.hdl import Cat, Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["VectorBuffer", "vector_words", "tail_cycles"]


def vector_words(fan_in, lanes):
    """Words of ``lanes`` elements a :class:`VectorBuffer` keeps per vector: up to the
    highest word a window reads."""
    return (fan_in - 1) // lanes + 2


def tail_cycles(fan_in, lanes):
    """Load cycles per vector beyond one per element: a second tail word when
    ``fan_in mod lanes ≥ 2``."""
    return int(fan_in % lanes >= 2)


class VectorBuffer(wiring.Component):
    """Two vectors of ``fan_in`` activations in a memory: one loads while the other is read.

    A layer engine consumes its weights ``lanes`` at a time in row-major order, so the
    activations it needs form the periodic sequence ``x[0], …, x[f−1], x[0], …`` read
    ``lanes`` (``M``) elements per step. The buffer keeps each vector as words of ``M``
    elements, extended by its first elements, ``e[i] = x[i mod f]`` for ``i < f + M``, so
    every window ``r … r+M−1`` (``r < f``) lies in two consecutive words ``a = ⌊r/M⌋`` and
    ``a + 1``. One word is read per step: the low word is the previous step's high word, or,
    after the window wraps round the vector (``a = 0``), a register copy of word 0. The window
    is the pair shifted by ``r mod M``, which only takes multiples of ``gcd(f, M)``: a
    ``M / gcd``-way multiplexer, not a barrel shifter.

    Flip-flops grow with ``lanes``, not with ``fan_in``: the vectors sit in the memory (block
    RAM or LUT RAM, as the synthesis tool maps ``2·(⌊(f−1)/M⌋ + 2)`` words of ``M`` elements).

    Load side: ``i`` takes a vector, one element per beat; ``full`` rises when it is complete
    (the cycle after its last beat, two cycles when ``f mod M ≥ 2``: a second tail word is
    written) and ``i`` stays not ready until ``swap``. With ``double=False`` there is one
    vector's room: the next vector loads only while ``hold`` is low (the reader is done with
    the vector under read), for half the memory.

    Read side: ``swap`` (with ``full``) makes the loaded vector the one under read, at
    position 0; ``step`` moves the read position ``M`` elements on, modulo ``fan_in``. Both
    take effect at the next cycle; ``o`` always shows the window at the read position,
    element ``m`` at bits ``[m·w, (m+1)·w)``, from registers and the memory's read register.

    Parameters
    ----------
    shape : Shape-castable
        Of one activation.
    fan_in : int
        Elements per vector (``f``).
    lanes : int
        Elements per window (``M``), from 1 to ``fan_in``.
    double : bool
        Room for two vectors (load one while the other is read) or one.
    """

    def __init__(self, shape, fan_in, lanes, *, double=True):
        self._shape = Shape.cast(shape)
        for name, value in (("Fan-in", fan_in), ("Lanes", lanes)):
            try:
                if operator.index(value) < 1:
                    raise TypeError
            except TypeError:
                raise TypeError(f"{name} must be a positive integer, not {value!r}") from None
        if lanes > fan_in:
            raise ValueError(f"Lanes ({lanes}) must not exceed the fan-in ({fan_in})")
        self._f, self._m, self._double = fan_in, lanes, bool(double)
        super().__init__({
            "i": In(stream.Signature(self._shape)),
            "full": Out(1),
            "hold": In(1),
            "swap": In(1),
            "step": In(1),
            "o": Out(lanes * self._shape.width),
        })

    @property
    def words_per_vector(self):
        """Words of ``M`` elements kept per vector: up to the highest word a window reads."""
        return vector_words(self._f, self._m)

    @property
    def memory_bits(self):
        return (1 + self._double) * self.words_per_vector * self._m * self._shape.width

    @property
    def load_cycles(self):
        """Cycles per vector on the load side beyond one per element (the tail word)."""
        return tail_cycles(self._f, self._m)

    def elaborate(self, platform):
        m = Module()
        f, lanes, w = self._f, self._m, self._shape.width
        fm = f % lanes
        nw = self.words_per_vector
        word_bits = lanes * w
        g = math.gcd(f, lanes)

        m.submodules.mem = mem = memory.Memory(shape=word_bits, depth=(1 + self._double) * nw,
                                               init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        # Load side: elements shift into a word register from the top; word 0 is also kept
        # in a register (it extends the vector's last word and is the low word after a wrap),
        # one per half when double-buffered, so a swap copies nothing: the reader selects
        # the half's register, and no 560-bit enable hangs on the swap decision.
        pack = Signal(word_bits)
        packed = Signal(word_bits)          # pack with this beat shifted in
        lhalf = Signal()
        rhalf = Signal(init=1)              # the half under read (the other one loads)
        if self._double:
            word0s = [Signal(word_bits, name=f"word0_{h}") for h in (0, 1)]
            word0 = Mux(lhalf, word0s[1], word0s[0])        # of the vector loading
            rword0 = Mux(rhalf, word0s[1], word0s[0])       # of the vector under read
        else:           # loads only while the reader is done: one register serves both
            word0 = rword0 = Signal(word_bits, name="word0")
        lword = Signal(range(nw))
        lfill = Signal(range(lanes))
        tail = Signal()
        last_word, last_fill = (f // lanes, fm - 1) if fm else (f // lanes - 1, lanes - 1)
        ready = ~self.full & ~tail if self._double else ~self.full & ~tail & ~self.hold
        m.d.comb += [self.i.ready.eq(ready),
                     packed.eq(Cat(pack[w:], self.i.payload) if lanes > 1 else self.i.payload)]
        taken = self.i.valid & self.i.ready
        is_last = (lword == last_word) & (lfill == last_fill)
        # With the last beat, the vector's last word goes out: a partial one is completed by
        # the first elements of word 0 (e[f + j] = x[j]).
        if fm:
            last_data = Cat(packed[(lanes - fm) * w:], word0[:(lanes - fm) * w])
        else:
            last_data = packed
        base_l = Mux(lhalf, nw, 0) if self._double else 0
        m.d.comb += [wr.addr.eq(Mux(tail, base_l + last_word + 1, base_l + lword)),
                     wr.data.eq(Mux(tail, word0[(lanes - fm) * w:] if fm else 0,
                                    Mux(is_last, last_data, packed)))]
        with m.If(taken):
            m.d.sync += pack.eq(packed)
            with m.If(is_last):
                m.d.comb += wr.en.eq(1)
                m.d.sync += [lword.eq(0), lfill.eq(0)]
                if fm >= 2:
                    m.d.sync += tail.eq(1)
                else:
                    m.d.sync += self.full.eq(1)
            with m.Elif(lfill == lanes - 1):
                m.d.comb += wr.en.eq(1)
                m.d.sync += [lword.eq(lword + 1), lfill.eq(0)]
            with m.Else():
                m.d.sync += lfill.eq(lfill + 1)
            with m.If((lword == 0) & (lfill == lanes - 1)):
                if self._double:
                    with m.If(lhalf):
                        m.d.sync += word0s[1].eq(packed)
                    with m.Else():
                        m.d.sync += word0s[0].eq(packed)
                else:
                    m.d.sync += word0.eq(packed)
        with m.If(tail):
            m.d.comb += wr.en.eq(1)
            m.d.sync += [tail.eq(0), self.full.eq(1)]

        # Read side: the window at r = a·M + s lies in words a (low) and a + 1 (the memory's
        # read register); the read address is always that of the next cycle's high word. The
        # three addresses it can be (stay, step, swap) are kept in registers, so the address
        # is a 3-way multiplexer on step and swap, not an adder behind a comparator (the
        # memory can be LUT RAM across the chip: that path set the LeNet-5 build's Fmax).
        r = Signal(range(f))
        a = Signal(range(nw))
        s = Signal(range(lanes))
        prev = Signal(word_bits)
        wrap = Signal(init=f <= lanes)      # r >= f - lanes: the next step wraps
        r_wrap = r + lanes - f              # < lanes: the window after a wrap starts in word 0
        r_next, a_next, s_next = Signal.like(r), Signal.like(a), Signal.like(s)
        wrap_next, half_next = Signal(), Signal()
        m.d.comb += [
            r_next.eq(Mux(self.swap, 0, Mux(self.step, Mux(wrap, r_wrap, r + lanes), r))),
            a_next.eq(Mux(self.swap, 0, Mux(self.step, Mux(wrap, 0, a + 1), a))),
            s_next.eq(Mux(self.swap, 0, Mux(self.step & wrap, r_wrap, s))),
            wrap_next.eq(Mux(self.swap, f <= lanes,
                             Mux(self.step,
                                 Mux(wrap, r_wrap >= f - lanes, r + 2 * lanes >= f), wrap))),
            half_next.eq(Mux(self.swap, ~rhalf, rhalf)),
        ]

        def base(half):
            return Mux(half, nw, 0) if self._double else 0

        addr_w = range((1 + self._double) * nw)
        base0 = nw if self._double else 0   # base(rhalf) at reset
        addr_stay = Signal(addr_w, init=base0 + 1)
        addr_step = Signal(addr_w, init=base0 + (1 if f <= lanes else 2))
        addr_swap = Signal(addr_w, init=1)
        m.d.sync += [addr_stay.eq(base(half_next) + a_next + 1),
                     addr_step.eq(base(half_next) + Mux(wrap_next, 1, a_next + 2)),
                     addr_swap.eq(base(~half_next) + 1),
                     r.eq(r_next), a.eq(a_next), s.eq(s_next), wrap.eq(wrap_next),
                     rhalf.eq(half_next)]
        m.d.comb += rd.addr.eq(Mux(self.swap, addr_swap, Mux(self.step, addr_step, addr_stay)))
        with m.If(self.swap):
            m.d.sync += [lhalf.eq(~lhalf), self.full.eq(0)]
        # The previous high word is taken on every step, a swap or not (after a swap the low
        # word is word 0's register): its 560-bit enable is the step register itself.
        with m.If(self.step):
            m.d.sync += prev.eq(rd.data)

        # The window's selects are registers too (each drives every bit of the window).
        at0 = Signal(init=1)                # a = 0: the low word is word 0
        shifts = list(range(g, lanes, g))   # s is a multiple of g: compare, not divide
        at_shift = [Signal(name=f"at_shift{k}") for k in shifts]
        m.d.sync += [at0.eq(a_next == 0)] + [sel.eq(s_next == k)
                                             for sel, k in zip(at_shift, shifts)]
        pair = Cat(Mux(at0, rword0, prev), rd.data)
        window = pair[:word_bits]
        for shift, sel in zip(shifts, at_shift):
            window = Mux(sel, pair[shift * w:shift * w + word_bits], window)
        m.d.comb += self.o.eq(window)
        return m
