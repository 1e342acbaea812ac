"""Binary-code MAC: segmented add/subtract, row accumulation, scaling and requantization."""

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import value_width
from .rom import Rom

__all__ = ["BinaryCodeMac", "step_layout"]


def _shape(lo, hi):
    width, is_signed = value_width(lo, hi)
    return signed(width) if is_signed else unsigned(width)


def step_layout(params):
    """Payload of one MAC step: a window of decoded bits and the activations under it.

    ``bits[p·M + m]`` is plane ``p``'s weight bit on lane ``m`` and ``x[m]`` its activation;
    lanes ``m ≥ count`` are idle; lanes ``m < rem`` finish the current row (``rem`` = its
    columns still to come), the others start the next row, and ``head[m] = m < rem`` (m ≤ M)
    says the same as a registered mask (no comparator on the adder trees' path); ``first`` marks a
    vector's first step; ``xsum = Σ x`` over the whole input vector.
    """
    c = params.consts
    f, lanes = params.fan_in, params.step_lanes
    return data.StructLayout({
        "bits": unsigned(params.q * lanes),
        "x": data.ArrayLayout(_shape(c.x_lo, c.x_hi), lanes),
        "count": range(lanes + 1),
        "rem": range(f + 1),
        "head": unsigned(lanes + 1),
        "first": unsigned(1),
        "xsum": _shape(f * c.x_lo, f * c.x_hi),
    })


