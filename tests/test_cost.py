"""The cost model's block RAM count for ROMs against what Yosys makes of them (ECP5 DP16KD), and
the banked ROM layout those counts come from, run in Icarus."""

import math
import random
import shutil
import subprocess
from pathlib import Path

import pytest

import numpy as np

from conftest import ecp5_cells
from flexor_hw.gateware.rom import (ROM_LOGIC_VERILOG, ROM_VERILOG, bank_rows, rom_group_bits,
                                    rom_layout)
from flexor_hw.hw.cost import dp16kd_blocks, memory, rom_blocks
from flexor_hw.rom_image import hex_lines

# (depth, width): DP16KD blocks Yosys 0.70 synth_ecp5 gave a $readmemh ROM of random words, one
# word per address; the banked layout takes as many.
MEASURED = {(40192, 16): 36, (20096, 32): 36, (10000, 16): 9, (5000, 16): 5, (40192, 8): 18,
            (12000, 12): 8, (3000, 24): 4}


@pytest.mark.parametrize("shape", sorted(MEASURED))
def test_rom_blocks_match_yosys(shape):
    assert rom_blocks(*shape) == MEASURED[shape]


@pytest.mark.parametrize("depth,width", [(1, 1), (216, 192), (512, 36), (513, 36), (1056, 8),
                                         (40192, 16), (100, 640), (16384, 1), (70000, 3)])
def test_rom_blocks_bounds(depth, width):
    blocks = rom_blocks(depth, width)
    # never more than one configuration needs, never fewer than the bits or the width allow
    assert blocks <= dp16kd_blocks(depth, width)
    assert blocks >= max(math.ceil(depth * width / 18432), math.ceil(width / 36))


def test_memory_counts_roms_and_rams_apart():
    rom = memory("weights", 40192, 16, rom=True)
    ram = memory("activations", 40192, 16)
    assert rom["block_rams"] == 36 and ram["block_rams"] == dp16kd_blocks(40192, 16) == 40
    # the choice among 20 banks of 2048 words, per bit; their row registered, a third cycle
    # and a slot more in the weight stream
    assert rom["luts"] == round(1.4 * 16 * 19) and rom["ffs"] == (20 + 2) * 16
    assert memory("weights", 224, 192, rom=True) == {
        "kind": "weights", "depth": 224, "width": 192, "bits": 224 * 192, "block_rams": 6,
        "luts": 0, "ffs": 0}
    # a ROM in logic takes no block RAM
    assert memory("weights", 216, 192, rom=True, logic=True)["block_rams"] == 0


