# amaranth: UnusedElaboratable=no
"""Every component in Amaranth's simulator against the golden model, compared exactly."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import random_inputs
from flexor_hw.errors import BuildError
from flexor_hw.build import hardware_top, plan_hardware
from flexor_hw.gateware import Rom, XorDecoder, XorDecoderArray
from flexor_hw.golden import run_int
from flexor_hw.simulate import rtl_network, run_stream
from flexor_hw.synthetic import random_package
from flexor_hw.xor import decrypt, make_xor_matrix


def comb_sim(dut, cases, outputs):
    """Drive combinational inputs case by case; return the outputs read back."""
    got = []
    sim = Simulator(dut)

    async def tb(ctx):
        for case in cases:
            for port, value in case:
                ctx.set(port, value)
            await ctx.delay(1e-9)
            got.append([ctx.get(o) for o in outputs])

    sim.add_testbench(tb)
    sim.run()
    return got


def bits_to_int(bits):
    return int("".join(str(int(b)) for b in reversed(bits)), 2)


def int_to_bits(value, n):
    return [(value >> j) & 1 for j in range(n)]


@pytest.mark.parametrize("n_out, n_in, n_tap", [(10, 6, 2), (11, 7, 1), (20, 8, 8), (9, 9, None)])
def test_xor_decoder_matches_decrypt(n_out, n_in, n_tap):
    mat = make_xor_matrix(n_out, n_in, n_tap, seed=n_out)
    dut = XorDecoder(mat)
    values = list(range(2 ** n_in)) if n_in <= 8 else list(range(0, 2 ** n_in, 7))
    got = comb_sim(dut, [[(dut.i, v)] for v in values], [dut.o])
    enc = np.array([int_to_bits(v, n_in) for v in values], np.uint8)
    expected = [bits_to_int(row) for row in decrypt(mat, enc)]
    assert [g[0] for g in got] == expected
    assert dut.xor_gates == int(np.maximum(mat.sum(1) - 1, 0).sum())


def test_xor_decoder_array_layout():
    mats = np.stack([make_xor_matrix(11, 7, 2, seed=s) for s in (1, 2)])
    q, lanes = 2, 3
    dut = XorDecoderArray(mats, lanes)
    rng = np.random.default_rng(0)
    cases, expected = [], []
    for _ in range(20):
        enc = rng.integers(0, 2, (q, lanes, 7), dtype=np.uint8)
        cases.append([(dut.i, bits_to_int(enc.reshape(-1)))])
        expected.append(bits_to_int(np.concatenate(
            [decrypt(mats[p], enc[p]).reshape(-1) for p in range(q)])))
    assert [g[0] for g in comb_sim(dut, cases, [dut.o])] == expected
    assert dut.xor_gates == lanes * sum(int((m.sum(1) - 1).sum()) for m in mats)


def test_rom_reads_one_cycle_later():
    words = [0x3A5, 0x0FF, 0x100, 0x2C3, 0x001]
    dut = Rom(10, words=words)
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        for addr in [3, 0, 4, 4, 1, 2]:
            ctx.set(dut.addr, addr)
            await ctx.tick()
            got.append(ctx.get(dut.data))

    sim.add_testbench(tb)
    sim.run()
    assert got == [words[a] for a in [3, 0, 4, 4, 1, 2]]


@pytest.mark.parametrize("args, exc, msg", [
    (dict(width=0, words=[1]), TypeError, r"^Width must be a positive integer, not 0$"),
    (dict(width=4), ValueError, r"^Exactly one of words and init_file must be given$"),
    (dict(width=4, init_file="x.hex", depth=0), TypeError,
     r"^Depth must be a positive integer, not 0$"),
])
def test_rom_parameter_errors(args, exc, msg):
    with pytest.raises(exc, match=msg):
        Rom(**args)


def test_decoder_parameter_errors():
    with pytest.raises(ValueError, match=r"^Matrix must hold only 0 and 1$"):
        XorDecoder(np.full((4, 2), 2))
    with pytest.raises(ValueError, match=r"^Matrix has n_in \(5\) greater than n_out \(4\)$"):
        XorDecoder(np.ones((4, 5)))
    with pytest.raises(TypeError, match=r"^Lanes must be a positive integer, not 0$"):
        XorDecoderArray(np.ones((1, 4, 2)), 0)



NETWORK_CASES = [
    # features, n_in, n_out, q, n_tap, lanes
    ([19, 11, 7, 3], [5, 3, 7], [9, 10, 11], [2, 1, 3], [2, None, 1], [2, 1, 2]),
    ([12, 17, 5, 8, 4], [4, 6, 2, 5], [8, 6, 20, 5], [1, 2, 1, 2], [2, 3, 2, None], [1, 3, 1, 2]),
]


@pytest.mark.parametrize("case", NETWORK_CASES, ids=["3-layers", "4-layers"])
@pytest.mark.parametrize("fold", ["lanes", "auto"])
def test_network_top_bit_exact_with_stalls(case, fold):
    features, n_in, n_out, q, n_tap, lanes = case
    pkg = random_package(features, n_in=n_in, n_out=n_out, q=q, n_tap=n_tap, seed=len(features),
                         input_signed=True, negative_alpha=0.3)
    graph = plan_hardware(pkg, lanes=lanes if fold == "lanes" else None, frac_bits=14)
    x = random_inputs(pkg, 4, seed=1)
    got, _ = rtl_network(hardware_top(graph), x, features[-1], in_stall=0.3, out_stall=0.3,
                         seed=7)
    assert np.array_equal(got, run_int(pkg, x, 14)[-1])


@pytest.mark.parametrize("fold", [None, "fc1=1x1,fc2=2x8", "fc1=6x12,fc2=10x30"])
def test_network_throughput_is_the_slowest_stage(fold):
    """Unstalled, vectors leave exactly the slowest stage's cycles apart, and a vector's last
    output exactly the graph's latency after its last input (units, width converters)."""
    pkg = random_package([24, 30, 10], n_in=6, n_out=10, q=1, seed=2)
    graph = plan_hardware(pkg, fold=fold or "auto", frac_bits=16)
    x = random_inputs(pkg, 5)

    async def idle(ctx, rst):                   # primed weight queues
        await ctx.tick().repeat(10)

    got, run = rtl_network(hardware_top(graph), x, 10, before=idle)
    assert np.array_equal(got, run_int(pkg, x, 16)[-1])
    last = run.out_cycles[9::10]
    assert (np.diff(last) == graph.cycles_per_image()).all()
    assert last[0] - run.in_cycles[23] == graph.latency()


