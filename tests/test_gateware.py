# amaranth: UnusedElaboratable=no
"""Every component in Amaranth's simulator against the golden model, compared exactly."""

from dataclasses import replace

import numpy as np
import pytest
from amaranth.sim import Simulator

from conftest import random_inputs
from flexor_hw.errors import BuildError
from flexor_hw.gateware import BinaryCodeMac, LayerEngine, Rom, XorDecoder, XorDecoderArray
from flexor_hw.gateware.weight_stream import PRIME_CYCLES
from flexor_hw.golden import layer_int, run_int
from flexor_hw.plan import plan_layer
from flexor_hw.simulate import run_stream, rtl_layer
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


def ref_mac_steps(plan, x):
    """The steps the engine would feed the MAC for one vector (host-side reference)."""
    layer = plan.layer
    bits = layer.weight_bits.reshape(plan.q, -1)
    total = plan.n_words * plan.window
    padded = np.zeros((plan.q, total), np.uint8)
    padded[:, :layer.numel] = bits
    steps, pos = [], 0
    f = plan.fan_in
    for w in range(plan.n_words):
        for size in plan.step_sizes:
            lanes = plan.step_lanes
            window = np.zeros((plan.q, lanes), np.uint8)
            window[:, :size] = padded[:, pos:pos + size]
            xs = [int(x[(pos + m) % f]) for m in range(lanes)]
            rem = f - pos % f
            head = sum(1 << m for m in range(lanes + 1) if m < rem)
            steps.append(dict(bits=bits_to_int(window.reshape(-1)), x=xs, count=size, rem=rem,
                              head=head, first=int(pos == 0), xsum=int(x.sum())))
            pos += size
    return steps


@pytest.mark.parametrize("lanes", [1, 2, 5])
def test_binary_code_mac_alone(lanes):
    pkg = random_package([23, 7], n_in=5, n_out=9, q=2, seed=8, input_signed=True)
    plan = plan_layer(pkg, 0, lanes, 12)
    x = random_inputs(pkg, 3, seed=lanes)
    expected = layer_int(plan.layer, plan.consts, x)
    dut = BinaryCodeMac(plan.params())
    got = []
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def producer(ctx):
        for v in x:
            for step in ref_mac_steps(plan, v):
                for name, value in step.items():
                    if name == "x":
                        for m, xv in enumerate(value):
                            ctx.set(dut.i.payload.x[m], xv)
                    else:
                        ctx.set(getattr(dut.i.payload, name), value)
                ctx.set(dut.i.valid, 1)
                await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got) < expected.size:
            _, _, valid, y = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(y)

    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert np.array_equal(np.array(got).reshape(expected.shape), expected)


# Odd shapes on purpose: slices straddle rows, fan-ins are not multiples of the window,
# windows wider than the fan-in (several sub-steps per ROM word), a distinct M⊕ per plane.
ENGINE_CASES = [
    # features, n_in, n_out, q, n_tap, signed input, lanes, frac_bits
    ([37, 13], 7, 11, 2, 2, False, 2, 16),
    ([37, 13], 7, 11, 2, 2, True, 3, 16),
    ([37, 13], 7, 11, 1, None, False, 4, 10),       # W = 44 > fan-in 37: two sub-steps
    ([5, 9], 3, 20, 1, 1, True, 1, 8),              # W = 20 > fan-in 5: four sub-steps
    ([16, 8], 4, 8, 3, 4, False, 2, 16),            # n_tap = n_in; W = fan-in exactly
    ([29, 6], 10, 10, 2, 3, False, 7, 0),           # n_in = n_out, F = 0
    ([1, 4], 2, 5, 1, 2, False, 1, 16),             # fan-in 1
]


@pytest.mark.parametrize("case", ENGINE_CASES, ids=[f"{c[0][0]}x{c[0][1]}-L{c[6]}" for c in
                                                    ENGINE_CASES])
@pytest.mark.parametrize("relu", [True, False])
def test_layer_engine_bit_exact_with_stalls(case, relu):
    check_engine_case(case, relu, memory=False)


# The cases whose window (lanes · n_out) fits in the fan-in: one step per ROM word.
MEMORY_CASES = [c for c in ENGINE_CASES if c[6] * c[2] <= c[0][0]] + [
    ([40, 9], 5, 8, 2, 2, True, 1, 12),             # M = 8 divides f = 40: no shift at all
    ([61, 5], 6, 9, 1, 3, False, 2, 16),            # f mod M = 7, gcd 1: every shift
]


@pytest.mark.parametrize("case", MEMORY_CASES, ids=[f"{c[0][0]}x{c[0][1]}-L{c[6]}" for c in
                                                    MEMORY_CASES])