def write_rom(path, depth, width, seed=0, page_bits=None, group_bits=None):
    """A banked ROM of random words as ``flexor_rom`` reads it: (words, instance parameters);
    with ``page_bits``, a ROM read in pages of ``2**page_bits`` words (never banked);
    ``group_bits``: a banked row's columns per address register (default: the build's)."""
    rng = np.random.default_rng(seed)
    n_bytes = -(-width // 8)
    image = rng.integers(0, 256, (depth, n_bytes), dtype=np.uint8)
    if width % 8:
        image[:, -1] &= (1 << (width % 8)) - 1
    banks, bank_addr, _ = rom_layout(depth, width) if page_bits is None else (1, None, 0)
    rows = bank_rows(image, width, banks, 1 << bank_addr) if banks > 1 else image
    (path / "w.hex").write_bytes(hex_lines(rows, banks * width))
    words = [int.from_bytes(bytes(row), "little") for row in image]
    params = f".WIDTH({width}), .DEPTH({depth}), .ADDR_WIDTH({max(1, (depth - 1).bit_length())}), " \
             f'.INIT_FILE("w.hex"), .LATENCY({5 if banks > 1 else 2})'
    if banks > 1:
        group_bits = group_bits or rom_group_bits(depth, width)
        params += f", .BANKS({banks}), .BANK_ADDR({bank_addr}), .GROUP_BITS({group_bits})"
    if page_bits is not None:
        params += f", .PAGE_BITS({page_bits})"
    return words, params


@pytest.mark.parametrize("depth,width,banks,page_bits,group_bits", [
    (5000, 16, 5, None, None), (5000, 16, 5, None, 9), (5000, 16, 5, None, 23),
    (2049, 9, 2, None, None), (3000, 24, 3, None, 36), (700, 40, 1, None, None),
    (130, 6, 1, 4, None), (64, 5, 1, 4, None), (33, 3, 1, 5, None)])
def test_banked_rom_in_icarus(tmp_path, depth, width, banks, page_bits, group_bits):
    """Every word, in a random order, five clocks after its address when banked, its row
    read in groups of columns each from an address register of its own (whole groups and a
    last one cut short), two unbanked, and two read in pages: a page's word, then the
    page."""
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.skip("iverilog is not installed")
    if page_bits is None:
        assert rom_layout(depth, width)[0] == banks
    words, params = write_rom(tmp_path, depth, width, page_bits=page_bits,
                              group_bits=group_bits)
    latency = 5 if banks > 1 else 2
    order = list(range(depth))
    random.Random(1).shuffle(order)
    aw = max(1, (depth - 1).bit_length())
    (tmp_path / "order.hex").write_text("".join(f"{a:x}\n" for a in order))
    verilog = ROM_VERILOG if page_bits is None else ROM_LOGIC_VERILOG
    rom = "flexor_rom" if page_bits is None else "flexor_rom_logic"
    (tmp_path / "tb.v").write_text(verilog + f"""
module tb;
  reg clk = 0;
  reg [{aw - 1}:0] addr = 0;
  wire [{width - 1}:0] data;
  reg [{aw - 1}:0] order [0:{depth - 1}];
  integer t;
  {rom} #({params}) rom (.clk(clk), .addr(addr), .data(data));
  initial begin
    $readmemh("order.hex", order);
    for (t = 0; t < {depth + latency}; t = t + 1) begin
      if (t < {depth}) addr = order[t];
      #1 clk = 1; #1 clk = 0;
      if (t >= {latency - 1}) $display("%0h", data);
    end
    $finish;
  end
endmodule
""")
    subprocess.run([iverilog, "-o", "tb.vvp", "tb.v"], cwd=tmp_path, check=True, timeout=120)
    out = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=tmp_path, check=True, timeout=300,
                         capture_output=True, text=True).stdout.split()
    got = [int(v, 16) for v in out[:depth]]
    assert got == [words[a] for a in order]


