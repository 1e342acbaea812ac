# amaranth: UnusedElaboratable=no
"""The skip FIFO: order and every beat under random stalls, and the places it promises."""

import pytest
from amaranth.sim import Simulator

from flexor_hw.gateware.skip import SkipFifo
from flexor_hw.hw.cost import fifo_slices
from flexor_hw.simulate import run_stream


@pytest.mark.parametrize("depth, stall, slices", [
    (1, 0.3, None), (5, 0.3, None), (17, 0.5, None), (9, 0.0, None),
    (5, 0.3, [2, 2, 2, 2]), (17, 0.5, [3, 5]), (9, 0.0, [1] * 8)])
def test_skip_fifo_keeps_every_beat_in_order(depth, stall, slices):
    """Every beat in order under random stalls, the memory whole or cut into slices of bits;
    the read pointer laps the memory many times."""
    beats = [(7 * k + 3) % 256 for k in range(200)]
    run = run_stream(SkipFifo(8, depth, slices), beats, len(beats), in_stall=stall,
                     out_stall=stall, seed=depth)
    assert run.outputs == beats


@pytest.mark.parametrize("slices", [[4, 5], [0, 8], [9]])
def test_skip_fifo_refuses_slices_that_do_not_cover_the_payload(slices):
    with pytest.raises(ValueError, match="adding up to the payload's 8 bits"):
        SkipFifo(8, 4, slices)


@pytest.mark.parametrize("depth, width, slices", [
    (5654, 8, [2, 2, 2, 2]),     # three 2048 × 9 stacked in depth: four 8192 × 2 instead
    (3000, 8, [4, 4]),           # two 4096 × 4 side by side, never two 2048 × 9 stacked
    (1814, 8, [8]),              # one 2048 × 9
    (20000, 8, [8]),             # deeper than any configuration: stacked whatever it is cut to
    (100, 8, [8]),               # LUT RAM
])
def test_fifo_slices_leave_no_block_stacked_in_depth(depth, width, slices):
    assert fifo_slices(depth, width) == slices
    assert fifo_slices(depth, width, "ice40") == [width]


@pytest.mark.parametrize("depth, slices", [(1, None), (2, None), (6, [4, 4]), (33, None)])
def test_skip_fifo_takes_depth_beats_while_nothing_leaves(depth, slices):
    """With the reader stopped the writer places ``depth`` beats (two more may pass while
    the ready, registered from the level two cycles before, falls), then waits; once the
    reader takes one, it may go on."""
    dut = SkipFifo(8, depth, slices)
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
        assert depth <= len(taken) <= depth + 2
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
