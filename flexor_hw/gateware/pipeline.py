"""Pipeline pieces shared by the units: shapes of integer ranges, delays, balanced adder
trees with registers, a mux tree, and a small output FIFO with a registered head.

Registers that hold data beside a valid flag, or that a counter's first step overwrites,
have no reset (``reset_less``): on the ECP5 all flip-flops of a logic tile share one
LSR net, so flip-flops on the reset and flip-flops without one cannot share a tile; with
only the control on the reset the placer packs the data path freely (and the reset reaches
a few hundred flip-flops, not thousands)."""

import re

from amaranth.hdl import (ClockSignal, Instance, Module, Mux, ResetSignal, Shape, Signal, Value,
                          signed, unsigned)
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import value_width

__all__ = ["Credits", "OutputFifo", "SkidBuffer", "StreamRegister", "delay", "mux_tree",
           "fifo_memory_words",
           "pipelined_sum", "int_shape", "copy_register", "kept_register", "COPY_VERILOG",
           "copy_modules", "ram_style_attr", "NO_RW_CHECK", "no_rw_check_attrs"]


#: A memory whose reader never reads the place its writer writes in the same cycle (a
#: window's line buffer reads a row once it is complete; a skip FIFO a place written a
#: cycle before): Yosys need not order a read and a write of one address (without this, it
#: puts a multiplexer and a register of the write data behind the block RAM to give the old
#: word).
NO_RW_CHECK = {"no_rw_check": 1}


def no_rw_check_attrs(depth, width):
    """Such a memory's attributes: :data:`NO_RW_CHECK`, and the place the cost model counts
    it in (:func:`~flexor_hw.hw.cost.ram_style`: without the read/write ordering, Yosys's
    own choice moved LeNet-5's 1.3-Kbit conv1 line buffer from LUT RAM to a block RAM)."""
    from ..hw.cost import ram_style
    return dict(NO_RW_CHECK, ram_style=ram_style(depth, width))


def ram_style_attr(lutram):
    """A memory's ``ram_style`` attribute: ``"distributed"`` (LUT RAM) for True,
    ``"block"`` for False, None (the tools choose) for None."""
    return None if lutram is None else "distributed" if lutram else "block"


def int_shape(lo, hi):
    """The narrowest Amaranth shape holding every integer in ``[lo, hi]``."""
    width, is_signed = value_width(lo, hi)
    return signed(width) if is_signed else unsigned(width)


class SkidBuffer(wiring.Component):
    """A stream register slice: ``o.payload``/``o.valid`` are flip-flops and ``i.ready`` is a
    flip-flop, so neither the producer's data path nor the consumer's ``ready`` crosses it. A
    beat arriving while the output stalls waits in a second register. Full rate; one cycle
    of latency."""

    def __init__(self, shape, *, emit=False):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})
        #: ``o.valid``'s next value, for a copy of ``o.valid`` beside another of its users
        #: (:func:`copy_register`, the reset taken through its input); with ``emit``,
        #: ``o.valid`` is a kept copy itself (:func:`kept_register`)
        self.valid_next = Signal(name="valid_next")
        self._emit = emit

    def elaborate(self, platform):
        m = Module()
        held = Signal(self.i.payload.shape(), reset_less=True)
        data = Signal(self.o.payload.shape(), reset_less=True)
        full = Signal()
        m.d.comb += [self.i.ready.eq(~full), self.o.payload.eq(data)]
        take = self.i.valid & ~full
        free = ~self.o.valid | self.o.ready
        m.d.comb += self.valid_next.eq(Mux(free, full | self.i.valid, self.o.valid))
        if self._emit:
            m.d.comb += self.o.valid.eq(kept_register(m, self.valid_next, "valid", emit=True))
        else:
            m.d.sync += self.o.valid.eq(self.valid_next)
        with m.If(free):
            m.d.sync += [data.eq(Mux(full, held, self.i.payload)), full.eq(0)]
        with m.Elif(take):
            m.d.sync += [held.eq(self.i.payload), full.eq(1)]
        return m


