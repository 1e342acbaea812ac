# amaranth: UnusedElaboratable=no
"""MaxPool in Amaranth's simulator against the golden maxpool2d, with random stalls."""

import numpy as np
import pytest
from amaranth.hdl import signed

from flexor_hw.gateware.pool import MaxPool
from flexor_hw.ops import MaxPool2d
from flexor_hw.simulate import run_stream


@pytest.mark.parametrize("c, h, w, k, s, is_signed", [
    (2, 6, 6, 2, 2, False), (3, 7, 5, 2, 2, False), (1, 7, 7, 3, 2, True),
    (2, 5, 8, 3, 1, True), (4, 4, 4, (2, 1), (2, 1), False)])
def test_maxpool_matches_golden(c, h, w, k, s, is_signed):
    rng = np.random.default_rng(h * w)
    lo, hi = (-128, 127) if is_signed else (0, 255)
    images = rng.integers(lo, hi + 1, (3, c, h, w))
    pair = (lambda v: v if isinstance(v, tuple) else (v, v))
    node = MaxPool2d(name="p", kernel=pair(k), stride=pair(s))
    want = node.run_int([images], None).transpose(0, 2, 3, 1).reshape(-1)   # (y, x, c)
    dut = MaxPool(signed(8) if is_signed else 8, c, h, w, k, stride=s)
    beats = images.transpose(0, 2, 3, 1).reshape(-1)
    run = run_stream(dut, [int(b) for b in beats], 3 * dut.beats_per_image, in_stall=0.3,
                     out_stall=0.3, seed=c)
    assert run.outputs == want.tolist()


@pytest.mark.parametrize("lut", [False, True], ids=["multiplier", "in_logic"])
@pytest.mark.parametrize("c, h, w, frac_bits", [(3, 4, 4, 16), (1, 2, 3, 8), (4, 1, 1, 0),
                                                (5, 3, 5, 12)])
def test_global_avgpool_matches_golden(c, h, w, frac_bits, lut):
    from amaranth.hdl import signed

    from flexor_hw.gateware.pool import GlobalAvgPool
    from flexor_hw.golden import graph_constants, run_graph_int
    from flexor_hw.synthetic import random_graph
    pkg = random_graph((c, h, w), f"c{c}k1,gap", seed=c * h, calibration=8)
    x = np.random.default_rng(w).integers(0, 256, (3, c, h, w))
    outs = run_graph_int(pkg, x, frac_bits)
    gap = pkg.nodes[1]
    k = graph_constants(pkg, frac_bits)[gap.name]
    dut = GlobalAvgPool(8, signed(9), c, h * w, k.A, k.frac_bits, k.y_lo, k.y_hi, lut=lut)
    beats = outs["conv1"].transpose(0, 2, 3, 1).reshape(-1)
    run = run_stream(dut, beats.tolist(), 3 * c, in_stall=0.3, out_stall=0.3, seed=h)
    assert run.outputs == outs[gap.name].reshape(-1).tolist()


@pytest.mark.parametrize("c, h, w", [(3, 4, 4), (4, 1, 1), (5, 1, 2), (2, 2, 2), (1, 3, 1)])
def test_global_avgpool_rate(c, h, w):
    """Unstalled, images follow one another at ``cycles(c, h·w)`` apart: a beat a cycle
    while one image's sums are given out and the next accumulates, or the results' pace
    where an image has fewer beats."""
    from flexor_hw.gateware.pool import GlobalAvgPool
    from flexor_hw.golden import graph_constants, run_graph_int
    from flexor_hw.synthetic import random_graph
    pkg = random_graph((c, h, w), f"c{c}k1,gap", seed=c + h, calibration=8)
    n = 6
    x = np.random.default_rng(c).integers(0, 256, (n, c, h, w))
    outs = run_graph_int(pkg, x, 16)
    k = graph_constants(pkg, 16)[pkg.nodes[1].name]
    dut = GlobalAvgPool(8, signed(9), c, h * w, k.A, k.frac_bits, k.y_lo, k.y_hi)
    beats = outs["conv1"].transpose(0, 2, 3, 1).reshape(-1)
    run = run_stream(dut, beats.tolist(), n * c)
    assert run.outputs == outs[pkg.nodes[1].name].reshape(-1).tolist()
    ends = run.out_cycles[c - 1::c]
    period = GlobalAvgPool.cycles(c, h * w)
    assert [b - a for a, b in zip(ends, ends[1:])] == [period] * (n - 1)
    if c * h * w >= period:         # the input never waits
        assert run.in_cycles[-1] - run.in_cycles[0] == len(beats) - 1