@pytest.mark.parametrize("relu", [True, False])
def test_layer_engine_with_activation_memory(case, relu):
    check_engine_case(case, relu, memory=True)


# (case, mac_lanes, memory): words cut into sub-steps below the fan-in, equal or not.
CAP_CASES = [(ENGINE_CASES[0], 11, False), (ENGINE_CASES[0], 11, True),   # W = 22: 2 × 11
             (ENGINE_CASES[1], 5, False),                   # W = 33: 5, 5, …, 3
             (ENGINE_CASES[4], 4, True), (ENGINE_CASES[4], 1, True),       # W = 16
             (ENGINE_CASES[5], 7, False)]                   # W = 70 > f = 29, capped at 7


@pytest.mark.parametrize("case, cap, memory", CAP_CASES,
                         ids=[f"{c[0][0]}x{c[0][1]}-L{c[6]}-M{cap}-{'mem' if mem else 'reg'}"
                              for c, cap, mem in CAP_CASES])
def test_layer_engine_with_mac_lanes_below_the_window(case, cap, memory):
    plan = check_engine_case(case, False, memory=memory, mac_lanes=cap)
    assert plan.step_lanes == cap
    assert plan.n_steps == plan.n_words * -(-plan.window // cap)


def check_engine_case(case, relu, memory, mac_lanes=0):
    features, n_in, n_out, q, n_tap, signed, lanes, frac_bits = case
    pkg = random_package(features + ([3] if relu else []), n_in=n_in, n_out=n_out, q=q,
                         n_tap=n_tap, seed=sum(features) + lanes, input_signed=signed,
                         negative_alpha=0.3)
    assert pkg.layers[0].relu == relu
    plan = plan_layer(pkg, 0, lanes, frac_bits)
    plan = replace(plan, act_memory=memory, mac_lanes=mac_lanes)
    x = random_inputs(pkg, 4, seed=lanes)
    x[0] = pkg.input.hi                               # extremes of the input range
    x[1] = pkg.input.lo
    expected = run_int(pkg, x, frac_bits)[0]
    got, _ = rtl_layer(plan, x, in_stall=0.3, out_stall=0.4, seed=lanes)
    assert np.array_equal(got, expected)
    return plan


def test_negative_alpha_and_bias_are_exercised():
    pkg = random_package([37, 13], n_in=7, n_out=11, q=2, seed=40, negative_alpha=0.5)
    layer = pkg.layers[0]
    assert (layer.alpha < 0).any() and (layer.alpha > 0).any() and (layer.bias < 0).any()
    plan = plan_layer(pkg, 0, 2, 16)
    x = random_inputs(pkg, 3, seed=1)
    got, _ = rtl_layer(plan, x, in_stall=0.2, out_stall=0.2, seed=2)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])
    assert (got < 0).any() and (got > 0).any()


@pytest.mark.parametrize("memory", [False, True], ids=["registers", "memory"])
def test_one_rom_word_per_cycle_when_not_stalled(memory):
    pkg = random_package([40, 30], n_in=6, n_out=10, q=2, seed=5)
    plan = plan_layer(pkg, 0, 2, 16)                  # W = 20: compute-bound (60 steps > 41)
    plan = replace(plan, act_memory=memory)
    assert plan.n_steps > plan.fan_in + 1
    x = random_inputs(pkg, 5)
    got, run = rtl_layer(plan, x)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])
    last_outputs = run.out_cycles[plan.out_features - 1::plan.out_features]
    gaps = np.diff(last_outputs)
    assert (gaps == plan.n_steps).all(), gaps      # one word per cycle, no bubbles
    assert plan.cycles_per_inference == plan.n_steps


@pytest.mark.parametrize("memory", [False, True], ids=["registers", "memory"])
def test_single_buffered_memory_loads_then_computes(memory):
    """One vector's room: loading and computing take turns, f + 1 (+ tail) + steps each."""
    pkg = random_package([40, 30], n_in=6, n_out=10, q=2, seed=5)
    plan = replace(plan_layer(pkg, 0, 2, 16), act_memory=memory, double_buffer=False)
    x = random_inputs(pkg, 4)
    got, run = rtl_layer(plan, x)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])
    last_outputs = run.out_cycles[plan.out_features - 1::plan.out_features]
    assert (np.diff(last_outputs) == plan.cycles_per_inference).all()
    assert plan.cycles_per_inference == plan.fan_in + 1 + plan.n_steps


