# amaranth: UnusedElaboratable=no
"""WeightStream in Amaranth's simulator: the ROM's words in cyclic order whatever the consumer
does, and never empty once primed when a consumer takes a word every cycle."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from flexor_hw.gateware.rom import Rom
from flexor_hw.gateware.weight_stream import WeightStream, prefetch_depth, prime_cycles


def run_stream(n_words, *, take, cycles=120, width=9, seed=0, latency=2, stall=False):
    """Run ``cycles`` clocks after priming with ready = ``take(rng)`` each cycle. Returns the
    words taken, the ROM's words, and the cycles ready found the stream empty."""
    rng = random.Random(seed)
    words = [rng.randrange(1 << width) for _ in range(n_words)]
    m = Module()
    m.submodules.rom = rom = Rom(width, words=words, latency=latency, stall=stall)
    m.submodules.dut = dut = WeightStream(rom)
    got, empty = [], []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        primed_at = 0
        while not ctx.get(dut.primed):
            assert primed_at < 3 * prefetch_depth(rom.latency), "the stream did not prime"
            primed_at += 1
            await ctx.tick()
        # the engine leaves layers with a fan-in of at least this many beats ungated
        assert primed_at == prime_cycles(rom.latency, stall) == dut.prime_cycles
        for t in range(cycles):
            ready = take(rng)
            ctx.set(dut.o.ready, ready)
            if ready:
                if ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
                else:
                    empty.append(t)
            await ctx.tick()
            assert ctx.get(dut.primed)                  # it stays high

    sim.add_testbench(bench)
    sim.run()
    return got, words, empty


# (a banked ROM, 2049 words, does not stall)
@pytest.mark.parametrize("n_words, latency, stall", [
    (n, latency, stall) for n in (1, 2, 3, 5, 17, 2049)
    for latency, stall in ((2, False), (3, False), (1, True), (2, True), (3, True))
    if not (stall and n > 2048)])
def test_every_cycle_never_empty(n_words, latency, stall):
    got, words, empty = run_stream(n_words, take=lambda rng: 1, latency=latency, stall=stall)
    assert empty == []
    assert got == [words[t % n_words] for t in range(len(got))] and len(got) == 120


# 150: three pieces, a pointer copy each; 300: five, each slot's piece enabled by its own
# register (ENABLE_PIECES_ABOVE)
# (a ROM that stalls, not banked, holds one word whatever its width)
@pytest.mark.parametrize("n_words, p, latency, width, stall", [
    (n, p, latency, width, stall)
    for n, p in ((1, 0.5), (4, 0.3), (7, 0.8), (13, 0.5), (2049, 0.5))
    for latency in (2, 3) for width in (9, 150, 300) for stall in (False, True)
    if not stall or (n < 2049 and width == 150)])
def test_random_takes_keep_the_order(n_words, p, latency, width, stall):
    got, words, empty = run_stream(n_words, take=lambda rng: int(rng.random() < p), seed=n_words,
                                   latency=latency, width=width, stall=stall)
    assert empty == []
    assert len(got) > 10
    assert got == [words[t % n_words] for t in range(len(got))]


@pytest.mark.parametrize("latency, stall", [(2, False), (3, False), (2, True), (3, True)])
def test_bursts_after_idle(latency, stall):
    # long idle stretches (a vector loading), then words every cycle
    pattern = ([0] * 9 + [1] * 23) * 4
    got, words, empty = run_stream(6, take=lambda rng, it=iter(pattern): next(it),
                                   cycles=len(pattern), latency=latency, stall=stall)
    assert empty == [] and len(got) == 23 * 4
    assert got == [words[t % 6] for t in range(len(got))]


@pytest.mark.parametrize("width, latency, hold, stall", [
    (150, 2, True, False), (300, 2, False, False), (300, 3, False, False),
    (150, 2, True, True), (300, 3, False, True)])
def test_a_reset_mid_stream_starts_the_words_again(width, latency, hold, stall):
    """Wide words (each piece of the head chosen by a copy of the read pointer of its own;
    at 300 bits each piece of each slot written on an enable register of its own, set a
    cycle ahead and never reset): a reset after a few words taken at random (the consumer
    held, or still taking, words in flight) starts the stream at word 0 again, in order,
    every piece from the same slot."""
    from amaranth.hdl import ClockDomain
    rng = random.Random(3)
    words = [rng.randrange(1 << width) for _ in range(7)]
    m = Module()
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.rom = rom = Rom(width, words=words, latency=latency, stall=stall)
    m.submodules.dut = dut = WeightStream(rom)
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for reset_after in (5, 11):
            ctx.set(dut.o.ready, 0)         # until the ring is first full
            await ctx.tick().until(dut.primed)
            taken = []
            while len(taken) < reset_after:
                ready = int(rng.random() < 0.6)
                ctx.set(dut.o.ready, ready)
                _, _, valid, word = await ctx.tick().sample(dut.o.valid, dut.o.payload)
                if ready and valid:
                    taken.append(word)
            if hold:
                ctx.set(dut.o.ready, 0)
            ctx.set(cd.rst, 1)
            await ctx.tick()
            ctx.set(cd.rst, 0)
            got.append(taken)

    sim.add_testbench(bench)
    sim.run()
    assert got == [[words[t % 7] for t in range(n)] for n in (5, 11)]


def test_needs_a_registered_rom():
    with pytest.raises(ValueError, match=r"^The weight stream reads a ROM with a latency of "
                                         r"2 cycles or more, not 1$"):
        WeightStream(Rom(4, words=[1, 2]))


def test_rom_latency_must_be_one_to_three():
    with pytest.raises(ValueError, match=r"^Latency must be 1, 2 or 3 cycles, not 4$"):
        Rom(4, words=[1, 2], latency=4)


def test_a_banked_rom_streams_at_five_cycles():
    """A ROM deeper than one block configuration is banked (five cycles, in simulation as
    emitted): the ring runs it full rate, in order."""
    assert Rom(9, words=[0] * 2049, latency=2).latency == 5
    got, words, empty = run_stream(2049, take=lambda rng: 1, latency=2)
    assert empty == [] and got == words[:120]


@pytest.mark.parametrize("depth,width,banks,latency", [(2048, 9, 1, 2), (512, 36, 1, 2),
                                                      (2049, 9, 2, 5), (40192, 16, 20, 5)])
def test_deep_block_rom_is_banked(depth, width, banks, latency):
    rom = Rom(width, depth=depth, init_file="w.hex", latency=2)
    assert (rom.banks, rom.latency) == (banks, latency)
    assert Rom(width, depth=depth, init_file="w.hex", latency=2, logic=True).banks == 1
    assert Rom(width, depth=depth, init_file="w.hex").latency == 1


def test_a_banked_rom_does_not_stall():
    with pytest.raises(ValueError, match=r"^A banked ROM \(2049 words in 2 banks\) cannot "
                                         r"stall its read$"):
        Rom(9, words=[0] * 2049, latency=2, stall=True)
