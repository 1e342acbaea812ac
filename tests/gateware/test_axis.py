# amaranth: UnusedElaboratable=no
"""AxisTop in Amaranth's simulator: AXI4-Stream ports around a network top, against the golden
model; TLAST on both sides; a misplaced input TLAST is flagged and the stream re-aligned."""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, ClockSignal, Module
from amaranth.sim import Simulator

from flexor_hw.gateware.axis import AxisBridge, AxisTop, tdata_width
from flexor_hw.golden import run_int
from flexor_hw.build import hardware_top, plan_hardware
from flexor_hw.synthetic import random_package

FRAC = 12


def _net(argmax=False, input_bits=5, input_signed=True, output_bits=11, features=(9, 6, 4),
         lanes=(2, 1)):
    pkg = random_package(list(features), n_in=3, n_out=5, q=[2, 1], seed=7,
                         input_bits=input_bits, input_signed=input_signed,
                         output_bits=output_bits, negative_alpha=0.4)
    top = hardware_top(plan_hardware(pkg, lanes=list(lanes), frac_bits=FRAC, argmax=argmax))
    top._MustUse__silence = True        # the parameter tests never elaborate it
    beats_out = 1 if argmax else features[-1]
    return pkg, AxisTop(top, beats_in=features[0], beats_out=beats_out)


def run_axis(dut, packets, n_results, *, in_stall=0.3, out_stall=0.3, seed=0, resets=(),
             max_cycles=20000):
    """Send ``packets`` (lists of beats, TLAST on each one's last) into ``dut``'s s_axis and
    collect ``n_results`` results (lists of ``(tdata, tlast)`` up to a TLAST) from m_axis.

    ``resets`` lists input packet indices before which, once the results of the packets before
    have left, ``aresetn`` is pulled low for two cycles. Returns
    ``(results, error_history)``: ``error`` sampled after each input packet was taken.
    """
    m = Module()
    m.domains.tb = ClockDomain("tb")          # drives aclk; the top's own domain is local
    m.submodules.dut = dut
    m.d.comb += dut.aclk.eq(ClockSignal("tb"))
    sim = Simulator(m)
    sim.add_clock(1e-8, domain="tb")
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    results, current, errors = [], [], []
    tmask = (1 << len(dut.s_axis_tdata)) - 1

    async def producer(ctx):
        for k, packet in enumerate(packets):
            if k in resets:
                ctx.set(dut.s_axis_tvalid, 0)
                while len(results) < k:           # the results before it have left
                    await ctx.tick("tb")
                ctx.set(dut.aresetn, 0)
                await ctx.tick("tb").repeat(2)
                ctx.set(dut.aresetn, 1)
            for j, beat in enumerate(packet):
                while in_stall and rng_in.random() < in_stall:
                    ctx.set(dut.s_axis_tvalid, 0)
                    await ctx.tick("tb")
                ctx.set(dut.s_axis_tdata, int(beat) & tmask)
                ctx.set(dut.s_axis_tlast, int(j == len(packet) - 1))
                ctx.set(dut.s_axis_tvalid, 1)
                while True:
                    _, _, ready = await ctx.tick("tb").sample(dut.s_axis_tready)
                    if ready:
                        break
            ctx.set(dut.s_axis_tvalid, 0)
            errors.append(ctx.get(dut.error))

    async def consumer(ctx):
        cycles = 0
        while len(results) < n_results:
            ready = not (out_stall and rng_out.random() < out_stall)
            ctx.set(dut.m_axis_tready, int(ready))
            _, _, valid, data, last = await ctx.tick("tb").sample(
                dut.m_axis_tvalid, dut.m_axis_tdata, dut.m_axis_tlast)
            if valid and ready:
                current.append((data, last))
                if last:
                    results.append(list(current))
                    current.clear()
            cycles += 1
            assert cycles < max_cycles, f"{len(results)} of {n_results} results"
        ctx.set(dut.m_axis_tready, 0)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    return results, errors


def _signed(value, width):
    return value - (1 << width) if value >> (width - 1) else value


def _check_results(results, expected, width, signed, beats_out):
    for got, want in zip(results, expected, strict=True):
        assert len(got) == beats_out
        assert [last for _, last in got] == [0] * (beats_out - 1) + [1]
        values = [_signed(d, width) if signed else d for d, _ in got]
        assert values == list(want)


