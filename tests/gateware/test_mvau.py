# amaranth: UnusedElaboratable=no
"""MatrixVectorUnit (PE × SIMD) in Amaranth's simulator against the golden model, exactly:
foldings from SIMD 1 to the whole fan-in and PE 1 to every row, fan-ins neither divides,
slices straddling rows, q up to 3, int8 bit-planes, the 1-bit baseline, both streams
stalled, a reset in the middle of a vector; unstalled, the rate and latency it states."""

import re
from dataclasses import replace

import numpy as np
import pytest

from flexor_hw.gateware.mvau import MatrixVectorUnit, MvauParams, _tree_registers
from flexor_hw.golden import graph_constants, layer_constants, run_int
from flexor_hw.hw.int_planes import IntPlanes
from flexor_hw.rom_image import (carries, mvau_head_words, mvau_params, mvau_rom_bytes,
                                tile_geometry)
from flexor_hw.simulate import pack_beats, reset_while_stalled, run_stream, unpack_beats
from flexor_hw.synthetic import random_graph, random_package
from flexor_hw.xor import decrypt

F = 14


def _layer(f, o, *, q=1, n_in=6, n_out=10, signed=False, seed=0):
    pkg = random_package([f, o, 3], n_in=n_in, n_out=n_out, q=q, seed=seed + f + o,
                         input_signed=signed)
    return pkg, pkg.layers[0], layer_constants(pkg, 0, F)


def _copies_agree(dut, wrong):
    """A monitor: ``w_full`` and its issue copy equal in every cycle (an input-stationary
    unit: its registered ``ready`` and what it stands for), and the weight stream's pop from
    the step's flags' copies equal to the issue's (else the cycle into ``wrong``)."""
    async def monitor(ctx):
        cycle = 0
        pairs = (*dut._pops, *dut._ready) if dut.params.stationary else \
            (*dut._w_full, *dut._pops)
        async for _, _, *values in ctx.tick().sample(*pairs):
            cycle += 1
            if any(a != b for a, b in zip(values[::2], values[1::2])):
                wrong.append(cycle)
    return monitor


def _simulate(params, x, *, stall=0.0, seed=1, before=None):
    dut, wrong = MatrixVectorUnit(params), []
    run = run_stream(dut, pack_beats(x, params.simd, params.x_width),
                     x.shape[0] * params.out_features // params.out_simd,
                     in_stall=stall, out_stall=stall, seed=seed, before=before,
                     monitor=_copies_agree(dut, wrong))
    assert wrong == []
    got = unpack_beats(run.outputs, params.out_simd, params.y_width, params.consts.y_lo < 0)
    return got.reshape(x.shape[0], params.out_features), run


def _inputs(consts, n, f, seed):
    return np.random.default_rng(seed).integers(consts.x_lo, consts.x_hi + 1, (n, f))


CASES = [  # (fan_in, out, pe, simd, out_simd, q, n_in, n_out, signed)
    (13, 6, 1, 1, 1, 1, 6, 10, False),      # fully folded: a word held for 10 steps
    (13, 6, 2, 4, 1, 1, 6, 10, False),      # neither divides the fan-in; straddling slices
    (13, 6, 6, 13, 3, 2, 6, 10, False),     # fully parallel
    (20, 8, 4, 10, 2, 1, 4, 10, True),      # signed input, aligned columns
    (37, 13, 5, 7, 1, 3, 7, 11, False),     # PE ∤ out: the last group is short
    (24, 9, 3, 8, 3, 2, 5, 9, True),
    (23, 7, 1, 10, 1, 1, 6, 10, False),     # SIMD = n_out ∤ F: the shared slice is carried
    (47, 6, 3, 20, 3, 2, 6, 10, True),      # carried, q 2, a short last column block
    (31, 4, 2, 15, 2, 1, 3, 5, False),      # carried, three slices a word
    (17, 70, 1, 10, 1, 1, 6, 10, False),    # carried, two steps a group: heads read as used
    (23, 70, 1, 10, 1, 1, 6, 10, False),    # carried, 70 groups: heads read a group ahead
    (50, 4, 2, 1, 1, 1, 6, 10, False),      # 100 vector words: seven LUT-RAM pages; held
    (26, 3, 1, 2, 1, 2, 6, 10, True),       # held 5 steps across rows, the last slice short
    (40, 6, 3, 5, 3, 1, 6, 10, False),      # held 2 steps by three rows (n_out | F)
    (5, 3, 1, 5, 1, 1, 6, 10, False),       # held 2 steps, a step a row
]


@pytest.mark.parametrize("masked_adders", [False, True], ids=["reset_masks", "masked_adders"])
@pytest.mark.parametrize("f, o, pe, simd, r, q, n_in, n_out, signed", CASES,
                         ids=[f"f{c[0]}o{c[1]}pe{c[2]}s{c[3]}r{c[4]}q{c[5]}" for c in CASES])