def _pack(values, simd, width):
    """Beats of ``simd`` consecutive values, two's complement fields LSB first."""
    mask = (1 << width) - 1
    return [sum((int(v) & mask) << (k * width) for k, v in enumerate(values[b:b + simd]))
            for b in range(0, len(values), simd)]


def _ready_signals(dut):
    """What the pool's registered input ``ready`` must follow (:func:`_check_ready`)."""
    level, flight, w_en, w_rdy = dut._count
    return level, flight, w_en, w_rdy, dut.i.ready


def _check_ready(values, depth, cycle, wrong):
    """The pool's ``ready`` is its output FIFO's entries and the maxima on their way to it,
    against ``depth``, and the FIFO is never written full; a mismatch goes into ``wrong``."""
    lv, fl, we, wr, rdy = values
    count = lv + (fl & 1) + (fl >> 1)
    if rdy != (count < depth) or (we and not wr):
        wrong.append((cycle, rdy, count, we, wr))


def _ready_monitor(dut, depth, wrong):
    """A monitor of :func:`_check_ready`, every cycle."""
    async def monitor(ctx):
        cycle = 0
        async for _, _, *values in ctx.tick().sample(*_ready_signals(dut)):
            cycle += 1
            _check_ready(values, depth, cycle, wrong)
    return monitor


