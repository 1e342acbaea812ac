"""Stream width conversion: vectors re-cut from beats of ``n_in`` elements into beats of
``n_out`` (FINN's StreamingDataWidthConverter), where one width divides the other."""

import operator

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import copy_register, kept_register

__all__ = ["Repack", "PIECE_BITS", "shift_in"]

#: Widest piece of a widening repack's word and output register under one enable.
PIECE_BITS = 32


def _positive(name, value):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer, not {value!r}") from None
    if value < 1:
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    return value


def shift_in(word, payload, last, *, e, tail, width):
    """The next value of ``word`` as a beat (``payload``, elements of ``width`` bits) shifts
    into its top and the word down a beat. A vector starts a word and its last beat
    (``last``) is at chunk ``e`` of its last word: there the word is aligned to the bottom
    with zeros above, and the beat's elements from ``tail`` on (past the vector's end)
    become zero."""
    cw = len(payload)
    chunks = len(word) // cw
    if tail < cw // width:
        payload = Mux(last, payload[:tail * width], payload)
    new = Cat(word[cw:], payload)
    if e < chunks - 1:
        aligned = Cat(word[(chunks - e) * cw:], payload, Const(0, (chunks - 1 - e) * cw))
        new = Mux(last, aligned, new)
    return new


class Repack(wiring.Component):
    """Vectors of ``length`` elements, from beats of ``n_in`` elements to beats of ``n_out``.

    Element ``k`` of a beat sits at bits ``k·w`` (``w`` the element's width). A vector's last
    beat is padded: its elements past the vector's end are zero on the output, and ignored on
    the input. One of ``n_in``, ``n_out`` divides the other:

    - widening (``n_in | n_out``): chunks of ``n_in`` shift into the top of a word and
      down (every bit drives one place) and the word leaves when full or at the vector's
      end, from a register of its own, so one beat is taken every cycle;
    - narrowing (``n_out | n_in``): a beat is held and its chunks leave one per cycle,
      chunks past the vector's end dropped;
    - equal widths: a register stage.

    Parameters
    ----------
    shape : Shape-castable
        Of one element.
    length : int
        Elements per vector.
    n_in, n_out : int
        Elements per input and output beat.
    pieces : bool
        A widening repack's word and output register in pieces of at most
        :data:`PIECE_BITS` bits, each enabled from its own copies of the control registers
        (else one enable for the whole word).
    emit : bool
        For emitted Verilog: those copies are ones Yosys keeps apart
        (:func:`~flexor_hw.gateware.pipeline.copy_register`).
    """

    def __init__(self, shape, length, n_in, n_out, *, pieces=True, emit=False):
        self._emit, self._pieces = emit, pieces
        self._shape = Shape.cast(shape)
        self._length = _positive("Length", length)
        self._n_in = _positive("Input width", n_in)
        self._n_out = _positive("Output width", n_out)
        if n_out % n_in and n_in % n_out:
            raise ValueError(f"One width must divide the other, not {n_in} and {n_out}")
        w = self._shape.width
        super().__init__({"i": In(stream.Signature(n_in * w)),
                          "o": Out(stream.Signature(n_out * w))})

    @property
    def beats_in(self):
        return -(-self._length // self._n_in)

    @property
    def beats_out(self):
        return -(-self._length // self._n_out)

    @property
    def cycles_per_vector(self):
        """Steady state: one beat per cycle on the wider side's count of the narrower."""
        return max(self.beats_in, self.beats_out)

    def elaborate(self, platform):
        m = Module()
        n_in, n_out, w = self._n_in, self._n_out, self._shape.width
        if n_in <= n_out:
            self._widen(m, n_in, n_out, w)
        else:
            self._narrow(m, n_in, n_out, w)
        return m

    def _widen(self, m, n_in, n_out, w):
        # Beats shift into the top of the word and down, so each input bit and each word bit
        # drives one place, not one per chunk (writing a beat at its chunk's place fanned
        # every payload bit out to all chunks: the placed LeNet-5's longest path, 11 ns of
        # routing). A vector starts a word, so its last beat is always at chunk
        # ``e = (beats − 1) mod chunks``: a last word that closes early is aligned to the
        # bottom with zeros above by wiring, under a registered last-beat flag.
        chunks = n_out // n_in
        beats = self.beats_in
        cw = n_in * w
        word = Signal(n_out * w, reset_less=True)
        at = Signal(chunks, init=1)             # the chunk the next beat fills, one-hot
        beat = Signal(range(max(2, beats)))
        last = Signal(init=beats == 1)          # beat == beats − 1
        full = Signal()                         # word is complete and waits for the output
        take = Signal()
        out_free = ~self.o.valid | self.o.ready
        # ``i.ready`` is a register: room unless a whole word waits behind a full output
        # (``o.ready`` does not reach it; the consumer's handshake through this unit into the
        # producer's FIFO was the placed digits MLP's longest path on the UP5K). It costs a
        # cycle only as the consumer resumes after a stall: a word takes two beats or more.
        # (Next values as plain expressions: see MatrixVectorUnit's issue logic.)
        ready = Signal(init=1)
        full_next, valid_next = Signal(), Signal()
        closes = at[chunks - 1] | last
        moves = full & out_free
        m.d.comb += [self.i.ready.eq(ready), take.eq(self.i.valid & ready),
                     full_next.eq(Mux(take & closes, 1, Mux(moves, 0, full))),
                     valid_next.eq(Mux(moves, 1, Mux(self.o.ready, 0, self.o.valid)))]
        out = Signal(n_out * w, reset_less=True)
        m.d.comb += self.o.payload.eq(out)
        e = (beats - 1) % chunks
        last_next = Mux(take, Mux(last, beats == 1, beat == beats - 2), last)
        pieces = -(-n_out * w // PIECE_BITS) if self._pieces else 1
        regs = [(self.o.valid, valid_next, "valid", 0), (full, full_next, "full", 0),
                (ready, ~full_next | ~valid_next, "ready", 1),
                (last, last_next, "last", beats == 1)]
        for reg, value, name, init in regs:
            if pieces > 1 and self._emit:   # registers with copies: kept copies themselves
                m.d.comb += reg.eq(kept_register(m, value, f"{name}_q", emit=True, init=init))
            else:
                m.d.sync += reg.eq(value)
        with m.If(take):
            m.d.sync += [beat.eq(Mux(last, 0, beat + 1)),
                         at.eq(Mux(closes, 1, at.rotate_left(1)))]
        # The word and the output register in pieces of at most 64 bits, each under its own
        # copies of the control registers: one enable reached the 480 flip-flops of LeNet-5's
        # conv2 input word, and another those of its output (from the window's ``valid``
        # and from conv2's ``w_full``; the longest paths placed at 87.2 and 98 MHz). The
        # word's copies of ``ready`` and ``last`` follow the reset (a piece that missed a beat
        # the others took would lose it); the output's of ``full`` and ``o.valid`` need not:
        # they equal their registers but in the cycle after a reset, where ``full`` is 0 and
        # a piece loaded then is not valid.
        tail = self._length - (beats - 1) * n_in
        for k in range(pieces):
            lo, hi = k * PIECE_BITS, (n_out * w if k == pieces - 1 else (k + 1) * PIECE_BITS)
            if pieces == 1:
                take_k, last_k, moves_k = take, last, moves
            else:
                rst = ResetSignal("sync")
                ready_k = copy_register(m, ~full_next | ~valid_next | rst, f"ready_{k}",
                                        emit=self._emit, init=1)
                last_k = kept_register(m, last_next, f"last_{k}", emit=self._emit,
                                       init=beats == 1)
                full_k = copy_register(m, full_next, f"full_{k}", emit=self._emit)
                valid_k = copy_register(m, valid_next, f"valid_{k}", emit=self._emit)
                take_k = self.i.valid & ready_k
                moves_k = full_k & (~valid_k | self.o.ready)
            with m.If(moves_k):
                m.d.sync += out[lo:hi].eq(word[lo:hi])
            new = shift_in(word, self.i.payload, last_k, e=e, tail=tail, width=w)
            with m.If(take_k):
                m.d.sync += word[lo:hi].eq(new[lo:hi])

    def _narrow(self, m, n_in, n_out, w):
        chunks = n_in // n_out
        beats = self.beats_out
        held = Signal(n_in * w, reset_less=True)
        left = Signal(range(chunks + 1))        # chunks of the held beat still to send
        k = Signal(range(max(2, chunks)))
        beat = Signal(range(max(2, beats)))     # output beats of the vector sent so far
        out_free = ~self.o.valid | self.o.ready
        out = Signal(n_out * w, reset_less=True)
        m.d.comb += self.o.payload.eq(out)
        send = Signal()
        m.d.comb += [send.eq((left != 0) & out_free),
                     self.i.ready.eq((left == 0) | ((left == 1) & out_free))]
        take = self.i.valid & self.i.ready
        parts = [held[c * n_out * w:(c + 1) * n_out * w] for c in range(chunks)]
        with m.If(send):
            sel = parts[0]
            for c in range(1, chunks):
                sel = Mux(k == c, parts[c], sel)
            m.d.sync += [self.o.valid.eq(1), out.eq(sel),
                         beat.eq(Mux(beat == beats - 1, 0, beat + 1)), k.eq(k + 1)]
            # The vector's last output beat ends the held input beat too.
            m.d.sync += left.eq(Mux(beat == beats - 1, 0, left - 1))
            tail = self._length - (beats - 1) * n_out
            if tail < n_out:
                with m.If(beat == beats - 1):
                    m.d.sync += out.eq(sel[:tail * w])
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(take):
            m.d.sync += [held.eq(self.i.payload), left.eq(chunks), k.eq(0)]
