"""The fork of a residual block and its skip path: the skip FIFO as a component of its own."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import SkidBuffer, StreamRegister, mux_tree, no_rw_check_attrs
from .add import Shortcut
from .stream import Fork

__all__ = ["SkipFifo", "ResidualFork"]


#: Places a skip FIFO holds beyond the ``depth`` it promises its writer: its input's
#: ``ready`` is a register, the room of the level a cycle before, so up to two beats may be
#: on their way when it falls.
ROOM_SLACK = 2


def _stepper(n):
    """A place counter's next value around ``n`` places."""
    return lambda p: Mux(p == n - 1, 0, p + 1) if n > 1 else 0


class SkipFifo(wiring.Component):
    """The skip path's buffer: ``depth`` places (block RAM or LUT RAM on FPGAs), a stream on
    each side. Its depth is computed by the FIFO sizing pass
    (:func:`flexor_hw.hw.fifo.skip_fifo_depth`), never guessed.

    ``i.ready`` is a register: room for a beat while the level of the cycle before was
    below ``depth`` (the compare of the level with the depth drove the
    fork's ready and, through it, the fork's input register: the placed ResNet-20's longest
    path at 94.3 MHz). The memory holds :data:`ROOM_SLACK` places more, so the writer still
    finds ``depth`` places whenever it would have.

    The buffer is a memory whose read registers its word (in the block RAM's output
    register on the ECP5) and an inner FIFO one place shorter behind it, as Amaranth's
    ``SyncFIFOBuffered``; the memory is read only at places written in an earlier cycle, so
    it carries ``no_rw_check`` (without it, Yosys ordered a read and a write of one address
    with a bypass multiplexer behind the block RAM: the placed ResNet-20's longest path on
    the ECP5-85k ran from the block's 5.6 ns clock-to-data through it).

    ``bank_words`` (a power of two): places beyond that many are cut into memories of that
    many words each, a block RAM's in its configuration (:meth:`_banked`)."""

    def __init__(self, shape, depth, *, bank_words=None):
        self._shape = Shape.cast(shape)
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        if bank_words is not None and (not isinstance(bank_words, int) or bank_words < 2
                                       or bank_words & (bank_words - 1)):
            raise ValueError(f"Bank words must be a power of two of at least 2, "
                             f"not {bank_words!r}")
        self._depth = depth
        self._bank_words = bank_words
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    @property
    def depth(self):
        return self._depth

    @property
    def banks(self):
        """Memories the places are cut into (1: one memory)."""
        inner = self._depth + ROOM_SLACK - 1
        if self._bank_words is None or inner <= self._bank_words:
            return 1
        return -(-inner // self._bank_words)

    def elaborate(self, platform):
        m = Module()
        places = self._depth + ROOM_SLACK
        if self.banks > 1:
            return self._banked(m)
        inner = places - 1                      # the read register holds the last place
        mem = memory.Memory(shape=self._shape.width, depth=inner, init=[],
                            attrs=no_rw_check_attrs(places, self._shape.width))
        m.submodules.buffer = mem
        wr, rd = mem.write_port(), mem.read_port(domain="sync")
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        level = Signal(range(inner + 1))        # places written and not yet read
        valid = Signal()                        # the read register holds a beat
        room = Signal(init=1)
        write = Signal()
        read = Signal()
        m.d.comb += [write.eq(self.i.valid & room),
                     read.eq((level != 0) & (~valid | self.o.ready)),
                     wr.addr.eq(produce), wr.data.eq(self.i.payload), wr.en.eq(write),
                     rd.addr.eq(consume), rd.en.eq(read),
                     self.i.ready.eq(room), self.o.payload.eq(rd.data),
                     self.o.valid.eq(valid)]

        step = _stepper(inner)
        with m.If(write):
            m.d.sync += produce.eq(step(produce))
        with m.If(read):
            m.d.sync += [consume.eq(step(consume)), valid.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += valid.eq(0)
        m.d.sync += level.eq(level + write - read)
        # the level a cycle later is at most depth, so a write always finds a place (the
        # inner places are depth + 1: the read register holds one more)
        m.d.sync += room.eq(level + valid < self._depth)
        return m

    def _banked(self, m):
        """The places in :attr:`banks` memories of ``bank_words`` (a block RAM each), each
        bank's word registered on its own (in its block's output register on the ECP5),
        then the bank chosen: two cycles from a read to the output. (One memory deeper
        than a block is a stack of blocks whose data Yosys chooses by the address behind
        them, so no block's register can take its word: ResNet-32's longest path placed
        on the ECP5-85k ran from such a stack, 5.6 ns of the block's clock-to-data.)"""
        bw, nb = self._bank_words, self.banks
        ab = bw.bit_length() - 1
        total = nb * bw
        width = self._shape.width
        produce = Signal(range(total))
        consume = Signal(range(total))
        level = Signal(range(total + 1))        # places written and not yet read
        v1 = Signal()           # the banks' read data hold a beat (of bank ``sel1``)
        v2 = Signal()           # the words' registers hold one (of bank ``sel2``)
        sel1, sel2 = Signal(range(nb)), Signal(range(nb))
        room = Signal(init=1)
        write, read, load = Signal(), Signal(), Signal()
        m.d.comb += [write.eq(self.i.valid & room),
                     load.eq(v1 & (~v2 | self.o.ready)),
                     read.eq((level != 0) & (~v1 | load)),
                     self.i.ready.eq(room), self.o.valid.eq(v2)]
        words = []
        for b in range(nb):
            mem = memory.Memory(shape=width, depth=bw, init=[],
                                attrs=no_rw_check_attrs(bw, width))
            m.submodules[f"bank{b}"] = mem
            wr, rd = mem.write_port(), mem.read_port(domain="sync")
            m.d.comb += [wr.addr.eq(produce[:ab]), wr.data.eq(self.i.payload),
                         wr.en.eq(write & (produce[ab:] == b)),
                         rd.addr.eq(consume[:ab]), rd.en.eq(read & (consume[ab:] == b))]
            word = Signal(width, name=f"word{b}", reset_less=True)
            with m.If(load):
                m.d.sync += word.eq(rd.data)
            words.append(word)
        m.d.comb += self.o.payload.eq(mux_tree(sel2, words))

        step = _stepper(total)
        with m.If(write):
            m.d.sync += produce.eq(step(produce))
        with m.If(read):
            m.d.sync += [consume.eq(step(consume)), sel1.eq(consume[ab:])]
        with m.If(load):
            m.d.sync += sel2.eq(sel1)
        m.d.sync += [v1.eq(read | (v1 & ~load)), v2.eq(load | (v2 & ~self.o.ready)),
                     level.eq(level + write - read),
                     # as the single memory's: the level a cycle later is at most depth
                     room.eq(level + v1 + v2 < self._depth)]
        return m


class ResidualFork(wiring.Component):
    """Every beat of ``i`` to the main path ``o`` and to the skip path, whose output ``skip``
    the block's residual add takes: the option-A shortcut in two halves around the
    :class:`SkipFifo` — pixels are dropped as the block input arrives (the FIFO keeps only
    what the add will take), zero channels are added where the add takes them.

    Parameters
    ----------
    shape : Shape-castable
    channels, height, width : int
        Of the block input.
    stride : int
        Of the shortcut.
    pad_channels : (int, int)
        Zero channels before and after.
    depth : int
        Places of the skip FIFO.
    bank_words : int or None
        The FIFO's places in memories of this many words (:class:`SkipFifo`).
    """

    def __init__(self, shape, channels, height, width, stride, pad_channels, depth, *,
                 bank_words=None):
        self._shape = Shape.cast(shape)
        self._geometry = (channels, height, width, stride, tuple(pad_channels))
        self._depth = depth
        self._bank_words = bank_words
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape)),
                          "skip": Out(stream.Signature(self._shape))})

    def elaborate(self, platform):
        m = Module()
        c, h, w, s, (before, after) = self._geometry
        # The input through a skid buffer, so that ``i.ready`` is a register: the fork's
        # ready is both paths' and the subsampler's, and it ran into the output FIFO of the
        # add before it (the placed ResNet-20's longest paths on the ECP5-85k, 11.8 ns of
        # routing).
        m.submodules.inp = inp = SkidBuffer(self._shape)
        wiring.connect(m, wiring.flipped(self.i), inp.i)
        m.submodules.fork = fork = Fork(self._shape)
        wiring.connect(m, inp.o, fork.i)
        wiring.connect(m, fork.a, wiring.flipped(self.o))
        m.submodules.subsample = sub = Shortcut(self._shape, c, h, w, s)
        wiring.connect(m, fork.b, sub.i)
        m.submodules.skip_fifo = fifo = SkipFifo(self._shape, self._depth,
                                                     bank_words=self._bank_words)
        wiring.connect(m, sub.o, fifo.i)
        # The FIFO's word into a register before it leaves for the add, whose multiplier
        # takes it (block RAM data straight into a MULT18X18D's operand register was the
        # placed ResNet-20's longest path, 12.5 ns on the ECP5-85k).
        m.submodules.skip_reg = reg = StreamRegister(self._shape)
        wiring.connect(m, fifo.o, reg.i)
        m.submodules.shortcut = sc = Shortcut(self._shape, c, -(-h // s), -(-w // s), 1,
                                              before, after)
        wiring.connect(m, reg.o, sc.i)
        wiring.connect(m, sc.o, wiring.flipped(self.skip))
        return m