@pytest.mark.parametrize("style", ["block", "distributed"])
@pytest.mark.parametrize("c, h, w, k, simd, is_signed, stall", [
    (2, 6, 6, 2, 1, False, 0.3),        # one channel a beat
    (4, 7, 5, 2, 2, True, 0.3),         # a row and a column past the last window
    (1, 6, 6, 2, 1, False, 0.0),        # C = SIMD: a word read as it is written
    (4, 6, 6, 2, 2, True, 0.0),         # C = 2·SIMD: read as the word before last is written
    (3, 6, 6, 2, 1, False, 0.05),       # C = 3·SIMD: read as the word three back is written
    (6, 8, 6, 2, 2, True, 0.1),
    (6, 6, 9, 3, 3, False, 0.2),
    (4, 4, 4, (2, 1), 4, True, 0.3),    # the whole pixel a beat, non-square kernel
    (3, 4, 4, 1, 1, False, 0.2),        # 1×1: every beat completes its window
])
def test_tiled_maxpool_matches_golden(c, h, w, k, simd, is_signed, stall, style):
    """Exact under stalls, a read that meets the write of its place forwarded; the maxima in
    block RAM, or in LUT RAM in banks of 4 words, each read at its own address copy."""
    from flexor_hw.gateware.pool import TiledMaxPool
    rng = np.random.default_rng(h * w + c)
    lo, hi = (-128, 127) if is_signed else (0, 255)
    images = rng.integers(lo, hi + 1, (3, c, h, w))
    kk = k if isinstance(k, tuple) else (k, k)
    node = MaxPool2d(name="p", kernel=kk, stride=kk)
    want = node.run_int([images], None).transpose(0, 2, 3, 1).reshape(-1)   # (y, x, c)
    dut = TiledMaxPool(signed(8) if is_signed else 8, c, h, w, k, simd=simd, ram_style=style,
                       bank_words=4)
    beats = _pack(images.transpose(0, 2, 3, 1).reshape(-1), simd, 8)
    missed, wrong_ready = [], []

    async def monitor(ctx):
        # in block RAM the maxima carry no_rw_check: a read that meets the write of its
        # place must take the forwarded word (two cycles later), never the memory's
        cycle, pending = 0, []
        async for _, _, t, ra, en, wa, f, *ready in ctx.tick().sample(
                *dut._ports, *_ready_signals(dut)):
            cycle += 1
            _check_ready(ready, 3, cycle, wrong_ready)
            if pending and pending[0] == cycle - 2:
                pending.pop(0)
                if not f:
                    missed.append(cycle - 2)
            if t and en and ra == wa:
                pending.append(cycle)

    run = run_stream(dut, beats, 3 * dut.beats_per_image, in_stall=stall, out_stall=stall,
                     seed=c, monitor=monitor)
    assert missed == []
    depth = (w // kk[1]) * c // simd
    if style == "block":
        assert dut._maxima._attrs.get("no_rw_check")
    else:       # banks of four words where the maxima are more
        assert dut._n_banks == (-(-depth // 4) if depth > 4 else 1)
    assert wrong_ready == []
    assert run.outputs == _pack(want, simd, 8)
    if not stall:       # one beat a cycle in, whatever the output does
        assert run.in_cycles[-1] - run.in_cycles[0] == len(beats) - 1


@pytest.mark.parametrize("out_depth, stall, out_stall", [
    (3 + 4 * 4 // 2, 0.3, 0.3), (3 + 4 * 4 // 2, 0.0, 0.0), (40, 0.5, 0.5),
    (3 + 4 * 4 // 2, 0.0, 0.9),     # drained slower than it fills: the FIFO runs full
])
def test_tiled_maxpool_with_a_row_fifo_matches_golden(out_depth, stall, out_stall):
    """A deeper output FIFO (an output row's beats and three, in memory): the same maxima,
    stalls or not, and one beat a cycle in while its output drains; its registered ready
    follows the count every cycle, the FIFO full or not."""
    from flexor_hw.gateware.pool import TiledMaxPool
    c, h, w, k, simd = 4, 8, 8, 2, 2
    images = np.random.default_rng(out_depth).integers(0, 256, (3, c, h, w))
    want = MaxPool2d(name="p", kernel=(k, k), stride=(k, k)).run_int(
        [images], None).transpose(0, 2, 3, 1).reshape(-1)
    dut = TiledMaxPool(8, c, h, w, k, simd=simd, out_depth=out_depth)
    beats = _pack(images.transpose(0, 2, 3, 1).reshape(-1), simd, 8)
    wrong_ready = []
    run = run_stream(dut, beats, 3 * dut.beats_per_image, in_stall=stall,
                     out_stall=out_stall, seed=out_depth,
                     monitor=_ready_monitor(dut, out_depth, wrong_ready))
    assert wrong_ready == []
    assert run.outputs == _pack(want, simd, 8)
    if not stall and not out_stall:
        assert run.in_cycles[-1] - run.in_cycles[0] == len(beats) - 1


def test_a_row_fifo_keeps_the_pool_at_its_producers_pace():
    """Drained an element a cycle (a narrowing from eight), a pool whose input comes a beat
    every other cycle drains an output row in twice the time it comes: with three places it
    stalls its producer, with an output row's FIFO it never does (the next input row gives
    the drain its time)."""
    from amaranth.hdl import Module
    from amaranth.lib import stream, wiring
    from amaranth.sim import Simulator

    from flexor_hw.gateware.pool import TiledMaxPool
    from flexor_hw.gateware.repack import Repack

    c, h, w, simd = 8, 4, 16, 8

    class Chain(wiring.Component):
        i: wiring.In(stream.Signature(8 * simd))
        o: wiring.Out(stream.Signature(8))

        def __init__(self, depth):
            self.depth = depth
            super().__init__()

        def elaborate(self, platform):
            m = Module()
            m.submodules.pool = pool = TiledMaxPool(8, c, h, w, 2, simd=simd,
                                                    out_depth=self.depth)
            m.submodules.narrow = narrow = Repack(8, c, simd, 1)
            wiring.connect(m, wiring.flipped(self.i), pool.i)
            wiring.connect(m, pool.o, narrow.i)
            wiring.connect(m, narrow.o, wiring.flipped(self.o))
            return m

    beats = _pack(np.random.default_rng(1).integers(0, 256, 2 * c * h * w), simd, 8)

    def span(depth):
        dut = Chain(depth)
        taken = []

        async def bench(ctx):
            ctx.set(dut.o.ready, 1)
            cycle, k = 0, 0
            while k < len(beats):
                # a beat offered every other cycle, or as soon as it may be after a stall
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, beats[k])
                while True:
                    _, _, ready = await ctx.tick().sample(dut.i.ready)
                    cycle += 1
                    if ready:
                        break
                taken.append(cycle)
                k += 1
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
                cycle += 1

        sim = Simulator(dut)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run()
        return taken[-1] - taken[0]

    paced = 2 * (len(beats) - 1)
    assert span(3) > paced
    assert span(3 + (w // 2) * c // simd) == paced


def blocks_order(images, kh, kw):
    """``[N, C, H, W]`` → beats in blocks of ``kh × kw`` pixels: the blocks in raster order,
    a block's pixels in raster order, each pixel's channels."""
    n, c, h, w = images.shape
    x = images.transpose(0, 2, 3, 1).reshape(n, h // kh, kh, w // kw, kw, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1)


@pytest.mark.parametrize("c, h, w, k, simd, is_signed, stall", [
    (2, 4, 4, 2, 1, False, 0.3),
    (4, 6, 4, 2, 2, True, 0.3),
    (3, 6, 6, 3, 1, False, 0.0),        # unstalled: a beat a cycle (below)
    (4, 4, 6, (2, 3), 4, True, 0.2),    # the whole pixel a beat: one word in the ring
    (1, 2, 2, 2, 1, False, 0.5),        # one channel, one window an image
    (3, 4, 4, 1, 1, True, 0.3),         # 1×1: every pixel is its window
])
def test_block_maxpool_matches_golden(c, h, w, k, simd, is_signed, stall):
    """Pixels in blocks of the pool's windows in (from a window with ``block``); out, the
    golden pool's ``(y', x', c)`` stream exactly, both streams stalled, images back to
    back; unstalled, a beat a cycle in."""
    from flexor_hw.gateware.pool import BlockMaxPool
    kh, kw = (k, k) if isinstance(k, int) else k
    rng = np.random.default_rng(c * h + w)
    lo, hi = (-128, 127) if is_signed else (0, 255)
    images = rng.integers(lo, hi + 1, (3, c, h, w))
    node = MaxPool2d(name="p", kernel=(kh, kw), stride=(kh, kw))
    want = node.run_int([images], None).transpose(0, 2, 3, 1).reshape(-1)
    dut = BlockMaxPool(signed(8) if is_signed else 8, c, k, simd=simd)
    beats = _pack(blocks_order(images, kh, kw), simd, 8)
    run = run_stream(dut, beats, len(want) // simd, in_stall=stall, out_stall=stall, seed=h)
    assert run.outputs == _pack(want, simd, 8)
    if stall == 0:
        assert run.in_cycles[-1] - run.in_cycles[0] == len(beats) - 1


def test_block_maxpool_checks_its_simd():
    from flexor_hw.gateware.pool import BlockMaxPool
    with pytest.raises(ValueError, match=r"^SIMD 3 must divide the channels \(4\)$"):
        BlockMaxPool(8, 4, 2, simd=3)