class StreamRegister(wiring.Component):
    """A stream's ``payload`` and ``valid`` into flip-flops (``i.ready = ~o.valid | o.ready``,
    one gate): a place for the placer to put between a producer and a consumer that sit far
    apart. Full rate; one cycle of latency."""

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        free = ~self.o.valid | self.o.ready
        # the payload without a reset (only ``valid`` says what it holds): its flip-flops
        # take the data alone, so on the ECP5 a block RAM's data register can move into the
        # block (flexor_hw.outreg)
        data = Signal(self.o.payload.shape(), reset_less=True)
        m.d.comb += [self.i.ready.eq(free), self.o.payload.eq(data)]
        with m.If(free):
            m.d.sync += [self.o.valid.eq(self.i.valid), data.eq(self.i.payload)]
        return m


class Credits:
    """The free places of an :class:`OutputFifo` of ``depth``, counted where beats enter the
    pipeline in front of it, so that the input's ``ready`` never waits on the output's.

    ``room`` (a register) says at least ``need`` places are free; ``room_next`` is what it
    holds next cycle. :meth:`count` takes, each cycle, the places reserved (a beat or group
    taken into the pipeline) and those given back (a beat that left the FIFO, or one the
    pipeline dropped); a place given back counts from the next cycle. ``emit``: ``room`` is a
    kept copy (:func:`kept_register`), for a user that keeps copies of it.
    """

    def __init__(self, depth, need=1, name="credits", *, emit=False):
        if not 1 <= need <= depth:
            raise ValueError(f"A FIFO of {depth} places cannot reserve {need} at once")
        self.depth, self.need, self._name, self._emit = depth, need, name, emit
        self.space = Signal(range(depth + 1), init=depth, name=f"{name}_space")
        self.room = Signal(init=1, name=f"{name}_room")
        self.room_next = Signal(name=f"{name}_room_next")

    def count(self, m, reserved, given_back):
        returned = Signal(Value.cast(given_back).shape(), name=f"{self._name}_returned")
        space_next = Signal.like(self.space)
        m.d.sync += returned.eq(given_back)
        m.d.comb += space_next.eq(self.space + returned - reserved)
        m.d.comb += self.room_next.eq(space_next >= self.need)
        m.d.sync += self.space.eq(space_next)
        if self._emit:      # ``room`` has copies (``emit``): a kept copy itself
            m.d.comb += self.room.eq(kept_register(m, self.room_next, f"{self._name}_room_q",
                                                   emit=True, init=1))
        else:
            m.d.sync += self.room.eq(self.room_next)


