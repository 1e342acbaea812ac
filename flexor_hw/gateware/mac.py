"""Binary-code MAC: segmented add/subtract, row accumulation, scaling and requantization."""

from amaranth.hdl import Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..golden import value_width
from .rom import Rom

__all__ = ["BinaryCodeMac", "step_layout", "tree_sum"]


def _shape(lo, hi):
    width, is_signed = value_width(lo, hi)
    return signed(width) if is_signed else unsigned(width)


def tree_sum(terms):
    """Balanced adder tree (depth ⌈log2 n⌉); every addition widens, nothing wraps."""
    terms = list(terms)
    while len(terms) > 1:
        pairs = [terms[i] + terms[i + 1] for i in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def step_layout(plan):
    """Payload of one MAC step: a window of decoded bits and the activations under it.

    ``bits[p·M + m]`` is plane ``p``'s weight bit on lane ``m`` and ``x[m]`` its activation;
    lanes ``m ≥ count`` are idle; lanes ``m < rem`` finish the current row (``rem`` = its
    columns still to come), the others start the next row, and ``head[m] = m < rem`` (m ≤ M)
    says the same as a registered mask (no comparator on the adder trees' path); ``first`` marks a
    vector's first step; ``xsum = Σ x`` over the whole input vector.
    """
    c = plan.consts
    f, lanes = plan.fan_in, plan.step_lanes
    return data.StructLayout({
        "bits": unsigned(plan.q * lanes),
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
    accumulate (emit ``S_i`` on a row's end) → products ``A_i·S_i`` → sum with ``β`` and
    rounding → shift and clamp into an output FIFO. A step that ends a row is accepted only
    while the FIFO has room for every result still in flight (credits), so ``i.ready`` depends
    on registers only and ``o.ready`` reaches nothing combinationally: the consumer's
    backpressure never becomes a long path. Steps that end no row are always accepted.

    Parameters
    ----------
    plan : :class:`flexor_hw.plan.LayerPlan`
    const_init_file : str, optional
        Emit the per-row constant ROM as ``$readmemh`` of this file (see :class:`Rom`).

    Attributes
    ----------
    i : In(stream.Signature(step_layout(plan)))
    o : Out(stream.Signature(output shape))
        One requantized output per row, in row order.
    """

    def __init__(self, plan, *, const_init_file=None):
        self._plan = plan
        self._const_init_file = const_init_file
        c = plan.consts
        super().__init__({
            "i": In(stream.Signature(step_layout(plan))),
            "o": Out(stream.Signature(_shape(c.y_lo, c.y_hi))),
        })

    @property
    def latency(self):
        """Cycles from a row-ending step's acceptance to its output's transfer (o ready)."""
        return self._plan.mac_latency

    def elaborate(self, platform):
        m = Module()
        plan, c = self._plan, self._plan.consts
        q, lanes, f, out = plan.q, plan.step_lanes, plan.fan_in, plan.out_features
        n_tree = plan.tree_stages

        if self._const_init_file is None:
            rom = Rom(plan.const_width, words=plan.const_words())
        else:
            rom = Rom(plan.const_width, depth=out, init_file=self._const_init_file)
        m.submodules.consts = rom

        # Output FIFO and credits: a step that ends a row reserves a FIFO place; the place
        # returns when its output leaves the FIFO (or is dropped: rows past the last).
        # ready looks at one register, so no long path reaches the sequencer's enables.
        depth = plan.fifo_depth
        m.submodules.fifo = fifo = _RegisterFifo(self.o.payload.shape(), depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.o))
        space = Signal(range(depth + 1), init=depth)
        ready = Signal(init=1)          # space != 0, kept as a register of its own
        ends_row = Signal()
        issue = Signal()
        incoming = self.i.payload
        # count >= rem  <=>  not head[count]: read the registered mask instead of comparing
        # (this sits on the credit update's path).
        sizes = sorted(set(plan.step_sizes))               # at most two distinct step sizes
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
        step = Signal(step_layout(plan))
        issued, reserved = Signal(), Signal()
        m.d.sync += [step.eq(self.i.payload), issued.eq(issue), reserved.eq(issue & ends_row)]

        # Stage 1: masked adder trees, two segments per plane (current row, next row).
        part_shape = _shape(lanes * min(0, c.x_lo), lanes * max(0, c.x_hi))
        p0, p1 = [], []
        for i in range(q):
            seg0, seg1 = [], []
            for lane in range(lanes):
                on = step.bits[i * lanes + lane]
                if plan.steps_per_word > 1:     # otherwise every lane is always busy
                    on = on & (lane < step.count)
                x = step.x[lane]
                seg0.append(Mux(on & step.head[lane], x, 0))
                seg1.append(Mux(on & ~step.head[lane], x, 0))
            p0.append(_pipelined_sum(m, seg0, part_shape, f"p0_{i}"))
            p1.append(_pipelined_sum(m, seg1, part_shape, f"p1_{i}"))
        xsum_shape = _shape(f * c.x_lo, f * c.x_hi)
        valid1 = _delay(m, issued, n_tree, "valid")
        complete1 = _delay(m, reserved, n_tree, "complete")
        first1 = _delay(m, step.first, n_tree, "first")
        xsum1 = _delay(m, step.xsum, n_tree, "xsum", xsum_shape)

        # Stage 2: accumulate rows; on a row's end emit S_i = 2·T_i − Σx.
        total_shape = _shape(f * min(0, c.x_lo), f * max(0, c.x_hi))
        acc = [Signal(total_shape, name=f"acc_{i}") for i in range(q)]
        row = Signal(range(plan.n_steps + 2))
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
                total = Mux(first1, 0, acc[i]) + p0[i]
                m.d.sync += s2[i].eq((total << 1) - xsum1)
                m.d.sync += acc[i].eq(Mux(complete1, p1[i], total))

        # Stage 3: the multiplier's operands, registered (the constants come from a block RAM
        # whose clock-to-out is long); stage 3b: products A_i·S_i with their output register.
        fields, pos = [], 0
        for width in plan.const_fields:
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
        beta3 = Signal(signed(c.beta_width))
        m.d.sync += [valid3.eq(valid3a), token3.eq(token3a), beta3.eq(beta3a)]
        m.d.sync += [products[i].eq(a3[i] * s3[i]) for i in range(q)]

        # Stage 4: acc = Σ A_i·S_i + β + round.
        valid4, token4 = Signal(), Signal()
        acc4 = Signal(signed(c.acc_width))
        m.d.sync += [valid4.eq(valid3), token4.eq(token3),
                     acc4.eq(tree_sum(products + [beta3, c.round_const]))]

        # Stage 5: shift (floor), clamp, into the FIFO; the row's credit is returned.
        shifted = Signal(signed(max(1, c.acc_width - c.frac_bits)))
        m.d.comb += shifted.eq(acc4 >> c.frac_bits)
        y = Mux(shifted < c.y_lo, c.y_lo, Mux(shifted > c.y_hi, c.y_hi, shifted))
        m.d.comb += [fifo.w_data.eq(y), fifo.w_en.eq(valid4)]
        taken = self.o.valid & self.o.ready
        space_next = Signal.like(space)
        m.d.comb += space_next.eq(space - (issue & ends_row) + taken + (token4 & ~valid4))
        m.d.sync += [space.eq(space_next), ready.eq(space_next != 0)]
        return m


class _RegisterFifo(wiring.Component):
    """Small FIFO in registers whose head is always entry 0: ``o.payload`` is a register.

    Each entry has a valid bit; a take moves every entry down one place and a write fills the
    first free place after that move. Never written when full (the credits see to that).
    """

    def __init__(self, shape, depth):
        self._shape, self._depth = shape, depth
        super().__init__({"w_data": In(shape), "w_en": In(1),
                          "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        entries = [Signal(self._shape, name=f"entry{k}") for k in range(depth)]
        full = [Signal(name=f"full{k}") for k in range(depth)]
        take = Signal()
        m.d.comb += [take.eq(self.o.valid & self.o.ready), self.o.payload.eq(entries[0]),
                     self.o.valid.eq(full[0])]
        after = [Mux(take, full[k + 1] if k + 1 < depth else 0, full[k]) for k in range(depth)]
        for k in range(depth):
            moved = Mux(take, entries[k + 1] if k + 1 < depth else entries[k], entries[k])
            here = self.w_en & ~after[k] & (after[k - 1] if k else 1)
            m.d.sync += [entries[k].eq(Mux(here, self.w_data, moved)),
                         full[k].eq(after[k] | here)]
        return m


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


def output_shape(plan):
    return Shape.cast(_shape(plan.consts.y_lo, plan.consts.y_hi))