class BinaryCodeMac(wiring.Component):
    """Per bit-plane masked adder trees, row accumulation, ``Σ A_i·S_i + β``, round and clamp.

    Uses ``S_i = 2·Σ_{d=1} x − Σ x``: each lane only gates its activation with the decoded bit
    (an AND, no negation), and ``Σ x`` comes once per vector with the step.

    The pipeline never stalls: step register → adder trees (a register after every level) → row
    accumulate (emit ``S_i`` on a row's end) → operands → products ``A_i·S_i`` → sum with
    ``β`` and rounding → shift and the clamp's compares → clamp into an output FIFO. A step
    that ends a row is accepted only while the FIFO has room for every result still in flight
    (credits), so ``i.ready`` depends on registers only and ``o.ready`` reaches nothing
    combinationally: the consumer's backpressure never becomes a long path. Steps that end no
    row are always accepted.

    Parameters
    ----------
    params : :class:`flexor_hw.gateware.params.EngineParams`
    const_init_file : str, optional
        Emit the per-row constant ROM as ``$readmemh`` of this file (see :class:`Rom`).
    logic_rom_bits : int
        With ``const_init_file``: a constant ROM of at most this many bits is logic.

    Attributes
    ----------
    i : In(stream.Signature(step_layout(params)))
    o : Out(stream.Signature(output shape))
        One requantized output per row, in row order.
    ready_next : Signal
        What ``i.ready`` (a register) will be next cycle, for a producer that registers its
        own step decision.
    """

    def __init__(self, params, *, const_init_file=None, logic_rom_bits=0):
        self._params = params
        self._const_init_file = const_init_file
        self._logic_rom_bits = logic_rom_bits
        self.ready_next = Signal()
        c = params.consts
        super().__init__({
            "i": In(stream.Signature(step_layout(params))),
            "o": Out(stream.Signature(_shape(c.y_lo, c.y_hi))),
        })

    @property
    def latency(self):
        """Cycles from a row-ending step's acceptance to its output's transfer (o ready)."""
        return self._params.mac_latency

    def elaborate(self, platform):
        m = Module()
        params, c = self._params, self._params.consts
        q, lanes, f, out = params.q, params.step_lanes, params.fan_in, params.out_features
        n_tree = params.tree_stages

        if self._const_init_file is None:
            rom = Rom(params.const_width, words=params.const_words)
        else:
            rom = Rom(params.const_width, depth=out, init_file=self._const_init_file,
                      logic=params.const_width * out <= self._logic_rom_bits)
        m.submodules.consts = rom

        # Output FIFO and credits: a step that ends a row reserves a FIFO place; the place
        # returns when its output leaves the FIFO (or is dropped: rows past the last).
        # ready looks at one register, so no long path reaches the sequencer's enables.
        depth = params.fifo_depth
        m.submodules.fifo = fifo = _OutputFifo(self.o.payload.shape(), depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        space = Signal(range(depth + 1), init=depth)
        ready = Signal(init=1)          # space != 0, kept as a register of its own
        ends_row = Signal()
        issue = Signal()
        incoming = self.i.payload
        # count >= rem  <=>  not head[count]: read the registered mask instead of comparing
        # (this sits on the credit update's path).
        sizes = sorted(set(params.step_sizes))               # at most two distinct step sizes
        row_ends = ~incoming.head[sizes[-1]]
        for size in sizes[:-1]:
            row_ends = Mux(incoming.count == size, ~incoming.head[size], row_ends)
        m.d.comb += [
            ends_row.eq(row_ends),
            self.i.ready.eq(ready),
            issue.eq(self.i.valid & self.i.ready),
        ]

        # Stage 0: the step, registered (cuts the weight ROM's clock-to-out and the XOR
        # decoders off the adder trees).
        step = Signal(step_layout(params))
        issued, reserved = Signal(), Signal()
        m.d.sync += [step.eq(self.i.payload), issued.eq(issue), reserved.eq(issue & ends_row)]

        # Stage 1: masked adder trees, two segments per plane (current row, next row).
        part_shape = _shape(lanes * min(0, c.x_lo), lanes * max(0, c.x_hi))
        p0, p1 = [], []
        for i in range(q):
            seg0, seg1 = [], []
            for lane in range(lanes):
                on = step.bits[i * lanes + lane]
                if params.steps_per_word > 1:     # otherwise every lane is always busy
                    on = on & (lane < step.count)
                x = step.x[lane]
                seg0.append(Mux(on & step.head[lane], x, 0))
                seg1.append(Mux(on & ~step.head[lane], x, 0))
            p0.append(_pipelined_sum(m, seg0, part_shape, f"p0_{i}"))
            p1.append(_pipelined_sum(m, seg1, part_shape, f"p1_{i}"))
        valid1 = _delay(m, issued, n_tree, "valid")
        complete1 = _delay(m, reserved, n_tree, "complete")
        first1 = _delay(m, step.first, n_tree, "first")
        neg_xsum1 = _delay(m, -step.xsum, n_tree, "neg_xsum", _shape(-f * c.x_hi, -f * c.x_lo))

        # Stage 2: accumulate rows as 2·T − Σx (a row starts from −Σx), so a row's end emits
        # S_i = 2·T_i − Σx straight from one adder; the next row's start 2·p1 − Σx has an
        # adder of its own beside it.
        acc_shape = _shape(2 * f * min(0, c.x_lo) - f * c.x_hi,
                           2 * f * max(0, c.x_hi) - f * c.x_lo)
        if params.unipolar:           # planes of 0/1 weight bits: S_i = T_i
            acc_shape = _shape(f * min(0, c.x_lo), f * max(0, c.x_hi))
        acc = [Signal(acc_shape, name=f"acc_{i}") for i in range(q)]
        row = Signal(range(params.n_steps + 2))
        row_now = Signal.like(row)
        m.d.comb += row_now.eq(Mux(first1, 0, row))
        valid2, token2, row2 = Signal(), Signal(), Signal.like(row)
        s2 = [Signal(signed(c.s_width), name=f"s_{i}") for i in range(q)]
        m.d.comb += rom.addr.eq(row_now)        # constants of row2 arrive with stage 3
        m.d.sync += [valid2.eq(valid1 & complete1 & (row_now < out)),
                     token2.eq(valid1 & complete1), row2.eq(row_now)]
        with m.If(valid1):
            m.d.sync += row.eq(row_now + complete1)
            for i in range(q):
                if params.unipolar:
                    total = Mux(first1, 0, acc[i]) + p0[i]
                    m.d.sync += [s2[i].eq(total), acc[i].eq(Mux(complete1, p1[i], total))]
                    continue
                total = Mux(first1, neg_xsum1, acc[i]) + (p0[i] << 1)
                m.d.sync += s2[i].eq(total)
                m.d.sync += acc[i].eq(Mux(complete1, (p1[i] << 1) + neg_xsum1, total))

        # Stage 3: the multiplier's operands, registered (the constants come from a block RAM
        # whose clock-to-out is long); stage 3b: products A_i·S_i with their output register.
        fields, pos = [], 0
        for width in params.const_fields:
            fields.append(rom.data[pos:pos + width].as_signed())
            pos += width
        valid3a, token3a = Signal(), Signal()
        a3 = [Signal(signed(c.a_width), name=f"a_{i}") for i in range(q)]
        s3 = [Signal(signed(c.s_width), name=f"s3_{i}") for i in range(q)]
        beta3a = Signal(signed(c.beta_width))
        m.d.sync += [valid3a.eq(valid2), token3a.eq(token2), beta3a.eq(fields[q])]
        m.d.sync += [a3[i].eq(fields[i]) for i in range(q)]
        m.d.sync += [s3[i].eq(s2[i]) for i in range(q)]
        valid3, token3 = Signal(), Signal()
        products = [Signal(signed(c.a_width + c.s_width), name=f"prod_{i}") for i in range(q)]
        beta3 = Signal(signed(max(c.beta_width, c.round_const.bit_length()) + 1))
        m.d.sync += [valid3.eq(valid3a), token3.eq(token3a),
                     beta3.eq(beta3a + c.round_const)]          # beside the multipliers
        m.d.sync += [products[i].eq(a3[i] * s3[i]) for i in range(q)]

        # Stage 4: acc = Σ A_i·S_i + (β + round), a register after every adder level.
        acc4 = _pipelined_sum(m, products + [beta3], signed(c.acc_width), "acc")
        valid4 = _delay(m, valid3, params.sum_stages, "valid4")
        token4 = _delay(m, token3, params.sum_stages, "token4")

        # Stage 5: shift (floor) and the clamp's two compares, registered; stage 6: the clamp's
        # select, into the FIFO; the row's credit is returned.
        valid5, token5, under, over = Signal(), Signal(), Signal(), Signal()
        shifted = Signal(signed(max(1, c.acc_width - c.frac_bits)))
        floor = acc4 >> c.frac_bits
        m.d.sync += [valid5.eq(valid4), token5.eq(token4), shifted.eq(floor),
                     under.eq(floor < c.y_lo), over.eq(floor > c.y_hi)]
        y = Mux(under, c.y_lo, Mux(over, c.y_hi, shifted))
        m.d.comb += [fifo.w_data.eq(y), fifo.w_en.eq(valid5)]
        # A credit comes back a cycle after its output leaves (a register cuts the consumer's
        # ready off the credit adder).
        returned = Signal(2)
        m.d.sync += returned.eq((self.o.valid & self.o.ready) + (token5 & ~valid5))
        # Both outcomes come from registers; the step's issue only picks one.
        kept, spent = Signal.like(space), Signal.like(space)
        m.d.comb += [kept.eq(space + returned), spent.eq(space + returned - 1)]
        reserve = issue & ends_row
        m.d.comb += self.ready_next.eq(Mux(reserve, spent != 0, kept != 0))
        m.d.sync += [space.eq(Mux(reserve, spent, kept)), ready.eq(self.ready_next)]
        return m


class _OutputFifo(wiring.Component):
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

    def __init__(self, shape, depth):
        self._shape, self._depth = shape, depth
        super().__init__({"w_data": In(shape), "w_en": In(1),
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        n_buf = self._depth - 1
        head_free = Signal()
        m.d.comb += head_free.eq(~self.o.valid | self.o.ready)
        if n_buf == 0:
            with m.If(head_free):
                m.d.sync += [self.o.valid.eq(self.w_en), self.o.payload.eq(self.w_data)]
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
        waiting = Signal(self._shape)           # buf[rd]
        if n_buf <= _MAX_REGISTER_BUFFER:
            buf = [Signal(self._shape, name=f"buf{k}") for k in range(n_buf)]
            for k in range(n_buf):
                with m.If(self.w_en & (wr == k)):
                    m.d.sync += buf[k].eq(self.w_data)
            m.d.comb += waiting.eq(_mux_tree(rd, buf))
        else:
            # The read address is next cycle's rd; rd + 1 waits in a register so o.ready
            # only selects between the two. A word written in the same cycle as it is read
            # is forwarded from a register (compares of registers only; no transparent port,
            # whose address compare would sit behind o.ready).
            m.submodules.buf = buf = memory.Memory(shape=self._shape, depth=n_buf, init=[])
            w_port = buf.write_port()
            r_port = buf.read_port(domain="sync")
            rd_inc = Signal.like(rd, init=1)            # bump(rd); n_buf > 1 here
            fwd, fwd_data = Signal(), Signal(self._shape)
            m.d.comb += [w_port.addr.eq(wr), w_port.data.eq(self.w_data),
                         w_port.en.eq(self.w_en),
                         r_port.addr.eq(Mux(pop, rd_inc, rd)), r_port.en.eq(1),
                         waiting.eq(Mux(fwd, fwd_data, r_port.data))]
            m.d.sync += [fwd.eq(self.w_en & Mux(pop, rd_inc == wr, rd == wr)),
                         fwd_data.eq(self.w_data)]
            with m.If(pop):
                m.d.sync += rd_inc.eq(bump(rd_inc))
        with m.If(head_free):
            m.d.sync += [self.o.valid.eq(~empty | self.w_en),
                         self.o.payload.eq(Mux(empty, self.w_data, waiting))]
        with m.If(pop):
            m.d.sync += rd.eq(bump(rd))
        with m.If(push):
            m.d.sync += wr.eq(bump(wr))
        # o.ready (through pop) only picks among values computed from registers.
        up, down = push & ~pop, pop & ~push
        m.d.sync += [used.eq(Mux(up, used + 1, Mux(down, used - 1, used))),
                     empty.eq(Mux(up, 0, Mux(down, used == 1, empty)))]
        return m


#: Deepest output FIFO buffer kept in registers (deeper ones are memories).
_MAX_REGISTER_BUFFER = 4


def _mux_tree(index, values):
    """``values[index]`` as a balanced tree of 2:1 muxes on the index bits (any value for an
    index past the end: no case statement without a default in the Verilog)."""
    level, bit = list(values), 0
    while len(level) > 1:
        level = [Mux(index[bit], level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        bit += 1
    return level[0]


def _delay(m, value, n, name, shape=None):
    """``value`` delayed by ``n`` registers."""
    for k in range(n):
        reg = Signal(shape if shape is not None else len(value), name=f"{name}_d{k + 1}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def _pipelined_sum(m, terms, shape, name):
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
                         name=f"{name}_s{stage}_{k}")
            m.d.sync += reg.eq(t)
            regs.append(reg)
        terms = regs
        if len(terms) == 1:
            return terms[0]


def output_shape(params):
    return Shape.cast(_shape(params.consts.y_lo, params.consts.y_hi))