class OutputFifo(wiring.Component):
    """Small FIFO with a registered head: ``o.payload`` and ``o.valid`` are flip-flops, and the
    consumer's ``o.ready`` reaches only the head's enable and the read pointer (a shifting FIFO
    would fan it out to every entry).

    ``depth - 1`` entries wait in a circular buffer behind the head; a write goes straight to
    the head when the head is free and nothing waits. Up to ``_MAX_REGISTER_BUFFER`` entries
    the buffer is registers (read through a mux tree); a deeper one is a memory with a
    synchronous read port addressed one cycle ahead, a word read as it is written coming from
    a register (block RAM on FPGAs: a wide mux tree would be the design's longest path).
    Never written when full (the credits see to that).
    """

    def __init__(self, shape, depth, *, pieces=1, emit=False):
        # ``pieces``: the head in that many pieces, each enabled and selected by copies of
        # ``o.valid`` and ``empty`` of its own (``emit``: kept copies), so ``o.ready`` reaches
        # ``pieces`` gates, not the enable of every bit of a wide head (a kernel window's
        # 200-bit head: one gate to 200 enables across the device, 12.5 ns of routing)
        self._shape, self._depth = shape, depth
        self._pieces, self._emit = pieces, emit
        super().__init__({"w_data": In(shape), "w_en": In(1),
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        n_buf = self._depth - 1
        head_free = Signal()
        head = Signal(self._shape, reset_less=True)
        m.d.comb += [head_free.eq(~self.o.valid | self.o.ready), self.o.payload.eq(head)]
        if n_buf == 0:
            with m.If(head_free):
                m.d.sync += [self.o.valid.eq(self.w_en), head.eq(self.w_data)]
            return m

        rd = Signal(range(max(2, n_buf)))
        wr = Signal(range(max(2, n_buf)))
        used = Signal(range(n_buf + 1))
        empty = Signal(init=1)          # used == 0, as a register
        pop = Signal()
        push = Signal()
        m.d.comb += [pop.eq(head_free & ~empty), push.eq(self.w_en & ~(head_free & empty))]

        def bump(ptr):
            return Mux(ptr == n_buf - 1, 0, ptr + 1)

        # A write always lands in buf[wr] (its enable ignores o.ready); it counts only when
        # it does not go straight to the head.
        waiting = Signal(self._shape, reset_less=True)  # buf[rd]
        if not fifo_memory_words(self._depth):
            buf = [Signal(self._shape, name=f"buf{k}", reset_less=True) for k in range(n_buf)]
            for k in range(n_buf):
                with m.If(self.w_en & (wr == k)):
                    m.d.sync += buf[k].eq(self.w_data)
            m.d.comb += waiting.eq(mux_tree(rd, buf))
        else:
            # The read address is next cycle's rd; rd + 1 waits in a register so o.ready
            # only selects between the two. A word written in the same cycle as it is read
            # is forwarded from a register (compares of registers only; no transparent port,
            # whose address compare would sit behind o.ready).
            m.submodules.buf = buf = memory.Memory(shape=self._shape, depth=n_buf, init=[])
            w_port = buf.write_port()
            r_port = buf.read_port(domain="sync")
            rd_inc = Signal.like(rd, init=1)            # bump(rd); n_buf > 1 here
            fwd, fwd_data = Signal(), Signal(self._shape, reset_less=True)
            m.d.comb += [w_port.addr.eq(wr), w_port.data.eq(self.w_data),
                         w_port.en.eq(self.w_en),
                         r_port.addr.eq(Mux(pop, rd_inc, rd)), r_port.en.eq(1),
                         waiting.eq(Mux(fwd, fwd_data, r_port.data))]
            m.d.sync += [fwd.eq(self.w_en & Mux(pop, rd_inc == wr, rd == wr)),
                         fwd_data.eq(self.w_data)]
            with m.If(pop):
                m.d.sync += rd_inc.eq(bump(rd_inc))
        if self._pieces == 1:
            with m.If(head_free):
                m.d.sync += [self.o.valid.eq(~empty | self.w_en),
                             head.eq(Mux(empty, self.w_data, waiting))]
        else:
            self._head_pieces(m, head, head_free, empty, waiting, push, pop, used)
        with m.If(pop):
            m.d.sync += rd.eq(bump(rd))
        with m.If(push):
            m.d.sync += wr.eq(bump(wr))
        # o.ready (through pop) only picks among values computed from registers.
        up, down = push & ~pop, pop & ~push
        m.d.sync += [used.eq(Mux(up, used + 1, Mux(down, used - 1, used))),
                     empty.eq(Mux(up, 0, Mux(down, used == 1, empty)))]
        return m

    def _head_pieces(self, m, head, head_free, empty, waiting, push, pop, used):
        """The head in pieces, each under copies of ``o.valid`` and ``empty`` that step as
        they do."""
        up, down = push & ~pop, pop & ~push
        empty_next = Mux(up, 0, Mux(down, used == 1, empty))
        valid_next = Mux(head_free, ~empty | self.w_en, self.o.valid)
        m.d.sync += self.o.valid.eq(valid_next)
        width = len(head)
        step = -(-width // self._pieces)
        for k, lo in enumerate(range(0, width, step)):
            hi = min(width, lo + step)
            valid_k = kept_register(m, valid_next, f"head_valid_{k}", emit=self._emit)
            empty_k = kept_register(m, empty_next, f"head_empty_{k}", emit=self._emit, init=1)
            with m.If(~valid_k | self.o.ready):
                m.d.sync += head[lo:hi].eq(Mux(empty_k, self.w_data, waiting)[lo:hi])


#: Deepest output FIFO buffer kept in registers (deeper ones are memories).
_MAX_REGISTER_BUFFER = 4


def fifo_memory_words(depth):
    """Words of the memory an :class:`OutputFifo` of ``depth`` entries holds its waiting
    entries in: ``depth − 1`` beyond :data:`_MAX_REGISTER_BUFFER`, else 0 (registers)."""
    return depth - 1 if depth - 1 > _MAX_REGISTER_BUFFER else 0


def mux_tree(index, values):
    """``values[index]`` as a balanced tree of 2:1 muxes on the index bits (any value for an
    index past the end: no case statement without a default in the Verilog)."""
    level, bit = list(values), 0
    while len(level) > 1:
        level = [Mux(index[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


def delay(m, value, n, name, shape=None, *, data=False):
    """``value`` delayed by ``n`` registers (``data``: registers without a reset, for values
    that a valid flag beside them qualifies)."""
    for k in range(n):
        reg = Signal(shape if shape is not None else len(value), name=f"{name}_d{k + 1}",
                     reset_less=data)
        m.d.sync += reg.eq(value)
        value = reg
    return value


def pipelined_sum(m, terms, shape, name):
    """Balanced adder tree with a register after every level (at least one register).

    On LUT FPGAs each adder bit's LUT has its own flip-flop, so these registers cost almost
    no area; they also keep Yosys from merging the tree into one long adder chain.
    """
    terms = list(terms)
    stage = 0
    while True:
        if len(terms) > 1:
            pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
            terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
        stage += 1
        regs = []
        for k, t in enumerate(terms):
            reg = Signal(shape if len(terms) == 1 else Shape.cast(t.shape()),
                         name=f"{name}_s{stage}_{k}", reset_less=True)
            m.d.sync += reg.eq(t)
            regs.append(reg)
        terms = regs
        if len(terms) == 1:
            return terms[0]


COPY_VERILOG = """\
// flexor_copy: q <= d, one of several copies of a register that fans out widely. Yosys
// merges identical flip-flops bit by bit (whatever their initial values), so each copy's
// process is kept.
module flexor_copy #(
    parameter WIDTH = 1,
    parameter INIT = 0
) (
    input wire clk,
    input wire [WIDTH-1:0] d,
    output reg [WIDTH-1:0] q = INIT
);
    (* keep *) always @(posedge clk) q <= d;
endmodule
"""


def copy_modules(verilog):
    """The register copy's module, if an emitted design instantiates it."""
    return COPY_VERILOG if re.search(r"^\s*flexor_copy #\(", verilog, re.MULTILINE) else ""


def flag_copy(m, set_, clear, name, *, emit, flag=None):
    """A flag in a copy of its own (:func:`copy_register`) that holds through itself: set by
    ``set_``, cleared by ``clear`` (which wins) and by the reset. Beside a twin register that
    steps alike, it reads each input once from wherever they are placed, not the twin (a copy
    that held through its twin was placed by it, and a loop through the copy crossed the
    device twice). ``flag``: the signal to drive with it (one made beforehand, for logic
    that reads it before its inputs exist), else a new one. Returns it."""
    flag = Signal(name=name) if flag is None else flag
    m.d.comb += flag.eq(copy_register(m, Mux(ResetSignal("sync") | clear, 0,
                                              Mux(set_, 1, flag)), name, emit=emit))
    return flag


def kept_register(m, value, name, *, emit, init=0):
    """``value`` registered with the synchronous reset to ``init``, in a copy of its own
    (:func:`copy_register`): for a register that has copies. Yosys's ``opt_merge`` merges a
    plain register into a kept copy that steps alike (it keeps the kept one, and never merges
    two), and the copy then drives the register's loads as well as its own: an engine's
    ``w_full`` merged into its issue's copy in four of ResNet-20's twenty units, the loop
    through ``load`` crossing the unit again (conv26: 10.3 ns of routing, the longest path
    placed on the ECP5-85k); a window's ``avail``, ``can_write`` and input ``valid`` into
    their copies for the rows-done bookkeeping. Returns it."""
    return copy_register(m, Mux(ResetSignal("sync"), init, value), name, emit=emit, init=init)


def copy_register(m, value, name, *, emit, init=0, domain="sync"):
    """``value`` registered, in a copy of its own, ``init`` at power-up and no reset (a copy
    that must follow the reset takes it through ``value``): with ``emit``, an instance of
    ``flexor_copy`` (:data:`COPY_VERILOG`) that Yosys keeps apart from its twins; else a
    plain register, for Amaranth's simulator. In ``domain``."""
    reg = Signal(len(value), name=name, reset_less=True, init=init)
    if emit:
        m.submodules[f"{name}_copy"] = Instance("flexor_copy", p_WIDTH=len(value),
                                                p_INIT=int(init),
                                                i_clk=ClockSignal(domain), i_d=value, o_q=reg)
    else:
        m.d[domain] += reg.eq(value)
    return reg