@pytest.mark.synth
@pytest.mark.parametrize("depth,width", [(3000, 24), (40192, 16)])
def test_a_rom_in_yosys(tmp_path, depth, width):
    """3000 × 24 bits: 4 blocks where any one configuration takes 6; 40192 × 16: 36, not 40,
    read in four groups of 81 columns from four address registers (each group's memory
    holds the whole file: Yosys keeps only the columns read), the bank chosen in sets of
    banks, then among the sets."""
    _, params = write_rom(tmp_path, depth, width)
    aw = (depth - 1).bit_length()
    cells = ecp5_cells(tmp_path, ROM_VERILOG + f"""
module top(input clk, input [{aw - 1}:0] addr, output [{width - 1}:0] data);
  flexor_rom #({params}) rom (.clk(clk), .addr(addr), .data(data));
endmodule
""")
    banks = rom_layout(depth, width)[0]
    assert cells["DP16KD"] == rom_blocks(depth, width) == MEASURED[(depth, width)]
    assert cells["DP16KD"] < dp16kd_blocks(depth, width)
    # each group's address register, each set's choice of its bank, then the word
    groups = -(-banks * width // rom_group_bits(depth, width))
    sets = -(-banks // -(-banks // groups))
    bank_addr = (-(-depth // banks) - 1).bit_length()
    assert cells["TRELLIS_FF"] >= groups * bank_addr + sets * width + width


def test_a_vector_memory_goes_where_the_verilog_says():
    # 24 × 96 bits: the tools' costs are close (Yosys put it in LUT RAM); the fold says which
    lut = memory("activations", 24, 96, style="distributed")
    block = memory("activations", 24, 96, style="block")
    assert (lut["block_rams"], lut["luts"]) == (0, 6 * 2 * 24)
    assert (block["block_rams"], block["luts"]) == (3, 0)
    assert memory("activations", 24, 96, logic=True) == lut
    # left to the tools: up to 16 words in LUT RAM, however wide; 448 × 8 in block RAM
    assert memory("activations", 16, 640)["block_rams"] == 0
    assert memory("maxima", 448, 8)["block_rams"] == 1


def test_the_fold_offers_lut_ram_only_where_the_device_has_it():
    from flexor_hw.hw import fold as F
    from flexor_hw.hw.lower import lower
    from flexor_hw.package import load
    graph = lower(load("examples/mnist/lenet5.flexor.npz"), 16, argmax=True)
    fc2 = [st for st in graph.mvaus if st.name == "fc2"][0].folded(1, 20, 1)
    assert 2 * fc2.params.sf > 16
    ecp5 = F._memory_styles(fc2)
    assert {dict(s)["vectors_lutram"] for s in ecp5} == {False, True}
    ice40 = F._memory_styles(fc2, lut_ram=False)
    assert {dict(s)["vectors_lutram"] for s in ice40} == {None}
    for flag, style in ((True, "distributed"), (False, "block"), (None, None)):
        unit = fc2.folded(1, 20, 1, vectors_lutram=flag)
        assert unit.params.vectors_style == style
        assert unit.memories()[2]["block_rams"] == (0 if flag else 5)   # 50 × 160 bits


def test_a_tiled_pools_maxima_go_to_lut_ram_where_block_rams_are_short():
    from amaranth.back import verilog

    from flexor_hw.hw import fold as F
    from flexor_hw.hw.lower import lower
    from flexor_hw.package import load
    graph = lower(load("examples/mnist/lenet5.flexor.npz"), 16, argmax=True)
    pool = [st for st in graph.stages if st.kind == "maxpool"][0]      # 14·32 words × 8 bits
    budget = dict(F.DEFAULT_BUDGET)
    short_of_brams = F._pool_memory(pool, dict(budget, weights=(0.01, 0.01, 1.0)))
    short_of_luts = F._pool_memory(pool, dict(budget, weights=(1.0, 0.01, 0.01)))
    assert short_of_brams.lutram is True and short_of_luts.lutram is False
    assert short_of_brams.estimate()["brams"] == short_of_luts.estimate()["brams"] - 1
    # LUT-RAM cells of 16 × 4 bits (six LUT4 places each), and the read across 28 pages
    assert short_of_brams.estimate()["luts"] == short_of_luts.estimate()["luts"] + 6 * 2 * 28 \
        + 8 * 27
    assert F._pool_memory(pool, dict(budget, lut_ram=False)).lutram is None       # iCE40
    for stage, style in ((short_of_brams, "distributed"), (short_of_luts, "block")):
        text = verilog.convert(stage.unit(), name="pool")
        assert f'(* ram_style = "{style}" *)' in text
    assert "ram_style" not in verilog.convert(pool.unit(), name="pool")


def test_a_unit_with_time_to_spare_takes_simd_below_n_out_where_allowed():
    """``narrow_simd`` (the ECP5 targets): LeNet-5's fc2 (512 → 10, slices of 20 bits),
    folded to a slow rate, takes fewer than 20 inputs a cycle and a vector memory one block
    RAM holds; without it, 20 or more."""
    from flexor_hw.hw import fold as F
    from flexor_hw.hw.lower import lower
    from flexor_hw.package import load
    graph = lower(load("examples/mnist/lenet5.flexor.npz"), 16, argmax=True)
    fc2 = [st for st in graph.mvaus if st.name == "fc2"][0]
    assert fc2.weights.n_out == 20
    assert {1, 2, 4, 5, 10} <= set(F._simd_candidates(fc2, narrow=True))
    assert min(F._simd_candidates(fc2)) == 20
    wide = F.fold_unit(fc2, 40000, F.DEFAULT_BUDGET)
    narrow = F.fold_unit(fc2, 40000, dict(F.DEFAULT_BUDGET, narrow_simd=True))
    assert wide.simd >= 20 and narrow.simd < 20
    assert narrow.cycles_per_image() <= 40000
    assert narrow.estimate()["luts"] < wide.estimate()["luts"]
    vectors = [mem for mem in narrow.memories() if mem["kind"] == "activations"][0]
    assert vectors["block_rams"] <= 1


def test_ice40_memories_are_sb_ram40_blocks():
    """On the iCE40 every RAM is block RAM (no LUT RAM) in SB_RAM40_4K shapes: the placed
    digits MLP's 14 × 80 and 26 × 80 vector memories took 5 blocks each."""
    for depth, width, blocks in ((14, 80, 5), (26, 80, 5), (448, 12, 2), (128, 39, 3),
                                 (2048, 2, 1), (2049, 2, 2)):
        mem = memory("activations", depth, width, family="ice40")
        assert (mem["block_rams"], mem["luts"]) == (blocks, 0), (depth, width)
    # ROMs up to LOGIC_ROM_BITS stay logic, as on the ECP5
    assert memory("weights", 130, 6, rom=True, family="ice40")["block_rams"] == 0
    assert memory("weights", 448, 12, rom=True, family="ice40")["block_rams"] == 2
    # the ECP5 puts the small vector memory in LUT RAM
    assert memory("activations", 14, 80)["block_rams"] == 0


def test_folding_to_an_ice40_counts_its_block_rams(tmp_path):
    from flexor_hw.build import plan_hardware
    from flexor_hw.package import load
    pkg = load(Path(__file__).resolve().parent.parent / "examples" / "digits" /
               "digits.flexor.npz")
    ice = plan_hardware(pkg, target="ice40-up5k", argmax=True)
    ecp = plan_hardware(pkg, target="ecp5-25k", argmax=True)
    assert {st.family for st in ice.stages} == {"ice40"}
    assert {st.family for st in ecp.stages} == {"ecp5"}
    for st in ice.mvaus:
        vecs = [m for m in st.memories() if m["kind"].startswith("activations")]
        assert vecs and all(v["block_rams"] == -(-v["width"] // 16) * -(-v["depth"] // 256)
                            and v["luts"] == 0 for v in vecs)
        assert sum(m["block_rams"] for m in st.memories()) == st.estimate()["brams"]
    # Memories the tools put in block RAM on the iCE40 and the ECP5 in LUT RAM: a vector
    # memory cut in banks for LUT RAM (fc1 at 2 × 16 lanes of 5 bits: 60 and 20 bits, 4 and
    # 2 SB_RAM40_4K where the whole 80 bits would take 5) and an output FIFO's 11 waiting
    # beats (1); the placed fc1 took 13 (benchmarks/digits_ice40_up5k_*.md)
    fc1 = next(st for st in ice.mvaus if st.name == "fc1")
    assert (fc1.params.pe, fc1.params.simd, fc1.params.x_width) == (2, 16, 5)
    mems = {m["kind"]: (m["width"], m["block_rams"]) for m in fc1.memories()}
    assert mems["activations bank 0 page 0"] == (60, 4)
    assert mems["activations bank 1 page 0"] == (20, 2)
    assert mems["output FIFO"][1] == 1 and fc1.params.fifo_depth == 12
    assert fc1.estimate()["brams"] == 13
    # the ECP5 counts neither apart (LUT RAM)
    fc1 = next(st for st in ecp.mvaus if st.name == "fc1")
    assert [m["kind"] for m in fc1.memories() if "activations" in m["kind"] or
            "FIFO" in m["kind"]] == ["activations"]


def test_ice40_requantizers_count_sb_mac16_pieces():
    """On the iCE40 a requantizer's partial product takes an SB_MAC16 per 16 × 16 piece, its
    registers in flip-flops: the placed digits MLP took 5 SB_MAC16 (fc1's 18 × 12 product 2,
    fc2's 17 × 16 and 4 × 16 pieces 2 and 1), which the ECP5's count (a MULT18X18D per
    piece) gives as 3."""
    from dataclasses import replace

    from flexor_hw.build import plan_hardware
    from flexor_hw.package import load
    pkg = load(Path(__file__).resolve().parent.parent / "examples" / "digits" /
               "digits.flexor.npz")
    ice = plan_hardware(pkg, target="ice40-up5k", argmax=True)
    assert [st.estimate()["dsps"] for st in ice.mvaus] == [2, 3]
    assert ice.estimate()["dsps"] == 5
    for st in ice.mvaus:
        ecp = replace(st, family="ecp5")
        assert ecp.estimate()["dsps"] == st.params.out_simd * st.params.product_terms
        c = st.params.consts
        # fc1: A 18 bits × S 12; fc2: A 21 bits (an unsigned 17-bit piece and the signed
        # 4 on top) × S 16
        widths, pieces = {"fc1": ((18, 12), [(18, 12)]),
                          "fc2": ((21, 16), [(17, 16), (4, 16)])}[st.name]
        assert (c.a_width, c.s_width) == widths
        # the operands' and the product's registers
        assert st.estimate()["ffs"] - ecp.estimate()["ffs"] == \
            sum(2 * (a + s) for a, s in pieces)


@pytest.mark.synth
@pytest.mark.parametrize("a_width, s_width, q", [(15, 21, 1), (13, 19, 2)])
def test_a_requantizers_products_in_logic_cost_what_the_model_says(tmp_path, a_width,
                                                                   s_width, q):
    """The requantizer alone through Yosys's synth_ecp5, its products on DSPs and in logic
    (:func:`~flexor_hw.gateware.mul.lut_product`): the logic takes no MULT18X18D, and the
    LUT4 and flip-flops it adds are the model's (``luts_per_product_bit``,
    ``ffs_per_product_bit`` per bit of a_width × s_width) within 15 %."""
    from types import SimpleNamespace

    from amaranth.back import verilog
    from amaranth.hdl import Module, signed
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from flexor_hw.gateware.mul import ECP5_DEFINE, MUL_VERILOG
    from flexor_hw.gateware.mvau import _requantize
    from flexor_hw.hw.cost import COST
    c = SimpleNamespace(a_width=a_width, s_width=s_width, beta_width=24, round_const=1 << 15,
                        acc_width=a_width + s_width + q + 2, frac_bits=16, y_lo=0, y_hi=255)

    def cells(lut):
        class Top(wiring.Component):
            s: In(signed(s_width * q))
            a: In(signed(a_width * q))
            beta: In(signed(24))
            y: Out(9)

            def elaborate(self, platform):
                m = Module()
                s = [self.s[i * s_width:(i + 1) * s_width].as_signed() for i in range(q)]
                a = [self.a[i * a_width:(i + 1) * a_width].as_signed() for i in range(q)]
                m.d.sync += self.y.eq(_requantize(m, c, s, a, self.beta, q, "rq", emit=True,
                                                  lut=lut))
                return m

        d = tmp_path / ("lut" if lut else "dsp")
        d.mkdir()
        found = ecp5_cells(d, MUL_VERILOG + verilog.convert(Top(), name="top"),
                           defines=[ECP5_DEFINE])
        return (found.get("LUT4", 0) + 2 * found.get("CCU2C", 0), found.get("TRELLIS_FF", 0),
                found.get("MULT18X18D", 0))

    (dl, df, dd), (ll, lf, ld) = cells(False), cells(True)
    assert dd > 0 and ld == 0
    bits = q * a_width * s_width
    m = COST["mvau"]
    assert abs((ll - dl) - m["luts_per_product_bit"] * bits) <= 0.15 * (ll - dl)
    assert abs((lf - df) - m["ffs_per_product_bit"] * bits) <= 0.15 * (lf - df)


def test_a_skip_fifo_stacked_in_block_rams_is_banked_on_the_ecp5_only():
    """A fork's skip FIFO is cut into banks of one block RAM where its configuration stacks
    blocks in depth (5,658 × 8 bits: three of 2,048 × 9), with the blocks the estimate counts;
    where one block deep holds it (2,634 × 8: two of 4,096 × 4 side by side), in LUT RAM, or
    on the iCE40, it stays one memory."""
    from dataclasses import replace
    from flexor_hw.hw.cost import stack_words
    from flexor_hw.hw.stages import ResidualFork
    fork = ResidualFork(name="f", x_range=(0, 255), y_range=(0, 255), channels=16,
                        height=32, width=32, depth=5656)
    assert fork.family == "ecp5"
    assert fork.bank_words == stack_words(5658, 8) == 2048
    assert fork.memories()[0]["block_rams"] == 3
    assert replace(fork, depth=2632).bank_words is None
    assert replace(fork, depth=2632).memories()[0]["block_rams"] == 2
    assert replace(fork, depth=100).bank_words is None
    assert replace(fork, family="ice40").bank_words is None


def test_the_folding_pass_remembers_estimates_per_lowering():
    """The folding pass keeps each unit's estimate per folding under the unit's constants,
    which each lowering makes anew: the same package lowered with other fractional bits (so
    other datapath widths) is estimated afresh, and what a graph's units left behind goes
    with the graph."""
    import gc

    from flexor_hw.hw import fold as F
    from flexor_hw.hw.lower import lower
    from flexor_hw.package import load
    pkg = load("examples/mnist/lenet5.flexor.npz")
    units = {}
    for frac_bits in (16, 4):
        graph = lower(pkg, frac_bits, argmax=True)
        units[frac_bits] = [st for st in graph.mvaus if st.name == "conv2"][0]
    wide, narrow = units[16], units[4]
    assert wide.weights is narrow.weights            # one node, two lowerings
    for unit in (wide, narrow):
        got = F._cached_estimate(unit, 4, 60, 1)
        assert got == unit.folded(4, 60, 1).estimate()
    assert F._cached_estimate(wide, 4, 60, 1) != F._cached_estimate(narrow, 4, 60, 1)
    assert narrow.consts in F._ESTIMATES
    held = len(F._ESTIMATES)
    del units, wide, narrow, unit, graph
    gc.collect()
    assert len(F._ESTIMATES) <= held - 2


@pytest.mark.parametrize("length, n_in, n_out, bits, luts", [
    (800, 5, 40, 8, 42),    # LeNet-5's conv2 window to conv2: every word closes whole
    (64, 1, 16, 5, 18),     # the digits MLP's input: aligned
    (128, 1, 10, 8, 90),    # fc1 to fc2 of the digits MLP: the last word closes early
    (30, 4, 8, 5, 32),      # the last beat runs past the vector's end: its 4 lanes muxed
    (128, 10, 1, 8, 90),    # narrowing: a chunk chosen per bit
])
def test_a_widening_repack_is_estimated_as_a_shift(length, n_in, n_out, bits, luts):
    """A widening repack's word shifts (every bit to one place): a multiplexer a bit only
    where a vector's last word closes early or its last beat runs past the vector's end
    (synthesized alone: LeNet-5's 5 → 40 of 8 bits 47 LUT4, the digits MLP's aligned
    1 → 16 of 5 bits 32, its 1 → 10 of 8 bits 91)."""
    from flexor_hw.hw.stages import Repack
    hi = (1 << bits) - 1
    st = Repack("r", (0, hi), (0, hi), length=length, n_in=n_in, n_out=n_out)
    assert st.estimate()["luts"] == luts