@pytest.mark.parametrize("memory", [False, True], ids=["registers", "memory"])
def test_input_bound_cycles_and_latency(memory):
    pkg = random_package([40, 3], n_in=6, n_out=10, q=1, seed=6)
    plan = plan_layer(pkg, 0, 3, 16)                  # 4 words per vector, 40 inputs
    plan = replace(plan, act_memory=memory)
    x = random_inputs(pkg, 4)
    got, run = rtl_layer(plan, x)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])
    last_outputs = run.out_cycles[plan.out_features - 1::plan.out_features]
    assert (np.diff(last_outputs) == plan.cycles_per_inference).all()
    # 40 mod 30 = 10: the activation memory writes a second tail word after the last beat
    assert plan.cycles_per_inference == plan.fan_in + 1 + memory
    last_input = run.in_cycles[plan.fan_in - 1]
    assert last_outputs[0] - last_input == plan.latency_cycles


@pytest.mark.parametrize("features, n_in, n_out, lanes, memory", [
    ([1, 4], 2, 5, 1, False), ([5, 9], 3, 20, 1, False), ([6, 4], 2, 3, 1, True)],
    ids=["f1", "f5-substeps", "f6-memory"])
def test_short_vectors_straight_after_reset_wait_for_the_weights(features, n_in, n_out, lanes,
                                                                  memory):
    """A vector of fewer beats than the weight stream needs to prime, unstalled from the
    first cycle, would step on words not yet read: the engine holds its input until then."""
    assert features[0] < PRIME_CYCLES
    pkg = random_package(features, n_in=n_in, n_out=n_out, q=1, seed=3)
    plan = replace(plan_layer(pkg, 0, lanes, 16), act_memory=memory)
    x = random_inputs(pkg, 3, seed=4)
    got, _ = rtl_layer(plan, x)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])


def test_reset_in_the_middle_of_a_vector():
    pkg = random_package([37, 13], n_in=7, n_out=11, q=2, seed=9)
    plan = plan_layer(pkg, 0, 2, 16)
    junk = random_inputs(pkg, 2, seed=99).reshape(-1)
    dut = LayerEngine(plan.params())

    async def before(ctx, rst):
        # A whole vector plus half of the next, output stalled so the pipeline is full.
        ctx.set(dut.o.ready, 0)
        for beat in junk[:37 + 18]:
            ctx.set(dut.i.payload, int(beat))
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        await ctx.tick().repeat(30)
        assert ctx.get(dut.o.valid)
        ctx.set(rst, 1)
        for _ in range(2):
            await ctx.tick()            # plain ticks: .repeat() raises DomainReset in reset
        ctx.set(rst, 0)

    x = random_inputs(pkg, 3, seed=10)
    run = run_stream(dut, x.reshape(-1).tolist(), 3 * 13, in_stall=0.2, out_stall=0.3,
                     seed=4, before=before)
    assert np.array_equal(np.array(run.outputs).reshape(3, 13), run_int(pkg, x, 16)[0])


@pytest.mark.parametrize("lanes, msg", [
    (0, r"^lanes must be from 1 to 44 for layer 'fc1' \(its slices per bit-plane\), not 0$"),
    (45, r"^lanes must be from 1 to 44 for layer 'fc1' \(its slices per bit-plane\), not 45$"),
    (1.5, r"^lanes must be a positive integer, not 1\.5$"),
])
def test_lanes_out_of_range(lanes, msg):
    pkg = random_package([37, 13], n_in=7, n_out=11, seed=1)
    with pytest.raises(BuildError, match=msg):
        plan_layer(pkg, 0, lanes, 16)


NETWORK_CASES = [
    # features, n_in, n_out, q, n_tap, lanes
    ([19, 11, 7, 3], [5, 3, 7], [9, 10, 11], [2, 1, 3], [2, None, 1], [2, 1, 2]),
    ([12, 17, 5, 8, 4], [4, 6, 2, 5], [8, 6, 20, 5], [1, 2, 1, 2], [2, 3, 2, None], [1, 3, 1, 2]),
]


@pytest.mark.parametrize("case", NETWORK_CASES, ids=["3-layers", "4-layers"])
def test_network_top_bit_exact_with_stalls(case):
    from flexor_hw.plan import plan_network
    from flexor_hw.gateware.network import NetworkTop
    from flexor_hw.simulate import rtl_network
    features, n_in, n_out, q, n_tap, lanes = case
    pkg = random_package(features, n_in=n_in, n_out=n_out, q=q, n_tap=n_tap, seed=len(features),
                         input_signed=True, negative_alpha=0.3)
    plans = plan_network(pkg, lanes, 14)
    x = random_inputs(pkg, 4, seed=1)
    got, _ = rtl_network(NetworkTop(plans), x, features[-1], in_stall=0.3, out_stall=0.3, seed=7)
    assert np.array_equal(got, run_int(pkg, x, 14)[-1])


