"""Run gateware in Amaranth's simulator: stream producer and consumer with seeded stalls."""

import random
from dataclasses import dataclass, field

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

__all__ = ["StreamRun", "run_stream", "reset_while_stalled", "rtl_network", "pack_beats",
           "unpack_beats"]


@dataclass
class StreamRun:
    outputs: list
    out_cycles: list = field(default_factory=list)   # cycle of each output transfer
    in_cycles: list = field(default_factory=list)    # cycle of each input transfer
    cycles: int = 0


class SimulationTimeout(RuntimeError):
    pass


def run_stream(dut, beats, n_outputs, *, in_stall=0.0, out_stall=0.0, seed=0,
               max_cycles=None, vcd=None, before=None, monitor=None):
    """Feed ``beats`` into ``dut.i`` and collect ``n_outputs`` transfers from ``dut.o``.

    ``in_stall`` / ``out_stall`` are the probabilities that the producer withholds ``valid`` or
    the consumer withholds ``ready`` in a cycle (seeded, independent per side). ``before`` is an
    optional ``async def before(ctx, rst)`` run first by the producer (e.g. a reset in the middle
    of a vector); beats and outputs are counted after it. ``monitor``: an optional
    ``async def monitor(ctx)`` run in the background beside them (checks of internal
    signals, once the design is elaborated). A ``dut`` with ``clk`` and ``rst`` ports (a
    top with a reset tree) takes them from the simulation's ``sync`` domain.
    """
    top = Module()
    top.domains.sync = cd = ClockDomain("sync")
    top.submodules.dut = dut
    if "clk" in getattr(getattr(dut, "signature", None), "members", {}):
        top.d.comb += [dut.clk.eq(cd.clk), dut.rst.eq(cd.rst)]
    sim = Simulator(top)
    sim.add_clock(1e-8, domain="sync")
    run = StreamRun(outputs=[])
    max_cycles = max_cycles or 100 * (len(beats) + n_outputs) + 1000
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1)
    started = []
    cycle = [0]

    async def clock(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    async def producer(ctx):
        if before is not None:
            await before(ctx, cd.rst)
        started.append(cycle[0])
        for beat in beats:
            while in_stall and rng_in.random() < in_stall:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, int(beat))
            ctx.set(dut.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.i.ready)
                if ready:
                    run.in_cycles.append(cycle[0])
                    break
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 0)         # ``before`` may take outputs of its own meanwhile
        while not started:
            await ctx.tick()
        while len(run.outputs) < n_outputs:
            ready = not (out_stall and rng_out.random() < out_stall)
            ctx.set(dut.o.ready, int(ready))
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                run.outputs.append(payload)
                run.out_cycles.append(cycle[0])
            if cycle[0] > max_cycles:
                raise SimulationTimeout(f"{len(run.outputs)} of {n_outputs} outputs after "
                                        f"{cycle[0]} cycles")
        ctx.set(dut.o.ready, 0)

    sim.add_testbench(clock, background=True)
    if monitor is not None:
        sim.add_testbench(monitor, background=True)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    run.cycles = cycle[0]
    return run


def reset_while_stalled(dut, beats, *, settle, hold=1, offered=False, fill=False, taken=0):
    """A ``before`` for :func:`run_stream`: ``beats`` fed while the output stalls, ``settle``
    idle cycles, then (with the output holding a valid beat) the reset for ``hold`` cycles;
    with ``offered``, a beat (the last one again) offered on the input during the reset;
    with ``fill``, the feeding stops where the input takes no beat for ``settle`` cycles
    (the unit is full); with ``taken``, the output takes its first ``taken`` beats as they
    come (and stalls from then on), so the reset can find the unit deep in its work."""
    async def before(ctx, rst):
        got = 0
        ctx.set(dut.o.ready, 0)
        if taken:
            await ctx.tick()
            ctx.set(dut.o.ready, 1)

        async def tick():
            """A cycle; whether the input took the beat offered."""
            nonlocal got
            _, _, i_ready, o_valid, o_ready = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.ready)
            if o_valid and o_ready:
                got += 1
                if got == taken:
                    ctx.set(dut.o.ready, 0)
            return i_ready

        for beat in beats:
            ctx.set(dut.i.payload, beat)
            ctx.set(dut.i.valid, 1)
            if not fill:
                while not await tick():
                    pass
                continue
            for _ in range(settle):
                if await tick():
                    break
            else:
                break
        ctx.set(dut.i.valid, 0)
        for _ in range(100 * taken):
            if got >= taken:
                break
            await tick()
        if got < taken:
            raise AssertionError(f"the output took {got} of {taken} beats")
        for _ in range(settle):
            await tick()
        assert ctx.get(dut.o.valid)
        ctx.set(rst, 1)
        ctx.set(dut.i.valid, int(offered))
        for _ in range(hold):
            await ctx.tick()
        ctx.set(rst, 0)
        ctx.set(dut.i.valid, 0)
    return before


def rtl_network(top, x, n_out, **kwargs):
    """Simulate a network top on int ``[batch, n_in]``; return ``([batch, n_out], run)``."""
    x = np.asarray(x, dtype=np.int64)
    run = run_stream(top, x.reshape(-1).tolist(), x.shape[0] * n_out, **kwargs)
    return np.array(run.outputs, dtype=np.int64).reshape(x.shape[0], n_out), run


def pack_beats(values, per_beat, width):
    """Elements into stream beats of ``per_beat`` elements of ``width`` bits (element ``k`` of
    a beat at bits ``k·width``), each vector (a row of ``values``) padded with zeros to whole
    beats: Python ints, in order."""
    values = np.asarray(values, dtype=np.int64)
    values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[None, :]
    n = -(-values.shape[1] // per_beat) * per_beat
    padded = np.zeros((values.shape[0], n), dtype=object)
    padded[:, :values.shape[1]] = values.astype(object) & ((1 << width) - 1)
    beats = []
    for row in padded.reshape(-1, per_beat):
        beats.append(sum(int(v) << (k * width) for k, v in enumerate(row)))
    return beats


def unpack_beats(beats, per_beat, width, signed):
    """The elements of stream beats (see :func:`pack_beats`), as an int64 array."""
    out = []
    for word in beats:
        for k in range(per_beat):
            v = (int(word) >> (k * width)) & ((1 << width) - 1)
            out.append(v - (1 << width) if signed and v >> (width - 1) else v)
    return np.array(out, dtype=np.int64)
