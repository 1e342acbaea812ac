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
    columns still to come), the others start the next row; ``first`` marks a vector's first
    step; ``xsum = Σ x`` over the whole input vector.
    """
    c = plan.consts
    f, lanes = plan.fan_in, plan.step_lanes
    return data.StructLayout({
        "bits": unsigned(plan.q * lanes),
        "x": data.ArrayLayout(_shape(c.x_lo, c.x_hi), lanes),
        "count": range(lanes + 1),
        "rem": range(f + 1),
        "first": unsigned(1),
        "xsum": _shape(f * c.x_lo, f * c.x_hi),
    })


class BinaryCodeMac(wiring.Component):
    """Per bit-plane masked adder trees, row accumulation, ``Σ A_i·S_i + β``, round and clamp.

    Uses ``S_i = 2·Σ_{d=1} x − Σ x``: each lane only gates its activation with the decoded bit
    (an AND, no negation), and ``Σ x`` comes once per vector with the step.

    Pipeline (all stages hold while the output is full and not taken): step → partial sums →
    row accumulate (emit ``S_i`` on a row's end) → scale → requantize to ``o``. A step whose row
    completes yields ``o.valid`` :attr:`latency` cycles after it is accepted.

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

    latency = 4

    def __init__(self, plan, *, const_init_file=None):
        self._plan = plan
        self._const_init_file = const_init_file
        c = plan.consts
        super().__init__({
            "i": In(stream.Signature(step_layout(plan))),
            "o": Out(stream.Signature(_shape(c.y_lo, c.y_hi))),
        })

    def elaborate(self, platform):
        m = Module()
        plan, c = self._plan, self._plan.consts
        q, lanes, f, out = plan.q, plan.step_lanes, plan.fan_in, plan.out_features
        step = self.i.payload

        if self._const_init_file is None:
            rom = Rom(plan.const_width, words=plan.const_words())
        else:
            rom = Rom(plan.const_width, depth=out, init_file=self._const_init_file)
        m.submodules.consts = rom

        adv = Signal()           # the whole pipeline moves unless the output is full and held
        m.d.comb += [adv.eq(~self.o.valid | self.o.ready), self.i.ready.eq(adv)]

        # Stage 1: masked adder trees, two segments per plane (current row, next row).
        part_shape = _shape(lanes * min(0, c.x_lo), lanes * max(0, c.x_hi))
        valid1, complete1, first1 = Signal(), Signal(), Signal()
        xsum1 = Signal(_shape(f * c.x_lo, f * c.x_hi))
        p0 = [Signal(part_shape, name=f"p0_{i}") for i in range(q)]
        p1 = [Signal(part_shape, name=f"p1_{i}") for i in range(q)]
        with m.If(adv):
            m.d.sync += [valid1.eq(self.i.valid), complete1.eq(step.count >= step.rem),
                         first1.eq(step.first), xsum1.eq(step.xsum)]
            for i in range(q):
                seg0, seg1 = [], []
                for lane in range(lanes):
                    on = step.bits[i * lanes + lane]
                    if plan.steps_per_word > 1:     # otherwise every lane is always busy
                        on = on & (lane < step.count)
                    x = step.x[lane]
                    seg0.append(Mux(on & (lane < step.rem), x, 0))
                    seg1.append(Mux(on & (lane >= step.rem), x, 0))
                m.d.sync += [p0[i].eq(tree_sum(seg0)), p1[i].eq(tree_sum(seg1))]

        # Stage 2: accumulate rows; on a row's end emit S_i = 2·T_i − Σx.
        total_shape = _shape(f * min(0, c.x_lo), f * max(0, c.x_hi))
        acc = [Signal(total_shape, name=f"acc_{i}") for i in range(q)]
        row = Signal(range(plan.n_steps + 2))
        row_now = Signal.like(row)
        m.d.comb += row_now.eq(Mux(first1, 0, row))
        valid2, row2 = Signal(), Signal.like(row)
        s2 = [Signal(signed(c.s_width), name=f"s_{i}") for i in range(q)]
        m.d.comb += rom.addr.eq(Mux(adv, row_now, row2))     # constants of row2 in stage 3
        with m.If(adv):
            m.d.sync += [valid2.eq(valid1 & complete1 & (row_now < out)), row2.eq(row_now)]
            with m.If(valid1):
                m.d.sync += row.eq(row_now + complete1)
                for i in range(q):
                    total = Mux(first1, 0, acc[i]) + p0[i]
                    m.d.sync += s2[i].eq((total << 1) - xsum1)
                    m.d.sync += acc[i].eq(Mux(complete1, p1[i], total))

        # Stage 3: acc = Σ A_i·S_i + β + round.
        fields, pos = [], 0
        for width in plan.const_fields:
            fields.append(rom.data[pos:pos + width].as_signed())
            pos += width
        valid3 = Signal()
        acc3 = Signal(signed(c.acc_width))
        with m.If(adv):
            m.d.sync += valid3.eq(valid2)
            m.d.sync += acc3.eq(tree_sum([fields[i] * s2[i] for i in range(q)] +
                                         [fields[q], c.round_const]))

        # Stage 4: shift (floor), clamp, output register.
        shifted = Signal(signed(max(1, c.acc_width - c.frac_bits)))
        m.d.comb += shifted.eq(acc3 >> c.frac_bits)
        y = Mux(shifted < c.y_lo, c.y_lo, Mux(shifted > c.y_hi, c.y_hi, shifted))
        with m.If(adv):
            m.d.sync += [self.o.valid.eq(valid3), self.o.payload.eq(y)]
        return m


def output_shape(plan):
    return Shape.cast(_shape(plan.consts.y_lo, plan.consts.y_hi))