def test_network_throughput_is_the_slowest_layer():
    from flexor_hw.plan import plan_network
    from flexor_hw.gateware.network import NetworkTop
    from flexor_hw.simulate import rtl_network
    pkg = random_package([24, 30, 10], n_in=6, n_out=10, q=1, seed=2)
    plans = plan_network(pkg, [1, 3], 16)
    top = NetworkTop(plans)
    x = random_inputs(pkg, 5)
    got, run = rtl_network(top, x, 10)
    assert np.array_equal(got, run_int(pkg, x, 16)[-1])
    last = run.out_cycles[9::10]
    assert (np.diff(last) == top.cycles_per_inference).all()
    assert last[0] - run.in_cycles[23] == top.latency


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


def test_network_with_argmax_and_auto_lanes():
    from flexor_hw.plan import auto_lanes, plan_network
    from flexor_hw.gateware.network import NetworkTop
    from flexor_hw.simulate import rtl_network
    pkg = random_package([30, 40, 7], n_in=5, n_out=10, q=1, seed=12)
    lanes = auto_lanes(pkg, 16)
    plans = plan_network(pkg, "auto", 16)
    assert [p.lanes for p in plans] == lanes
    target = max(layer.fan_in + 1 for layer in pkg.layers)
    assert max(p.cycles_per_inference for p in plans) <= 1.1 * target
    x = random_inputs(pkg, 5, seed=2)
    got, _ = rtl_network(NetworkTop(plans, argmax=True), x, 1, in_stall=0.3, out_stall=0.3)
    assert np.array_equal(got[:, 0], run_int(pkg, x, 16)[-1].argmax(1))


@pytest.mark.parametrize("lanes", [1, 3, 5])
def test_baseline_engine_bit_exact(lanes):
    pkg = random_package([37, 13], n_in=7, n_out=11, q=2, seed=21, negative_alpha=0.3)
    plan = plan_layer(pkg, 0, lanes, 16, baseline=True)
    assert plan.rom_width == 2 * lanes * 11
    assert plan.rom_bits * 7 == plan_layer(pkg, 0, lanes, 16).rom_bits * 11
    x = random_inputs(pkg, 3, seed=lanes)
    got, _ = rtl_layer(plan, x, in_stall=0.3, out_stall=0.3, seed=lanes)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])


def test_single_buffered_layer_cycles_and_decision():
    from dataclasses import replace
    from flexor_hw.plan import plan_network
    pkg = random_package([40, 3], n_in=6, n_out=10, q=1, seed=6)
    plan = replace(plan_layer(pkg, 0, 3, 16), double_buffer=False)
    x = random_inputs(pkg, 4)
    got, run = rtl_layer(plan, x)
    assert np.array_equal(got, run_int(pkg, x, 16)[0])
    last_outputs = run.out_cycles[plan.out_features - 1::plan.out_features]
    assert (np.diff(last_outputs) == plan.cycles_per_inference).all()
    assert plan.cycles_per_inference == 40 + 1 + plan.n_steps
    assert last_outputs[0] - run.in_cycles[39] == plan.latency_cycles
    # In a network only the layers that are not bottlenecks lose their shadow.
    net = random_package([24, 30, 10], n_in=6, n_out=10, seed=2)
    plans = plan_network(net, [1, 3], 16)
    assert [p.double_buffer for p in plans] == [True, False]
    assert plans[0].fifo_extra > 0


@pytest.mark.parametrize("depth", [1, 2, 5, 6, 13])
def test_output_fifo_keeps_order_under_backpressure(depth):
    # Registers up to 4 waiting entries, a memory beyond: both with the head as a register.
    # The writer keeps within the FIFO's room like the MAC's credits do (a place comes back
    # a cycle after its entry leaves); the consumer stalls at random.
    import random
    from amaranth.hdl import ClockDomain, Module
    from flexor_hw.gateware.mac import _OutputFifo
    fifo = _OutputFifo(10, depth)
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
    from flexor_hw.plan import plan_network
    from flexor_hw.gateware.network import NetworkTop
    from flexor_hw.simulate import rtl_network
    pkg = random_package([4, 40], n_in=5, n_out=10, q=1, seed=3)
    plans = plan_network(pkg, [16], 16)
    top = NetworkTop(plans, argmax=True)
    assert plans[0].cycles_per_inference < 80 == top.cycles_per_inference
    x = random_inputs(pkg, 6, seed=1)
    got, run = rtl_network(top, x, 1)
    assert np.array_equal(got[:, 0], run_int(pkg, x, 16)[-1].argmax(1))
    assert set(np.diff(run.out_cycles)) == {80}