def test_argmax_unit_first_max_on_ties():
    from flexor_hw.gateware.argmax import Argmax
    from amaranth.hdl import signed
    rows = [[3, -1, 7, 7, 2], [-5, -5, -9, -6, -5], [0, 0, 0, 0, 1], [127, -128, 127, 0, 5]]
    run = run_stream(Argmax(5, signed(8)), [v for r in rows for v in r], len(rows),
                     in_stall=0.3, out_stall=0.5, seed=1)
    assert run.outputs == [int(np.argmax(r)) for r in rows]


@pytest.mark.parametrize("n", [1, 2, 3, 10])
def test_argmax_unit_short_vectors_with_backpressure(n):
    # The last beat of a vector waits for the output register; the others do not.
    from flexor_hw.gateware.argmax import Argmax
    from amaranth.hdl import signed
    rows = np.random.default_rng(n).integers(-4, 4, size=(12, n))
    run = run_stream(Argmax(n, signed(4)), [int(v) for v in rows.ravel()], len(rows),
                     in_stall=0.2, out_stall=0.6, seed=n)
    assert run.outputs == [int(np.argmax(r)) for r in rows]
    idle = run_stream(Argmax(n, signed(4)), [int(v) for v in rows[0]], 1)
    assert idle.out_cycles[0] - idle.in_cycles[n - 1] == Argmax.latency
    steady = run_stream(Argmax(n, signed(4)), [int(v) for v in rows.ravel()], len(rows))
    assert steady.outputs == [int(np.argmax(r)) for r in rows]
    assert set(np.diff(steady.out_cycles)) == {Argmax(n, 4).cycles_per_vector}


def test_network_with_argmax_and_auto_folding():
    pkg = random_package([30, 40, 7], n_in=5, n_out=10, q=1, seed=12)
    graph = plan_hardware(pkg, frac_bits=16, argmax=True)
    # The 1-wide input bounds the rate: every unit is folded to keep up with it, no more.
    assert graph.cycles_per_image() == 30
    assert all(st.cycles_per_image() <= 30 for st in graph.mvaus)
    x = random_inputs(pkg, 5, seed=2)
    got, _ = rtl_network(hardware_top(graph), x, 1, in_stall=0.3, out_stall=0.3)
    assert np.array_equal(got[:, 0], run_int(pkg, x, 16)[-1].argmax(1))


@pytest.mark.parametrize("lanes", [1, 3, 5])
def test_baseline_network_bit_exact(lanes):
    pkg = random_package([37, 13, 4], n_in=7, n_out=11, q=2, seed=21, negative_alpha=0.3)
    graph = plan_hardware(pkg, lanes=[lanes, 1], frac_bits=16, baseline=True)
    unit = graph.mvaus[0].params
    assert unit.plain and unit.rom_width == 2 * min(37, lanes * 11)
    x = random_inputs(pkg, 3, seed=lanes)
    got, _ = rtl_network(hardware_top(graph), x, 4, in_stall=0.3, out_stall=0.3, seed=lanes)
    assert np.array_equal(got, run_int(pkg, x, 16)[-1])


@pytest.mark.parametrize("depth, pieces", [(1, 1), (2, 1), (5, 1), (6, 1), (13, 1), (2, 3),
                                           (7, 3), (8, 4), (13, 2)])
