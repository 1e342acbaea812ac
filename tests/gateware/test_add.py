# amaranth: UnusedElaboratable=no
"""Shortcut and ResidualAdd in Amaranth's simulator against the golden add node."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import stream, wiring

from flexor_hw.gateware.add import ResidualAdd, Shortcut
from flexor_hw.golden import graph_constants, run_graph_int
from flexor_hw.simulate import run_stream
from flexor_hw.synthetic import random_graph


@pytest.mark.parametrize("c, h, w, s, pb, pa", [(2, 5, 5, 2, 1, 1), (3, 4, 6, 1, 0, 0),
                                                (1, 7, 4, 2, 2, 3), (2, 3, 3, 3, 0, 2)])
def test_shortcut_matches_option_a(c, h, w, s, pb, pa):
    from flexor_hw.ops import Add, QuantFormat
    node = Add(name="a", output=QuantFormat(1.0, 8, False), stride=s, pad_channels=(pb, pa))
    x = np.random.default_rng(c + h).integers(1, 256, (2, c, h, w))
    want = node.shortcut(x).transpose(0, 2, 3, 1).reshape(-1)
    dut = Shortcut(8, c, h, w, s, pb, pa)
    run = run_stream(dut, x.transpose(0, 2, 3, 1).reshape(-1).tolist(), len(want),
                     in_stall=0.3, out_stall=0.3, seed=w)
    assert run.outputs == want.tolist()


@pytest.mark.parametrize("lut", [False, True], ids=["multipliers", "in_logic"])
@pytest.mark.parametrize("frac_bits", [0, 9, 16])
def test_residual_add_matches_golden(frac_bits, lut):
    pkg = random_graph((2, 6, 6), "c2k1,res4s2", seed=frac_bits, calibration=8)
    x = np.random.default_rng(0).integers(0, 256, (2, 2, 6, 6))
    outs = run_graph_int(pkg, x, frac_bits)
    add = pkg.nodes[-1]
    k = graph_constants(pkg, frac_bits)[add.name]
    a = outs[add.inputs[0]].transpose(0, 2, 3, 1).reshape(-1)
    b = add.shortcut(outs[add.inputs[1]]).transpose(0, 2, 3, 1).reshape(-1)
    want = outs[add.name].transpose(0, 2, 3, 1).reshape(-1)
    dut = ResidualAdd(signed(9), 8, signed(9), k.A_a, k.A_b, k.frac_bits, k.y_lo, k.y_hi,
                      lut=lut)
    top = _Pair(dut)
    run = run_stream(top, [int(v) for pair in zip(a, b) for v in pair], len(want),
                     in_stall=0.3, out_stall=0.3, seed=frac_bits)
    assert run.outputs == want.tolist()


class _Pair(wiring.Component):
    """Feeds a ResidualAdd from one stream of (a, b) beat pairs, so run_stream can drive it."""

    def __init__(self, dut):
        self._dut = dut
        super().__init__({"i": wiring.In(stream.Signature(16)),
                          "o": wiring.Out(stream.Signature(dut.o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = d = self._dut
        held = Signal(16)
        have = Signal()
        m.d.comb += [d.a.payload.eq(held), d.a.valid.eq(have),
                     d.b.payload.eq(self.i.payload), d.b.valid.eq(have & self.i.valid),
                     self.i.ready.eq(~have | d.b.ready)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(~have):
                m.d.sync += [held.eq(self.i.payload), have.eq(1)]
            with m.Else():
                m.d.sync += have.eq(0)
        wiring.connect(m, d.o, wiring.flipped(self.o))
        return m


def test_residual_add_keeps_a_beat_a_cycle_and_its_ready_off_the_output():
    """Unstalled, a beat a cycle goes in and, ``STAGES`` + 1 cycles later, a beat a cycle
    comes out; with the output stalled the inputs are still taken until the FIFO's places
    are reserved (the inputs' ready does not follow the output's ready in the same
    cycle)."""
    from amaranth.sim import Simulator
    dut = ResidualAdd(signed(9), 8, signed(9), 3, 5, 2, -256, 255)
    n, trace = 24, []

    async def bench(ctx):
        ctx.set(dut.a.valid, 1)
        ctx.set(dut.b.valid, 1)
        ctx.set(dut.o.ready, 1)
        for t in range(n + 8):
            ctx.set(dut.a.payload, t % 200)
            ctx.set(dut.b.payload, (3 * t) % 200)
            taken = ctx.get(dut.a.ready)
            out = ctx.get(dut.o.valid) and ctx.get(dut.o.payload)
            trace.append((taken, ctx.get(dut.o.valid), out))
            await ctx.tick()
        ctx.set(dut.o.ready, 0)          # the output stalls: places still open are taken
        takes, last_ready = 0, None
        for _ in range(12):
            last_ready = ctx.get(dut.a.ready)
            takes += last_ready
            await ctx.tick()
        ctx.set(dut.a.valid, 0)
        ctx.set(dut.b.valid, 0)
        ctx.set(dut.o.ready, 1)          # then drains: every beat taken comes out
        drained = 0
        for _ in range(12):
            drained += ctx.get(dut.o.valid)
            await ctx.tick()
        trace.append((takes, last_ready, drained))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    taken = [t for t, _, _ in trace[:-1]]
    valid = [v for _, v, _ in trace[:-1]]
    assert all(taken)                                   # never refused, unstalled
    lat = ResidualAdd.STAGES + 1                        # the stages, then the FIFO's head
    assert valid[:lat] == [0] * lat and all(valid[lat:])    # out lat cycles after in, then
    assert [o for _, v, o in trace[lat:n + lat]] == \
        [max(-256, min(255, (3 * (t % 200) + 5 * ((3 * t) % 200) + 2) >> 2)) for t in range(n)]
    takes, last_ready, drained = trace[-1]
    assert takes >= 1 and last_ready == 0   # taken as the output stalls, until all reserved
    emitted = sum(valid)
    assert emitted + drained == n + 8 + takes               # nothing lost, nothing made up
    assert drained == ResidualAdd.FIFO_DEPTH                # the places it had reserved
