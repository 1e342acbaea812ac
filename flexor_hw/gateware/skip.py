"""The fork of a residual block and its skip path: the skip FIFO as a component of its own."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .pipeline import SkidBuffer, StreamRegister, no_rw_check_attrs
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
    finds ``depth`` places whenever it would have.

    The buffer is a memory whose read registers its word (in the block RAM's output
    register on the ECP5) and an inner FIFO one place shorter behind it, as Amaranth's
    ``SyncFIFOBuffered``; the memory is read only at places written in an earlier cycle, so
    it carries ``no_rw_check`` (without it, Yosys ordered a read and a write of one address
    with a bypass multiplexer behind the block RAM: the placed ResNet-20's longest path on
    the ECP5-85k ran from the block's 5.6 ns clock-to-data through it)."""

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
        m = Module()
        places = self._depth + ROOM_SLACK
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

        def step(p):
            return Mux(p == inner - 1, 0, p + 1) if inner > 1 else 0
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