def test_output_fifo_keeps_order_under_backpressure(depth, pieces):
    # Registers up to 4 waiting entries, a memory beyond: both with the head as a register.
    # The writer keeps within the FIFO's room like the MAC's credits do (a place comes back
    # a cycle after its entry leaves); the consumer stalls at random.
    import random
    from amaranth.hdl import ClockDomain, Module
    from flexor_hw.gateware.pipeline import OutputFifo
    # ``pieces``: the head in pieces under copies of its control (a kernel window's)
    fifo = OutputFifo(10, depth, pieces=pieces)
    top = Module()
    top.domains.sync = ClockDomain("sync")
    top.submodules.fifo = fifo
    sim = Simulator(top)
    sim.add_clock(1e-8)
    values = random.Random(depth).sample(range(1024), 200)        # all different
    got = []

    async def tb(ctx):
        rng, sent, space, back = random.Random(depth + 1), 0, depth, 0
        while len(got) < len(values):
            write = sent < len(values) and space > 0 and rng.random() < 0.7
            ready = rng.random() < 0.4
            ctx.set(fifo.w_en, write)
            ctx.set(fifo.w_data, values[sent] if write else 0)
            ctx.set(fifo.o.ready, ready)
            taken = ctx.get(fifo.o.valid) and ready
            if taken:
                got.append(ctx.get(fifo.o.payload))
            space += back - write
            back = int(taken)
            sent += write
            await ctx.tick()

    sim.add_testbench(tb)
    sim.run()
    assert got == values


def test_argmax_bound_enters_network_cycles():
    # 40 classes from a fast layer: two cycles per beat in the argmax are the bottleneck.
    pkg = random_package([4, 40], n_in=5, n_out=10, q=1, seed=3)
    graph = plan_hardware(pkg, fold="fc1=40x4", frac_bits=16, argmax=True)
    assert graph.mvaus[0].cycles_per_image() < 80 == graph.cycles_per_image()
    x = random_inputs(pkg, 6, seed=1)
    got, run = rtl_network(hardware_top(graph), x, 1)
    assert np.array_equal(got[:, 0], run_int(pkg, x, 16)[-1].argmax(1))
    assert set(np.diff(run.out_cycles)) == {80}


@pytest.mark.parametrize("kind", ["StreamRegister", "SkidBuffer"])
def test_register_slices_keep_order_and_full_rate(kind):
    # Stalled at random on both sides every beat arrives once and in order; unstalled, a
    # beat a cycle passes with one cycle of latency.
    from flexor_hw.gateware import pipeline
    values = list(range(1, 200))
    run = run_stream(getattr(pipeline, kind)(8), values, len(values), in_stall=0.4,
                     out_stall=0.5, seed=3)
    assert run.outputs == values
    run = run_stream(getattr(pipeline, kind)(8), values, len(values))
    assert run.outputs == values
    assert set(np.diff(run.out_cycles)) == {1}
    assert run.out_cycles[0] - run.in_cycles[0] == 1


@pytest.mark.parametrize("depth,need", [(1, 1), (6, 1), (6, 4), (12, 4)])
def test_credits_keep_an_output_fifo_from_overflowing(depth, need):
    # A writer reserves ``need`` places at once when Credits has room, writes them over the
    # next cycles, and the consumer stalls at random: nothing is lost or reordered, and with
    # the consumer always ready and enough places the writer never waits.
    import random
    from amaranth.hdl import ClockDomain, Module, Signal
    from flexor_hw.gateware.pipeline import Credits, OutputFifo

    def run(ready_p, n_groups):
        top = Module()
        top.domains.sync = ClockDomain("sync")
        top.submodules.fifo = fifo = OutputFifo(10, depth)
        credits = Credits(depth, need)
        reserve = Signal()
        credits.count(top, reserve * need, fifo.o.valid & fifo.o.ready)
        sim = Simulator(top)
        sim.add_clock(1e-8)
        values = random.Random(depth).sample(range(1024), n_groups * need)
        got, waits = [], [0]

        async def tb(ctx):
            rng, sent, pending = random.Random(depth + need), 0, []
            for _ in range(50 * len(values)):       # a lost beat or a lost place: stop
                if len(got) == len(values):
                    break
                go = sent < len(values) and ctx.get(credits.room) and not pending
                if sent < len(values) and not go and not pending:
                    waits[0] += 1
                ctx.set(reserve, go)
                if go:
                    pending = values[sent:sent + need]
                    sent += need
                write = bool(pending)
                ctx.set(fifo.w_en, write)
                ctx.set(fifo.w_data, pending.pop(0) if write else 0)
                ready = rng.random() < ready_p
                ctx.set(fifo.o.ready, ready)
                if ctx.get(fifo.o.valid) and ready:
                    got.append(ctx.get(fifo.o.payload))
                await ctx.tick()

        sim.add_testbench(tb)
        sim.run()
        return got, values, waits[0]

    got, values, _ = run(0.3, 40)
    assert got == values
    if depth >= need + 3:
        got, values, waits = run(1.0, 20)
        assert got == values and waits == 0
    with pytest.raises(ValueError, match="cannot reserve"):
        Credits(depth, depth + 1)
