"""The fork of a residual block and its skip path: the skip FIFO as a component of its own."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .pipeline import SkidBuffer, StreamRegister
from .add import Shortcut
from .stream import Fork
from .window import NO_RW_CHECK

__all__ = ["SkipFifo", "ResidualFork"]


#: Places a skip FIFO's memory holds beyond the ``depth`` it promises its writer: its input's
#: ``ready`` is a register, the room of the level two cycles before, so up to two beats more
#: than ``depth`` may be held when it falls (one of them in the read register).
ROOM_SLACK = 2


class SkipFifo(wiring.Component):
    """The skip path's buffer: ``depth`` places (block RAM or LUT RAM on FPGAs), a stream on
    each side. Its depth is computed by the FIFO sizing pass
    (:func:`flexor_hw.hw.fifo.skip_fifo_depth`), never guessed.

    ``i.ready`` is a register: room for a beat while the beats held two cycles before were
    fewer than ``depth`` (the compare of the level with the depth drove the fork's ready
    and, through it, the fork's input register: the placed ResNet-20's longest path at
    94.3 MHz). The memory holds :data:`ROOM_SLACK` places more, so the writer still finds
    ``depth`` places whenever it would have.

    The memory is cut by bits into ``slices`` (widths, least significant first; default one
    slice), each its own memory at the same addresses: a FIFO deeper than a block RAM's
    widest configuration, kept whole, is stacked in depth and read through a mux per bit
    after the blocks' data pins (the placed ResNet-20's longest path, 5,652 × 8 bits in three
    2048 × 9 blocks); cut into slices of one configuration's width (four of 8192 × 2), every
    data pin drives the output register alone, which then moves into the block
    (:mod:`flexor_hw.outreg`). :func:`flexor_hw.hw.cost.fifo_slices` chooses them.

    The memory is read only where it holds a beat, never at the address written in the same
    cycle (``no_rw_check``: no bypass of the write data behind the block RAM). The level is
    the distance of the write and read addresses (each with a lap bit), not a
    counter the reader's and writer's handshakes step: the handshakes reach only the
    addresses' enables."""

    def __init__(self, shape, depth, slices=None):
        self._shape = Shape.cast(shape)
        if not isinstance(depth, int) or depth < 1:
            raise TypeError(f"Depth must be a positive integer, not {depth!r}")
        self._depth = depth
        slices = [self._shape.width] if slices is None else [int(w) for w in slices]
        if any(w < 1 for w in slices) or sum(slices) != self._shape.width:
            raise ValueError(f"Slices {slices} must be positive widths adding up to the "
                             f"payload's {self._shape.width} bits")
        self._slices = slices
        super().__init__({"i": In(stream.Signature(self._shape)),
                          "o": Out(stream.Signature(self._shape))})

    @property
    def depth(self):
        return self._depth

    @property
    def slices(self):
        return list(self._slices)

    def elaborate(self, platform):
        m = Module()
        places = self._depth + ROOM_SLACK
        produce, consume = Signal(range(places)), Signal(range(places))
        produce_lap, consume_lap = Signal(), Signal()
        held = Signal()                 # the read register holds a beat
        room = Signal(init=1)
        stored = Signal()               # the memory holds a beat
        write, read = Signal(), Signal()
        used = Signal(range(places + 1))
        m.d.comb += [
            stored.eq((produce != consume) | (produce_lap != consume_lap)),
            write.eq(self.i.valid & room),
            read.eq(stored & (~held | self.o.ready)),
            used.eq(Mux(produce_lap == consume_lap, produce - consume,
                        produce + places - consume)),
            self.i.ready.eq(room),
            self.o.valid.eq(held),
        ]
        # The beats held, registered, then compared: room two cycles after the level it
        # tells of (the level's adders and the compare in one cycle, 11.5 ns placed on
        # ResNet-20). Up to three beats arrive meanwhile, so at most depth + 2 are held
        # (ROOM_SLACK places in the memory, one in the read register).
        total = Signal(range(places + 2))
        m.d.sync += [total.eq(used + held), room.eq(total < self._depth)]
        with m.If(write):
            m.d.sync += produce.eq(Mux(produce == places - 1, 0, produce + 1))
            with m.If(produce == places - 1):
                m.d.sync += produce_lap.eq(~produce_lap)
        with m.If(read):
            m.d.sync += [consume.eq(Mux(consume == places - 1, 0, consume + 1)), held.eq(1)]
            with m.If(consume == places - 1):
                m.d.sync += consume_lap.eq(~consume_lap)
        with m.Elif(self.o.ready):
            m.d.sync += held.eq(0)
        lo = 0
        for k, w in enumerate(self._slices):
            # a read finds the memory holding a beat, so its address is never the one written
            # in the same cycle: Yosys need not order the two (else it puts a register of the
            # write data and a mux behind the block RAM to give the old word)
            mem = Memory(shape=w, depth=places, init=[], attrs=dict(NO_RW_CHECK))
            m.submodules[f"storage_{k}"] = mem
            wp, rp = mem.write_port(), mem.read_port(domain="sync")
            m.d.comb += [wp.addr.eq(produce), wp.data.eq(self.i.payload[lo:lo + w]),
                         wp.en.eq(write), rp.addr.eq(consume), rp.en.eq(read),
                         self.o.payload[lo:lo + w].eq(rp.data)]
            lo += w
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
    slices : list of int, optional
        The skip FIFO's memories' widths (:class:`SkipFifo`).
    """

    def __init__(self, shape, channels, height, width, stride, pad_channels, depth,
                 slices=None):
        self._shape = Shape.cast(shape)
        self._geometry = (channels, height, width, stride, tuple(pad_channels))
        self._depth = depth
        self._slices = slices
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
        m.submodules.skip_fifo = fifo = SkipFifo(self._shape, self._depth, self._slices)
        wiring.connect(m, sub.o, fifo.i)
        # The FIFO's word into a register before it leaves for the add, whose multiplier
        # takes it (block RAM data straight into a MULT18X18D's operand register was the
        # placed ResNet-20's longest path, 12.5 ns on the ECP5-85k).
        # That register's ready is one gate from the skid buffer's registered ready, so the
        # add's ready (through the zero channels' shortcut) reaches neither the FIFO's read
        # address nor its block RAM's enables.
        m.submodules.skip_reg = reg = StreamRegister(self._shape)
        wiring.connect(m, fifo.o, reg.i)
        m.submodules.skip_skid = skid = SkidBuffer(self._shape)
        wiring.connect(m, reg.o, skid.i)
        m.submodules.shortcut = sc = Shortcut(self._shape, c, -(-h // s), -(-w // s), 1,
                                              before, after)
        wiring.connect(m, skid.o, sc.i)
        wiring.connect(m, sc.o, wiring.flipped(self.skip))
        return m
