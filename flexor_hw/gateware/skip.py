"""The fork of a residual block and its skip path: the skip FIFO as a component of its own."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import SkidBuffer, StreamRegister
from .add import Shortcut
from .stream import Fork

__all__ = ["SkipFifo", "ResidualFork"]


#: Places a skip FIFO holds beyond the ``depth`` it promises its writer: its input's
#: ``ready`` is a register, the room of the level a cycle before, so up to two beats may be
#: on their way when it falls.
ROOM_SLACK = 2


class SkipFifo(wiring.Component):
    """The skip path's buffer: ``depth`` places (block RAM or LUT RAM on FPGAs), a stream on
    each side. Its depth is computed by the FIFO sizing pass
    (:func:`flexor_hw.hw.fifo.skip_fifo_depth`), never guessed.

    ``i.ready`` is a register: room for a beat while the level of the cycle before was
    below ``depth`` (the compare of the level with the depth drove the
    fork's ready and, through it, the fork's input register: the placed ResNet-20's longest
    path at 94.3 MHz). The memory holds :data:`ROOM_SLACK` places more, so the writer still
    finds ``depth`` places whenever it would have."""

    def __init__(self, shape, depth):
        self._shape = Shape.cast(shape)
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    @property
    def depth(self):
        return self._depth

    def elaborate(self, platform):
        from .window import _line_buffer_attrs
        m = Module()
        places = self._depth + ROOM_SLACK
        width = self._shape.width
        # A beat written in one cycle may be read from the next on; a read of the place
        # written in the same cycle happens only while the memory is empty, and its word is
        # not used: the memory needs no read/write ordering, so its word goes straight into
        # the output register (in a block RAM, its own: the bypass Yosys adds otherwise put
        # a LUT behind the block, ResNet-20's longest path at 96.5 MHz).
        m.submodules.mem = mem = memory.Memory(shape=width, depth=places, init=[],
                                               attrs=_line_buffer_attrs(places, width))
        wp, rp = mem.write_port(), mem.read_port(domain="sync")
        wr, rd = Signal(range(places)), Signal(range(places))
        used = Signal(range(places + 1))        # beats taken in and not yet given out
        avail = Signal(range(places + 1))       # beats in the memory, not yet read
        room = Signal(init=1)
        write, advance, issue = Signal(), Signal(), Signal()
        m.d.comb += [write.eq(self.i.valid & room), advance.eq(~self.o.valid | self.o.ready),
                     issue.eq(advance & (avail != 0)), self.i.ready.eq(room),
                     wp.addr.eq(wr), wp.data.eq(self.i.payload), wp.en.eq(write),
                     rp.addr.eq(rd), rp.en.eq(advance), self.o.payload.eq(rp.data)]

        def bump(ptr):
            return Mux(ptr == places - 1, 0, ptr + 1)

        with m.If(write):
            m.d.sync += wr.eq(bump(wr))
        with m.If(issue):
            m.d.sync += rd.eq(bump(rd))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(avail != 0)
        m.d.sync += [avail.eq(avail + write - issue),
                     used.eq(used + write - (self.o.valid & self.o.ready)),
                     # at most depth + 1 beats in: the memory never holds all its places
                     room.eq(used < self._depth)]
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
    """

    def __init__(self, shape, channels, height, width, stride, pad_channels, depth):
        self._shape = Shape.cast(shape)
        self._geometry = (channels, height, width, stride, tuple(pad_channels))
        self._depth = depth
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
        m.submodules.skip_fifo = fifo = SkipFifo(self._shape, self._depth)
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
