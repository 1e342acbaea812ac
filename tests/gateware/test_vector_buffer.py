# amaranth: UnusedElaboratable=no
"""VectorBuffer in Amaranth's simulator: every window of the periodic sequence x[0 … f−1],
x[0 …], read M elements per step, with stalls on both sides and vectors back to back."""

import random

import pytest
from amaranth.sim import Simulator

from flexor_hw.gateware.vector_buffer import VectorBuffer


def run_buffer(fan_in, lanes, *, width=5, n_vectors=3, stall=0.3, seed=0, double=True):
    """Load ``n_vectors`` random vectors; read each for two periods and a few steps more
    (holding it meanwhile). Returns (windows read, windows expected, the buffer)."""
    dut = VectorBuffer(width, fan_in, lanes, double=double)
    rng = random.Random(seed)
    vectors = [[rng.randrange(1 << width) for _ in range(fan_in)] for _ in range(n_vectors)]
    got, want = [], []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def loader(ctx):
        for vector in vectors:
            for x in vector:
                while rng.random() < stall:
                    ctx.set(dut.i.valid, 0)
                    await ctx.tick()
                ctx.set(dut.i.payload, x)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def reader(ctx):
        for vector in vectors:
            await ctx.tick().until(dut.full)
            ctx.set(dut.swap, 1)
            await ctx.tick()
            ctx.set(dut.swap, 0)
            ctx.set(dut.hold, 1)
            for t in range((2 * fan_in + lanes - 1) // lanes + 3):
                while rng.random() < stall:
                    await ctx.tick()
                o = ctx.get(dut.o)
                got.append([(o >> (m * width)) & ((1 << width) - 1) for m in range(lanes)])
                want.append([vector[(t * lanes + m) % fan_in] for m in range(lanes)])
                ctx.set(dut.step, 1)
                await ctx.tick()
                ctx.set(dut.step, 0)
            ctx.set(dut.hold, 0)

    sim.add_testbench(loader)
    sim.add_testbench(reader)
    sim.run()
    return got, want, dut


# f mod M of 0, 1 and ≥ 2 (a tail word); gcd(f, M) of 1 and more; M = 1 and M = f.
CASES = [(7, 3), (10, 4), (12, 4), (5, 5), (9, 2), (31, 7), (6, 1), (13, 6), (11, 10),
         (800, 70), (40, 12)]


@pytest.mark.parametrize("fan_in, lanes", CASES, ids=[f"f{f}m{m}" for f, m in CASES])
@pytest.mark.parametrize("double", [True, False], ids=["double", "single"])
def test_windows_of_the_periodic_vector(fan_in, lanes, double):
    got, want, _ = run_buffer(fan_in, lanes, seed=fan_in + lanes, double=double)
    assert got == want


def test_single_buffer_waits_for_the_reader():
    """Without room for two vectors, the next one loads only after ``hold`` falls: loading
    while the reader still held its vector would overwrite it (and the windows would differ)."""
    got, want, dut = run_buffer(31, 7, stall=0.0, double=False)
    assert got == want
    assert dut.memory_bits == 6 * 7 * 5


def test_back_to_back_without_stalls_and_sizes():
    got, want, dut = run_buffer(31, 7, stall=0.0, n_vectors=4)
    assert got == want
    assert dut.words_per_vector == 6                 # ⌊30/7⌋ + 2
    assert dut.memory_bits == 2 * 6 * 7 * 5
    assert dut.load_cycles == 1                      # 31 mod 7 = 3: a tail word
    assert VectorBuffer(5, 30, 7).load_cycles == 1   # 30 mod 7 = 2: still one
    assert VectorBuffer(5, 29, 7).load_cycles == 0   # 29 mod 7 = 1: word 4 is enough
    assert VectorBuffer(5, 28, 7).load_cycles == 0


@pytest.mark.parametrize("args, exc, msg", [
    ((5, 0, 1), TypeError, r"^Fan-in must be a positive integer, not 0$"),
    ((5, 4, 1.5), TypeError, r"^Lanes must be a positive integer, not 1\.5$"),
    ((5, 4, 5), ValueError, r"^Lanes \(5\) must not exceed the fan-in \(4\)$"),
])
def test_parameter_errors(args, exc, msg):
    with pytest.raises(exc, match=msg):
        VectorBuffer(*args)