def _images(pkg, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(pkg.input.lo, pkg.input.hi + 1, (n, *pkg.input_shape))


def test_tdata_width_whole_bytes():
    assert [tdata_width(w) for w in (1, 7, 8, 9, 16, 17)] == [8, 8, 8, 16, 16, 24]


@pytest.mark.parametrize("argmax", [False, True])
def test_matches_golden_model_with_backpressure(argmax):
    pkg, dut = _net(argmax=argmax)
    assert len(dut.s_axis_tdata) == 8 and len(dut.m_axis_tdata) == (8 if argmax else 16)
    x = _images(pkg, 6, 1)
    x[0], x[1] = pkg.input.lo, pkg.input.hi
    want = run_int(pkg, x, FRAC)[-1]
    if argmax:
        want = want.argmax(axis=1)[:, None]
    results, errors = run_axis(dut, x.tolist(), len(x), seed=3)
    # Signed results are sign-extended to 16 bits, class indices zero-extended.
    _check_results(results, want, len(dut.m_axis_tdata), not argmax, 1 if argmax else 4)
    assert errors == [0] * len(x)


def test_early_tlast_pads_and_flags():
    """A short packet is completed with zero beats; its result is the padded image's; the
    next images are aligned and right; ``error`` stays high."""
    pkg, dut = _net()
    x = _images(pkg, 4, 2)
    packets = [x[0].tolist(), x[1][:4].tolist(), x[2].tolist(), x[3][:1].tolist()]
    padded = x.copy()
    padded[1][4:] = 0
    padded[3][1:] = 0
    want = run_int(pkg, padded, FRAC)[-1]
    results, errors = run_axis(dut, packets, 4, seed=5)
    _check_results(results, want, 16, True, 4)
    assert errors == [0, 1, 1, 1]


def test_late_tlast_drops_and_flags():
    """A long packet is cut after the image's beats, the rest dropped up to its TLAST."""
    pkg, dut = _net()
    x = _images(pkg, 4, 3)
    extra = [[3, -2, 1], [5]]
    packets = [x[0].tolist(), x[1].tolist() + extra[0], x[2].tolist(), x[3].tolist() + extra[1]]
    want = run_int(pkg, x, FRAC)[-1]
    results, errors = run_axis(dut, packets, 4, seed=6)
    _check_results(results, want, 16, True, 4)
    assert errors == [0, 1, 1, 1]


def test_reset_clears_error_and_realigns():
    """``aresetn`` clears the flag; the images after it are aligned and right."""
    pkg, dut = _net()
    x = _images(pkg, 4, 4)
    packets = [x[0].tolist() + [1, 2], x[1].tolist(), x[2].tolist(), x[3].tolist()]
    want = run_int(pkg, x, FRAC)[-1]
    results, errors = run_axis(dut, packets, 4, seed=7, resets=(2,), in_stall=0, out_stall=0)
    _check_results(results, want, 16, True, 4)
    assert errors == [1, 1, 0, 0]


def test_single_beat_images():
    """One beat per image: every beat must carry TLAST; a beat without is the start of a
    long packet."""
    pkg, dut = _net(features=(1, 5, 3), input_bits=8, input_signed=False, output_bits=8,
                    lanes=(1, 1))
    x = _images(pkg, 3, 5)
    packets = [x[0].tolist(), x[1].tolist() + [7, 9], x[2].tolist()]
    want = run_int(pkg, x, FRAC)[-1]
    results, errors = run_axis(dut, packets, 3, seed=8)
    _check_results(results, want, 8, True, 3)
    assert errors == [0, 1, 1]


def test_bad_parameters():
    with pytest.raises(TypeError, match=r"^beats_in must be a positive integer, not 0$"):
        AxisBridge(8, False, 8, True, 0, 3)
    with pytest.raises(TypeError, match=r"^in_signed must be a bool, not 1$"):
        AxisBridge(8, 1, 8, True, 4, 3)
    with pytest.raises(TypeError, match=r"^out_width must be a positive integer, not 2.0$"):
        AxisBridge(8, False, 2.0, True, 4, 3)
    with pytest.raises(TypeError, match=r"^core must be a component with i and o streams"):
        AxisTop(object(), beats_in=3, beats_out=1)
    _, dut = _net()
    with pytest.raises(TypeError, match=r"^beats_out must be a positive integer, not True$"):
        AxisTop(dut.core, beats_in=3, beats_out=True)
