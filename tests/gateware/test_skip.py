# amaranth: UnusedElaboratable=no
"""The skip FIFO: order and every beat under random stalls, and the places it promises."""

import pytest
from amaranth.sim import Simulator

from flexor_hw.gateware.skip import SkipFifo
from flexor_hw.simulate import run_stream


@pytest.mark.parametrize("depth, stall", [(1, 0.3), (5, 0.3), (17, 0.5), (9, 0.0)])
def test_skip_fifo_keeps_every_beat_in_order(depth, stall):
    beats = [(7 * k + 3) % 256 for k in range(200)]
    run = run_stream(SkipFifo(8, depth), beats, len(beats), in_stall=stall, out_stall=stall,
                     seed=depth)
    assert run.outputs == beats


@pytest.mark.parametrize("depth", [1, 2, 6, 33])
def test_skip_fifo_takes_depth_beats_while_nothing_leaves(depth):
    """With the reader stopped the writer places ``depth`` beats (one more may pass while
    the registered ready falls), then waits; once the reader takes one, it may go on."""
    dut = SkipFifo(8, depth)
    taken = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 0)
        for k in range(depth + 10):
            ctx.set(dut.i.payload, k)
            ctx.set(dut.i.valid, 1)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            if ready:
                taken.append(k)
        ctx.set(dut.i.valid, 0)
        assert depth <= len(taken) <= depth + 1
        got = []
        ctx.set(dut.o.ready, 1)
        for _ in range(3 * depth + 10):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)
        assert got == taken

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