def test_mvau_matches_golden_under_stalls(f, o, pe, simd, r, q, n_in, n_out, signed,
                                          masked_adders):
    """Exact under stalls, the weight bits masking the activations in registers' resets or
    in the adder tree's first level."""
    pkg, layer, consts = _layer(f, o, q=q, n_in=n_in, n_out=n_out, signed=signed)
    params = mvau_params(layer, consts, pe, simd, r, masked_adders=masked_adders)
    if (f, o) in ((17, 70), (23, 70)):        # the two ways a carrying unit reads its heads
        assert params.carry and params.heads_prefetched == (params.sf >= 3)
    if (f, o, pe, simd) in ((13, 6, 1, 1), (50, 4, 2, 1), (26, 3, 1, 2), (40, 6, 3, 5),
                            (5, 3, 1, 5)):
        # a word held for several steps
        assert params.hold == n_out // simd and len(params.rom_words) == params.rom_depth \
            == -(-params.nf * params.sf // params.hold)
    x = _inputs(consts, 3, f, seed=f * o)
    got, _ = _simulate(params, x, stall=0.3, seed=pe + simd)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


@pytest.mark.parametrize("f, o, pe, simd, r, q, n_in, n_out, signed", [
    CASES[1], CASES[2], CASES[5], CASES[7]], ids=["pe2s4", "parallel_q2", "q2_signed", "carried"])
def test_mvau_with_its_products_in_logic_matches_golden(f, o, pe, simd, r, q, n_in, n_out,
                                                        signed):
    """``lut_multipliers`` (where the DSPs run out): no multiplier, exact under stalls, and
    unstalled at the latency the unit states (its sum tree deeper by the terms)."""
    pkg, layer, consts = _layer(f, o, q=q, n_in=n_in, n_out=n_out, signed=signed)
    params = mvau_params(layer, consts, pe, simd, r, masked_adders=True, lut_multipliers=True)
    dsp = replace(params, lut_multipliers=False)
    assert params.dsps == 0 < dsp.dsps
    assert params.sum_stages > dsp.sum_stages
    assert params.latency_cycles == dsp.latency_cycles + params.sum_stages - dsp.sum_stages
    x = _inputs(consts, 3, f, seed=f * o)
    got, _ = _simulate(params, x, stall=0.3, seed=pe + simd)
    assert np.array_equal(got, run_int(pkg, x, F)[0])

    async def idle(ctx, rst):
        await ctx.tick().repeat(10)

    got, run = _simulate(params, x, before=idle)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    per = o // r
    assert run.out_cycles[per - 1] - run.in_cycles[params.sf - 1] == params.latency_cycles


def _no_collisions(dut, seen, lag=0):
    """A monitor: each cycle in which a vector memory's write port writes the place its read
    port reads for a step (the word a step takes is the one read in its cycle, from the page
    its address is in; block RAM under ``no_rw_check`` gives no defined word then) goes into
    ``seen["collisions"]``; ``seen["writes"]`` counts the cycles that wrote. ``lag``: cycles
    from a step to its read (1 where the read address is registered twice,
    ``address_register``)."""
    async def monitor(ctx):
        vmem = dut._vmem
        keys = list(vmem.ports)
        paged = len({g for _, g in keys}) > 1
        signals = [dut._step, vmem.read_next] + \
            [s for key in keys for w, r in [vmem.ports[key]] for s in (w.en, w.addr, r.addr)]
        steps, addr_before = [0] * lag, 0
        async for values in ctx.tick().sample(*signals):
            steps.append(values[2])
            step, page = steps.pop(0), addr_before >> vmem._page_bits if paged else 0
            addr_before, values = values[3], values[4:]
            for n, (_, g) in enumerate(keys):
                en, wa, ra = values[3 * n:3 * n + 3]
                seen["writes"] += bool(en)
                if en and wa == ra and step and g == page:
                    seen["collisions"].append((g, wa))
    return monitor


@pytest.mark.parametrize("f, o, pe, simd, r, q, n_in, n_out, signed", [
    CASES[0], CASES[1], CASES[3], CASES[7], CASES[9], CASES[11]],
    ids=["folded", "pe2s4", "aligned", "carried", "heads_as_used", "deep"])
@pytest.mark.parametrize("stall", [0.0, 0.4])
@pytest.mark.parametrize("ice40", [False, True], ids=["ecp5", "ice40"])
def test_block_ram_vectors_never_read_a_place_as_it_is_written(f, o, pe, simd, r, q, n_in,
                                                               n_out, signed, stall, ice40):
    """A vector memory in block RAM carries ``no_rw_check`` (its word's register can then go
    into the block's output register; on the iCE40 the read address is registered twice
    instead, ``address_register``): no cycle writes the place a step's read reads, stalled
    or not, and the unit is exact."""
    pkg, layer, consts = _layer(f, o, q=q, n_in=n_in, n_out=n_out, signed=signed)
    params = mvau_params(layer, consts, pe, simd, r, masked_adders=not ice40,
                         address_register=ice40, vectors_lutram=None if ice40 else False)
    assert params.vectors_in_block_ram or ice40
    dut, seen = MatrixVectorUnit(params), {"writes": 0, "collisions": []}
    x = _inputs(consts, 5, f, seed=f + o)
    run = run_stream(dut, pack_beats(x, params.simd, params.x_width), 5 * o // r,
                     in_stall=stall, out_stall=stall, seed=7,
                     monitor=_no_collisions(dut, seen, lag=int(ice40)))
    assert seen["writes"] >= 5 * params.sf and seen["collisions"] == []
    got = unpack_beats(run.outputs, r, params.y_width, consts.y_lo < 0).reshape(5, o)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    assert all(mem._attrs.get("no_rw_check") for mem in dut._vmem._mems.values())


@pytest.mark.parametrize("lutram", [True, False])
def test_vector_memory_pages(lutram):
    """A 40-word vector memory in LUT RAM is read as three pages (14, 14, 12 words), each
    into its own register, the page chosen after them; in block RAM it is one memory. Both
    exact under stalls, over vectors that alternate between the halves."""
    from flexor_hw.gateware.mvau import vector_pages
    pkg, layer, consts = _layer(40, 5, n_in=5, n_out=10)
    params = replace(mvau_params(layer, consts, 1, 2, 1), vectors_lutram=lutram)
    assert vector_pages(params) == (3 if lutram else 1)
    x = _inputs(consts, 5, 40, seed=4)
    got, _ = _simulate(params, x, stall=0.3, seed=9)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


@pytest.mark.parametrize("bits_register", [True, False])
def test_vector_memory_of_many_pages_is_chosen_in_groups(bits_register):
    """More than PAGE_MUX_GROUP pages (here 10: 150 words of LUT RAM) are chosen a group at a
    time into registers, then the group, where the unit registers the word it reads (the
    register moves into the choice; the word arrives as before); without that register the
    pages are chosen in one go. Exact under stalls either way."""
    from flexor_hw.gateware.mvau import PAGE_MUX_GROUP, vector_pages
    pkg, layer, consts = _layer(150, 3, n_in=6, n_out=10)
    params = replace(mvau_params(layer, consts, 1, 2, 1, bits_register=bits_register),
                     vectors_lutram=True)
    pages = vector_pages(params)
    assert pages == 10 > PAGE_MUX_GROUP
    x = _inputs(consts, 4, 150, seed=11)
    got, _ = _simulate(params, x, stall=0.3, seed=5)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    # the group registers are there where the word is registered, and only there
    from amaranth.back import rtlil
    text = rtlil.convert(MatrixVectorUnit(params), name="u")
    groups = -(-pages // PAGE_MUX_GROUP)
    names = [f"xdata_b0_g{j}" for j in range(groups)]
    assert all((n in text) == bits_register for n in names)
    assert ("xdata_d1" in text) is False
    # pages share their read address's copies, each reaching at most READ_ADDRESS_CELLS
    # LUT-RAM cells: here 16 bits a word, four cells a page, a copy every two pages
    from flexor_hw.gateware.mvau import READ_ADDRESS_CELLS
    copies = sorted(set(re.findall(r"r_addr_b0_p(\d+)\b", text)), key=int)
    assert READ_ADDRESS_CELLS == 8 and copies == [str(g) for g in range(0, pages, 2)]


@pytest.mark.parametrize("f, o, pe, simd, r", [(13, 6, 2, 4, 1), (40, 16, 16, 8, 4),
                                               (30, 8, 8, 30, 1), (100, 6, 3, 5, 3),
                                               (33, 6, 2, 10, 1), (25, 32, 2, 25, 2),
                                               (25, 8, 2, 25, 2), (25, 8, 2, 25, 1)])
@pytest.mark.parametrize("masked_adders", [False, True], ids=["reset_masks", "masked_adders"])
def test_mvau_runs_at_its_stated_rate_and_latency(f, o, pe, simd, r, masked_adders):
    """Unstalled, vectors leave exactly ``cycles_per_vector`` apart (compute- or load-bound)
    and the first vector's last output exactly ``latency_cycles`` after its last beat."""
    pkg, layer, consts = _layer(f, o, q=2)
    params = mvau_params(layer, consts, pe, simd, r, masked_adders=masked_adders)
    x = _inputs(consts, 6, f, seed=3)

    async def idle(ctx, rst):               # a primed, idle unit (its weight queue full)
        await ctx.tick().repeat(10)

    got, run = _simulate(params, x, before=idle)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    per = o // r
    ends = [run.out_cycles[(k + 1) * per - 1] for k in range(6)]
    assert set(np.diff(ends).tolist()) == {params.cycles_per_vector}
    assert run.out_cycles[per - 1] - run.in_cycles[params.sf - 1] == params.latency_cycles


@pytest.mark.parametrize("c, hw, o, pe, simd, r, stall", [
    (3, 5, 6, 2, 4, 1, 0.3),        # 15 columns, SIMD ∤ HW, a short last word
    (4, 9, 5, 5, 12, 5, 0.3),       # SIMD > HW: a step of HW stays in the word
    (2, 7, 4, 1, 10, 1, 0.0),       # carried slices; unstalled: the load-bound rate F + 1
    (1, 13, 3, 3, 13, 3, 0.2),      # one channel, one word
])
def test_mvau_scatters_a_pixel_major_stream_into_the_flattened_vector(c, hw, o, pe, simd, r,
                                                                     stall):
    """``scatter = (C, HW)``: one element a beat in ``(pixel, c)`` order, written to column
    ``c·HW + p`` (PyTorch's flatten of a conv output): the golden model's result exactly;
    unstalled, vectors ``cycles_per_vector`` apart."""
    f = c * hw
    pkg, layer, consts = _layer(f, o, q=2)
    params = replace(mvau_params(layer, consts, pe, simd, r), scatter=(c, hw))
    x = _inputs(consts, 4, f, seed=c + hw)
    beats = x.reshape(4, c, hw).transpose(0, 2, 1).reshape(-1)
    run = run_stream(MatrixVectorUnit(params), [int(v) & 0xFF for v in beats],
                     4 * o // r, in_stall=stall, out_stall=stall, seed=simd)
    got = unpack_beats(run.outputs, r, params.y_width, consts.y_lo < 0).reshape(4, o)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    assert params.cycles_per_vector == max(-(-o // pe) * max(-(-f // simd), pe // r), f + 1)
    if not stall:
        ends = [run.out_cycles[(k + 1) * (o // r) - 1] for k in range(4)]
        assert set(np.diff(ends).tolist()) == {params.cycles_per_vector}


NARROW = [  # (fan_in, out, pe, simd, in_simd, out_simd, vectors in LUT RAM, stall)
    (27, 6, 2, 9, 3, 1, True, 0.3),         # a kernel row a beat: whole words
    (23, 5, 1, 8, 2, 1, True, 0.3),         # a tail of 1 in the last word's last chunk
    (22, 4, 2, 9, 3, 2, True, 0.3),         # a tail of 1 in the last beat, a chunk above it
    (20, 5, 1, 8, 2, 1, True, 0.3),         # two whole chunks above the last beat
    (13, 6, 3, 12, 4, 3, None, 0.2),        # one word: the tail's chunk is the first
    (17, 70, 1, 10, 5, 1, True, 0.0),       # carried slices; unstalled rate and latency
    (50, 4, 2, 6, 1, 2, True, 0.2),         # one element a beat, 18 words: two LUT-RAM pages
    (40, 4, 2, 20, 5, 1, False, 0.3),       # block RAM vectors: the word assembled
    (22, 4, 2, 9, 3, 2, False, 0.3),        # ... a tail, the last word aligned down
    (20, 5, 1, 8, 2, 1, False, 0.3),        # ... two chunks of zeros above the last beat
    (27, 6, 2, 9, 3, 1, False, 0.0),        # ... unstalled rate and latency
]


WRITTEN_SUM = [  # (fan_in, pe, simd, in_simd, vectors in LUT RAM, Σx summed as written)
    (9, 2, 9, 3, True, True),       # ⌈F/in_simd⌉ + L = tree_stages + 1: the sum just in time
    (9, 2, 9, 3, False, True),      # ... assembled in block RAM
    (24, 2, 24, 8, True, True),
    (12, 2, 12, 3, True, True),     # a beat to spare
    (16, 2, 16, 8, True, False),    # a beat fewer: Σx from the words read instead
]


@pytest.mark.parametrize("f, pe, simd, b, lutram, written", WRITTEN_SUM,
                         ids=[f"f{c[0]}b{c[3]}" + ("_bram" if c[4] is False else "")
                              for c in WRITTEN_SUM])
@pytest.mark.parametrize("stall", [0.0, 0.3])
def test_mvau_sums_a_vector_as_it_is_written(f, pe, simd, b, lutram, written, stall):
    """Σx of a narrow input's vector summed as its beats are taken
    (``MvauParams.x_sum_written``) where the vector takes enough beats for the sum to reach
    its first row group before the next vector's overwrites it, and from the words read
    where it does not: signed inputs, one word a vector and as many row groups as cycles to
    load one, so a vector is loaded as the one before ends, both unstalled (a sum taken a
    cycle early or late, or held one vector too long, changes a result). Where it is
    written, the rows accumulate ``2·T − Σx`` from ``−Σx``."""
    beats = -(-f // b)
    o = pe * (beats + 1)            # as many row groups as cycles to load a vector
    pkg, layer, consts = _layer(f, o, q=2, signed=True, seed=3)
    params = mvau_params(layer, consts, pe, simd, pe, masked_adders=True, in_simd=b,
                         vectors_lutram=lutram, xor_masks=False)
    assert (params.sf, params.nf, params.group_beats) == (1, beats + 1, 1)
    assert params.x_sum_written == written
    assert (params.tree_stages + 1 <= beats + _tree_registers(b, first=1)) == written
    n = 8
    x = np.random.default_rng(f + b).integers(consts.x_lo, consts.x_hi + 1, (n, f))
    assert consts.x_lo < 0 and (x < 0).any()
    dut = MatrixVectorUnit(params)
    run = run_stream(dut, pack_beats(x, b, params.x_width), n * o // pe, in_stall=stall,
                     out_stall=stall, seed=f)
    got = unpack_beats(run.outputs, pe, params.y_width, consts.y_lo < 0).reshape(n, o)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    if not stall:
        ends = [run.out_cycles[(k + 1) * o // pe - 1] for k in range(n)]
        assert set(np.diff(ends).tolist()) == {params.cycles_per_vector} == {beats + 1}


@pytest.mark.parametrize("f, o, pe, simd, b, r, lutram, stall", NARROW,
                         ids=[f"f{c[0]}s{c[3]}b{c[4]}" + ("_bram" if c[6] is False else "")
                              for c in NARROW])
def test_mvau_writes_a_narrow_input_into_its_lanes(f, o, pe, simd, b, r, lutram, stall):
    """``in_simd`` of SIMD a beat, written into the word's lanes (LUT RAM) or assembled into
    a word (block RAM): exact under stalls over
    vectors whose elements are never zero and whose last beat carries junk past the
    vector's end (a column past F written, or a chunk written in the wrong place, changes a
    result); unstalled, vectors ``cycles_per_vector`` apart (``⌈F/in_simd⌉ + 1`` where
    loading bounds it) and the last output the stated latency after the last input beat."""
    pkg, layer, consts = _layer(f, o, q=2)
    params = mvau_params(layer, consts, pe, simd, r, masked_adders=True, in_simd=b,
                         vectors_lutram=lutram)
    assert params.cycles_per_vector == max(
        params.nf * max(params.sf, pe // r), -(-f // b) + 1)
    n, beats = 6, -(-f // b)
    rng = np.random.default_rng(f + b)
    x = rng.integers(1, consts.x_hi + 1, (n, f))
    junk = np.concatenate([x, rng.integers(1, consts.x_hi + 1, (n, beats * b - f))], axis=1)
    assert params.vectors_in_block_ram == (lutram is False)
    assert params.writer == ("assemble" if lutram is False else "lanes")
    dut = MatrixVectorUnit(params)
    assert len(dut.i.payload) == b * params.x_width
    run = run_stream(dut, pack_beats(junk, b, params.x_width), n * o // r, in_stall=stall,
                     out_stall=stall, seed=simd)
    got = unpack_beats(run.outputs, r, params.y_width, consts.y_lo < 0).reshape(n, o)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    if not stall:
        per = o // r
        ends = [run.out_cycles[(k + 1) * per - 1] for k in range(n)]
        assert set(np.diff(ends).tolist()) == {params.cycles_per_vector}
        assert run.out_cycles[per - 1] - run.in_cycles[beats - 1] == params.latency_cycles


def test_mvau_narrow_input_reset_in_the_middle_of_a_vector():
    """A reset with a narrow input's vector half written (its chunk and word counters in the
    middle of a word): the vectors after it exact."""
    pkg, layer, consts = _layer(22, 4, q=1)
    params = replace(mvau_params(layer, consts, 2, 9, 2), in_simd=3)
    dut = MatrixVectorUnit(params)
    junk = pack_beats(_inputs(consts, 3, 22, seed=3), 3, params.x_width)
    before = reset_while_stalled(dut, junk[:12], settle=20, hold=2, offered=False, fill=False)
    x = np.random.default_rng(9).integers(1, consts.x_hi + 1, (3, 22))
    run = run_stream(dut, pack_beats(x, 3, params.x_width), 3 * 2, in_stall=0.2,
                     out_stall=0.3, seed=4, before=before)
    got = unpack_beats(run.outputs, 2, params.y_width, consts.y_lo < 0).reshape(3, 4)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


def test_mvau_refuses_an_input_simd_that_does_not_divide_simd():
    _, layer, consts = _layer(22, 4)
    params = mvau_params(layer, consts, 2, 9, 2)
    for bad in (2, 0, 10):
        with pytest.raises(ValueError, match="Input SIMD"):
            replace(params, in_simd=bad)


@pytest.mark.parametrize("stationary", [False, True], ids=["vector_memory", "stationary"])
def test_mvau_int8_planes_and_baseline(stationary):
    """An int8 layer's two's complement planes (unipolar, stored as they are) and the 1-bit
    baseline (decrypted bits in the ROM) compute the same outputs as the golden model, with
    a vector memory and input-stationary."""
    pkg = random_graph((23,), "ifc7,fc5", seed=4, calibration=8)
    node = pkg.nodes[0]
    view = IntPlanes(node)
    consts = view.constants(graph_constants(pkg, F)[node.name])
    params = mvau_params(view, consts, 3, 6, 1, unipolar=True, stationary=stationary)
    assert params.plain and params.rom_width == 8 * 3 * 6
    x = _inputs(consts, 3, 23, seed=5)
    got, _ = _simulate(params, x, stall=0.2)
    assert np.array_equal(got, run_int(pkg, x, F)[0])

    pkg, layer, consts = _layer(19, 6, q=2)
    base = mvau_params(layer, consts, 2, 5, 2, baseline=True, stationary=stationary)
    assert base.plain and base.rom_width == 2 * 2 * 5
    x = _inputs(consts, 2, 19, seed=6)
    got, _ = _simulate(base, x, stall=0.2)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


@pytest.mark.parametrize("f, o, pe, simd, r, hold, offered", [
    (21, 8, 4, 5, 2, 2, False), (21, 8, 4, 5, 2, 1, True),
    (26, 3, 1, 2, 1, 2, False),     # weight words held five steps: the phase restarts too
])
def test_mvau_reset_in_the_middle_of_a_vector(f, o, pe, simd, r, hold, offered):
    """A reset while a vector is issued and the next one half written (``w_full``'s issue
    copy follows the reset through its input: equal to ``w_full`` in every cycle; a unit
    whose words serve several steps starts its phase again with its weight stream)."""
    pkg, layer, consts = _layer(f, o, q=2)
    params = mvau_params(layer, consts, pe, simd, r)
    assert params.hold == (5 if pe == 1 else 1)
    dut, wrong = MatrixVectorUnit(params), []
    junk = pack_beats(_inputs(consts, 8, f, seed=7), simd, params.x_width)

    # a vector and part of the next, output stalled (or vectors until the input is out of
    # room, both halves full, and a beat offered during the reset)
    before = reset_while_stalled(dut, junk[:params.sf + 2] if not offered else junk,
                                 settle=30, hold=hold, offered=offered, fill=offered)
    x = _inputs(consts, 3, f, seed=8)
    run = run_stream(dut, pack_beats(x, simd, params.x_width), 3 * o // r, in_stall=0.2,
                     out_stall=0.3, seed=2, before=before, monitor=_copies_agree(dut, wrong))
    got = unpack_beats(run.outputs, r, params.y_width, consts.y_lo < 0).reshape(3, o)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    assert wrong == []


def test_rom_image_holds_each_rows_bits_at_its_offset():
    """Decoding a tiled word's slots and taking SIMD bits at the row's offset
    ``(r·F + sf·SIMD) mod n_out`` gives exactly the weight bits of that row and column block
    (a host-side check of the image)."""
    _, layer, _ = _layer(37, 13, q=2, n_in=7, n_out=11)
    pe, simd = 5, 7
    slots, offsets = tile_geometry(layer, pe, simd)
    image = np.unpackbits(mvau_rom_bytes(layer, pe, simd), axis=1, bitorder="little")
    assert image.shape[1] >= 2 * pe * slots * 7 > image.shape[1] - 8   # no offsets stored
    weights = np.stack([decrypt(layer.xor[i], layer.encrypted[i]).reshape(-1)[:layer.numel]
                        for i in range(2)]).reshape(2, 13, 37)
    sf, row_bits = -(-37 // simd), slots * layer.n_in
    for word in range(image.shape[0]):
        nf, s = divmod(word, sf)
        for j in range(pe):
            r = nf * pe + j
            if r >= 13:
                continue
            off = (r * 37 + s * simd) % 11
            assert off in offsets[j]
            for i in range(2):
                lo = (i * pe + j) * row_bits
                stored = image[word, lo:lo + row_bits].reshape(slots, layer.n_in)
                decoded = decrypt(layer.xor[i], stored).reshape(-1)
                cols = range(s * simd, min(37, (s + 1) * simd))
                assert decoded[off:off + len(cols)].tolist() == weights[i, r, cols].tolist()


def test_carried_rom_image_stores_each_slice_once_per_row():
    """A carrying unit (``n_out | SIMD``, ``n_out ∤ F``): the head word and the words of a row
    group, slot 0 carried from the word before, decode to exactly the row's weight bits, and
    the image holds ``k`` slices a word, not ``k + 1``."""
    _, layer, _ = _layer(47, 6, q=2, n_in=6, n_out=10)
    pe, simd = 3, 20
    slots, offsets = tile_geometry(layer, pe, simd)
    assert carries(layer, pe, simd) and slots == 3
    image = np.unpackbits(mvau_rom_bytes(layer, pe, simd), axis=1, bitorder="little")
    heads = mvau_head_words(layer, pe, simd)
    assert image.shape[1] >= 2 * pe * 2 * 6 > image.shape[1] - 8
    weights = np.stack([decrypt(layer.xor[i], layer.encrypted[i]).reshape(-1)[:layer.numel]
                        for i in range(2)]).reshape(2, 6, 47)
    sf, row_bits = 3, 2 * 6
    for nf in range(2):
        for j in range(pe):
            r = nf * pe + j
            for i in range(2):
                h = (i * pe + j) * 6
                carried = [(heads[nf] >> (h + b)) & 1 for b in range(6)]
                for s in range(sf):
                    lo = (i * pe + j) * row_bits
                    stored = image[nf * sf + s, lo:lo + row_bits].reshape(2, 6)
                    enc = np.concatenate([[carried], stored])
                    decoded = decrypt(layer.xor[i], enc).reshape(-1)
                    off = (r * 47) % 10
                    assert off in offsets[j]
                    cols = range(s * simd, min(47, (s + 1) * simd))
                    assert decoded[off:off + len(cols)].tolist() == weights[i, r, cols].tolist()
                    carried = stored[-1].tolist()


@pytest.mark.parametrize("kw, msg", [
    (dict(pe=0), r"^PE must be a positive integer, not 0$"),
    (dict(simd=1.5), r"^SIMD must be a positive integer, not 1\.5$"),
    (dict(out_simd=4), r"^Output SIMD 4 must divide both PE \(6\) and the rows \(6\)$"),
    (dict(slots=0), r"^A FleXOR MVAU needs its tile geometry: slots ≥ 1 and one offset set "
                    r"per PE row, not slots 0 and 6 sets$"),
])
def test_mvau_params_are_checked(kw, msg):
    _, layer, consts = _layer(13, 6)
    good = dict(fan_in=13, out_features=6, q=1, n_in=6, n_out=10, pe=6, simd=4, out_simd=3,
                consts=consts, xor=layer.xor, slots=2, offsets=((0,),) * 6)
    MvauParams(**good)
    with pytest.raises((TypeError, ValueError), match=msg):
        MvauParams(**{**good, **kw})


def test_chunks_cut_an_operand_for_the_multipliers():
    from flexor_hw.gateware.mvau import MUL_WIDTH, _chunks
    assert _chunks(18) == [(0, 18)]
    assert _chunks(21) == [(0, 17), (17, 21)]
    assert _chunks(40) == [(0, 17), (17, 34), (34, 40)]
    for width in range(1, 60):
        pieces = _chunks(width)
        assert pieces[0][0] == 0 and pieces[-1][1] == width
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
        assert all(hi - lo <= MUL_WIDTH for lo, hi in pieces)


@pytest.mark.parametrize("lut", [False, True], ids=["multipliers", "lut_products"])
@pytest.mark.parametrize("a_width,s_width,q", [(13, 21, 1), (20, 37, 2), (12, 14, 2)])
def test_requantize_of_wide_products_is_exact(a_width, s_width, q, lut):
    """Partial products of pieces (or, in logic, of bit pairs), summed by the tree: the
    contract's value, exactly."""
    from types import SimpleNamespace

    from amaranth.hdl import Module, Signal, signed
    from amaranth.sim import Simulator

    from flexor_hw.gateware.mul import lut_product_terms
    from flexor_hw.gateware.mvau import _chunks, _requantize
    rng = np.random.default_rng(a_width)
    F, y_lo, y_hi = 12, -100, 200
    c = SimpleNamespace(a_width=a_width, s_width=s_width, beta_width=24, round_const=1 << (F - 1),
                        acc_width=a_width + s_width + q + 2, frac_bits=F, y_lo=y_lo, y_hi=y_hi)
    m = Module()
    s = [Signal(signed(s_width), name=f"s{i}") for i in range(q)]
    a = [Signal(signed(a_width), name=f"a{i}") for i in range(q)]
    beta = Signal(signed(24))
    y = _requantize(m, c, s, a, beta, q, "rq", lut=lut)
    from flexor_hw.gateware.mul import Multiplier
    multipliers = [sub for sub, _ in m._named_submodules.values() if isinstance(sub, Multiplier)]
    assert len(multipliers) == (0 if lut else q * len(_chunks(a_width)) * len(_chunks(s_width)))
    terms = q * (lut_product_terms(a_width, s_width) if lut else
                 len(_chunks(a_width)) * len(_chunks(s_width)))
    latency = 2 + max(1, terms.bit_length()) + 1   # operands, products, the sum tree, shift
    cases = []
    for _ in range(40):
        av = [int(rng.integers(-(1 << (a_width - 1)), 1 << (a_width - 1))) for _ in range(q)]
        sv = [int(rng.integers(-(1 << (s_width - 1)), 1 << (s_width - 1))) for _ in range(q)]
        bv = int(rng.integers(-(1 << 23), 1 << 23))
        total = (sum(x * z for x, z in zip(av, sv)) + bv + (1 << (F - 1))) >> F
        cases.append((av, sv, bv, min(max(total, y_lo), y_hi)))
    got = []
    sim = Simulator(m)
    sim.add_clock(1e-8)

    async def bench(ctx):
        for av, sv, bv, _ in cases:
            for k in range(q):
                ctx.set(a[k], av[k])
                ctx.set(s[k], sv[k])
            ctx.set(beta, bv)
            for _ in range(latency):
                await ctx.tick()
            got.append(ctx.get(y))

    sim.add_testbench(bench)
    sim.run()
    assert got == [want for *_, want in cases]


@pytest.mark.parametrize("bits_register, address_register",
                         [(True, False), (False, False), (True, True)])
def test_weight_bits_registered_or_not(bits_register, address_register):
    """The decoded weight bits registered before they mask, the vector word registered
    after its memory (ECP5 builds) or its read address registered twice instead (iCE40
    builds), or neither (one stage shorter): all exact under stalls."""
    pkg, layer, consts = _layer(47, 6, q=2, n_in=6, n_out=10, signed=True)
    params = replace(mvau_params(layer, consts, 3, 20, 3), bits_register=bits_register,
                     address_register=address_register)
    base = replace(params, bits_register=True, address_register=False)
    assert params.tree_stages == base.tree_stages - (not bits_register)
    x = _inputs(consts, 3, 47, seed=5)
    got, _ = _simulate(params, x, stall=0.3, seed=3)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


def test_address_register_needs_the_bits_register():
    _, layer, consts = _layer(47, 6, q=2, n_in=6, n_out=10, signed=True)
    with pytest.raises(ValueError, match="bits_register"):
        replace(mvau_params(layer, consts, 3, 20, 3), bits_register=False,
                address_register=True)


def test_ice40_builds_register_the_read_address_not_the_word(tmp_path):
    from flexor_hw.build import build
    from flexor_hw.package import save
    pkg = random_package([30, 8, 3], n_in=6, n_out=10, q=1, seed=2)
    save(pkg, tmp_path / "p.flexor.npz")
    for target, word_register in (("ice40-up5k", False), ("ecp5-25k", True)):
        build(tmp_path / "p.flexor.npz", tmp_path / target, target=target, quiet=True)
        v = (tmp_path / target / "flexor_random.v").read_text()
        assert re.search(r"\(w0_0\[0\]\)", v), target        # the weight bits' register
        assert ("xdata_d1" in v) == word_register, target


@pytest.mark.parametrize("sf, o, n_in", [(1, 4, 5), (2, 4, 5), (5, 4, 5), (1, 2049, 9),
                                         (6, 2049, 9)])
def test_first_step_never_outruns_the_weight_stream(sf, o, n_in):
    """A unit whose first vector arrives in fewer beats than the weight stream takes to
    prime checks the stream's valid; one whose vector takes longer does not need to. A ROM
    that stalls primes in its latency (2 edges here); a banked one (2,049 words of 9 bits)
    fills a ring of 7 words behind its five cycles, 13 edges: without the check SF 1 steps
    on words not yet read. All exact, with vectors back to back from reset."""
    from flexor_hw.gateware.rom import rom_banked
    from flexor_hw.gateware.weight_stream import prime_cycles
    f = 10 * sf
    pkg, layer, consts = _layer(f, o, n_in=n_in, n_out=10)
    params = mvau_params(layer, consts, 1, 10, 1)
    assert params.sf == sf
    banked = rom_banked(params.rom_depth, params.rom_width, 2)
    assert banked == (o > 2048)
    assert prime_cycles(5 if banked else 2, stall=not banked) == (13 if banked else 2)
    x = _inputs(consts, 2 if banked else 3, f, seed=sf)
    got, _ = _simulate(params, x)
    assert np.array_equal(got, run_int(pkg, x, F)[0])


STATIONARY = [  # (fan_in, out, pe, simd, out_simd, q, n_in, n_out, signed)
    (40, 16, 4, 8, 1, 2, 6, 10, False),     # counted offsets: SIMD ∤ n_out, G = 4 of 5 steps
    (13, 6, 2, 4, 1, 1, 6, 10, False),      # a short last word, slices straddling rows
    (25, 32, 2, 25, 2, 2, 6, 10, True),     # one word a vector, signed planes, R = 2
    (40, 6, 1, 40, 1, 1, 6, 10, False),     # one word, six groups: more places than groups
    (60, 4, 4, 20, 2, 1, 8, 20, False),     # one group: the ring is one register
    (30, 12, 3, 10, 3, 1, 6, 10, False),    # n_out | SIMD and F: every offset 0, G = 1
]


def _stationary(case, **kw):
    f, o, pe, simd, r, q, n_in, n_out, signed = case
    pkg, layer, consts = _layer(f, o, q=q, n_in=n_in, n_out=n_out, signed=signed)
    return pkg, consts, mvau_params(layer, consts, pe, simd, r, stationary=True, **kw)


@pytest.mark.parametrize("bits_register", [True, False], ids=["bits_registered", "bits"])
@pytest.mark.parametrize("masked_adders", [False, True], ids=["reset_masks", "masked_adders"])
@pytest.mark.parametrize("case", STATIONARY, ids=[f"f{c[0]}o{c[1]}pe{c[2]}s{c[3]}r{c[4]}"
                                                  for c in STATIONARY])
def test_stationary_mvau_matches_golden_under_stalls(case, masked_adders, bits_register):
    """An input-stationary unit (each word held while every row group takes it, the groups'
    sums in rings, finished groups in a buffer) is exact with both streams stalled, its
    weight bits registered or not, and it reads its ROM image column block major."""
    pkg, consts, params = _stationary(case, masked_adders=masked_adders,
                                      bits_register=bits_register)
    assert params.stationary and params.activation_memory_bits == 0
    f = case[0]
    x = _inputs(consts, 4, f, seed=f)
    got, _ = _simulate(params, x, stall=0.35, seed=case[2] + case[3])
    assert np.array_equal(got, run_int(pkg, x, F)[0])


@pytest.mark.parametrize("case", STATIONARY, ids=[f"f{c[0]}o{c[1]}pe{c[2]}s{c[3]}r{c[4]}"
                                                  for c in STATIONARY])
def test_stationary_mvau_runs_at_its_stated_rate_and_latency(case):
    """Unstalled, vectors leave exactly ``cycles_per_vector = NF·max(SF, G)`` apart (no
    hand-over between vectors), and the first vector's last output exactly
    ``latency_cycles`` after its last beat was taken."""
    pkg, consts, params = _stationary(case, masked_adders=True)
    f, o, r = case[0], case[1], case[4]
    x = _inputs(consts, 6, f, seed=3)

    async def idle(ctx, rst):
        await ctx.tick().repeat(10)

    got, run = _simulate(params, x, before=idle)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    per = o // r
    ends = [run.out_cycles[(k + 1) * per - 1] for k in range(6)]
    assert params.cycles_per_vector == params.nf * max(params.sf, params.group_beats)
    assert set(np.diff(ends).tolist()) == {params.cycles_per_vector}
    assert run.out_cycles[per - 1] - run.in_cycles[params.sf - 1] == params.latency_cycles


def test_stationary_mvau_reset_in_the_middle_of_a_vector():
    """A reset while groups are issued, finished groups wait in the buffer and the output
    stalls: the next vectors are exact (the rings, the buffer's counts and the issue start
    again; the word's register loads from the reset on)."""
    pkg, consts, params = _stationary(STATIONARY[0], masked_adders=True)
    dut, wrong = MatrixVectorUnit(params), []
    junk = pack_beats(_inputs(consts, 4, 40, seed=7), params.simd, params.x_width)
    before = reset_while_stalled(dut, junk[:params.sf + 2], settle=30, hold=2)
    x = _inputs(consts, 3, 40, seed=8)
    run = run_stream(dut, pack_beats(x, params.simd, params.x_width), 3 * 16, in_stall=0.2,
                     out_stall=0.3, seed=2, before=before, monitor=_copies_agree(dut, wrong))
    got = unpack_beats(run.outputs, 1, params.y_width, consts.y_lo < 0).reshape(3, 16)
    assert np.array_equal(got, run_int(pkg, x, F)[0])
    assert wrong == []


def test_stationary_rom_image_is_column_block_major():
    """The input-stationary image holds the same words as the row-group-major one, word
    ``s·NF + n`` being that one's ``n·SF + s``."""
    _, layer, _ = _layer(40, 16)
    rows = mvau_rom_bytes(layer, 4, 8)
    cols = mvau_rom_bytes(layer, 4, 8, stationary=True)
    nf, sf = 4, 5
    assert cols.shape == rows.shape
    for n in range(nf):
        for s in range(sf):
            assert cols[s * nf + n].tolist() == rows[n * sf + s].tolist()
    assert not np.array_equal(cols, rows)


@pytest.mark.parametrize("f, o, pe, simd, r, kw, msg", [
    (33, 6, 2, 10, 1, {}, r"cannot carry slices from the word before"),
    (30, 8, 8, 30, 1, {}, r"serializes a row group's 8 beats within its 1 steps"),
    (40, 66, 2, 8, 1, {}, r"keeps at most 32 row groups' sums, not 33"),
    (40, 16, 4, 8, 1, {"in_simd": 4}, r"takes its input a word of SIMD \(8\) elements a beat"),
    (40, 16, 4, 8, 1, {"address_register": True}, r"has no registered read address"),
])
def test_stationary_mvau_refuses_what_it_cannot_do(f, o, pe, simd, r, kw, msg):
    _, layer, consts = _layer(f, o)
    params = mvau_params(layer, consts, pe, simd, r, contents=False, **kw)
    with pytest.raises(ValueError, match=r"^An input-stationary MVAU " + msg):
        replace(params, stationary=True)
    # a word that serves several steps is refused where the image is made
    _, layer, consts = _layer(26, 3)
    with pytest.raises(ValueError, match=r"reads a word a step: not one whose words serve"):
        mvau_params(layer, consts, 1, 2, 1, stationary=True)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_xor_masks_where_a_unit_can_and_its_bias_makes_up_for_them(signed):
    """Where the masks are in the adders, the planes ±1 and SIMD divides the fan-in, a unit's
    lanes add an activation or its complement (``xor_masks``): its rows sum ``S + K·N₀``,
    the unit's β is the contract's less ``Σ_i A_i·K·N₀_i`` (so every ``Σ_i A_i·S_i + β`` is
    the contract's, checked on random vectors), no tree of Σx is built and its masked
    adders are the XOR ones; exact under stalls. Not where SIMD leaves lanes past the
    fan-in, the masks are in registers' resets, or the caller says not."""
    from flexor_hw.gateware.mvau import xor_offset
    from flexor_hw.rom_image import xor_constants
    pkg, layer, consts = _layer(40, 6, q=2, signed=signed, seed=7)
    params = mvau_params(layer, consts, 3, 20, 3, masked_adders=True)
    assert params.xor_masks
    for kw in ({"masked_adders": False}, {"masked_adders": True, "xor_masks": False}):
        assert not mvau_params(layer, consts, 3, 20, 3, **kw).xor_masks
    _, layer47, consts47 = _layer(47, 6, q=2, signed=signed)
    assert not mvau_params(layer47, consts47, 3, 20, 3, masked_adders=True).xor_masks
    with pytest.raises(ValueError, match="divide the fan-in"):
        replace(mvau_params(layer47, consts47, 3, 20, 3, masked_adders=True), xor_masks=True)
    k = xor_offset(params.x_shape)
    assert k == (-1 if signed else (1 << params.x_width) - 1)
    own = xor_constants(layer, consts, params.x_shape)
    assert np.array_equal(params.consts.beta, own.beta) and not np.array_equal(own.beta,
                                                                                consts.beta)
    # Σ_i A_i·S'_i + β' against Σ_i A_i·S_i + β, S' from the complemented terms
    x = _inputs(consts, 5, 40, seed=2).astype(object)
    w = layer.weight_bits.astype(object)                            # [q, out, F]
    s = np.einsum("iof,nf->nio", 2 * w - 1, x)
    t = np.where(w[None] == 1, x[:, None, None, :], k - x[:, None, None, :]).sum(axis=3)
    assert own.s_lo <= t.min() and t.max() <= own.s_hi
    contract = (consts.A.astype(object)[None] * s).sum(axis=1) + consts.beta.astype(object)
    unit = (own.A.astype(object)[None] * t).sum(axis=1) + own.beta.astype(object)
    assert np.array_equal(contract, unit)
    from amaranth.back import verilog
    text = verilog.convert(MatrixVectorUnit(params), name="unit")
    assert "xsum" not in text
    emitted = verilog.convert(MatrixVectorUnit(params, init_files=("w.hex", "c.hex")),
                              name="unit")
    assert "flexor_madd" in emitted and "XOR(32'd0)" not in emitted
    assert emitted.count("XOR(32'd1)") == params.pe * params.q * params.simd // 2
    base = mvau_params(layer, consts, 3, 20, 3, masked_adders=True, xor_masks=False)
    assert "xsum" in verilog.convert(MatrixVectorUnit(base), name="unit")
    got, _ = _simulate(params, _inputs(consts, 4, 40, seed=3), stall=0.3, seed=4)
    assert np.array_equal(got, run_int(pkg, _inputs(consts, 4, 40, seed=3), F)[0])
